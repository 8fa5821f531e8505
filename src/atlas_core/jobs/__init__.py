"""Persisted jobs that run in subprocesses and survive restarts of their service.

Usage::

    apply_migrations(engine, JOBS_MIGRATIONS)
    runner = JobRunner(engine, {"train": train_handler}, max_concurrent=2, runner_id="trainer-0")
    runner.start()
    job_id = runner.submit("train", {"dataset": "..."}, request_id=client_request_id)
    for event in runner.watch(job_id): ...

A service lists its job kinds in a :class:`JobTable` (proto spec type, work function), which
builds the handlers and the runner and stores specs as JSON.
"""

from __future__ import annotations

from atlas_core.jobs._context import JobCancelled, JobContext
from atlas_core.jobs._kinds import JobKind, JobTable, spec_extras, spec_from_json, spec_to_json
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
    "JobKind",
    "JobRecord",
    "JobRunner",
    "JobState",
    "JobTable",
    "spec_extras",
    "spec_from_json",
    "spec_to_json",
]
