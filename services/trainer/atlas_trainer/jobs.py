"""The trainer's job kinds, run by the shared job runner in subprocesses. Handlers get the
service settings bound with functools.partial, so no secret is persisted in a job spec."""

from __future__ import annotations

import functools
import time
from typing import Any

from google.protobuf import json_format

from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.jobs import JobContext, JobHandler
from atlas_trainer.config import TrainerSettings

KIND_TRAIN = "train"
STUDY_KEY = "_study_name"  # stored beside the spec; keys starting with _ are not the proto


def spec_to_json(spec: pb.TrainingJobSpec, study_name: str) -> dict[str, Any]:
    raw = json_format.MessageToDict(spec, preserving_proto_field_name=True)
    raw[STUDY_KEY] = study_name
    return raw


def spec_from_json(raw: dict[str, Any]) -> pb.TrainingJobSpec:
    return json_format.ParseDict(
        {k: v for k, v in raw.items() if not k.startswith("_")}, pb.TrainingJobSpec()
    )


def _run_train(settings: TrainerSettings, ctx: JobContext, spec: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()  # the budget includes importing the ML stack
    from atlas_trainer.job_work import train  # heavy imports only in the job subprocess
    from atlas_trainer.runtime import open_runtime

    runtime = open_runtime(settings, migrate=False)
    try:
        return train(
            runtime,
            ctx,
            spec_from_json(spec),
            study_name=spec.get(STUDY_KEY) or ctx.job_id,
            started=started,
        )
    finally:
        runtime.close()


def job_handlers(settings: TrainerSettings) -> dict[str, JobHandler]:
    return {KIND_TRAIN: functools.partial(_run_train, settings)}
