"""Monitoring jobs run by the shared job runner in subprocesses. The handler receives the
service settings (bound with functools.partial: no secret is persisted in a job spec)."""

from __future__ import annotations

import functools
from typing import Any

from atlas_core.jobs import JobContext, JobHandler
from atlas_serving.config import ServingSettings

KIND_MONITOR = "monitor"


def _run(settings: ServingSettings, ctx: JobContext, spec: dict[str, Any]) -> dict[str, Any]:
    from atlas_serving.monitoring.drift import run_monitor  # imported in the job subprocess only

    return run_monitor(settings, ctx, spec)


def job_handlers(settings: ServingSettings) -> dict[str, JobHandler]:
    return {KIND_MONITOR: functools.partial(_run, settings)}
