"""Scheduled monitoring: when the next run is due and what window it covers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from atlas_core.jobs import JobRecord, JobState
from atlas_serving.convert import MONITORING_SPEC_JSON
from atlas_serving.monitoring.schedule import next_run as _next_run

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def next_run(record: JobRecord, now: datetime) -> tuple[dict[str, Any], str] | None:
    # job specs hold the monitoring spec as stored by the service: canonical proto JSON
    return _next_run(record, now, MONITORING_SPEC_JSON)


def _record(
    state: JobState = JobState.SUCCEEDED,
    spec: dict[str, Any] | None = None,
    repeat: str | None = "60s",
    finished: datetime | None = T0,
) -> JobRecord:
    inner: dict[str, Any] = {"endpoint": {"endpoint_name": "ep"}}
    if repeat:
        inner["repeat_every"] = repeat
    return JobRecord(
        id="job1",
        kind="monitor",
        state=state,
        spec={"spec": inner, "endpoint": "ep", **(spec or {})},
        progress=1.0,
        message="",
        result={"window_end_us": 1_000_000},
        error=None,
        attempts=1,
        resumable=False,
        request_id=None,
        owner=None,
        cancel_requested=False,
        checkpoint=None,
        created_at=T0,
        started_at=T0,
        finished_at=finished,
        heartbeat_at=None,
    )


def test_not_due_before_the_interval() -> None:
    assert next_run(_record(), T0 + timedelta(seconds=30)) is None


def test_due_after_the_interval_with_the_window_continuing() -> None:
    spec, request_id = next_run(_record(), T0 + timedelta(seconds=61))  # type: ignore[misc]
    assert spec["schedule"] == "job1" and spec["run"] == 2
    assert request_id == "monitor-schedule-job1-2"
    assert spec["spec"]["start_time"].startswith("1970-01-01T00:00:01")


def test_chain_keeps_its_root_and_counts_runs() -> None:
    spec, request_id = next_run(
        _record(spec={"schedule": "root", "run": 4}),  # type: ignore[misc]
        T0 + timedelta(hours=1),
    )
    assert spec["schedule"] == "root" and spec["run"] == 5
    assert request_id == "monitor-schedule-root-5"


def test_once_only_failed_or_cancelled_runs_end_the_chain() -> None:
    later = T0 + timedelta(hours=1)
    assert next_run(_record(repeat=None), later) is None
    assert next_run(_record(state=JobState.CANCELLED), later) is None
    assert next_run(_record(state=JobState.FAILED), later) is None


def test_a_scheduled_bad_case_run_keeps_its_selection() -> None:
    selection = {
        "reasons": ["BAD_CASE_REASON_LOW_CONFIDENCE", "BAD_CASE_REASON_WRONG_BY_GROUND_TRUTH"],
        "labeling_project_id": "prj-1",
        "max_confidence": 0.7,
    }
    record = _record()
    record.spec["spec"]["bad_cases"] = selection
    spec, _ = next_run(record, T0 + timedelta(seconds=61))  # type: ignore[misc]
    assert spec["spec"]["bad_cases"] == selection
    assert spec["spec"]["start_time"].startswith("1970-01-01T00:00:01")
