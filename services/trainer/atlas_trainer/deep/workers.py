"""Data-parallel workers of one job: ``workers`` processes on this machine under
torch.distributed (gloo), supervised by the job process.

No orphans: every worker runs in its own session and with ``PR_SET_PDEATHSIG = SIGKILL`` (as
the graph service's DGL processes do), so it dies with the job process even when that is
killed with SIGKILL (``kill -9`` of the service ends the job process, then the workers); the
job process kills every worker group when one exits with an error, on cancel, and when done.

A worker that dies fails the job, naming the worker and the tail of its log, unless the spec
allows restarts (``max_restarts``): then all workers start again from the last checkpoint.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from atlas_core.jobs import JobContext
from atlas_trainer.deep.loop import LoopState, TensorData, load_checkpoint, new_model
from atlas_trainer.deep.models import BlockNet
from atlas_trainer.deep.params import DeepConfig
from atlas_trainer.deep.worker import EVENT_PREFIX
from atlas_trainer.runtime import TrainerRuntime

PR_SET_PDEATHSIG = 1
POLL_SECONDS = 0.1
LOG_TAIL_LINES = 20
EXIT_WAIT_SECONDS = 5.0
OUT_OF_TIME = "the wall budget ended"


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerFailed(RuntimeError):
    pass


@dataclass
class _Group:
    """One start of the workers."""

    work_dir: Path
    world: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    events: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    # (rank, exit code) in the order the workers exited: when one dies the others fail soon
    # after on a broken connection, and the first to exit is the cause.
    exits: list[tuple[int, int]] = field(default_factory=list)
    _waiters: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        port = _free_port()
        for rank in range(self.world):
            env = {
                **os.environ,
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "WORLD_SIZE": str(self.world),
                "LOCAL_WORLD_SIZE": str(self.world),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "OMP_NUM_THREADS": "1",
            }
            log = open(self.log_path(rank), "ab")  # noqa: SIM115 - the child owns it
            proc = subprocess.Popen(
                [sys.executable, "-m", "atlas_trainer.deep.worker", str(self.work_dir)],
                env=env,
                stdout=subprocess.PIPE if rank == 0 else log,
                stderr=log,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            log.close()
            self.processes.append(proc)
            waiter = threading.Thread(target=self._wait, args=(rank, proc), daemon=True)
            waiter.start()
            self._waiters.append(waiter)
        assert self.processes[0].stdout is not None
        threading.Thread(target=self._relay, args=(self.processes[0].stdout,), daemon=True).start()

    def log_path(self, rank: int) -> Path:
        return self.work_dir / f"worker-{rank}.log"

    def _relay(self, stream: IO[bytes]) -> None:
        with open(self.log_path(0), "ab") as log:
            for line in stream:
                text = line.decode(errors="replace")
                if text.startswith(EVENT_PREFIX):
                    self.events.put(json.loads(text[len(EVENT_PREFIX) :]))
                else:
                    log.write(line)
                    log.flush()

    def _wait(self, rank: int, proc: subprocess.Popen[bytes]) -> None:
        self.exits.append((rank, proc.wait()))  # list.append is atomic

    def failure(self) -> str | None:
        """How the first worker that exited with an error ended, with its log's tail."""
        for rank, code in list(self.exits):
            if code != 0:
                proc = self.processes[rank]
                how = (
                    f"was killed by {signal.Signals(-code).name}"
                    if code < 0
                    else f"exited with status {code}"
                )
                lines = self.log_path(rank).read_text(errors="replace").splitlines()
                tail = "\n".join(lines[-LOG_TAIL_LINES:]) or "(empty log)"
                return f"worker {rank} (pid {proc.pid}) {how}; the tail of its log:\n{tail}"
        return None

    def finished(self) -> bool:
        exits = list(self.exits)
        return len(exits) == self.world and all(code == 0 for _, code in exits)

    def kill(self) -> None:
        for proc in self.processes:
            if proc.returncode is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc, waiter in zip(self.processes, self._waiters, strict=True):
            waiter.join()
            if proc.stdout is not None:
                proc.stdout.close()


