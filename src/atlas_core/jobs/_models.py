"""Value types of the job runner: states, records, events and the handler signature."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from atlas_core.jobs._context import JobContext


class JobState(str, Enum):
    """Lifecycle: QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED.

    INTERRUPTED marks a job whose runner went away while it ran (service crash or restart). It
    is recorded as an event and resolved in the same transaction: a resumable job goes back to
    QUEUED (next attempt starts from its last checkpoint), any other job becomes FAILED.
    """

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    INTERRUPTED = "INTERRUPTED"

    @property
    def finished(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class EventType(str, Enum):
    """What a :class:`JobEvent` records. Terminal events carry the job's final outcome."""

    SUBMITTED = "submitted"
    STARTED = "started"
    PROGRESS = "progress"
    CHECKPOINT = "checkpoint"
    CANCEL_REQUESTED = "cancel_requested"
    INTERRUPTED = "interrupted"
    REQUEUED = "requeued"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_EVENTS = frozenset({EventType.SUCCEEDED, EventType.FAILED, EventType.CANCELLED})


@dataclass(frozen=True)
class JobRecord:
    """A snapshot of one job row. Timestamps are timezone-aware UTC."""

    id: str
    kind: str
    state: JobState
    spec: dict[str, Any]
    progress: float
    message: str
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    resumable: bool
    request_id: str | None
    owner: str | None
    cancel_requested: bool
    checkpoint: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.state.finished


@dataclass(frozen=True)
class JobEvent:
    """One entry of a job's history; ``seq`` counts 1, 2, 3, ... per job without gaps."""

    job_id: str
    seq: int
    time: datetime
    type: EventType
    payload: dict[str, Any]


class JobHandler(Protocol):
    """The work for one job kind, run in a fresh subprocess (multiprocessing 'spawn').

    It must be a module-level callable (the child imports it by name). It returns a
    JSON-serializable dict (or None) as the job's result; raising fails the job with the
    exception's message. It should poll ``ctx.cancelled()`` between steps and return (or call
    ``ctx.raise_if_cancelled()``) when asked to stop; otherwise it is terminated after the
    runner's grace period.
    """

    def __call__(self, ctx: JobContext, spec: dict[str, Any], /) -> dict[str, Any] | None: ...
