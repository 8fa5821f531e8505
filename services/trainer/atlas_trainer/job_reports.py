"""The report a finished training job stores: importance, bias per requested facet, plots,
and where to point optuna-dashboard. Runs in the job subprocess after the bundle is written;
a report that fails is recorded as a warning, never fails a job whose model is good."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import optuna
import pandas as pd

from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.bundles import raw_contributions
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


IMPORTANCE_ROWS = 500  # x 2 repeats: ranks features well enough for a report
IMPORTANCE_REPEATS = 2
MIN_IMPORTANCE_ROWS = 50
PLOTS_RESERVE_S = 0.5


def importance_rows(model: Any, X: pd.DataFrame, deadline: float | None) -> int:
    """Rows of permutation importance that fit before the job's ``deadline`` (it predicts
    the sample columns x repeats times, in stacked calls, so the cost is per row); 0 when
    not even ``MIN_IMPORTANCE_ROWS`` fit. Models with booster contributions (SHAP) are cheap
    and keep the full sample."""
    if deadline is None or raw_contributions(model, X.iloc[:1]) is not None:
        return IMPORTANCE_ROWS
    probe = X.iloc[:IMPORTANCE_ROWS]
    started = time.monotonic()
    model.predict_scores(probe)
    per_row = (time.monotonic() - started) / max(1, len(probe))
    left = deadline - time.monotonic() - PLOTS_RESERVE_S
    passes = X.shape[1] * IMPORTANCE_REPEATS + 1
    rows = int(left / max(per_row * passes, 1e-9))
    return min(IMPORTANCE_ROWS, rows) if rows >= MIN_IMPORTANCE_ROWS else 0


def build_report(
    rt: TrainerRuntime,
    job_id: str,
    spec: pb.TrainingJobSpec,
    result: AutoMLResult,
    X: pd.DataFrame,
    y: pd.Series,
    leaderboard_rows: list[dict[str, Any]],
    study_name: str,
    deadline: float | None = None,
) -> dict[str, Any]:
    """``deadline`` (monotonic): the job's wall budget; permutation importance shrinks its
    sample to fit, or is skipped with a warning."""
    report: dict[str, Any] = {
        "warnings": list(result.warnings),
        "dropped_columns": dict(result.dropped_columns),
        "column_roles": [dataclasses.asdict(r) for r in result.column_roles],
        "study_name": study_name,
        "optuna_storage_url": dashboard_storage_url(rt.optuna_storage_url),
        "stacking": result.stacking,
        "stack_levels": result.stack_levels,
    }
    importance = None
    try:
        rows = importance_rows(result.model, X, deadline)
        if rows:
            importance = global_importance(
                result.model,
                X,
                y,
                task=result.task,
                classes=result.classes or (),
                metric=result.metric,
                n_repeats=IMPORTANCE_REPEATS,
                max_rows=rows,
                seed=spec.seed,
            )
            # A column the trainer dropped is not used by the model: its score is noise.
            used = [f for f in importance.features if f.feature not in result.dropped_columns]
            importance = dataclasses.replace(importance, features=used)
            report["importance_method"] = importance.method
            report["feature_importance"] = to_jsonable(importance.features)
        else:
            report["warnings"].append(
                "feature importance skipped: no time left in the wall "
                "budget (raise it to get permutation importance)"
            )
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
        plots = write_plots(
            rt.artifacts,
            f"reports/{job_id}/",
            metric=result.metric,
            higher_is_better=result.higher_is_better,
            history=history_from_study(study),
            leaderboard=leaderboard_rows,
            importance=importance,
            score_curve=[dataclasses.asdict(p) for p in result.score_curve],
            elapsed_s=result.elapsed_s,
        )
        report["plots"] = [
            {"name": p.name, "uri": p.ref.uri, "sha256": p.ref.sha256, "size": p.ref.size}
            for p in plots
        ]
    except Exception as exc:  # noqa: BLE001
        report["warnings"].append(f"plots unavailable: {exc}")
    return report
