"""Per-row contributions for models with none of their own (ensembles, bagged and linear
models): occlusion against a background sample.

``contribution_j(x) = f(x) - mean_b f(x with column j := b_j)``, with ``f`` the answered score
(the explained class's probability, or the predicted value) and ``b`` the background rows:
how much the answer depends on feature ``j`` taking this row's value rather than a typical
training value. Every occluded copy of every row is stacked and scored in one call, so a
fold-bag ensemble pays its per-call cost once.

The trainer's report uses training rows as the background; serving has only the bundle's
training statistics and draws the background from their marginals
(:func:`background_from_stats`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

# score(frame) -> predicted values [n] (regression) or class probabilities [n, classes]
Scorer = Callable[[pd.DataFrame], np.ndarray]

BACKGROUND_ROWS = 16
MAX_OCCLUDED_ROWS = 200_000  # bounds one explain call's stacked copies


def occlusion_contributions(
    score: Scorer, rows: pd.DataFrame, reference: pd.DataFrame, class_index: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(own [n], contributions [n, columns], base [n])`` of ``rows`` against ``reference``.

    ``class_index`` picks each row's explained class (``None`` for regression); ``base`` is
    the mean answered score over the background.
    """
    n, width, size = len(rows), rows.shape[1], len(reference)
    block = width * size
    repeated = rows.iloc[np.repeat(np.arange(n), block)].reset_index(drop=True)
    for j, column in enumerate(rows.columns):
        positions = (np.arange(n)[:, None] * block + j * size + np.arange(size)[None, :]).ravel()
        values = repeated[column].to_numpy(dtype=object, copy=True)
        values[positions] = np.tile(reference[column].to_numpy(dtype=object), n)
        repeated[column] = pd.Series(values).astype(rows[column].dtype)
    rows_index = None if class_index is None else np.repeat(class_index, block)
    occluded = _answered(score(repeated), rows_index).reshape(n, width, size).mean(axis=2)
    own = _answered(score(rows), class_index)
    background = np.asarray(score(reference), dtype="float64")
    if class_index is None:
        base = np.full(n, float(background.mean()))
    else:
        base = background.mean(axis=0)[class_index]
    return own, own[:, None] - occluded, base


def _answered(scores: Any, class_index: np.ndarray | None) -> np.ndarray:
    scores = np.asarray(scores, dtype="float64")
    if class_index is None:
        return scores.reshape(-1)
    return scores[np.arange(len(scores)), class_index]


def background_rows(n_rows: int, n_columns: int) -> int:
    """Background size for one explain call: :data:`BACKGROUND_ROWS`, fewer for large calls."""
    per_copy = max(1, n_rows * n_columns)
    return max(1, min(BACKGROUND_ROWS, MAX_OCCLUDED_ROWS // per_copy))


def background_from_stats(
    training_stats: Mapping[str, Mapping[str, Any]],
    names: Sequence[str],
    size: int = BACKGROUND_ROWS,
    seed: int = 0,
) -> pd.DataFrame:
    """``size`` rows drawn from each feature's training marginal (features independent):
    numbers at evenly spaced quantiles of the stored sample, categories in proportion to
    their stored frequencies, each column shuffled with a fixed seed. Datetimes come back as
    ISO strings (how requests send them); a feature without statistics stays missing."""
    rng = np.random.RandomState(seed)
    levels = (np.arange(size) + 0.5) / size
    columns: dict[str, list[Any]] = {}
    for name in names:
        stats = training_stats.get(name) or {}
        if "frequencies" in stats:
            freqs = {k: float(v) for k, v in stats["frequencies"].items() if k != "__other__"}
            if freqs:
                values = list(freqs)
                cumulative = np.cumsum([freqs[v] for v in values])
                picks = np.searchsorted(cumulative / cumulative[-1], levels)
                column: list[Any] = [values[min(i, len(values) - 1)] for i in picks]
            else:
                column = [None] * size
        elif stats.get("sample"):
            sample = np.sort(np.asarray(stats["sample"], dtype="float64"))
            drawn = np.quantile(sample, levels)
            if stats.get("kind") == "datetime":
                column = [pd.Timestamp(v, unit="s").isoformat() for v in drawn]
            else:
                column = [float(v) for v in drawn]
        else:
            column = [stats.get("mean")] * size
        columns[name] = [column[i] for i in rng.permutation(size)]
    return pd.DataFrame(columns, columns=list(names))
