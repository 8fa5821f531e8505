"""Several throwaway ``redis-server`` processes on free loopback ports: standalone nodes for
the consistent-hash online store, or a Redis Cluster of them (``redis-cli --cluster create``).

Each server dies with the process that started it (PR_SET_PDEATHSIG), keeps nothing on disk
beyond its cluster config in ``workdir`` and is stopped by :meth:`RedisNodes.stop_all`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def skip_without_redis_server() -> None:
    """Skip the calling test where Debian's redis-server package is not installed."""
    import pytest

    if not (Path(REDIS_SERVER).exists() and Path(REDIS_CLI).exists()):
        pytest.skip("redis-server/redis-cli are not installed (Debian package redis-server)")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10,000) is free too: below the kernel's
    ephemeral range, since Redis refuses ports above 55,535 in cluster mode."""
    while True:
        port = random.randrange(20_000, 30_000)
        if _bindable(port) and _bindable(port + 10_000):
            return port


def _die_with_parent() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class RedisNodes:
    """``count`` Redis servers; with ``cluster`` they form one Redis Cluster (no replicas,
    ``cluster-require-full-coverage no`` so the other nodes keep serving when one is down)."""

    def __init__(self, workdir: Path, count: int = 3, *, cluster: bool = False) -> None:
        if not Path(REDIS_SERVER).exists():
            raise FileNotFoundError(f"{REDIS_SERVER} is missing: install Debian's redis-server")
        self.workdir = workdir
        self.cluster = cluster
        self.ports = [free_cluster_port() for _ in range(count)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{port}/0" for port in self.ports]

    def start(self, timeout: float = 30.0) -> RedisNodes:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for port in self.ports:
            argv = [
                REDIS_SERVER,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--logfile",
                str(self.workdir / f"redis-{port}.log"),
            ]
            if self.cluster:
                argv += [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"nodes-{port}.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-require-full-coverage",
                    "no",
                ]
            self.procs[port] = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, preexec_fn=_die_with_parent
            )
        deadline = time.monotonic() + timeout
        for port in self.ports:
            self._wait(port, deadline)
        if self.cluster:
            subprocess.run(
                [REDIS_CLI, "--cluster", "create"]
                + [f"127.0.0.1:{p}" for p in self.ports]
                + ["--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=timeout,
            )
            for port in self.ports:
                self._wait_cluster_ok(port, deadline)
        return self

    def _wait(self, port: int, deadline: float) -> None:
        while True:
            try:
                with redis.Redis(port=port, socket_connect_timeout=0.5) as client:
                    client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.procs[port].poll() is not None:
                    raise RuntimeError(f"redis-server on port {port} did not start") from None
                time.sleep(0.05)

    def _wait_cluster_ok(self, port: int, deadline: float) -> None:
        with redis.Redis(port=port) as client:
            while client.cluster("info")["cluster_state"] != "ok":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Redis Cluster node {port} never reached state ok")
                time.sleep(0.1)

    def stop(self, port: int) -> None:
        """Stop one server (SIGKILL: a crashed shard)."""
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(10)

    def stop_all(self) -> None:
        for port in list(self.procs):
            self.stop(port)

    def __enter__(self) -> RedisNodes:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
