"""What a job handler sees inside its subprocess, and the subprocess entry point.

The child talks to its supervisor over one duplex pipe: it sends progress, checkpoints and
its outcome (in order, so events are persisted in the order they were reported); the
supervisor sends a cancel request. When the pipe closes because the supervisor's process died,
the child exits at once: the job is recovered by the next runner, not left running unowned.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any

from atlas_core.errors import AtlasError
from atlas_core.jobs._models import JobHandler

# Wire messages, child -> supervisor.
MSG_PROGRESS = "progress"
MSG_CHECKPOINT = "checkpoint"
MSG_RESULT = "result"
MSG_ERROR = "error"
MSG_CANCELLED = "cancelled"
# Supervisor -> child.
MSG_CANCEL = "cancel"

EXIT_SUPERVISOR_GONE = 75


class JobCancelled(Exception):
    """Raised by :meth:`JobContext.raise_if_cancelled`; the job ends CANCELLED, not FAILED."""


def _json_ready(value: Any, what: str) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-serializable: {exc}") from None


class JobContext:
    """Handle given to a :class:`~atlas_core.jobs.JobHandler`. Safe to use from several threads."""

    def __init__(
        self,
        conn: Connection,
        *,
        job_id: str,
        kind: str,
        attempt: int,
        checkpoint: dict[str, Any] | None,
    ) -> None:
        self._conn = conn
        self._send_lock = threading.Lock()
        self._cancel = threading.Event()
        self._checkpoint = checkpoint
        self.job_id = job_id
        self.kind = kind
        self.attempt = attempt
        """1 for the first run; a resumed job counts on from there."""

    def report(self, progress: float | None = None, message: str = "", **data: Any) -> None:
        """Record progress (0..1, or None to keep the last value), a message and extra data.

        Each call becomes one ``progress`` event; events keep the order of calls.

        Raises:
            ValueError: progress outside 0..1.
            TypeError: ``data`` is not JSON-serializable.
        """
        if progress is not None and not 0.0 <= float(progress) <= 1.0:
            raise ValueError(f"progress must be within 0..1, got {progress}")
        payload = {
            "progress": None if progress is None else float(progress),
            "message": str(message),
            **data,
        }
        _json_ready(payload, "report data")
        self._send((MSG_PROGRESS, payload))

    def cancelled(self) -> bool:
        """True once a cancel was requested; return soon after (the process is killed later)."""
        return self._cancel.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`JobCancelled` when a cancel was requested."""
        if self._cancel.is_set():
            raise JobCancelled("cancelled by request")

    def checkpoint(self, state: dict[str, Any]) -> None:
        """Save a small JSON state (e.g. the step reached and an artifact URI) to resume from.

        Only resumable jobs are resumed; the latest checkpoint is what the next attempt's
        :meth:`last_checkpoint` returns.
        """
        if not isinstance(state, dict):
            raise TypeError("checkpoint state must be a dict")
        _json_ready(state, "checkpoint state")
        self._checkpoint = copy.deepcopy(state)
        self._send((MSG_CHECKPOINT, state))

    def last_checkpoint(self) -> dict[str, Any] | None:
        """The latest checkpoint of this job (from an earlier attempt, or this one), or None."""
        return copy.deepcopy(self._checkpoint)

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            self._conn.send(message)


def _listen_to_supervisor(conn: Connection, cancel: threading.Event) -> None:
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            os._exit(EXIT_SUPERVISOR_GONE)
        if message == MSG_CANCEL:
            cancel.set()


def run_job_process(
    conn: Connection,
    job_id: str,
    kind: str,
    attempt: int,
    handler: JobHandler,
    spec: dict[str, Any],
    checkpoint: dict[str, Any] | None,
) -> None:
    """Subprocess entry: run ``handler`` and send exactly one outcome message."""
    # Ctrl-C in a terminal reaches the whole process group; the supervisor decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctx = JobContext(conn, job_id=job_id, kind=kind, attempt=attempt, checkpoint=checkpoint)
    listener = threading.Thread(
        target=_listen_to_supervisor,
        args=(conn, ctx._cancel),
        name="atlas-job-listener",
        daemon=True,
    )
    listener.start()
    outcome: tuple[Any, ...]
    try:
        result = handler(ctx, spec)
        if result is not None and not isinstance(result, dict):
            raise TypeError(f"job handler must return a dict or None, got {type(result).__name__}")
        _json_ready(result, "job result")
        outcome = (MSG_RESULT, result)
    except JobCancelled as exc:
        outcome = (MSG_CANCELLED, str(exc))
    except (Exception, SystemExit) as exc:
        text = f"{type(exc).__name__}: {exc}"
        outcome = (MSG_ERROR, text, traceback.format_exc(), dependency_was_away(exc))
    ctx._send(outcome)


# Reasons that say the suite's own infrastructure was unreachable, not that the job is wrong.
OUTAGE_REASONS = frozenset({"DATABASE_UNAVAILABLE", "OBJECT_STORE_UNAVAILABLE"})


def dependency_was_away(exc: BaseException) -> bool:
    """Whether ``exc`` says the metadata database or the object store was unreachable (a
    restart, a failover): the attempt failed for a reason outside the job, so a resumable job
    is run again."""
    if isinstance(exc, AtlasError):
        return exc.reason in OUTAGE_REASONS
    if "sqlalchemy" not in sys.modules:
        return False
    from atlas_core.db import database_unavailable

    return database_unavailable(exc) is not None
