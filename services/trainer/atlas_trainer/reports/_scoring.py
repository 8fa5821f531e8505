"""Metric functions (higher is better) for permutation importance, by task."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, log_loss, mean_absolute_error, r2_score, roc_auc_score

from atlas_core.errors import InvalidArgument

DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "rmse"}

# name -> (uses probabilities, score(y_true, output, classes)); losses are negated.
_METRICS: dict[str, tuple[bool, Callable[[Any, np.ndarray, Sequence[Any]], float]]] = {
    "roc_auc": (True, lambda y, p, c: float(roc_auc_score(np.asarray(y) == c[1], p[:, 1]))),
    "log_loss": (True, lambda y, p, c: -float(log_loss(y, p, labels=list(c)))),
    "accuracy": (False, lambda y, out, c: float(accuracy_score(y, out))),
    "rmse": (False, lambda y, out, c: -float(np.sqrt(np.mean((np.asarray(y) - out) ** 2)))),
    "mae": (False, lambda y, out, c: -float(mean_absolute_error(y, out))),
    "r2": (False, lambda y, out, c: float(r2_score(y, out))),
}


def output_metric(
    task: str, metric: str | None, classes: Sequence[Any]
) -> tuple[Callable[[Any, Any], np.ndarray], Callable[[Any, np.ndarray], float]]:
    """``(output(model, X), score(y, output))``: what to predict for the metric, and the
    metric of those predictions (higher is better)."""
    name = metric or DEFAULT_METRIC[task]
    if name not in _METRICS:
        raise InvalidArgument(
            f"unknown importance metric {name!r}; use one of {', '.join(sorted(_METRICS))}",
            reason="INVALID_METRIC",
        )
    uses_proba, score = _METRICS[name]
    if uses_proba and task == "regression":
        raise InvalidArgument(f"metric {name!r} needs a classifier", reason="INVALID_METRIC")

    def output(model: Any, X: Any) -> np.ndarray:
        return np.asarray(model.predict_proba(X) if uses_proba else model.predict(X))

    return output, lambda y, out: score(y, out, classes)
