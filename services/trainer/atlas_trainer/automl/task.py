"""Task detection, target validation and metrics.

Small-data policy (documented contract):
- rows whose target is missing are dropped (warning);
- a class with fewer than 2 examples cannot be validated: its rows are dropped (warning);
  if fewer than 2 classes remain, the target is rejected as effectively constant;
- CV folds = min(requested, smallest class count) and at least 2; fewer than 10 usable rows
  is rejected (nothing can be validated honestly).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from atlas_core.errors import InvalidArgument

TASKS = ("binary", "multiclass", "regression")
MIN_ROWS = 10


@dataclass(frozen=True)
class Metric:
    """A validation metric: ``score(y_codes_or_values, scores) -> float``.

    ``scores`` are probabilities [n, C] for classification, values [n] for regression.
    """

    name: str
    higher_is_better: bool
    fn: Callable[[np.ndarray, np.ndarray, int], float]

    @property
    def direction(self) -> Literal["minimize", "maximize"]:
        return "maximize" if self.higher_is_better else "minimize"

    def score(self, y: np.ndarray, scores: np.ndarray, n_classes: int = 0) -> float:
        return float(self.fn(y, scores, n_classes))

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b``."""
        return a > b if self.higher_is_better else a < b


def _auc(y: np.ndarray, s: np.ndarray, k: int) -> float:
    if s.ndim == 2 and s.shape[1] == 2:
        return skm.roc_auc_score(y, s[:, 1])
    return skm.roc_auc_score(y, s, multi_class="ovr", labels=np.arange(k))


def _logloss(y: np.ndarray, s: np.ndarray, k: int) -> float:
    return skm.log_loss(y, np.clip(s, 1e-15, 1.0), labels=np.arange(s.shape[1]))


def _label(s: np.ndarray) -> np.ndarray:
    return s.argmax(axis=1)


METRICS: dict[str, Metric] = {
    "roc_auc": Metric("roc_auc", True, _auc),
    "log_loss": Metric("log_loss", False, _logloss),
    "accuracy": Metric("accuracy", True, lambda y, s, k: skm.accuracy_score(y, _label(s))),
    "balanced_accuracy": Metric(
        "balanced_accuracy", True, lambda y, s, k: skm.balanced_accuracy_score(y, _label(s))
    ),
    "f1_macro": Metric(
        "f1_macro", True, lambda y, s, k: skm.f1_score(y, _label(s), average="macro")
    ),
    "rmse": Metric("rmse", False, lambda y, s, k: skm.root_mean_squared_error(y, s)),
    "mae": Metric("mae", False, lambda y, s, k: skm.mean_absolute_error(y, s)),
    "r2": Metric("r2", True, lambda y, s, k: skm.r2_score(y, s)),
}
DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "rmse"}
_CLASSIFICATION_ONLY = {"roc_auc", "log_loss", "accuracy", "balanced_accuracy", "f1_macro"}


@dataclass
class PreparedTarget:
    """A validated target: ``y`` (class codes or float values) aligned with ``keep`` rows."""

    task: str
    metric: Metric
    y: np.ndarray
    keep: np.ndarray  # boolean mask over the input rows
    classes: np.ndarray | None
    folds: int
    warnings: list[str] = field(default_factory=list)

    @property
    def n_classes(self) -> int:
        return 0 if self.classes is None else len(self.classes)


def detect_task(y: pd.Series) -> str:
    """binary if 2 distinct values; multiclass for strings/bools/categories or integers
    with few distinct values (<= 20 and < 5% of rows... or <= 10 in small data);
    regression otherwise."""
    values = y.dropna()
    k = values.nunique()
    if k <= 2:
        return "binary"
    if not pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        return "multiclass"
    as_float = values.astype(float)
    integral = bool(np.all(np.isclose(as_float, np.round(as_float))))
    if integral and (k <= 10 or (k <= 20 and k <= 0.05 * len(values))):
        return "multiclass"
    return "regression"


def resolve_metric(task: str, metric: str | None) -> Metric:
    name = metric or DEFAULT_METRIC[task]
    if name not in METRICS:
        raise InvalidArgument(
            f"unknown metric {name!r}; choose one of {sorted(METRICS)}", reason="UNKNOWN_METRIC"
        )
    if task == "regression" and name in _CLASSIFICATION_ONLY:
        raise InvalidArgument(f"metric {name!r} needs a classification task", reason="BAD_METRIC")
    if task != "regression" and name not in _CLASSIFICATION_ONLY:
        raise InvalidArgument(f"metric {name!r} needs a regression task", reason="BAD_METRIC")
    if task == "multiclass" and name == "roc_auc":
        return METRICS["roc_auc"]  # one-vs-rest macro AUC
    return METRICS[name]


