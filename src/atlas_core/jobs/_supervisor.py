"""The supervisor thread: launches queued jobs as subprocesses and turns what happens to them
(messages, exits, crashes, cancel requests) into persisted state."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.connection import Connection, wait
from multiprocessing.context import (
    ForkServerContext,
    ForkServerProcess,
    SpawnContext,
    SpawnProcess,
)
from typing import Any

from atlas_core.jobs import _context as wire
from atlas_core.jobs._models import EventType, JobHandler, JobRecord, JobState
from atlas_core.jobs._store import JobStore, utcnow

log = logging.getLogger("atlas.jobs")

REASON_RESTART = "interrupted by service restart"
REASON_STALE = "interrupted by service restart (its runner stopped sending heartbeats)"
REASON_SHUTDOWN = "interrupted by service shutdown"
REASON_OUTAGE = "interrupted: the metadata database or the object store was unavailable"
# A resumable job whose attempt failed because the database or the object store was away runs
# again (from its checkpoint) up to this many attempts in all; then it fails as any error does.
MAX_OUTAGE_ATTEMPTS = 20


@dataclass(frozen=True)
class SupervisorTiming:
    poll_interval: float = 0.1
    heartbeat_interval: float = 2.0
    stale_after: float = 30.0
    cancel_grace: float = 5.0
    kill_grace: float = 2.0
    cancel_poll_interval: float = 0.25
    # Claims of jobs queued by other processes; local submits and freed slots claim at once.
    # (A claim is a database query: polling often would show on a serving process's hot path.)
    claim_interval: float = 1.0


@dataclass(eq=False)
class _Running:
    record: JobRecord
    process: SpawnProcess | ForkServerProcess
    conn: Connection
    pending: list[tuple[EventType, dict[str, Any]]] = field(default_factory=list)
    outcome: tuple[Any, ...] | None = None
    conn_open: bool = True
    cancel_requested: bool = False
    lost: bool = False  # the row was taken over by another runner: never write it again
    terminate_at: float | None = None
    kill_at: float | None = None
    signalled: str | None = None

    @property
    def job_id(self) -> str:
        return self.record.id


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "job process did not exit"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"job process was killed by {name} (signal {-exitcode})"
    return f"job process exited with code {exitcode} without reporting a result"


class Supervisor:
    """Owns the job subprocesses of one runner. All methods but the loop are thread-safe."""

    def __init__(
        self,
        store: JobStore,
        handlers: Mapping[str, JobHandler],
        *,
        runner_id: str,
        max_concurrent: int,
        timing: SupervisorTiming,
        mp_context: SpawnContext | ForkServerContext,
    ) -> None:
        self._store = store
        self._handlers = dict(handlers)
        self._runner_id = runner_id
        self._max_concurrent = max_concurrent
        self._timing = timing
        self._mp = mp_context
        self._running: list[_Running] = []
        self._stopping = threading.Event()
        self._local_cancels: set[str] = set()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread: threading.Thread | None = None

    # ---- called from other threads --------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"atlas-jobs-{self._runner_id}", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        with self._lock:  # never write to a closed (possibly reused) descriptor
            if self._wake_w < 0:
                return
            try:
                os.write(self._wake_w, b"\0")
            except OSError:
                pass  # the pipe is full: plenty of wake-ups pending already

    def notify_cancel(self, job_id: str) -> None:
        with self._lock:
            self._local_cancels.add(job_id)
        self.wake()

    def stop(self, timeout: float | None = None) -> None:
        self._stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("job supervisor %s did not stop within %s s", self._runner_id, timeout)
                return  # leave its descriptors open; it still uses them
        with self._lock:
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            self._wake_r = self._wake_w = -1

    # ---- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        next_heartbeat = 0.0
        next_claim = 0.0
        next_cancel_poll = 0.0
        while not self._stopping.is_set():
            now = time.monotonic()
            try:
                woken = self._drain_wake()
                poll_db = now >= next_cancel_poll
                if poll_db:
                    next_cancel_poll = now + self._timing.cancel_poll_interval
                self._apply_cancels(now, poll_db=poll_db)
                if now >= next_heartbeat:
                    next_heartbeat = now + self._timing.heartbeat_interval
                    self._heartbeat()
                if woken or now >= next_claim:
                    next_claim = now + self._timing.claim_interval
                    self._launch()
                self._enforce_deadlines(now)
                running = len(self._running)
                self._wait_and_collect()
                if len(self._running) < running:
                    next_claim = 0.0  # a slot was freed: the next queued job starts now
            except Exception:
                # A database outage must not kill the supervisor; retry after a pause.
                log.exception("job supervisor iteration failed; retrying")
                self._stopping.wait(max(self._timing.poll_interval, 0.5))
        self._shutdown()

    def _drain_wake(self) -> bool:
        woken = False
        try:
            while os.read(self._wake_r, 4096):
                woken = True
        except BlockingIOError:
            pass
        return woken

    def _heartbeat(self) -> None:
        self._store.heartbeat(self._runner_id)
        stale_before = utcnow() - timedelta(seconds=self._timing.stale_after)
        moved = self._store.interrupt(reason=REASON_STALE, stale_before=stale_before)
        if moved:
            log.warning("recovered jobs of a runner that stopped heartbeating: %s", moved)

    def _apply_cancels(self, now: float, *, poll_db: bool) -> None:
        # Cancels from this process arrive at once; from other processes via the database.
        with self._lock:
            wanted, self._local_cancels = self._local_cancels, set()
        if self._running and poll_db:
            wanted |= self._store.cancel_requested_ids(self._runner_id)
        for job in self._running:
            if job.job_id in wanted and not job.cancel_requested:
                job.cancel_requested = True
                job.terminate_at = now + self._timing.cancel_grace
                self._send(job, wire.MSG_CANCEL)

    @staticmethod
    def _send(job: _Running, message: Any) -> None:
        try:
            job.conn.send(message)
        except (OSError, ValueError):
            pass  # the child is already gone; its exit is handled by _finalize

    def _launch(self) -> None:
        free = self._max_concurrent - len(self._running)
        if free <= 0 or self._stopping.is_set():
            return
        for record in self._store.claim(self._handlers, self._runner_id, free):
            self._spawn(record)

    def _spawn(self, record: JobRecord) -> None:
        parent_conn, child_conn = self._mp.Pipe(duplex=True)
        process = self._mp.Process(
            target=wire.run_job_process,
            args=(
                child_conn,
                record.id,
                record.kind,
                record.attempts,
                self._handlers[record.kind],
                record.spec,
                record.checkpoint,
            ),
            name=f"atlas-job-{record.kind}-{record.id[:8]}",
        )
        try:
            process.start()
        except Exception as exc:
            parent_conn.close()
            message = f"could not start the job process: {type(exc).__name__}: {exc}"
            self._store.finish(
                record.id, self._runner_id, JobState.FAILED, message=message, error=message
            )
            return
        finally:
            # Only the child may hold its end, so the child's exit closes the pipe.
            child_conn.close()
        log.info(
            "job %s (%s) started, attempt %d, pid %s",
            record.id,
            record.kind,
            record.attempts,
            process.pid,
        )
        self._running.append(_Running(record, process, parent_conn))

    def _enforce_deadlines(self, now: float) -> None:
        for job in self._running:
            if not job.process.is_alive():
                continue
            if job.kill_at is not None and now >= job.kill_at:
                job.process.kill()
                job.signalled = "SIGKILL"
                job.kill_at = None
            elif job.terminate_at is not None and now >= job.terminate_at:
                job.process.terminate()
                job.signalled = "SIGTERM"
                job.terminate_at = None
                job.kill_at = now + self._timing.kill_grace

    def _wait_and_collect(self) -> None:
        watched: list[Any] = [self._wake_r]
        for job in self._running:
            watched.append(job.process.sentinel)
            if job.conn_open:
                watched.append(job.conn)
        ready = set(wait(watched, timeout=self._timing.poll_interval))
        for job in list(self._running):
            if job.conn in ready:
                self._read(job)
            if job.pending:
                self._flush(job)
            if job.process.sentinel in ready or not job.process.is_alive():
                self._finalize(job)

    def _read(self, job: _Running) -> None:
        try:
            while job.conn_open and job.conn.poll():
                message = job.conn.recv()
                kind = message[0]
                if kind == wire.MSG_PROGRESS:
                    job.pending.append((EventType.PROGRESS, message[1]))
                elif kind == wire.MSG_CHECKPOINT:
                    job.pending.append((EventType.CHECKPOINT, message[1]))
                else:
                    job.outcome = message
                    if job.kill_at is None:
                        # The handler is done: a process that lingers (stray threads) is ended.
                        job.terminate_at = time.monotonic() + self._timing.kill_grace
        except (EOFError, OSError):
            job.conn_open = False
        except Exception:
            # A message torn by a dying child cannot be decoded; what came before is kept.
            log.warning("undecodable message from job %s; ignoring the rest", job.job_id)
            job.conn_open = False

    def _flush(self, job: _Running) -> None:
        updates, job.pending = job.pending, []
        if job.lost:
            return
        if not self._store.record(job.job_id, self._runner_id, updates):
            log.warning(
                "job %s is no longer owned by runner %s; stopping its process",
                job.job_id,
                self._runner_id,
            )
            job.lost = True
            job.process.kill()

    def _finalize(self, job: _Running) -> None:
        self._read(job)
        if job.pending:
            self._flush(job)
        job.process.join()
        if not job.lost and self._dependency_was_away(job):
            moved = self._store.interrupt(
                reason=f"{REASON_OUTAGE} ({job.outcome[1] if job.outcome else ''})"[:500],
                owner=self._runner_id,
                job_ids=[job.job_id],
            )
            log.warning(
                "job %s attempt %d failed while a dependency was unavailable: %s",
                job.job_id,
                job.record.attempts,
                moved.get(job.job_id, JobState.FAILED).value,
            )
        elif not job.lost:
            state, fields = self._verdict(job)
            self._store.finish(job.job_id, self._runner_id, state, **fields)
            log.info("job %s finished: %s", job.job_id, fields["message"])
        self._running.remove(job)
        job.conn.close()
        job.process.close()

    @staticmethod
    def _dependency_was_away(job: _Running) -> bool:
        outcome = job.outcome or (None,)
        return (
            outcome[0] == wire.MSG_ERROR
            and len(outcome) > 3
            and bool(outcome[3])
            and not job.cancel_requested
            and job.record.resumable
            and job.record.attempts < MAX_OUTAGE_ATTEMPTS
        )

    def _verdict(self, job: _Running) -> tuple[JobState, dict[str, Any]]:
        outcome = job.outcome or (None,)
        kind = outcome[0]
        if job.cancel_requested or kind == wire.MSG_CANCELLED:
            if kind is None:
                how = describe_exit(job.process.exitcode).replace(" without reporting a result", "")
                message = f"cancelled by request ({how} after the grace period)"
            else:
                message = "cancelled by request"
            fields: dict[str, Any] = {"message": message}
            if kind == wire.MSG_RESULT:
                fields["result"] = outcome[1]
            return JobState.CANCELLED, fields
        if kind == wire.MSG_RESULT:
            return JobState.SUCCEEDED, {"message": "succeeded", "result": outcome[1]}
        if kind == wire.MSG_ERROR:
            return JobState.FAILED, {
                "message": "failed",
                "error": outcome[1],
                "payload": {"traceback": outcome[2]},
            }
        how = describe_exit(job.process.exitcode)
        return JobState.FAILED, {
            "message": how,
            "error": how,
            "payload": {"exitcode": job.process.exitcode},
        }

    def _shutdown(self) -> None:
        for job in self._running:
            if job.process.is_alive():
                job.process.terminate()
        deadline = time.monotonic() + self._timing.kill_grace
        for job in self._running:
            job.process.join(max(0.0, deadline - time.monotonic()))
            if job.process.is_alive():
                job.process.kill()
                job.process.join()
        for job in list(self._running):
            try:
                self._read(job)
                if job.pending:
                    self._flush(job)
                if job.outcome is not None and not job.lost:
                    self._finalize(job)  # it finished just before we stopped it
                    continue
                if not job.lost:
                    self._store.interrupt(
                        reason=REASON_SHUTDOWN, owner=self._runner_id, job_ids=[job.job_id]
                    )
            except Exception:
                log.exception("could not record the shutdown of job %s", job.job_id)
            self._running.remove(job)
            job.conn.close()
            job.process.close()
