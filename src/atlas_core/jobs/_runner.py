"""The public job runner: submit, inspect, watch and cancel persisted jobs."""

from __future__ import annotations

import asyncio
import atexit
import builtins
import json
import multiprocessing
import os
import pickle
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import timedelta
from multiprocessing.context import ForkServerContext, SpawnContext
from typing import Any

from sqlalchemy import Engine

from atlas_core.errors import DeadlineExceeded, InvalidArgument
from atlas_core.jobs._models import JobEvent, JobHandler, JobRecord, JobState
from atlas_core.jobs._store import JobStore, utcnow
from atlas_core.jobs._supervisor import REASON_RESTART, REASON_STALE, Supervisor, SupervisorTiming


def default_runner_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


# Modules the fork server of this process imports (every runner's ``preload``).
_preloaded: set[str] = set()
_preload_lock = threading.Lock()


class JobRunner:
    """Runs jobs of the given kinds in subprocesses; every state change is persisted.

    The database must hold the ``jobs`` schema: apply :data:`JOBS_MIGRATIONS` with
    :func:`atlas_core.db.apply_migrations` first. Several runners (processes, replicas) may
    share one database: each claims queued jobs of the kinds it handles, at most
    ``max_concurrent`` at a time. The query and control methods (submit, get, list, events,
    watch, wait, cancel) work whether or not this runner is started and are thread-safe.

    ``runner_id`` names this runner in the database. Give a service a stable id (e.g. its name
    and replica number): on :meth:`start` the jobs the previous instance with the same id left
    RUNNING are recovered at once. Jobs of any runner whose heartbeat is older than
    ``stale_after`` seconds are recovered too. Recovery records an INTERRUPTED event, then
    re-queues resumable jobs (next attempt, from their last checkpoint) and fails the others.

    A cancelled running job is asked to stop (``ctx.cancelled()``), sent SIGTERM after
    ``cancel_grace`` seconds and SIGKILL ``kill_grace`` seconds later.

    Job processes are started with multiprocessing's "spawn" (a fresh interpreter that
    imports the handler's modules: seconds of a short job's time). ``preload`` (module names)
    starts them with "forkserver" instead: on :meth:`start` a server process is started that
    imports those modules once, and each job process is forked from it (no threads, no open
    connections there), so a job starts with its modules already imported. There is one fork
    server per process: a preloading runner started after it is running gets its jobs forked
    from it all the same, and they import what it did not preload as usual.
    """

    def __init__(
        self,
        engine: Engine,
        handlers: Mapping[str, JobHandler],
        *,
        max_concurrent: int = 2,
        runner_id: str | None = None,
        poll_interval: float = 0.1,
        heartbeat_interval: float = 2.0,
        stale_after: float = 30.0,
        cancel_grace: float = 5.0,
        kill_grace: float = 2.0,
        preload: Sequence[str] = (),
    ) -> None:
        if max_concurrent < 1:
            raise InvalidArgument("max_concurrent must be at least 1")
        if stale_after <= heartbeat_interval:
            raise InvalidArgument("stale_after must be longer than heartbeat_interval")
        for kind, handler in handlers.items():
            try:
                pickle.dumps(handler)
            except Exception:
                raise InvalidArgument(
                    f"handler for job kind {kind!r} must be a module-level function "
                    "(it is imported by name in the job subprocess)"
                ) from None
        self.runner_id = runner_id or default_runner_id()
        self._handlers = dict(handlers)
        self._store = JobStore(engine)
        self._timing = SupervisorTiming(
            poll_interval=poll_interval,
            heartbeat_interval=heartbeat_interval,
            stale_after=stale_after,
            cancel_grace=cancel_grace,
            kill_grace=kill_grace,
        )
        self._max_concurrent = max_concurrent
        self._preload = list(preload)
        self._supervisor: Supervisor | None = None
        self._lifecycle = threading.Lock()

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Recover jobs a previous instance left RUNNING, then start launching jobs."""
        with self._lifecycle:
            if self._supervisor is not None:
                return
            self._store.interrupt(reason=REASON_RESTART, owner=self.runner_id)
            stale_before = utcnow() - timedelta(seconds=self._timing.stale_after)
            self._store.interrupt(reason=REASON_STALE, stale_before=stale_before)
            self._supervisor = Supervisor(
                self._store,
                self._handlers,
                runner_id=self.runner_id,
                max_concurrent=self._max_concurrent,
                timing=self._timing,
                mp_context=self._mp_context(),
            )
            self._supervisor.start()
            atexit.register(self.stop)

    def _mp_context(self) -> SpawnContext | ForkServerContext:
        if not self._preload:
            return multiprocessing.get_context("spawn")
        context = multiprocessing.get_context("forkserver")
        # One fork server per process (multiprocessing's): the preload adds to its list until
        # it starts. Started here, so the imports run while the service starts, not when the
        # first job is waiting.
        from multiprocessing import forkserver

        with _preload_lock:
            _preloaded.update(self._preload)
            forkserver.set_forkserver_preload(sorted(_preloaded))
            forkserver.ensure_running()
        return context

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop launching; end running job processes (SIGTERM, then SIGKILL after
        ``kill_grace``) and record them as interrupted by shutdown: resumable ones are
        re-queued for the next start, others fail. Idempotent."""
        with self._lifecycle:
            supervisor, self._supervisor = self._supervisor, None
            if supervisor is None:
                return
            atexit.unregister(self.stop)
            supervisor.stop(timeout)

    def __enter__(self) -> JobRunner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- commands -------------------------------------------------------------------------

    def submit(
        self,
        kind: str,
        spec: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
        resumable: bool = False,
    ) -> str:
        """Queue a job and return its id at once.

        A repeated call with the same ``request_id`` returns the first call's job id.

        Raises:
            InvalidArgument: unknown ``kind`` (reason ``UNKNOWN_JOB_KIND``), a spec that is not
                JSON-serializable, or an empty/oversized ``request_id``.
            AlreadyExists: ``request_id`` was used before for a different kind or spec.
        """
        if kind not in self._handlers:
            raise InvalidArgument(
                f"unknown job kind {kind!r}; known kinds: {sorted(self._handlers)}",
                reason="UNKNOWN_JOB_KIND",
            )
        if request_id is not None and not 0 < len(request_id) <= 255:
            raise InvalidArgument("request_id must be 1..255 characters")
        spec_dict = dict(spec or {})
        try:
            spec_dict = json.loads(json.dumps(spec_dict))
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"job spec must be JSON-serializable: {exc}") from None
        job_id = self._store.submit(kind, spec_dict, request_id=request_id, resumable=resumable)
        if self._supervisor is not None:
            self._supervisor.wake()
        return job_id

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job: a queued one at once, a running one by request (see class doc).

        Returns the job as it is right after the request (CANCELLED, or RUNNING with
        ``cancel_requested``). Cancelling a job twice while it stops is harmless.

        Raises:
            NotFound: no such job.
            FailedPrecondition: the job already finished (reason ``JOB_FINISHED``).
        """
        record = self._store.request_cancel(job_id)
        if record.state is JobState.RUNNING and self._supervisor is not None:
            self._supervisor.notify_cancel(job_id)
        return record

    # ---- queries --------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord:
        """Raises NotFound for an unknown id."""
        return self._store.get(job_id)

    def list(
        self,
        kind: str | None = None,
        state: JobState | str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[JobRecord]:
        """Jobs, newest first, optionally of one kind and/or state.

        Raises:
            InvalidArgument: limit outside 1..1000, negative offset or unknown state.
        """
        try:
            wanted = JobState(state) if state is not None else None
        except ValueError:
            raise InvalidArgument(f"unknown job state {state!r}") from None
        return self._store.list(kind=kind, state=wanted, limit=limit, offset=offset)

    def list_all(
        self, kind: str | None = None, state: JobState | str | None = None
    ) -> builtins.list[JobRecord]:
        """Every matching job, newest first (read in pages of 1,000)."""
        records: builtins.list[JobRecord] = []
        while True:
            page = self.list(kind=kind, state=state, limit=1000, offset=len(records))
            records.extend(page)
            if len(page) < 1000:
                return records

    def events(self, job_id: str, after_seq: int = 0) -> builtins.list[JobEvent]:
        """Events with ``seq > after_seq``, in order. Raises NotFound for an unknown id."""
        return self._store.events(job_id, after_seq)

    def _poll(self, job_id: str, after_seq: int) -> tuple[JobRecord, builtins.list[JobEvent]]:
        # State first: events read afterwards include the terminal one if the state is final.
        record = self._store.get(job_id)
        return record, self._store.events(job_id, after_seq)

    def watch(
        self,
        job_id: str,
        after_seq: int = 0,
        *,
        poll_interval: float = 0.2,
        timeout: float | None = None,
    ) -> Iterator[JobEvent]:
        """Yield the job's events after ``after_seq`` as they happen; returns once the job has
        finished and its terminal event was yielded. Blocking: use from a thread (or
        :meth:`awatch` from asyncio).

        Raises:
            NotFound: no such job.
            DeadlineExceeded: ``timeout`` seconds passed before the job finished.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record, events = self._poll(job_id, after_seq)
            for event in events:
                after_seq = event.seq
                yield event
            if record.finished:
                return
            _check_deadline(job_id, deadline)
            time.sleep(poll_interval)

    async def awatch(
        self,
        job_id: str,
        after_seq: int = 0,
        *,
        poll_interval: float = 0.2,
        timeout: float | None = None,
    ) -> AsyncIterator[JobEvent]:
        """:meth:`watch` for asyncio: database reads run in a worker thread."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record, events = await asyncio.to_thread(self._poll, job_id, after_seq)
            for event in events:
                after_seq = event.seq
                yield event
            if record.finished:
                return
            _check_deadline(job_id, deadline)
            await asyncio.sleep(poll_interval)

    def wait(
        self, job_id: str, timeout: float | None = None, *, poll_interval: float = 0.05
    ) -> JobRecord:
        """Block until the job has finished and return it.

        Raises:
            NotFound: no such job.
            DeadlineExceeded: still not finished after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self._store.get(job_id)
            if record.finished:
                return record
            _check_deadline(job_id, deadline, record)
            time.sleep(poll_interval)


def _check_deadline(job_id: str, deadline: float | None, record: JobRecord | None = None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        state = f" (still {record.state.value})" if record is not None else ""
        raise DeadlineExceeded(f"job {job_id} did not finish in time{state}")
