"""A local DGL cluster for one graph job: P x num_servers graph servers and the trainers,
each a child process of the job process.

No orphans: every child runs in its own session (process group) and with
``PR_SET_PDEATHSIG = SIGKILL``, so it dies with the job process even when that is killed with
SIGKILL; :meth:`LocalCluster.kill` kills every group (the children's own children included).
A trainer or server that exits with an error fails the whole job at once.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlas_graph.training.worker import EVENT_PREFIX

PR_SET_PDEATHSIG = 1
log = logging.getLogger(__name__)


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ip_config_text(hosts: list[str], num_partitions: int) -> str:
    """One line per machine ("ip port"): given hosts, or this host once per partition."""
    if hosts:
        lines = [h.replace(":", " ") if ":" in h else f"{h} 30050" for h in hosts]
    else:
        lines = [f"127.0.0.1 {free_port()}" for _ in range(num_partitions)]
    return "\n".join(lines) + "\n"


def launch_command(cfg: dict[str, Any], num_trainers: int) -> str:
    """The DGL launch tool command that runs the same job on the machines of ip_config."""
    return (
        f"python3 dgl/tools/launch.py --workspace {cfg['work_dir']} "
        f"--num_trainers {num_trainers} --num_samplers 0 "
        f"--num_servers {cfg['num_servers']} --part_config {cfg['part_config']} "
        f"--ip_config {cfg['ip_config']} "
        f'"{sys.executable} -m atlas_graph.training.worker trainer --config job.json"'
    )


class ClusterFailed(RuntimeError):
    pass


@dataclass
class LocalCluster:
    cfg: dict[str, Any]
    work_dir: Path
    omp_threads: int = 1
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    trainers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    events: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)

    def _spawn(
        self, args: list[str], env: dict[str, str], log: Path, pipe: bool = False
    ) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "atlas_graph.training.worker",
                    *args,
                    "--config",
                    str(self.work_dir / "job.json"),
                ],
                env=env,
                stdout=subprocess.PIPE if pipe else out,
                stderr=out,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                cwd=self.work_dir,
            )

    def _base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "OMP_NUM_THREADS": str(self.omp_threads),
                "DGL_NUM_SAMPLER": "0",
                "DGL_DIST_MAX_TRY_TIMES": "60",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def start(self) -> None:
        (self.work_dir / "job.json").write_text(json.dumps(self.cfg))
        env = self._base_env()
        total_servers = self.cfg["num_partitions"] * self.cfg["num_servers"]
        for sid in range(total_servers):
            self.servers.append(
                self._spawn(
                    ["server", "--server-id", str(sid)],
                    {**env, "DGL_ROLE": "server"},
                    self.work_dir / f"server{sid}.log",
                )
            )
        trainer_env = {
            **env,
            "DGL_ROLE": "client",
            "DGL_DIST_MODE": "distributed",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(free_port()),
            "WORLD_SIZE": str(self.cfg["num_trainers"]),
            "DGL_NUM_SERVER": str(self.cfg["num_servers"]),
        }
        for rank in range(self.cfg["num_trainers"]):
            proc = self._spawn(
                ["trainer"],
                {**trainer_env, "RANK": str(rank)},
                self.work_dir / f"trainer{rank}.log",
                pipe=rank == 0,
            )
            self.trainers.append(proc)
        threading.Thread(target=self._relay, args=(self.trainers[0],), daemon=True).start()

    def _relay(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with open(self.work_dir / "trainer0.log", "ab") as log:
            for raw in proc.stdout:
                log.write(raw)
                line = raw.decode(errors="replace")
                if line.startswith(EVENT_PREFIX):
                    self.events.put(json.loads(line[len(EVENT_PREFIX) :]))

    @property
    def pids(self) -> dict[str, list[int]]:
        return {
            "servers": [p.pid for p in self.servers],
            "trainers": [p.pid for p in self.trainers],
        }

    def run(
        self,
        on_event: Callable[[dict[str, Any]], None],
        cancelled: Callable[[], bool],
        server_grace: float = 30.0,
        exit_grace: float = 20.0,
    ) -> None:
        """Relay events until every trainer exited 0; kill everything on failure/cancel.

        Raises ClusterFailed naming the process that failed; returns normally on cancel (the
        caller checks ``cancelled()``).
        """
        finished_at: float | None = None

        def relay(event: dict[str, Any]) -> None:
            nonlocal finished_at
            if event.get("event") == "finished" and finished_at is None:
                finished_at = time.monotonic()
            on_event(event)

        try:
            while True:
                self._drain(relay)
                if cancelled():
                    return
                if finished_at is not None and time.monotonic() - finished_at > exit_grace:
                    # Rank 0 has its results; a rank stuck in torch/DGL shutdown barriers
                    # (seen with DGL 2.1) must not keep the job alive: finally kills it.
                    stuck = [r for r, p in enumerate(self.trainers) if p.poll() is None]
                    log.warning(
                        "trainer ranks %s still running %.0f s after rank 0 finished; killing them",
                        stuck,
                        exit_grace,
                    )
                    break
                for rank, proc in enumerate(self.trainers):
                    if proc.poll() not in (None, 0):
                        raise ClusterFailed(
                            f"trainer {rank} (pid {proc.pid}) "
                            f"{_exit_text(proc.returncode)}"
                            + _log_tail(self.work_dir / f"trainer{rank}.log")
                        )
                for sid, proc in enumerate(self.servers):
                    if proc.poll() not in (None, 0):
                        raise ClusterFailed(
                            f"graph server {sid} (pid {proc.pid}) "
                            f"{_exit_text(proc.returncode)}"
                            + _log_tail(self.work_dir / f"server{sid}.log")
                        )
                if all(p.poll() == 0 for p in self.trainers):
                    break
                time.sleep(0.1)
            deadline = time.monotonic() + server_grace
            while time.monotonic() < deadline and any(p.poll() is None for p in self.servers):
                time.sleep(0.1)
            time.sleep(0.2)
            self._drain(relay)
        finally:
            self.kill()

    def _drain(self, on_event: Callable[[dict[str, Any]], None]) -> None:
        while True:
            try:
                on_event(self.events.get_nowait())
            except queue.Empty:
                return

    def kill(self) -> None:
        """SIGKILL every child's process group and reap them. Idempotent."""
        for proc in self.servers + self.trainers:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in self.servers + self.trainers:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


def _log_tail(path: Path, lines: int = 6, limit: int = 1500) -> str:
    """The last lines of a child's log (its traceback ends there), for the job's error."""
    try:
        tail = [
            line
            for line in path.read_text(errors="replace").strip().splitlines()
            if line.strip() and not line.startswith(EVENT_PREFIX)
        ][-lines:]
    except OSError:
        return ""
    return ("; last output: " + " | ".join(tail))[-limit:] if tail else ""
