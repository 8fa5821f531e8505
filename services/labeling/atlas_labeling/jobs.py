"""Labeling jobs (import, export, pre-label, label issues) run by the shared job runner in
subprocesses. Each handler receives the service settings (bound with functools.partial, so
no secret is ever persisted in a job spec) and opens its own runtime. Every kind is
resumable: it checkpoints after every batch and a restarted attempt continues from there."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format

from atlas.labeling.v1 import labeling_service_pb2 as pb
from atlas_core.errors import InvalidArgument
from atlas_core.jobs import JobContext, JobHandler
from atlas_labeling.config import LabelingSettings
from atlas_labeling.runtime import open_runtime

KIND_IMPORT = "import_items"
KIND_EXPORT = "export_labels"
KIND_PRELABEL = "prelabel"
KIND_LABEL_ISSUES = "label_issues"

SPEC_TYPES: dict[str, type] = {
    KIND_IMPORT: pb.ImportSpec,
    KIND_EXPORT: pb.ExportSpec,
    KIND_PRELABEL: pb.PrelabelSpec,
    KIND_LABEL_ISSUES: pb.LabelIssuesSpec,
}
# A label-issues run is idempotent (a flagged item is not flagged twice): re-running is resuming.
RESUMABLE = {KIND_IMPORT, KIND_EXPORT, KIND_PRELABEL, KIND_LABEL_ISSUES}
ITEM_STATUS = {
    pb.ITEM_STATUS_UNLABELED: "unlabeled",
    pb.ITEM_STATUS_IN_PROGRESS: "in_progress",
    pb.ITEM_STATUS_ANNOTATED: "annotated",
    pb.ITEM_STATUS_IN_REVIEW: "in_review",
    pb.ITEM_STATUS_DONE: "done",
    pb.ITEM_STATUS_IN_CORRECTION: "in_correction",
    pb.ITEM_STATUS_SKIPPED: "skipped",
}

FORMATS = {
    pb.EXPORT_FORMAT_UNSPECIFIED: "parquet",
    pb.EXPORT_FORMAT_PARQUET: "parquet",
    pb.EXPORT_FORMAT_JSONL: "jsonl",
    pb.EXPORT_FORMAT_COCO: "coco",
}


def parse_cursor(cursor: str) -> int:
    if not cursor:
        return 0
    if not cursor.isdigit():
        raise InvalidArgument(f"after_cursor {cursor!r} is malformed", reason="BAD_CURSOR")
    return int(cursor)


def export_sources(spec: pb.ExportSpec) -> list[str]:
    """Model-only labels are exported only on request, and always marked source=model."""
    return ["human", "review", "consensus"] + (["model"] if spec.include_model_labels else [])


Work = Callable[..., dict[str, Any]]


def spec_to_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def spec_from_json(kind: str, raw: dict[str, Any]) -> Any:
    return json_format.ParseDict(raw, SPEC_TYPES[kind]())


def _run(
    settings: LabelingSettings, kind: str, ctx: JobContext, spec: dict[str, Any]
) -> dict[str, Any]:
    from atlas_labeling import job_work  # imported in the job subprocess only

    handlers: dict[str, Work] = {
        KIND_IMPORT: job_work.import_items,
        KIND_EXPORT: job_work.export_labels,
        KIND_PRELABEL: job_work.prelabel_items,
        KIND_LABEL_ISSUES: job_work.label_issues,
    }
    work = handlers[kind]
    runtime = open_runtime(settings, migrate=False)
    try:
        return work(runtime, ctx, spec_from_json(kind, spec))
    finally:
        runtime.close()


def job_handlers(settings: LabelingSettings) -> dict[str, JobHandler]:
    return {kind: functools.partial(_run, settings, kind) for kind in SPEC_TYPES}
