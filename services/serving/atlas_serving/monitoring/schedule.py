"""Scheduled monitoring: a monitor job whose spec has ``repeat_every`` is followed by the
next run of its chain once that interval has passed since it finished. Each run covers the
captured data since the previous run's window end. Cancelling a run ends the chain.

Every replica may call ``submit_due``: runs are submitted with a deterministic request id
(chain root + run number) and a spec derived only from the previous run, so concurrent
replicas submit the same job once."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from google.protobuf import json_format

from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.errors import AlreadyExists
from atlas_core.jobs import JobRecord, JobRunner, JobState

log = logging.getLogger("atlas.serving.schedule")
SCAN_LIMIT = 500


def _repeat_seconds(record: JobRecord) -> float:
    spec = json_format.ParseDict(record.spec.get("spec", {}), pb.MonitoringSpec())
    if not spec.HasField("repeat_every"):
        return 0.0
    return spec.repeat_every.ToTimedelta().total_seconds()


def next_run(record: JobRecord, now: datetime) -> tuple[dict[str, Any], str] | None:
    """(spec, request_id) of the run after ``record`` when it is due, else None."""
    every = _repeat_seconds(record)
    if every <= 0 or record.state is not JobState.SUCCEEDED or record.finished_at is None:
        return None
    if (now - record.finished_at).total_seconds() < every:
        return None
    root = record.spec.get("schedule") or record.id
    run = int(record.spec.get("run", 1)) + 1
    spec = json_format.ParseDict(record.spec["spec"], pb.MonitoringSpec())
    window_end_us = (record.result or {}).get("window_end_us")
    spec.ClearField("end_time")
    if window_end_us:
        spec.start_time.FromMicroseconds(int(window_end_us))
    out = dict(record.spec)
    out.update(
        spec=json_format.MessageToDict(spec, preserving_proto_field_name=True),
        schedule=root,
        run=run,
    )
    return out, f"monitor-schedule-{root}-{run}"


def submit_due(jobs: JobRunner, kind: str, now: datetime | None = None) -> list[str]:
    """Submit every due run; returns the new job ids."""
    now = now or datetime.now(timezone.utc)
    latest: dict[str, JobRecord] = {}
    for record in jobs.list(kind, None, SCAN_LIMIT, 0):  # newest first
        root = record.spec.get("schedule") or record.id
        latest.setdefault(root, record)
    submitted = []
    for record in latest.values():
        due = next_run(record, now)
        if due is None:
            continue
        spec, request_id = due
        try:
            submitted.append(jobs.submit(kind, spec, request_id=request_id))
        except AlreadyExists:  # another replica derived a different window: theirs stands
            continue
        log.info("scheduled monitoring run %s of %s", spec["run"], spec["schedule"])
    return submitted
