"""Single-row prediction cost and batch throughput of fitted models, as serving's fast path
pays them, and the per-row latency budget (``AutoMLRequest.max_row_latency_ms``) and batch
throughput floor (``min_batch_rows_per_s``) applied to the final model.

The cost of one model is measured on one of its fold models: a float-matrix scorer with
every estimator compiled (``atlas_core.ml.compile_estimator``) when the inputs are numbers
and strings (a float matrix, or an object matrix holding the strings, as serving builds it),
else (or when the model needs a frame: dates) the model's own ``predict_scores`` on a
one-row frame. CPU time of the measuring thread,
best of a few calls: robust to a busy machine. A fold bag costs its folds' sum, an ensemble
its members' sum. Batch cost is the same on a ``BATCH_ROWS``-row matrix (training rows
repeated), per row."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from atlas_core.ml import compile_estimator

REPEATS = 5
BATCH_ROWS = 1000
BATCH_REPEATS = 2


def row_latency_s(model: Any, X: pd.DataFrame) -> float:
    """Seconds one row costs ``model`` (``X``: training rows; the first is scored)."""
    return _best_call_s(model, X.iloc[:1], REPEATS)


def batch_row_s(model: Any, X: pd.DataFrame) -> float:
    """Seconds per row of one ``BATCH_ROWS``-row batch (``X``'s rows, repeated as needed)."""
    reps = -(-BATCH_ROWS // max(1, len(X)))
    rows = (pd.concat([X] * reps) if reps > 1 else X).iloc[:BATCH_ROWS]
    return _best_call_s(model, rows, BATCH_REPEATS) / len(rows)


def _best_call_s(model: Any, row: pd.DataFrame, repeats: int) -> float:
    call: Callable[[], Any]
    scorer = None
    matrix = _serving_matrix(row)
    if matrix is not None:
        scorer = model.matrix_scorer([str(c) for c in row.columns], compile_estimator)
    if scorer is not None:
        call = lambda: scorer(matrix)  # noqa: E731
    else:
        call = lambda: model.predict_scores(row)  # noqa: E731
    call()  # compiles nothing, but warms caches and lazy imports
    best = math.inf
    for _ in range(repeats):
        start = time.thread_time()
        call()
        best = min(best, time.thread_time() - start)
    return best


def _serving_matrix(rows: pd.DataFrame) -> np.ndarray | None:
    """The matrix serving's fast path builds from these rows: float64 when every column is
    numeric, else object with numbers as floats (NaN when missing) and strings as they are
    (None when missing); None for other column types (dates)."""
    numeric = [pd.api.types.is_numeric_dtype(t) for t in rows.dtypes]
    if all(numeric):
        return rows.to_numpy(dtype=np.float64, na_value=np.nan)
    if not all(
        n or pd.api.types.is_object_dtype(t) or pd.api.types.is_string_dtype(t)
        for n, t in zip(numeric, rows.dtypes)
    ):
        return None
    matrix = np.empty(rows.shape, dtype=object)
    for j, (name, is_number) in enumerate(zip(rows.columns, numeric)):
        values = rows[name]
        if is_number:
            matrix[:, j] = values.to_numpy(dtype=np.float64, na_value=np.nan).tolist()
        else:
            matrix[:, j] = values.astype(object).where(values.notna(), None).tolist()
    return matrix


def measure(
    fold_models: Mapping[int, list[Any]],
    X: pd.DataFrame,
    best_first: Sequence[int],
    deadline: float | None,
) -> dict[int, float]:
    """Per trial with fitted folds, best first until ``deadline`` (``time.monotonic``; the
    wall budget holds): the single-row seconds of one model of that trial."""
    return _per_trial(row_latency_s, fold_models, X, best_first, deadline)


def measure_batch(
    fold_models: Mapping[int, list[Any]],
    X: pd.DataFrame,
    best_first: Sequence[int],
    deadline: float | None,
) -> dict[int, float]:
    """As :func:`measure`, the seconds per row of a ``BATCH_ROWS``-row batch."""
    return _per_trial(batch_row_s, fold_models, X, best_first, deadline)


def _per_trial(
    cost: Callable[[Any, pd.DataFrame], float],
    fold_models: Mapping[int, list[Any]],
    X: pd.DataFrame,
    best_first: Sequence[int],
    deadline: float | None,
) -> dict[int, float]:
    out: dict[int, float] = {}
    for n in best_first:
        if deadline is not None and time.monotonic() > deadline:
            break
        if fold_models.get(n):
            out[n] = cost(fold_models[n][0], X)
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
