"""The trainer's domain facade (no grpc): job submission with up-front validation, the job
runner, and read access to studies, results and the meta-store."""

from __future__ import annotations

import math
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core import lineage as lin
from atlas_core.bundles import LoadedBundle, load_bundle
from atlas_core.errors import FailedPrecondition, InvalidArgument
from atlas_core.jobs import JobRecord, JobRunner, JobState, spec_from_json
from atlas_core.meta_features import META_FEATURES_VERSION, similarity_vector
from atlas_core.proto_convert import duration_seconds
from atlas_trainer.automl.finalize import LeaderboardRow, leaderboard
from atlas_trainer.automl.meta import find_priors
from atlas_trainer.automl.roles import check_column_roles
from atlas_trainer.config import TrainerSettings
from atlas_trainer.data_access import (
    dataset_pair,
    load_training_data,
    meta_features_from_pb,
    refuse_unmatched_export,
    split_target,
)
from atlas_trainer.jobs import JOBS, KIND_TRAIN, STUDY_KEY
from atlas_trainer.jsonable import to_jsonable
from atlas_trainer.lineage import TrainerLineage
from atlas_trainer.model_registry import check_register_options, resolve_base_model
from atlas_trainer.reports import Explanation, bias_metrics, explain_rows
from atlas_trainer.resources import HostResources, available_cpus, discover_resources
from atlas_trainer.runtime import TrainerRuntime, open_runtime

STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def check_study_name(name: str) -> None:
    """INVALID_ARGUMENT naming ``automl.study_name`` unless it is empty (a study of its own)
    or a plain name: it is shown in reports and dashboards and keys the study lock."""
    if name and not STUDY_NAME.fullmatch(name):
        raise InvalidArgument(
            f"automl.study_name {name[:140]!r} is malformed: use 1-128 letters, digits, '.', "
            "'_', ':' or '-', starting with a letter or digit (empty: a study of the job's own)",
            reason="BAD_STUDY_NAME",
            metadata={"field": "automl.study_name"},
        )


