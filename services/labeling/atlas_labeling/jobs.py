"""Labeling jobs (import, export) run by the shared job runner in subprocesses. Each handler
receives the service settings (bound with functools.partial, so no secret is ever persisted
in a job spec) and opens its own runtime. Both kinds are resumable: they checkpoint after
every batch and a restarted attempt continues from there."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format

from atlas.labeling.v1 import labeling_service_pb2 as pb
from atlas_core.errors import InvalidArgument
from atlas_core.jobs import JobContext, JobHandler
from atlas_labeling.config import LabelingSettings
from atlas_labeling.runtime import LabelingRuntime, open_runtime

KIND_IMPORT = "import_items"
KIND_EXPORT = "export_labels"

SPEC_TYPES: dict[str, type] = {
    KIND_IMPORT: pb.ImportSpec,
    KIND_EXPORT: pb.ExportSpec,
}
RESUMABLE = {KIND_IMPORT, KIND_EXPORT}

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


Work = Callable[[LabelingRuntime, JobContext, Any], dict[str, Any]]


def spec_to_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def spec_from_json(kind: str, raw: dict[str, Any]) -> Any:
    return json_format.ParseDict(raw, SPEC_TYPES[kind]())


def _run(
    settings: LabelingSettings, kind: str, ctx: JobContext, spec: dict[str, Any]
) -> dict[str, Any]:
    from atlas_labeling import job_work  # imported in the job subprocess only

    work: Work = {
        KIND_IMPORT: job_work.import_items,
        KIND_EXPORT: job_work.export_labels,
    }[kind]
    runtime = open_runtime(settings, migrate=False)
    try:
        return work(runtime, ctx, spec_from_json(kind, spec))
    finally:
        runtime.close()


def job_handlers(settings: LabelingSettings) -> dict[str, JobHandler]:
    return {kind: functools.partial(_run, settings, kind) for kind in SPEC_TYPES}
