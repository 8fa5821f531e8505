"""Scheduled monitoring: a monitor job whose spec has ``repeat_every`` is followed by the
next run of its chain once that interval has passed since it finished. Each run covers the
captured data since the previous run's window end. Cancelling a run ends the chain.

Every replica may call ``submit_due``: runs are submitted with a deterministic request id
(chain root + run number) and a spec derived only from the previous run, so concurrent
replicas submit the same job once."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from atlas_core.errors import AlreadyExists
from atlas_core.jobs import JobRecord, JobRunner, JobState
from atlas_serving.domain import MonitoringSpec
from atlas_serving.records import Codec

log = logging.getLogger("atlas.serving.schedule")
SCAN_LIMIT = 500


def next_run(
    record: JobRecord, now: datetime, codec: Codec[MonitoringSpec]
) -> tuple[dict[str, Any], str] | None:
    """(job spec, request_id) of the run after ``record`` when it is due, else None.
    ``codec`` reads and writes the monitoring spec inside the job spec."""
    spec = codec.from_dict(record.spec.get("spec", {}))
    every = spec.repeat_every_s or 0.0
    if every <= 0 or record.state is not JobState.SUCCEEDED or record.finished_at is None:
        return None
    if (now - record.finished_at).total_seconds() < every:
        return None
    root = record.spec.get("schedule") or record.id
    run = int(record.spec.get("run", 1)) + 1
    window_end_us = (record.result or {}).get("window_end_us")
    spec = replace(
        spec,
        start_us=int(window_end_us) if window_end_us else spec.start_us,
        end_us=None,
    )
    out = dict(record.spec)
    out.update(
        spec=codec.to_dict(spec),
        schedule=root,
        run=run,
    )
    return out, f"monitor-schedule-{root}-{run}"


def submit_due(
    jobs: JobRunner,
    kind: str,
    codec: Codec[MonitoringSpec],
    now: datetime | None = None,
    *,
    resumable: bool = False,
) -> list[str]:
    """Submit every due run (``resumable`` as the kind is); returns the new job ids."""
    now = now or datetime.now(timezone.utc)
    latest: dict[str, JobRecord] = {}
    for record in jobs.list(kind, None, SCAN_LIMIT, 0):  # newest first
        root = record.spec.get("schedule") or record.id
        latest.setdefault(root, record)
    submitted = []
    for record in latest.values():
        due = next_run(record, now, codec)
        if due is None:
            continue
        spec, request_id = due
        try:
            submitted.append(jobs.submit(kind, spec, request_id=request_id, resumable=resumable))
        except AlreadyExists:  # another replica derived a different window: theirs stands
            continue
        log.info("scheduled monitoring run %s of %s", spec["run"], spec["schedule"])
    return submitted
