"""Global feature importance and per-prediction contributions of a fitted model.

Two methods, chosen by what the model can do:

* ``"shap"`` -- XGBoost/LightGBM built-in TreeSHAP contributions (through the model's
  ``contributions(X)`` or a booster pipeline, see :func:`atlas_core.bundles.raw_contributions`):
  global importance is the mean |contribution| over rows (and classes), in raw output units
  (log-odds for classifiers), on the model's transformed features;
* ``"permutation"`` otherwise -- global importance is the score drop when one input column
  is shuffled (as :func:`sklearn.inspection.permutation_importance`, but the shuffled
  copies are stacked and predicted in a few large calls: a fold-bag ensemble's per-call
  cost would otherwise dominate, once per column and repeat); per-row contributions are
  occlusion effects against a background sample: ``f(x) - mean_b f(x with column j := b_j)``,
  with ``f`` the probability of the explained class (or the predicted value), on input columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from atlas_core.bundles import occlusion_contributions, raw_contributions
from atlas_core.errors import InvalidArgument
from atlas_trainer.reports._scoring import DEFAULT_METRIC, output_metric

SHAP = "shap"
PERMUTATION = "permutation"
MAX_IMPORTANCE_ROWS = 2_000
MAX_EXPLAIN_ROWS = 1_000
MAX_CELLS_PER_CALL = 2_000_000  # bounds the stacked shuffled copies predicted at once


@dataclass(frozen=True)
class FeatureImportance:
    feature: str
    importance: float
    importance_std: float


@dataclass(frozen=True)
class ImportanceResult:
    """Features most important first; ``method`` is ``"shap"`` or ``"permutation"``."""

    method: str
    features: list[FeatureImportance]
    metric: str | None = None


@dataclass(frozen=True)
class RowContribution:
    contributions: dict[str, float]
    base_value: float
    prediction: float


@dataclass(frozen=True)
class Explanation:
    method: str
    rows: list[RowContribution]


def global_importance(
    model: Any,
    X: pd.DataFrame,
    y: pd.Series | np.ndarray | None = None,
    *,
    task: str,
    classes: Sequence[Any] = (),
    metric: str | None = None,
    n_repeats: int = 5,
    max_rows: int = MAX_IMPORTANCE_ROWS,
    seed: int = 0,
) -> ImportanceResult:
    """Global importance of ``model`` on (a sample of at most ``max_rows`` of) ``X``.

    SHAP when the model gives contributions, else permutation importance scored with
    ``metric`` (default: roc_auc / log_loss / rmse by task), which needs ``y``.

    Raises:
        InvalidArgument: empty ``X``; ``y`` missing or of another length for permutation
            importance; unknown metric.
    """
    if X.empty:
        raise InvalidArgument("feature importance needs at least one row", reason="NO_ROWS")
    sample, y_sample = _sample(X, y, max_rows, seed)
    contributions = raw_contributions(model, sample)
    if contributions is not None:
        values, names = contributions
        magnitude = np.abs(values[..., :-1])
        per_feature = magnitude.reshape(-1, magnitude.shape[-1]).mean(axis=0)
        features = [
            FeatureImportance(name, float(value), 0.0) for name, value in zip(names, per_feature)
        ]
        return ImportanceResult(SHAP, _ranked(features))
    if y_sample is None:
        raise InvalidArgument(
            "permutation importance needs the labels (y)", reason="LABELS_REQUIRED"
        )
    drops = _permutation_drops(
        model, sample, y_sample, output_metric(task, metric, classes), n_repeats, seed
    )
    features = [
        FeatureImportance(str(name), float(d.mean()), float(d.std()))
        for name, d in zip(sample.columns, drops)
    ]
    return ImportanceResult(PERMUTATION, _ranked(features), metric or DEFAULT_METRIC[task])


def _permutation_drops(
    model: Any,
    sample: pd.DataFrame,
    y: Any,
    metric: tuple[Any, Any],
    n_repeats: int,
    seed: int,
) -> np.ndarray:
    """Score drop per (column, repeat) when that column is shuffled."""
    output, score = metric
    baseline = score(y, output(model, sample))
    rng = np.random.RandomState(seed)
    n, width = sample.shape
    copies = [(j, rng.permutation(n)) for j in range(width) for _ in range(n_repeats)]
    per_call = max(1, MAX_CELLS_PER_CALL // max(1, sample.size))
    scores: list[float] = []
    for start in range(0, len(copies), per_call):
        chunk = copies[start : start + per_call]
        stacked = {}
        for j, column in enumerate(sample.columns):
            original = sample[column]
            base = original.to_numpy()
            values = np.tile(base, len(chunk))
            for k, (shuffled, order) in enumerate(chunk):
                if shuffled == j:
                    values[k * n : (k + 1) * n] = base[order]
            stacked[column] = pd.Series(values).astype(original.dtype)
        predicted = output(model, pd.DataFrame(stacked, columns=sample.columns))
        scores += [score(y, predicted[k * n : (k + 1) * n]) for k in range(len(chunk))]
    return baseline - np.asarray(scores).reshape(width, n_repeats)


def explain_rows(
    model: Any,
    rows: pd.DataFrame,
    *,
    task: str,
    classes: Sequence[Any] = (),
    background: pd.DataFrame | None = None,
    target_class: Any = None,
    max_background: int = 20,
    seed: int = 0,
) -> Explanation:
    """Per-row contributions of 1..1000 ``rows`` (see the module docstring for methods).

    ``target_class`` picks the explained class for multiclass models (default: each row's
    predicted class); binary models explain ``classes[1]``. ``background`` (training rows)
    is needed by the permutation method.

    Raises:
        InvalidArgument: no rows, more than 1,000, unknown target class, no background.
    """
    if rows.empty or len(rows) > MAX_EXPLAIN_ROWS:
        raise InvalidArgument(
            f"explain 1..{MAX_EXPLAIN_ROWS} rows; got {len(rows)}", reason="INVALID_ROW_COUNT"
        )
    class_index = _class_index(model, rows, task, classes, target_class)
    contributions = raw_contributions(model, rows)
    if contributions is not None:
        values, names = contributions
        if values.ndim == 3:
            values = values[np.arange(len(rows)), class_index]
        return Explanation(
            SHAP,
            [
                RowContribution(
                    dict(zip(names, map(float, row[:-1]))), float(row[-1]), float(row.sum())
                )
                for row in values
            ],
        )
    if background is None or background.empty:
        raise InvalidArgument(
            "permutation explanations need background rows", reason="BACKGROUND_REQUIRED"
        )
    reference = background.sample(
        n=min(max_background, len(background)), random_state=seed
    ).reset_index(drop=True)
    return Explanation(PERMUTATION, _occlusion(model, rows, reference, task, class_index))


def _occlusion(
    model: Any, rows: pd.DataFrame, reference: pd.DataFrame, task: str, class_index: np.ndarray
) -> list[RowContribution]:
    def score(frame: pd.DataFrame) -> np.ndarray:
        if task == "regression":
            return np.asarray(model.predict(frame), dtype="float64")
        return np.asarray(model.predict_proba(frame), dtype="float64")

    own, values, base = occlusion_contributions(
        score, rows, reference, None if task == "regression" else class_index
    )
    names = [str(c) for c in rows.columns]
    return [
        RowContribution(dict(zip(names, map(float, line))), float(b), float(o))
        for line, b, o in zip(values, base, own, strict=True)
    ]


def _class_index(
    model: Any, rows: pd.DataFrame, task: str, classes: Sequence[Any], target_class: Any
) -> np.ndarray:
    n = len(rows)
    if task == "regression":
        return np.zeros(n, dtype=int)
    if task == "binary":
        return np.ones(n, dtype=int)
    if target_class is not None and target_class != "":
        names = [str(label) for label in classes]
        if str(target_class) not in names:
            raise InvalidArgument(
                f"target class {target_class!r} is not one of {list(classes)}",
                reason="UNKNOWN_CLASS",
            )
        return np.full(n, names.index(str(target_class)))
    return np.asarray(model.predict_proba(rows)).argmax(axis=1)


def _sample(
    X: pd.DataFrame, y: Any, max_rows: int, seed: int
) -> tuple[pd.DataFrame, np.ndarray | None]:
    labels = None if y is None else np.asarray(y)
    if labels is not None and len(labels) != len(X):
        raise InvalidArgument(
            f"y has {len(labels)} rows, X {len(X)}", reason="INVALID_TRAINING_DATA"
        )
    if len(X) <= max_rows:
        return X, labels
    picked = np.sort(np.random.default_rng(seed).choice(len(X), size=max_rows, replace=False))
    return X.iloc[picked], None if labels is None else labels[picked]


def _ranked(features: list[FeatureImportance]) -> list[FeatureImportance]:
    return sorted(features, key=lambda item: (-item.importance, item.feature))
