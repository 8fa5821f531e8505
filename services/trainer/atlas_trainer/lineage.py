"""Lineage of what the trainer owns: training jobs and their trials.

A job's parents are its training data (the dataset version it resolved, or an object-store
artifact) and the model version it replaces (warm start); its children are its trials. For a
dataset or model version (foreign ids) the trainer answers with the jobs that trained on it or
warm-started from it (a scan of its training jobs).
"""

from __future__ import annotations

from typing import Any

from atlas_core import lineage as lin
from atlas_core.errors import NotFound
from atlas_core.jobs import JobRecord, JobRunner
from atlas_core.lineage import LineageLink, LineageNode, LineageView
from atlas_trainer.jobs import KIND_TRAIN


class TrainerLineage:
    def __init__(self, jobs: JobRunner) -> None:
        self.jobs = jobs

    def view(self, lid: lin.LineageId, limit: int) -> LineageView:
        if lid.kind == "training_job":
            return self._job(lid, limit)
        if lid.kind == "trial":
            return self._trial(lid)
        view = LineageView(None)
        if lid.kind in ("dataset", "model_version"):
            role = "training_data" if lid.kind == "dataset" else "base_model"
            users = [
                lin.ids.job("trainer", r.id)
                for r in self.jobs.list_all(kind=KIND_TRAIN)
                if LineageLink(role, str(lid)) in _parents(r)
            ]
            view.add_children("training_job", role, users[:limit], len(users))
        return view

    def _record(self, lid: lin.LineageId, job_id: str) -> JobRecord:
        try:
            record = self.jobs.get(job_id)
        except NotFound:
            raise lin.not_found(lid) from None
        if record.kind != KIND_TRAIN:
            raise lin.not_found(lid)
        return record

    def _job(self, lid: lin.LineageId, limit: int) -> LineageView:
        record = self._record(lid, lid.key)
        node = lin.job_node("trainer", record)
        node.display_name = str(record.spec.get("display_name") or "")
        view = LineageView(node, _parents(record))
        trials = _trial_numbers(record)
        view.add_children(
            "trial",
            "trial",
            [lin.make("trial", f"{record.id}#{n}") for n in trials[:limit]],
            len(trials),
        )
        return view

    def _trial(self, lid: lin.LineageId) -> LineageView:
        job_id, number = lin.ids.trial(lid)
        record = self._record(lid, job_id)
        if number not in _trial_numbers(record):
            raise lin.not_found(lid)
        job = lin.ids.job("trainer", job_id)
        node = LineageNode(
            str(lid),
            create_time=record.started_at or record.created_at,
            created_by=record.request_id or "",
            produced_by=job,
            operation="ensemble" if number == -2 else "trial",
        )
        return LineageView(node, [LineageLink("study", job)])


def _parents(record: JobRecord) -> list[LineageLink]:
    """A job's training data and, when it replaces a model, that model version (its
    warm start)."""
    links = [LineageLink("training_data", p) for p in _data_parents(record)]
    base = record.spec.get("replaces_model")  # pinned to a version at submission
    if base:
        links.append(LineageLink("base_model", lin.of_parent("model", base)))
    return links


def _data_parents(record: JobRecord) -> list[str]:
    """The lineage ids of a job's training data: the resolved dataset version once the job
    has run (the spec may say 0, the latest), else the spec's."""
    resolved = ((record.result or {}).get("lineage") or {}).get("dataset")
    spec: dict[str, Any] = record.spec
    if resolved:
        return [lin.make("dataset", f"{resolved[0]}@{int(resolved[1])}")]
    if spec.get("dataset"):
        return [lin.of_parent("dataset", spec["dataset"])]
    if (spec.get("dataset_artifact") or {}).get("uri"):
        return [lin.of_parent("artifact", spec["dataset_artifact"])]
    return []


def _trial_numbers(record: JobRecord) -> list[int]:
    """The job's trials (best first, as its leaderboard ranks them) once it has finished."""
    rows = (record.result or {}).get("leaderboard") or []
    return [int(r.get("trial", r.get("number", 0))) for r in rows]