class TrainerService:
    def __init__(self, runtime: TrainerRuntime, runner: JobRunner) -> None:
        self.rt = runtime
        self.jobs = runner
        self.lineage_index = TrainerLineage(runner)
        self._bundles: dict[str, LoadedBundle] = {}  # explanations reuse loaded models

    @classmethod
    def open(cls, settings: TrainerSettings) -> TrainerService:
        runtime = open_runtime(settings)
        runtime.artifacts.exists("atlas-startup-probe")  # fail fast on wrong S3 credentials
        # A cancelled search stops within seconds, then the best model so far is still
        # bundled: give that time before the runner terminates the job process.
        runner = JOBS.runner(runtime.engine, settings, settings.jobs, cancel_grace=60.0)
        return cls(runtime, runner)

    def start(self) -> None:
        self.jobs.start()

    def stop(self) -> None:
        self.jobs.stop()
        self.rt.close()

    # -- submission -----------------------------------------------------------------------

    def _target_column_uris(self, spec: pb.TrainingJobSpec) -> list[str]:
        """The files holding the target; a data-service dataset's label column becomes the
        target when the spec names none (``spec`` is completed in place)."""
        if spec.HasField("dataset") and spec.dataset.dataset_id:
            with self.rt.data_client() as client:
                ds = client.get_dataset(spec.dataset.dataset_id, spec.dataset.version)
            refuse_unmatched_export(ds)
            if not spec.target_column:
                spec.target_column = ds.label_column
            if not spec.target_column:
                raise InvalidArgument(
                    f"spec.target_column is empty and dataset {ds.ref.dataset_id} "
                    f"v{ds.ref.version} records no label column: name the target",
                    reason="NO_TARGET",
                )
            names = [c.name for c in ds.schema.columns]
            if spec.target_column not in names:
                raise InvalidArgument(
                    f"target column '{spec.target_column}' is not in dataset "
                    f"{ds.ref.dataset_id} v{ds.ref.version} (columns: {', '.join(names[:20])})",
                    reason="UNKNOWN_TARGET",
                    metadata={"column": spec.target_column},
                )
            return [a.uri for a in ds.artifacts]
        if spec.dataset_artifact.uri:
            return [spec.dataset_artifact.uri]
        raise InvalidArgument(
            "spec: give dataset (a data-service dataset) or dataset_artifact", reason="NO_DATASET"
        )

    def validate_target(self, spec: pb.TrainingJobSpec) -> None:
        """Missing, all-missing or constant targets, and column roles naming a column the data
        does not have, are refused before a job is queued."""
        uris = self._target_column_uris(spec)
        if not spec.target_column:
            raise InvalidArgument("spec.target_column is empty", reason="NO_TARGET")
        target = spec.target_column
        with tempfile.TemporaryDirectory(prefix="atlas-trainer-") as tmp:
            columns = []
            for i, uri in enumerate(uris):
                path = Path(tmp) / f"{i}.parquet"
                self.rt.artifacts.download_to_file(self.rt.artifacts.key_for_uri(uri), path)
                schema = pq.read_schema(path)
                if target not in schema.names:
                    raise InvalidArgument(
                        f"target column '{target}' is not in the dataset "
                        f"(columns: {', '.join(schema.names[:20])})",
                        reason="UNKNOWN_TARGET",
                        metadata={"column": target},
                    )
                columns.append(pq.read_table(path, columns=[target]).column(0))
                if i == 0 and spec.automl.column_roles:
                    ignored = set(spec.ignore_columns)
                    features = [n for n in schema.names if n not in ignored]
                    check_column_roles(spec.automl.column_roles, features, target)
        values = [v for col in columns for v in col.chunks]
        non_null = sum(len(v) - v.null_count for v in values)
        if non_null == 0:
            raise InvalidArgument(
                f"target column '{target}' has no values (all missing)",
                reason="EMPTY_TARGET",
                metadata={"column": target},
            )
        distinct = set()
        for chunk in values:
            distinct.update(pc.unique(chunk.drop_null()).to_pylist())
            if len(distinct) > 1:
                return
        raise InvalidArgument(
            f"target column '{target}' is constant ({distinct.pop()!r}): nothing to learn",
            reason="CONSTANT_TARGET",
            metadata={"column": target},
        )

    def validate_deep_learning(self, spec: pb.TrainingJobSpec) -> None:
        """Architecture, params and the data itself (shapes, text, classes) are checked
        before a deep-learning job is queued, so bad input fails the submission, not the job."""
        from atlas_trainer.deep.inputs import prepare
        from atlas_trainer.deep.params import deep_config

        config = deep_config(spec)
        cores = int(available_cpus())
        if config.workers > cores:
            raise FailedPrecondition(
                f"deep_learning.workers={config.workers} but this trainer has {cores} CPU "
                "core(s): ask for fewer, or run on several machines with the job's torchrun "
                "command",
                reason="TOO_MANY_WORKERS",
                metadata={"field": "deep_learning.workers"},
            )
        X, y = split_target(load_training_data(self.rt, spec), spec)
        prepared = prepare(
            X,
            y,
            config,
            target=spec.target_column,
            max_classes=self.rt.settings.jobs.deep_max_classes,
        )
        if config.nas is not None:
            from atlas_trainer.deep.nas_space import check_nas_limits

            check_nas_limits(config.nas, config.architecture, prepared.info, len(prepared.classes))

    def submit(self, spec: pb.TrainingJobSpec, request_id: str) -> str:
        """Store the job (QUEUED). Jobs naming one ``automl.study_name`` share that Optuna
        study: on a database several trainers use, their trials split one study and one
        trial budget (distributed HPO)."""
        if (
            spec.budget.HasField("wall_time")
            and duration_seconds(spec.budget.wall_time, "budget.wall_time") <= 0
        ):
            raise InvalidArgument("budget.wall_time must be positive", reason="BAD_BUDGET")
        if spec.budget.max_trials < 0:
            raise InvalidArgument("budget.max_trials must be >= 0", reason="BAD_BUDGET")
        check_study_name(spec.automl.study_name)
        latency = spec.automl.max_row_latency_ms
        if not math.isfinite(latency) or latency < 0:
            raise InvalidArgument(
                f"automl.max_row_latency_ms must be >= 0 (0: no budget), got {latency}",
                reason="BAD_BUDGET",
            )
        floor = spec.automl.min_batch_rows_per_s
        if not math.isfinite(floor) or floor < 0:
            raise InvalidArgument(
                f"automl.min_batch_rows_per_s must be >= 0 (0: no floor), got {floor}",
                reason="BAD_BUDGET",
            )
        check_stacking(spec.automl)
        gpus = spec.resources.gpus
        if gpus:
            from atlas_trainer.automl.resources import detect_gpus

            available = detect_gpus()
            if gpus > available:
                raise FailedPrecondition(
                    f"resources.gpus={gpus} but this trainer has {available} GPU(s)",
                    reason="NOT_ENOUGH_GPUS",
                )
        if spec.HasField("register"):
            check_register_options(spec.register)
            self.rt.serving_settings()  # FAILED_PRECONDITION without a registry to call
        self.validate_target(spec)
        if spec.WhichOneof("kind") == "deep_learning":
            self.validate_deep_learning(spec)
        extras: dict[str, Any] = {}
        if spec.HasField("replaces_model"):
            base = resolve_base_model(self.rt, spec.replaces_model)
            # Pinned: the job's lineage names the version the alias meant at submission.
            spec.replaces_model.version = base.version
            extras["base_model"] = base.to_json()
        study = spec.automl.study_name or f"atlas-{uuid.uuid4().hex[:12]}"
        return JOBS.submit(self.jobs, KIND_TRAIN, spec, request_id, study_name=study, **extras)

    def lineage(
        self, lineage_id: str, children_limit: int, ancestor_depth: int = 0
    ) -> lin.LineageView:
        return lin.answer(self.lineage_index.view, lineage_id, children_limit, ancestor_depth)

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
            study = optuna.load_study(
                study_name=self.study_name(record), storage=self.rt.optuna_storage_url
            )
        except KeyError:
            return [], "", True
        higher = study.direction == optuna.study.StudyDirection.MAXIMIZE
        rows = [_row_dict(r) for r in leaderboard(study, higher)]
        return rows, str(study.user_attrs.get("metric", "")), higher

    # -- analysis -------------------------------------------------------------------------

    def _bundle(self, result: dict[str, Any]) -> LoadedBundle:
        uri = result["bundle"]["uri"]
        cached = self._bundles.get(uri)
        if cached is None:
            cached = load_bundle(
                self.rt.artifacts, self.rt.artifacts.key_for_uri(uri), trust=self.rt.trust
            )
            if len(self._bundles) >= 4:
                self._bundles.pop(next(iter(self._bundles)))
            self._bundles[uri] = cached
        return cached

    def _training_frame(self, record: JobRecord) -> tuple[pd.DataFrame, pd.Series, str]:
        spec = spec_from_json(pb.TrainingJobSpec, record.spec)
        data = load_training_data(self.rt, spec)
        X, y = split_target(data, spec)
        return X, y, spec.target_column

    def explain(
        self, job_id: str, result: dict[str, Any], rows: pd.DataFrame, target_class: str | None
    ) -> Explanation:
        bundle = self._bundle(result)
        frame = bundle.predictor.validate_input(rows)
        background = None
        if bundle.manifest.get("model", {}).get("has_contributions") is not True:
            X, _, _ = self._training_frame(self.jobs.get(job_id))
            background = X.sample(min(len(X), 200), random_state=0)
        classes = bundle.classes or ()
        if target_class is not None and classes:
            matches = [c for c in classes if str(c) == target_class]
            if not matches:
                raise InvalidArgument(
                    f"target_class '{target_class}' is not one of {[str(c) for c in classes]}",
                    reason="UNKNOWN_CLASS",
                )
            target_class = matches[0]
        return explain_rows(
            bundle.predictor,
            frame,
            task=bundle.task,
            classes=classes,
            background=background,
            target_class=target_class,
        )

    def bias(self, record: JobRecord, facet: str, values: list[str] | None) -> list[dict[str, Any]]:
        X, y, target = self._training_frame(record)
        frame = X.assign(**{target: y.values})
        if facet not in frame.columns:
            raise InvalidArgument(
                f"facet column '{facet}' is not in the training data",
                reason="UNKNOWN_COLUMN",
                metadata={"column": facet},
            )
        return to_jsonable(
            bias_metrics(frame, facet_column=facet, label_column=target, facet_values=values)
        )

    def similar_studies(
        self,
        dataset: tuple[str, int] | None,
        meta: dict[str, float],
        task: str | None,
        k: int,
        per_study: int,
    ) -> list[dict[str, Any]]:
        if dataset is not None:
            with self.rt.data_client() as client:
                ds = client.get_dataset(*dataset)
            mf = ds.meta_features
            recorded = meta_features_from_pb(mf)
            if ds.HasField("meta_features") and recorded.version == META_FEATURES_VERSION:
                meta = similarity_vector(recorded) | meta
            task = task or (
                "regression" if not mf.classes else "binary" if mf.classes == 2 else "multiclass"
            )
        if not meta and dataset is not None:
            raise InvalidArgument(
                f"dataset {dataset[0]} v{dataset[1]} has no meta-features of version "
                f"{META_FEATURES_VERSION} (the data service's GetDatasetMetaFeatures computes "
                "them); or give meta_features",
                reason="NO_META_FEATURES",
            )
        if not meta:
            raise InvalidArgument("give a dataset or meta_features", reason="NO_META_FEATURES")
        priors = find_priors(
            self.rt.meta_store, meta, task or "binary", k=k, configs_per_source=per_study
        )
        return [
            {
                "study": p.source_study,
                "reason": p.reason,
                "distance": p.distance,
                "dataset": dataset_pair(p.source_dataset),
                "trials": [
                    {
                        "number": c.get("trial", 0),
                        "score": c.get("score"),
                        "params": c.get("params"),
                        "state": "COMPLETE",
                        "family": (c.get("params") or {}).get("family", ""),
                    }
                    for c in p.configs
                ],
            }
            for p in priors
        ]

    def resources(self) -> tuple[HostResources, list[dict[str, Any]]]:
        running = self.jobs.list_all(state=JobState.RUNNING)
        allocations = [
            {
                "job_id": r.id,
                "cpus": float((r.spec.get("resources") or {}).get("cpus") or 1.0),
                "gpus": int((r.spec.get("resources") or {}).get("gpus") or 0),
            }
            for r in running
        ]
        return discover_resources(), allocations


def _row_dict(row: LeaderboardRow) -> dict[str, Any]:
    out = to_jsonable(row)
    out["trial"] = row.number
    return out


def check_stacking(automl: pb.AutoMlSpec) -> None:
    """INVALID_ARGUMENT (BAD_STACKING) naming the field for an unknown stacking mode or a
    stack_levels value out of range."""
    from atlas_trainer.automl.stack import MAX_LEVELS
    from atlas_trainer.convert import STACKING_FROM_PB

    if automl.stacking not in STACKING_FROM_PB:
        raise InvalidArgument(
            f"automl.stacking: {automl.stacking} is not a StackingMode; use "
            "STACKING_MODE_AUTO, STACKING_MODE_OFF or STACKING_MODE_ON",
            reason="BAD_STACKING",
            metadata={"field": "automl.stacking"},
        )
    if not 0 <= automl.stack_levels <= MAX_LEVELS:
        raise InvalidArgument(
            f"automl.stack_levels: {automl.stack_levels} is out of range; stacked layers above "
            f"the search's, 0 (the default, {MAX_LEVELS}) to {MAX_LEVELS}",
            reason="BAD_STACKING",
            metadata={"field": "automl.stack_levels"},
        )