@contextmanager
def _work_dir(rt: TrainerRuntime, job_id: str) -> Iterator[Path]:
    path = Path(rt.settings.data_dir) / "deep" / job_id
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def train_with_workers(
    rt: TrainerRuntime,
    ctx: JobContext,
    cfg: DeepConfig,
    data: TensorData,
    progress: Any,
    resume: bytes | None,
    deadline: float = math.inf,
) -> tuple[BlockNet, list[dict[str, float]]]:
    """Train with ``cfg.workers`` processes; ``progress`` (the job's ``_Progress``) relays
    epochs and stores checkpoints. Returns the trained net and the epoch history; at
    ``deadline`` (monotonic; the wall budget) the workers stop and the last checkpoint is
    the model.

    Raises:
        JobCancelled: on cancel (every worker is killed first).
        WorkerFailed: a worker died and no restart is left.
    """
    latest = resume
    with _work_dir(rt, ctx.job_id) as work_dir:
        data.save(str(work_dir / "data.npz"))
        (work_dir / "config.json").write_text(json.dumps(cfg.to_json()))
        # What torchrun on other machines needs in its work directory (see deep.launch).
        for name in ("config.json", "data.npz"):
            ref = rt.artifacts.put_file(f"models/{ctx.job_id}/workers/{name}", work_dir / name)
            progress.work_files[name] = ref.uri
        while True:
            resume_path = work_dir / "resume.pt"
            if latest is not None:
                resume_path.write_bytes(latest)
            group = _Group(work_dir, cfg.workers)
            try:
                group.start()
                ctx.report(
                    None,
                    f"started {cfg.workers} workers (pids "
                    f"{', '.join(str(p.pid) for p in group.processes)})",
                )
                outcome, latest = _supervise(ctx, group, progress, latest, deadline)
            finally:
                group.kill()
            if outcome is None or outcome == OUT_OF_TIME:
                break
            if progress.restarts >= cfg.max_restarts:
                raise WorkerFailed(outcome)
            progress.restarts += 1
            progress.resumed_from = load_checkpoint(latest)["epoch"] if latest else 0
            progress.save_state()
            ctx.report(
                None,
                f"restarting the workers from epoch {progress.resumed_from} "
                f"(restart {progress.restarts} of {cfg.max_restarts}): {outcome.splitlines()[0]}",
            )
    if latest is None:
        raise WorkerFailed(
            "the workers wrote no checkpoint (the wall budget ended before the first one: "
            "raise budget.wall_time or checkpoint more often)"
        )
    saved = load_checkpoint(latest)
    model = new_model(cfg, data)
    model.load_state_dict(saved["model"])
    return model, LoopState(int(saved["epoch"]), list(saved["history"])).history


def _supervise(
    ctx: JobContext, group: _Group, progress: Any, latest: bytes | None, deadline: float
) -> tuple[str | None, bytes | None]:
    """Relay events until the workers finish (None), one fails (its description) or the
    deadline passes (``OUT_OF_TIME``)."""
    done = False
    exited = 0.0
    while True:
        ctx.raise_if_cancelled()
        if time.monotonic() > deadline:
            return OUT_OF_TIME, latest
        try:
            while True:
                event = group.events.get_nowait()
                if event["type"] == "epoch":
                    progress.epoch(event["record"])
                elif event["type"] == "checkpoint":
                    path = Path(event["path"])
                    latest = path.read_bytes()
                    path.unlink()
                    progress.checkpoint(latest, int(event["epoch"]))
                elif event["type"] == "done":
                    done = True
                    progress.classifier_shards = list(event.get("classifier_shards") or [])
        except queue.Empty:
            pass
        failure = group.failure()
        if failure is not None:
            return failure, latest
        if group.finished():
            if done:
                return None, latest
            exited = exited or time.monotonic()
            if time.monotonic() - exited > EXIT_WAIT_SECONDS:  # rank 0's stdout is drained
                return "the workers exited before finishing their epochs", latest
        time.sleep(POLL_SECONDS)
