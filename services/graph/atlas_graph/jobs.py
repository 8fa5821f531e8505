"""Graph jobs (import, generate, partition, train, infer) run by the shared job runner in
subprocesses. Each handler receives the service settings (bound with functools.partial, so
no secret is ever persisted in a job spec) and opens its own runtime."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format

from atlas.graph.v1 import graph_service_pb2 as pb
from atlas_core.jobs import JobContext, JobHandler
from atlas_graph.config import GraphSettings
from atlas_graph.runtime import GraphRuntime, open_runtime

KIND_IMPORT = "import_graph"
KIND_GENERATE = "generate_graph"
KIND_PARTITION = "partition_graph"
KIND_TRAIN = "train"
KIND_INFER = "infer"

SPEC_TYPES: dict[str, type] = {
    KIND_IMPORT: pb.ImportGraphSpec,
    KIND_GENERATE: pb.GenerateGraphSpec,
    KIND_PARTITION: pb.PartitionGraphSpec,
    KIND_TRAIN: pb.TrainGraphSpec,
    KIND_INFER: pb.InferGraphSpec,
}
# A train job resumes from its last checkpoint after a service restart.
RESUMABLE = {KIND_TRAIN}

Work = Callable[[GraphRuntime, JobContext, Any], dict[str, Any]]


def spec_to_json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def spec_from_json(kind: str, raw: dict[str, Any]) -> Any:
    return json_format.ParseDict(raw, SPEC_TYPES[kind]())


def _run(
    settings: GraphSettings, kind: str, ctx: JobContext, spec: dict[str, Any]
) -> dict[str, Any]:
    from atlas_graph import job_work  # imported in the job subprocess only

    work: Work = {
        KIND_IMPORT: job_work.import_graph,
        KIND_GENERATE: job_work.generate,
        KIND_PARTITION: job_work.partition,
        KIND_TRAIN: job_work.train,
        KIND_INFER: job_work.infer,
    }[kind]
    runtime = open_runtime(settings, migrate=False)
    try:
        return work(runtime, ctx, spec_from_json(kind, spec))
    finally:
        runtime.close()


def job_handlers(settings: GraphSettings) -> dict[str, JobHandler]:
    return {kind: functools.partial(_run, settings, kind) for kind in SPEC_TYPES}
