"""The trainer's domain facade (no grpc): job submission with up-front validation, the job
runner, and read access to studies, results and the meta-store."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import optuna
import pyarrow.compute as pc
import pyarrow.parquet as pq

from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.errors import FailedPrecondition, InvalidArgument
from atlas_core.jobs import JobRecord, JobRunner
from atlas_trainer.automl.finalize import LeaderboardRow, leaderboard
from atlas_trainer.config import TrainerSettings
from atlas_trainer.jobs import KIND_TRAIN, STUDY_KEY, job_handlers, spec_to_json
from atlas_trainer.jsonable import to_jsonable
from atlas_trainer.runtime import TrainerRuntime, open_runtime


class TrainerService:
    def __init__(self, runtime: TrainerRuntime, runner: JobRunner) -> None:
        self.rt = runtime
        self.jobs = runner

    @classmethod
    def open(cls, settings: TrainerSettings) -> TrainerService:
        runtime = open_runtime(settings)
        runtime.artifacts.exists("atlas-startup-probe")  # fail fast on wrong S3 credentials
        runner = JobRunner(runtime.engine, job_handlers(settings),
                           max_concurrent=settings.jobs.max_concurrent,
                           runner_id=settings.jobs.runner_id)
        return cls(runtime, runner)

    def start(self) -> None:
        self.jobs.start()

    def stop(self) -> None:
        self.jobs.stop()
        self.rt.close()

    # -- submission -----------------------------------------------------------------------

    def _target_column_uris(self, spec: pb.TrainingJobSpec) -> list[str]:
        if spec.HasField("dataset") and spec.dataset.dataset_id:
            with self.rt.data_client() as client:
                ds = client.get_dataset(spec.dataset.dataset_id, spec.dataset.version)
            names = [c.name for c in ds.schema.columns]
            if spec.target_column not in names:
                raise InvalidArgument(
                    f"target column '{spec.target_column}' is not in dataset "
                    f"{ds.ref.dataset_id} v{ds.ref.version} (columns: {', '.join(names[:20])})",
                    reason="UNKNOWN_TARGET", metadata={"column": spec.target_column})
            return [a.uri for a in ds.artifacts]
        if spec.dataset_artifact.uri:
            return [spec.dataset_artifact.uri]
        raise InvalidArgument("spec: give dataset (a data-service dataset) or dataset_artifact",
                              reason="NO_DATASET")

    def validate_target(self, spec: pb.TrainingJobSpec) -> None:
        """Missing, all-missing or constant targets are refused before a job is queued."""
        if not spec.target_column:
            raise InvalidArgument("spec.target_column is empty", reason="NO_TARGET")
        uris = self._target_column_uris(spec)
        target = spec.target_column
        with tempfile.TemporaryDirectory(prefix="atlas-trainer-") as tmp:
            columns = []
            for i, uri in enumerate(uris):
                path = Path(tmp) / f"{i}.parquet"
                self.rt.artifacts.download_to_file(self.rt.artifacts.key_for_uri(uri), path)
                schema = pq.read_schema(path)
                if target not in schema.names:
                    raise InvalidArgument(f"target column '{target}' is not in the dataset "
                                          f"(columns: {', '.join(schema.names[:20])})",
                                          reason="UNKNOWN_TARGET", metadata={"column": target})
                columns.append(pq.read_table(path, columns=[target]).column(0))
        values = [v for col in columns for v in col.chunks]
        non_null = sum(len(v) - v.null_count for v in values)
        if non_null == 0:
            raise InvalidArgument(f"target column '{target}' has no values (all missing)",
                                  reason="EMPTY_TARGET", metadata={"column": target})
        distinct = set()
        for chunk in values:
            distinct.update(pc.unique(chunk.drop_null()).to_pylist())
            if len(distinct) > 1:
                return
        raise InvalidArgument(f"target column '{target}' is constant ({distinct.pop()!r}): "
                              "nothing to learn", reason="CONSTANT_TARGET",
                              metadata={"column": target})

    def submit(self, spec: pb.TrainingJobSpec, request_id: str) -> str:
        if spec.WhichOneof("kind") == "deep_learning":
            raise InvalidArgument(
                "deep_learning jobs are not offered by this trainer version; use automl (its "
                "search space includes a PyTorch MLP)", reason="UNSUPPORTED_KIND")
        if spec.budget.HasField("wall_time") and spec.budget.wall_time.ToTimedelta(
                ).total_seconds() <= 0:
            raise InvalidArgument("budget.wall_time must be positive", reason="BAD_BUDGET")
        if spec.budget.max_trials < 0:
            raise InvalidArgument("budget.max_trials must be >= 0", reason="BAD_BUDGET")
        gpus = spec.resources.gpus
        if gpus:
            from atlas_trainer.automl.resources import detect_gpus

            available = detect_gpus()
            if gpus > available:
                raise FailedPrecondition(
                    f"resources.gpus={gpus} but this trainer has {available} GPU(s)",
                    reason="NOT_ENOUGH_GPUS")
        self.validate_target(spec)
        study = spec.automl.study_name or f"atlas-{uuid.uuid4().hex[:12]}"
        return self.jobs.submit(KIND_TRAIN, spec_to_json(spec, study),
                                request_id=request_id or None, resumable=True)

    # -- reading --------------------------------------------------------------------------

    def study_name(self, record: JobRecord) -> str:
        return str(record.spec.get(STUDY_KEY) or record.id)

    def leaderboard(self, record: JobRecord) -> tuple[list[dict[str, Any]], str, bool]:
        """(rows, metric, higher_is_better): the finished job's stored leaderboard (with the
        ensemble), or the live study while it runs."""
        if record.result and record.result.get("leaderboard") is not None:
            r = record.result
            return r["leaderboard"], r["metric"], bool(r["higher_is_better"])
        try:
            study = optuna.load_study(study_name=self.study_name(record),
                                      storage=self.rt.optuna_storage_url)
        except KeyError:
            return [], "", True
        higher = study.direction == optuna.study.StudyDirection.MAXIMIZE
        rows = [_row_dict(r) for r in leaderboard(study, higher)]
        return rows, str(study.user_attrs.get("metric", "")), higher


def _row_dict(row: LeaderboardRow) -> dict[str, Any]:
    out = to_jsonable(row)
    out["trial"] = row.number
    return out
