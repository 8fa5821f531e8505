"""The report a finished training job stores: importance, bias per requested facet, plots,
and where to point optuna-dashboard. Runs in the job subprocess after the bundle is written;
a report that fails is recorded as a warning, never fails a job whose model is good."""

from __future__ import annotations

import logging
from typing import Any

import optuna
import pandas as pd

from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_trainer.automl.engine import AutoMLResult
from atlas_trainer.jsonable import to_jsonable
from atlas_trainer.reports import (
    bias_metrics,
    dashboard_storage_url,
    global_importance,
    history_from_study,
    write_plots,
)
from atlas_trainer.runtime import TrainerRuntime

log = logging.getLogger("atlas.trainer.report")


def build_report(rt: TrainerRuntime, job_id: str, spec: pb.TrainingJobSpec,
                 result: AutoMLResult, X: pd.DataFrame, y: pd.Series,
                 leaderboard_rows: list[dict[str, Any]], study_name: str) -> dict[str, Any]:
    report: dict[str, Any] = {"warnings": list(result.warnings),
                              "dropped_columns": dict(result.dropped_columns),
                              "study_name": study_name,
                              "optuna_storage_url": dashboard_storage_url(
                                  rt.optuna_storage_url)}
    importance = None
    try:
        # Bounded: permutation importance of an ensemble on all rows can take longer than
        # the search; 500 rows x 2 repeats ranks features well enough for a report.
        importance = global_importance(result.model, X, y, task=result.task,
                                       classes=result.classes or (), metric=result.metric,
                                       n_repeats=2, max_rows=500, seed=spec.seed)
        report["importance_method"] = importance.method
        report["feature_importance"] = to_jsonable(importance.features)
    except Exception as exc:  # noqa: BLE001 - the model is fine; the report notes the gap
        log.warning("feature importance failed", exc_info=exc)
        report["warnings"].append(f"feature importance unavailable: {exc}")
    frame = X.assign(**{spec.target_column: y.values})
    report["bias_metrics"] = []
    for facet in spec.bias_facet_columns:
        try:
            metrics = bias_metrics(frame, facet_column=facet, label_column=spec.target_column)
            report["bias_metrics"] += to_jsonable(metrics)
        except Exception as exc:  # noqa: BLE001
            report["warnings"].append(f"bias metrics for '{facet}' unavailable: {exc}")
    try:
        study = optuna.load_study(study_name=study_name, storage=rt.optuna_storage_url)
        plots = write_plots(rt.artifacts, f"reports/{job_id}/", metric=result.metric,
                            higher_is_better=result.higher_is_better,
                            history=history_from_study(study), leaderboard=leaderboard_rows,
                            importance=importance)
        report["plots"] = [{"name": p.name, "uri": p.ref.uri, "sha256": p.ref.sha256,
                            "size": p.ref.size} for p in plots]
    except Exception as exc:  # noqa: BLE001
        report["warnings"].append(f"plots unavailable: {exc}")
    return report
