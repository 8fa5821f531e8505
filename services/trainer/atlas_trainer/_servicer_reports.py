"""Report, explanation, bias, similar-study and resource RPCs of the trainer servicer."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pandas as pd

from atlas.common.v1 import common_pb2
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.errors import FailedPrecondition, InvalidArgument
from atlas_trainer import convert
from atlas_trainer.service import TrainerService

to_thread = asyncio.to_thread


def _finite(value: Any) -> float:
    v = float(value or 0.0)
    return v if math.isfinite(v) else 0.0


def _bias_pb(m: dict[str, Any]) -> pb.BiasMetrics:
    return pb.BiasMetrics(
        facet_column=str(m["facet_column"]),
        facet_value=str(m["facet_value"]),
        class_imbalance=_finite(m["class_imbalance"]),
        difference_in_proportions=_finite(m["difference_in_proportions"]),
        kl_divergence=_finite(m["kl_divergence"]),
        js_divergence=_finite(m["js_divergence"]),
        ks_distance=_finite(m["ks_distance"]),
        total_variation=_finite(m["total_variation"]),
        rows=int(m["rows"]),
    )


def _row_frame(rows: Any) -> pd.DataFrame:
    records = []
    for row in rows:
        record: dict[str, Any] = {}
        for name, value in row.values.items():
            kind = value.WhichOneof("kind")
            if kind is None:
                record[name] = None
            elif kind == "float32_vector":
                raise InvalidArgument(
                    f"rows: feature '{name}' is a vector; send scalars", reason="UNSUPPORTED_VALUE"
                )
            else:
                record[name] = getattr(value, kind)
        records.append(record)
    return pd.DataFrame.from_records(records)


class ReportRpcs:
    svc: TrainerService

    def _finished(self, job_id: str) -> dict[str, Any]:
        record = self._record(job_id)  # type: ignore[attr-defined]  # mixin: the servicer has it
        if not record.result:
            raise FailedPrecondition(
                f"training job {job_id} has no result yet ({record.state.value.lower()}); "
                "wait until it succeeds",
                reason="JOB_NOT_FINISHED",
            )
        return record.result

    async def GetTrainingReport(self, request: Any, context: Any) -> Any:
        result = await to_thread(self._finished, request.job_id)
        r = result.get("report") or {}
        report = pb.TrainingReport(
            importance_method=r.get("importance_method", ""),
            warnings=r.get("warnings", []),
            dropped_columns=r.get("dropped_columns", {}),
            optuna_storage_url=r.get("optuna_storage_url", ""),
            study_name=r.get("study_name", ""),
            stacking=str(result.get("stacking") or ""),
            stack_levels=int(result.get("stack_levels") or 1),
            score_curve=[convert.score_point_to_pb(p) for p in result.get("score_curve", [])],
            priors=[convert.prior_to_pb(p) for p in result.get("priors", [])],
            column_roles=[
                pb.ColumnRole(
                    column=c["column"],
                    role=c["role"],
                    overridden=bool(c["overridden"]),
                    detail=c["detail"],
                    features=list(c["features"]),
                )
                for c in r.get("column_roles", [])
            ],
            feature_importance=[
                pb.FeatureImportance(
                    feature=f["feature"],
                    importance=_finite(f["importance"]),
                    importance_std=_finite(f["importance_std"]),
                )
                for f in r.get("feature_importance", [])
            ],
            bias_metrics=[_bias_pb(m) for m in r.get("bias_metrics", [])],
            plots=[
                pb.Plot(
                    name=p["name"],
                    artifact=common_pb2.ArtifactRef(
                        uri=p["uri"],
                        sha256=p["sha256"],
                        size_bytes=p["size"],
                        media_type="text/html",
                    ),
                )
                for p in r.get("plots", [])
            ],
        )
        return pb.GetTrainingReportResponse(report=report)

    async def ExplainPredictions(self, request: Any, context: Any) -> Any:
        if not request.rows:
            raise InvalidArgument("rows: give 1..1000 rows to explain", reason="NO_ROWS")
        if len(request.rows) > 1000:
            raise InvalidArgument(
                f"{len(request.rows)} rows; at most 1000 per call", reason="TOO_MANY_ROWS"
            )
        result = await to_thread(self._finished, request.job_id)
        best = result.get("best") or {}
        if request.HasField("trial_number") and request.trial_number != best.get("number"):
            raise FailedPrecondition(
                f"only the job's final model (trial {best.get('number')}) is kept; explain "
                "that one",
                reason="MODEL_NOT_KEPT",
            )
        frame = _row_frame(request.rows)
        explanation = await to_thread(
            self.svc.explain, request.job_id, result, frame, request.target_class or None
        )
        return pb.ExplainPredictionsResponse(
            method=explanation.method,
            rows=[
                pb.RowContributions(
                    contributions={k: _finite(v) for k, v in row.contributions.items()},
                    base_value=_finite(row.base_value),
                    prediction=_finite(row.prediction),
                )
                for row in explanation.rows
            ],
        )

    async def ComputeBiasMetrics(self, request: Any, context: Any) -> Any:
        if not request.facet_column:
            raise InvalidArgument("facet_column is empty", reason="NO_FACET")
        record = await to_thread(self._record, request.job_id)  # type: ignore[attr-defined]  # mixin
        metrics = await to_thread(
            self.svc.bias, record, request.facet_column, list(request.facet_values) or None
        )
        return pb.ComputeBiasMetricsResponse(metrics=[_bias_pb(m) for m in metrics])

    async def FindSimilarStudies(self, request: Any, context: Any) -> Any:
        task = convert.TASKS_FROM_PB.get(request.task_type)
        studies = await to_thread(
            self.svc.similar_studies,
            (request.dataset.dataset_id, request.dataset.version)
            if request.dataset.dataset_id
            else None,
            dict(request.meta_features),
            task,
            request.k or 5,
            request.trials_per_study or 3,
        )
        out = []
        for s in studies:
            msg = pb.SimilarStudy(
                job_id=s["study"],
                reason=s["reason"],
                distance=_finite(s["distance"]),
                best_trials=[convert.trial_to_pb(t) for t in s["trials"]],
            )
            if s.get("dataset"):
                msg.dataset.CopyFrom(
                    common_pb2.DatasetRef(dataset_id=s["dataset"][0], version=s["dataset"][1])
                )
            out.append(msg)
        return pb.FindSimilarStudiesResponse(studies=out)

    async def GetResources(self, request: Any, context: Any) -> Any:
        host, allocations = await to_thread(self.svc.resources)
        used = sum(a["cpus"] for a in allocations)
        return pb.GetResourcesResponse(
            cpus_total=host.cpus,
            cpus_free=max(0.0, host.cpus - used),
            gpu_discovery_note=host.gpu_note,
            gpus=[
                common_pb2.GpuDevice(
                    index=g.index,
                    name=g.name,
                    uuid=g.uuid,
                    memory_total_bytes=g.memory_total_bytes,
                    memory_used_bytes=g.memory_used_bytes,
                    utilization_percent=g.utilization_percent,
                )
                for g in host.gpus
            ],
            allocations=[
                pb.ResourceAllocation(
                    job_id=a["job_id"],
                    resources=common_pb2.ResourceRequest(cpus=a["cpus"], gpus=a["gpus"]),
                )
                for a in allocations
            ],
        )
