"""Data jobs (ingest, compaction, sample matching, derivation) run by the shared job runner in
subprocesses. Each handler receives the service settings (bound with functools.partial, so
no secret is ever persisted in a job spec) and opens its own runtime."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format

from atlas.data.v1 import data_service_pb2 as pb
from atlas_core.jobs import JobContext, JobHandler
from atlas_data.config import DataSettings
from atlas_data.runtime import DataRuntime, open_runtime

KIND_INGEST = "ingest"
KIND_COMPACTION = "compaction"
KIND_MATCH = "match_samples"
KIND_DERIVE = "derive_dataset"

SPEC_TYPES: dict[str, type] = {
    KIND_INGEST: pb.IngestSpec,
    KIND_COMPACTION: pb.CompactionSpec,
    KIND_MATCH: pb.MatchSamplesSpec,
    KIND_DERIVE: pb.DeriveDatasetSpec,
}

Work = Callable[[DataRuntime, JobContext, Any], dict[str, Any]]


def spec_to_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def spec_from_json(kind: str, raw: dict[str, Any]) -> Any:
    return json_format.ParseDict(raw, SPEC_TYPES[kind]())


def _run(
    settings: DataSettings, kind: str, ctx: JobContext, spec: dict[str, Any]
) -> dict[str, Any]:
    from atlas_data import job_work  # imported in the job subprocess only

    work: Work = {
        KIND_INGEST: job_work.ingest,
        KIND_COMPACTION: job_work.compact,
        KIND_MATCH: job_work.match_samples,
        KIND_DERIVE: job_work.derive,
    }[kind]
    runtime = open_runtime(settings, migrate=False)
    try:
        return work(runtime, ctx, spec_from_json(kind, spec))
    finally:
        runtime.close()


def job_handlers(settings: DataSettings) -> dict[str, JobHandler]:
    return {kind: functools.partial(_run, settings, kind) for kind in SPEC_TYPES}