def target_column(df: pd.DataFrame, name: str) -> tuple[pd.DataFrame, pd.Series]:
    """Split ``df`` into features and the target ``name`` (InvalidArgument if missing)."""
    if name not in df.columns:
        raise InvalidArgument(
            f"target column {name!r} not found; columns are {list(df.columns)[:20]}",
            reason="TARGET_MISSING",
            metadata={"column": name},
        )
    return df.drop(columns=[name]), df[name]


def prepare_target(
    y: pd.Series, task: str | None = None, metric: str | None = None, folds: int = 5
) -> PreparedTarget:
    """Validate ``y`` and encode it; raises InvalidArgument naming the column when the
    target is all-NaN, constant, or leaves too few rows to validate."""
    name = str(y.name)
    y = y.replace([np.inf, -np.inf], np.nan) if pd.api.types.is_numeric_dtype(y.dtype) else y
    notna = y.notna().to_numpy()
    warnings: list[str] = []
    if not notna.any():
        raise InvalidArgument(
            f"target column {name!r} is all missing",
            reason="TARGET_ALL_NAN",
            metadata={"column": name},
        )
    if y[notna].nunique() < 2:
        raise InvalidArgument(
            f"target column {name!r} is constant ({y[notna].iloc[0]!r})",
            reason="TARGET_CONSTANT",
            metadata={"column": name},
        )
    if (~notna).any():
        warnings.append(f"dropped {int((~notna).sum())} rows whose target {name!r} is missing")
    task = task or detect_task(y[notna])
    if task not in TASKS:
        raise InvalidArgument(f"unknown task {task!r}; choose one of {TASKS}", reason="BAD_TASK")
    keep = notna.copy()
    classes = None
    if task == "regression":
        try:
            values = pd.to_numeric(y[keep]).to_numpy(np.float64)
        except (ValueError, TypeError) as exc:
            raise InvalidArgument(
                f"target column {name!r} is not numeric, cannot do regression",
                reason="TARGET_NOT_NUMERIC",
                metadata={"column": name},
            ) from exc
        n_folds = max(2, min(folds, int(keep.sum()) // 5))
    else:
        counts = y[keep].value_counts()
        rare = counts[counts < 2]
        if len(rare):
            keep &= ~y.isin(rare.index).to_numpy()
            warnings.append(
                f"dropped {len(rare)} class(es) of target {name!r} with a single example: "
                f"{[str(v) for v in rare.index[:10]]}"
            )
        counts = counts[counts >= 2]
        if len(counts) < 2:
            raise InvalidArgument(
                f"target column {name!r} has fewer than two classes with 2+ examples",
                reason="TARGET_CONSTANT",
                metadata={"column": name},
            )
        if task == "binary" and len(counts) > 2:
            raise InvalidArgument(
                f"target column {name!r} has {len(counts)} classes, not binary",
                reason="BAD_TASK",
                metadata={"column": name},
            )
        if task == "multiclass" and len(counts) == 2:
            task = "binary"
        classes = np.asarray(sorted(counts.index, key=lambda v: (str(type(v)), v)))
        index = {c: i for i, c in enumerate(classes)}
        values = np.asarray([index[v] for v in y[keep]], dtype=np.int64)
        n_folds = max(2, min(folds, int(counts.min())))
    if int(keep.sum()) < MIN_ROWS:
        raise InvalidArgument(
            f"only {int(keep.sum())} usable rows for target {name!r}; need {MIN_ROWS}",
            reason="TOO_FEW_ROWS",
            metadata={"column": name},
        )
    if n_folds < folds:
        warnings.append(f"small data: using {n_folds}-fold CV instead of {folds}")
    return PreparedTarget(
        task, resolve_metric(task, metric), values, keep, classes, n_folds, warnings
    )


def constant_baseline(prepared: PreparedTarget) -> float:
    """Score of predicting the training prior (class frequencies / mean) for every row."""
    y = prepared.y
    if prepared.task == "regression":
        scores: Any = np.full(len(y), y.mean())
    else:
        prior = np.bincount(y, minlength=prepared.n_classes) / len(y)
        scores = np.tile(prior, (len(y), 1))
    try:
        return prepared.metric.score(y, scores, prepared.n_classes)
    except ValueError:
        return float("nan")
