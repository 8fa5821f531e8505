"""The trainer's lineage of its jobs: training data and the replaced model as parents, trials
as children; for a dataset or model version, the jobs that used it."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from atlas_core import lineage as lin
from atlas_core.errors import NotFound
from atlas_core.jobs import JobRecord, JobState
from atlas_trainer.jobs import KIND_TRAIN
from atlas_trainer.lineage import TrainerLineage

T0 = datetime(2026, 12, 7, tzinfo=timezone.utc)


def record(job_id: str, spec: dict[str, Any], result: dict[str, Any] | None = None) -> JobRecord:
    return JobRecord(
        id=job_id,
        kind=KIND_TRAIN,
        state=JobState.SUCCEEDED if result else JobState.RUNNING,
        spec=spec,
        progress=1.0,
        message="",
        result=result,
        error=None,
        attempts=1,
        resumable=True,
        request_id="rq-1",
        owner=None,
        cancel_requested=False,
        checkpoint=None,
        created_at=T0,
        started_at=T0,
        finished_at=None,
        heartbeat_at=None,
    )


class FakeJobs:
    def __init__(self, *records: JobRecord) -> None:
        self.records = {r.id: r for r in records}

    def get(self, job_id: str) -> JobRecord:
        if job_id not in self.records:
            raise NotFound(f"job {job_id} does not exist")
        return self.records[job_id]

    def list_all(self, kind: str | None = None) -> list[JobRecord]:
        return [r for r in self.records.values() if kind is None or r.kind == kind]


def test_jobs_link_their_data_replaced_model_and_trials() -> None:
    v2 = record(
        "j2",
        {
            "dataset": {"dataset_id": "d", "version": "0"},
            "replaces_model": {"model_name": "m", "version": "1"},
        },
        {
            "lineage": {"dataset": ["d", 3]},
            "leaderboard": [{"trial": 4}, {"trial": 0}, {"trial": -2}],
        },
    )
    running = record("j3", {"dataset": {"dataset_id": "d", "version": "3"}})
    trainer = TrainerLineage(FakeJobs(v2, running))  # type: ignore[arg-type]  # the two calls used

    job = trainer.view(lin.parse("training_job:j2"), 2)
    assert job.node is not None and job.node.created_by == "rq-1" and job.node.create_time == T0
    assert [(p.role, p.id) for p in job.parents] == [
        ("training_data", "dataset:d@3"),  # the version the job resolved, not the spec's 0
        ("base_model", "model_version:m@1"),
    ]
    assert [c.id for c in job.children] == ["trial:j2#4", "trial:j2#0"]
    assert job.child_counts == {"trial": 3}
    trial = trainer.view(lin.parse("trial:j2#-2"), 20)
    assert trial.parents[0].id == "training_job:j2" and trial.node.operation == "ensemble"  # type: ignore[union-attr]

    users = trainer.view(lin.parse("dataset:d@3"), 20)
    assert users.node is None and sorted(c.id for c in users.children) == [
        "training_job:j2",
        "training_job:j3",
    ]
    warm = trainer.view(lin.parse("model_version:m@1"), 20)
    assert [(c.role, c.id) for c in warm.children] == [("base_model", "training_job:j2")]
    for missing in ("training_job:nope", "trial:j2#9", "trial:j3#0"):
        with pytest.raises(NotFound):
            trainer.view(lin.parse(missing), 20)
