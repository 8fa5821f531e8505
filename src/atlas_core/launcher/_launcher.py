"""`atlas up / status / down`: the whole suite on one machine.

``up`` starts the object store (SeaweedFS, loopback, access keys enforced) and every
implemented service as its own process, waits until each reports SERVING and records what it
started in ``<data_dir>/run/state.json``; ``down`` stops exactly those processes. Credentials
(S3 keys, an admin bearer token, the bundle signing keypair) are generated on first use into
``<data_dir>/secrets`` (owner-only files) and never printed; every service signs the bundles
it writes with that key and trusts it when loading.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atlas_core.bundle_signing import ensure_local_keypair
from atlas_core.errors import FailedPrecondition, Unavailable
from atlas_core.launcher._objectstore import SeaweedS3Server, port_is_free
from atlas_core.launcher._process import alive, spawn, tail, terminate
from atlas_core.launcher._services import (
    ServiceSpec,
    WebAppSpec,
    implemented_services,
    implemented_web_apps,
)
from atlas_core.secret_files import read_private, write_private

HOST = "127.0.0.1"
# ProcessInfo.full_name of web apps: checked by GET /healthz instead of gRPC health.
HTTP_APP = "http"
SERVICE_STOP_GRACE = 10.0
OBJECT_STORE_STOP_GRACE = 5.0  # weed may take 15-30 s on SIGTERM; its writes are durable


@dataclass
class ProcessInfo:
    name: str
    pid: int
    address: str
    log: str
    metrics_port: int | None = None
    full_name: str = ""
    read_address: str = ""  # the service's read-only endpoint, when it runs one


@dataclass
class RunState:
    data_dir: str
    s3_endpoint: str
    processes: list[ProcessInfo] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> RunState | None:
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        raw["processes"] = [ProcessInfo(**p) for p in raw["processes"]]
        return cls(**raw)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, path)


@dataclass(frozen=True)
class Credentials:
    s3_access_key: str
    s3_secret_key: str
    admin_token: str
    tokens_file: Path
    signing_key_file: Path
    signing_public_key_file: Path


def ensure_credentials(data_dir: Path) -> Credentials:
    """Generate (once) and return the suite's S3 keys, admin token and bundle signing keys.

    Raises:
        ConfigError: ``SECRETS_FILE_EXPOSED`` when a secrets file is readable by others.
    """
    secrets_dir = data_dir / "secrets"
    creds_file = secrets_dir / "credentials.json"
    tokens_file = secrets_dir / "tokens"
    if not creds_file.exists():
        creds = {
            "s3_access_key": "atlas-" + secrets.token_hex(6),
            "s3_secret_key": secrets.token_urlsafe(24),
            "admin_token": secrets.token_urlsafe(24),
        }
        write_private(creds_file, json.dumps(creds))
        write_private(tokens_file, f"{creds['admin_token']} *\n")
    creds = json.loads(read_private(creds_file, "the suite's credentials file"))
    signing_key, public_key = ensure_local_keypair(secrets_dir)
    return Credentials(
        tokens_file=tokens_file,
        signing_key_file=signing_key,
        signing_public_key_file=public_key,
        **creds,
    )


def web_session_secret(data_dir: Path) -> str:
    """The secret web apps sign session cookies with, generated once (owner-only file), so
    sessions survive a restart of the suite."""
    path = data_dir / "secrets" / "web_session_secret"
    if not path.exists():
        write_private(path, secrets.token_urlsafe(32))
    return read_private(path, "the web session secret").decode().strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _choose_port(wanted: int, what: str, flag: str) -> int:
    if wanted == 0:
        return _free_port()
    if not port_is_free(wanted, HOST):
        raise FailedPrecondition(
            f"cannot start {what}: port {wanted} on {HOST} is already in use; "
            f"stop whatever holds it or choose another with {flag} (0 picks a free port)",
            reason="PORT_IN_USE",
        )
    return wanted


def answers_serving(address: str, service: str, timeout: float = 1.0) -> bool:
    """Whether ``service`` at ``address`` reports SERVING to a health check now."""
    with grpc.insecure_channel(address) as channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return resp.status == health_pb2.HealthCheckResponse.SERVING


def answers_http(address: str, timeout: float = 1.0) -> bool:
    """Whether the web app at ``address`` answers GET /healthz with 200 now."""
    try:
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=timeout) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def wait_http(address: str, *, pid: int, log: Path, timeout: float) -> None:
    """Block until the web app at ``address`` answers /healthz; fail fast if ``pid`` dies."""
    deadline = time.monotonic() + timeout
    while not answers_http(address):
        if not alive(pid):
            raise Unavailable(f"web app exited during start-up; last lines of {log}:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise Unavailable(
                f"web app at {address} did not answer within {timeout:.0f}s; see {log}"
            )
        time.sleep(0.2)


def wait_serving(address: str, service: str, *, pid: int, log: Path, timeout: float) -> None:
    """Block until ``service`` answers SERVING on ``address``; fail fast if ``pid`` dies."""
    deadline = time.monotonic() + timeout
    while True:
        if not alive(pid):
            raise Unavailable(
                f"{service} exited during start-up; last lines of {log}:\n{tail(log)}"
            )
        if answers_serving(address, service):
            return
        if time.monotonic() > deadline:
            raise Unavailable(f"{service} did not report SERVING within {timeout:.0f}s; see {log}")
        time.sleep(0.2)


class Launcher:
    def __init__(self, data_dir: Path, *, s3_port: int = 8333, base_port: int = 7100) -> None:
        self.data_dir = data_dir.resolve()
        self.s3_port = s3_port
        self.base_port = base_port
        self.state_path = self.data_dir / "run" / "state.json"
        self.log_dir = self.data_dir / "logs"

    def state(self) -> RunState | None:
        return RunState.load(self.state_path)

    def up(self, *, timeout: float = 120.0, echo=print) -> RunState:
        existing = self.state()
        if existing and any(alive(p.pid) for p in existing.processes):
            raise FailedPrecondition(
                f"a suite is already running from {self.data_dir} (see `atlas status`); "
                "run `atlas down` first",
                reason="ALREADY_RUNNING",
            )
        creds = ensure_credentials(self.data_dir)
        store = SeaweedS3Server(
            self.data_dir / "objectstore",
            access_key=creds.s3_access_key,
            secret_key=creds.s3_secret_key,
            port=_choose_port(self.s3_port, "the object store", "--s3-port"),
            log_dir=self.log_dir / "objectstore",
        )
        echo(f"starting object store (SeaweedFS S3) on {HOST}:{store.port or 'auto'} ...")
        started = time.monotonic()
        pid = store.start(timeout=timeout)
        state = RunState(
            str(self.data_dir),
            store.endpoint,
            [ProcessInfo("objectstore", pid, store.endpoint, str(store.log_path), full_name="s3")],
        )
        state.save(self.state_path)
        echo(f"  object store ready at {store.endpoint} ({time.monotonic() - started:.1f}s)")
        try:
            services = implemented_services()
            # Every service's port is chosen before any starts, so a service is told where a
            # peer that starts after it will be (serving and labeling call each other).
            ports = self.service_ports(services)
            for spec in services:
                peers = self.peer_addresses(ports, state.processes)
                peers.update(
                    {f"{p.name}:read": p.read_address for p in state.processes if p.read_address}
                )
                info = self._start_service(spec, creds, store.endpoint, peers, ports[spec.name])
                state.processes.append(info)
                state.save(self.state_path)
                wait_serving(
                    info.address, spec.full_name, pid=info.pid, log=Path(info.log), timeout=timeout
                )
                echo(f"  {spec.name:<9} SERVING at {info.address} (metrics :{info.metrics_port})")
                if info.read_address:
                    if answers_serving(info.read_address, spec.read_service, timeout=2):
                        echo(f"  {spec.name:<9} native online reader at {info.read_address}")
                    else:
                        info.read_address = ""  # not built here: reads stay on the service
                    state.save(self.state_path)
            for app in implemented_web_apps(services):
                peers = {p.name: p.address for p in state.processes}
                info = self._start_web_app(app, creds, store.endpoint, peers)
                state.processes.append(info)
                state.save(self.state_path)
                wait_http(info.address, pid=info.pid, log=Path(info.log), timeout=timeout)
                echo(f"  {app.name:<9} http://{info.address}/ (sign in with a bearer token)")
        except Exception:
            self.down(echo=lambda *_: None)
            raise
        return state

    def service_ports(self, services: list[ServiceSpec]) -> dict[str, int]:
        """The port of each service: base port + offset, or distinct free ones."""
        ports: dict[str, int] = {}
        for spec in services:
            wanted = self.base_port + spec.port_offset if self.base_port else 0
            port = _choose_port(wanted, f"the {spec.name} service", "--base-port")
            while not wanted and port in ports.values():
                port = _free_port()
            ports[spec.name] = port
        return ports

    @staticmethod
    def peer_addresses(ports: dict[str, int], started: list[ProcessInfo]) -> dict[str, str]:
        """Where each service is: those started at their address, the others at the port
        chosen for them."""
        return {
            **{name: f"{HOST}:{port}" for name, port in ports.items()},
            **{p.name: p.address for p in started},
        }

    def service_env(
        self,
        spec: ServiceSpec,
        creds: Credentials,
        s3_endpoint: str,
        port: int,
        metrics_port: int,
        peers: dict[str, str],
    ) -> dict[str, str]:
        p = f"ATLAS_{spec.name.upper()}_"
        service_dir = self.data_dir / spec.name
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
        env.update(
            {
                p + "SERVER__HOST": HOST,
                p + "SERVER__PORT": str(port),
                p + "SERVER__METRICS_PORT": str(metrics_port),
                p + "SERVER__AUTH__TOKENS_FILE": str(creds.tokens_file),
                p + "BUNDLES__SIGNING_KEY_FILE": str(creds.signing_key_file),
                p + "BUNDLES__TRUSTED_KEYS": json.dumps([str(creds.signing_public_key_file)]),
                p + "S3__ENDPOINT": s3_endpoint,
                p + "S3__ACCESS_KEY": creds.s3_access_key,
                p + "S3__SECRET_KEY": creds.s3_secret_key,
                p + "DATABASE__URL": f"sqlite:///{service_dir / 'metadata.db'}",
                p + "DATA_DIR": str(service_dir),
            }
        )
        for dep in spec.needs:
            if dep in peers:
                env[p + f"{dep.upper()}__TARGET"] = peers[dep]
                env[p + f"{dep.upper()}__TOKEN"] = creds.admin_token
            if spec.uses_read_endpoints and f"{dep}:read" in peers:
                env[p + f"{dep.upper()}__READ_TARGET"] = peers[f"{dep}:read"]
        return env

    def _start_service(
        self, spec: ServiceSpec, creds: Credentials, s3: str, peers: dict[str, str], port: int
    ) -> ProcessInfo:
        metrics_wanted = self.base_port + 100 + spec.port_offset if self.base_port else 0
        metrics_port = _choose_port(metrics_wanted, f"{spec.name} metrics", "--base-port")
        log = self.log_dir / f"{spec.name}.log"
        (self.data_dir / spec.name).mkdir(parents=True, exist_ok=True)
        env = self.service_env(spec, creds, s3, port, metrics_port, peers)
        read_address = ""
        if spec.read_service:
            read_wanted = self.base_port + spec.read_port_offset if self.base_port else 0
            read_port = _choose_port(read_wanted, f"the {spec.name} reader", "--base-port")
            env[f"ATLAS_{spec.name.upper()}_NATIVE_READER__PORT"] = str(read_port)
            read_address = f"{HOST}:{read_port}"
        pid = spawn([sys.executable, "-m", spec.module], log_path=log, env=env, cwd=self.data_dir)
        return ProcessInfo(
            spec.name, pid, f"{HOST}:{port}", str(log), metrics_port, spec.full_name, read_address
        )

    def web_app_env(
        self, app: WebAppSpec, creds: Credentials, s3_endpoint: str, port: int, target: str
    ) -> dict[str, str]:
        p = app.env_prefix
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
        env.update(
            {
                p + "HOST": HOST,
                p + "PORT": str(port),
                p + f"{app.serves.upper()}__TARGET": target,
                # Item images are read from the object store and served by the app.
                p + "S3__ENDPOINT": s3_endpoint,
                p + "S3__ACCESS_KEY": creds.s3_access_key,
                p + "S3__SECRET_KEY": creds.s3_secret_key,
                p + "SESSION_SECRET": web_session_secret(self.data_dir),
            }
        )
        return env

    def _start_web_app(
        self, app: WebAppSpec, creds: Credentials, s3: str, peers: dict[str, str]
    ) -> ProcessInfo:
        wanted = self.base_port + app.port_offset if self.base_port else 0
        port = _choose_port(wanted, f"the {app.name} web app", "--base-port")
        log = self.log_dir / f"{app.name}.log"
        env = self.web_app_env(app, creds, s3, port, peers[app.serves])
        env.update(
            {f"{app.env_prefix}{n.upper()}__TARGET": peers[n] for n in app.calls if n in peers}
        )
        pid = spawn([sys.executable, "-m", app.module], log_path=log, env=env, cwd=self.data_dir)
        return ProcessInfo(app.name, pid, f"{HOST}:{port}", str(log), None, HTTP_APP)

    def status(self) -> list[tuple[ProcessInfo, str]]:
        state = self.state()
        if state is None:
            return []
        rows = []
        for proc in state.processes:
            if not alive(proc.pid):
                rows.append((proc, "DOWN"))
            elif proc.name == "objectstore":
                rows.append((proc, "SERVING"))
            elif proc.full_name == HTTP_APP:
                rows.append((proc, "SERVING" if answers_http(proc.address) else "UNREACHABLE"))
            else:
                rows.append((proc, _health(proc.address, proc.full_name)))
        return rows

    def down(self, *, echo=print) -> int:
        """Stop every process this data dir's `up` started (services first). Returns count."""
        state = self.state()
        if state is None:
            echo(f"nothing is running from {self.data_dir}")
            return 0
        stopped = 0
        for proc in reversed(state.processes):
            grace = OBJECT_STORE_STOP_GRACE if proc.name == "objectstore" else SERVICE_STOP_GRACE
            if alive(proc.pid):
                killed = terminate(proc.pid, grace)
                stopped += 1
                echo(f"  stopped {proc.name} (pid {proc.pid}{', killed' if killed else ''})")
        self.state_path.unlink(missing_ok=True)
        return stopped


def _health(address: str, service: str) -> str:
    with grpc.insecure_channel(address) as channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2
            )
        except grpc.RpcError as exc:
            return f"UNREACHABLE ({exc.code().name})"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
