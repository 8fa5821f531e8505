"""Single-row prediction cost of fitted models, as serving's fast path pays it, and the
per-row latency budget (``AutoMLRequest.max_row_latency_ms``) applied to the final model.

The cost of one model is measured on one of its fold models: a float-matrix scorer with
every estimator compiled (``atlas_core.ml.compile_estimator``) when the inputs are numeric,
else the model's own ``predict_scores`` on a one-row frame. CPU time of the measuring thread,
best of a few calls: robust to a busy machine. A fold bag costs its folds' sum, an ensemble
its members' sum."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from atlas_core.ml import compile_estimator

REPEATS = 5


def row_latency_s(model: Any, X: pd.DataFrame) -> float:
    """Seconds one row costs ``model`` (``X``: training rows; the first is scored)."""
    row = X.iloc[:1]
    call: Callable[[], Any]
    scorer = None
    if all(pd.api.types.is_numeric_dtype(t) for t in row.dtypes):
        scorer = model.matrix_scorer([str(c) for c in row.columns], compile_estimator)
    if scorer is not None:
        matrix = row.to_numpy(dtype=np.float64, na_value=np.nan)
        call = lambda: scorer(matrix)  # noqa: E731
    else:
        call = lambda: model.predict_scores(row)  # noqa: E731
    call()  # compiles nothing, but warms caches and lazy imports
    best = math.inf
    for _ in range(REPEATS):
        start = time.thread_time()
        call()
        best = min(best, time.thread_time() - start)
    return best


def measure(
    fold_models: Mapping[int, list[Any]],
    X: pd.DataFrame,
    best_first: Sequence[int],
    deadline: float | None,
) -> dict[int, float]:
    """Per trial with fitted folds, best first until ``deadline`` (``time.monotonic``; the
    wall budget holds): the single-row seconds of one model of that trial."""
    out: dict[int, float] = {}
    for n in best_first:
        if deadline is not None and time.monotonic() > deadline:
            break
        if fold_models.get(n):
            out[n] = row_latency_s(fold_models[n][0], X)
    return out


def within_budget(
    weights: Mapping[int, float], cost: Callable[[int], float], budget_s: float
) -> dict[int, float]:
    """Ensemble ``weights`` without their lightest members until the members' summed cost
    fits ``budget_s`` (AutoGluon's ``infer_limit`` pruning); renormalised. May return one
    member, or none when even the heaviest-weighted member alone exceeds the budget."""
    kept = dict(weights)
    while kept and sum(cost(n) for n in kept) > budget_s:
        del kept[min(kept, key=lambda n: (kept[n], -cost(n)))]
    total = sum(kept.values())
    return {n: w / total for n, w in kept.items()} if total > 0 else {}
