"""Monitoring jobs (drift reports and bad cases): the table of kinds the shared job runner
(:class:`atlas_core.jobs.JobTable`) runs in subprocesses. Each opens what it needs from the
settings; its spec is JSON."""

from __future__ import annotations

from atlas_core.jobs import JobKind, JobTable

KIND_MONITOR = "monitor"
# Bad-case selection and import into labeling: checkpointed per batch, so resumable.
KIND_BAD_CASES = "bad_cases"
MONITORING_KINDS = (KIND_MONITOR, KIND_BAD_CASES)

JOBS = JobTable(
    "serving",
    [
        JobKind(KIND_MONITOR, "atlas_serving.monitoring.drift:run_monitor"),
        JobKind(KIND_BAD_CASES, "atlas_serving.monitoring.bad_cases:run_bad_cases", resumable=True),
    ],
)
