"""Persisted jobs that run in subprocesses and survive restarts of their service.

Usage::

    apply_migrations(engine, JOBS_MIGRATIONS)
    runner = JobRunner(engine, {"train": train_handler}, max_concurrent=2, runner_id="trainer-0")
    runner.start()
    job_id = runner.submit("train", {"dataset": "..."}, request_id=client_request_id)
    for event in runner.watch(job_id): ...
"""

from __future__ import annotations

from atlas_core.jobs._context import JobCancelled, JobContext
from atlas_core.jobs._models import (
    TERMINAL_EVENTS,
    TERMINAL_STATES,
    EventType,
    JobEvent,
    JobHandler,
    JobRecord,
    JobState,
)
from atlas_core.jobs._runner import JobRunner
from atlas_core.jobs._schema import JOBS_MIGRATIONS

__all__ = [
    "JOBS_MIGRATIONS",
    "TERMINAL_EVENTS",
    "TERMINAL_STATES",
    "EventType",
    "JobCancelled",
    "JobContext",
    "JobEvent",
    "JobHandler",
    "JobRecord",
    "JobRunner",
    "JobState",
]
