"""Monitoring jobs: the table of kinds the shared job runner (:class:`atlas_core.jobs.JobTable`)
runs in subprocesses. The monitor opens what it needs from the settings; its spec is JSON."""

from __future__ import annotations

from atlas_core.jobs import JobKind, JobTable

KIND_MONITOR = "monitor"

JOBS = JobTable("serving", [JobKind(KIND_MONITOR, "atlas_serving.monitoring.drift:run_monitor")])
