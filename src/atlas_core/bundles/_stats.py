"""Training-data statistics stored in a bundle as drift baselines.

Every feature gets one JSON-ready dict (``FeatureStats``), by kind:

* numeric / datetime (datetimes as epoch seconds)::

    {"kind", "count", "missing_ratio", "mean", "std", "min", "max",
     "bin_edges": [e0 < e1 < ...],        # interior quantile edges
     "bin_fractions": [f0, ..., fk],      # share of ALL rows per bin: (-inf,e0], ..., (ek-1,inf)
     "sample": [sorted values]}           # bounded uniform sample, for KS tests

  ``sum(bin_fractions) + missing_ratio == 1``. Infinite values count as missing.
* categorical / boolean::

    {"kind", "count", "missing_ratio", "distinct",
     "frequencies": {"value": share of all rows, ..., "__other__": share of the rest}}

  Values are compared as strings (``str(value)``); at most :data:`MAX_CATEGORIES` are kept.

The same binning functions serve :mod:`atlas_core.bundles.drift`, so training and serving
bucket values identically.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from atlas_core.bundles._schema import BOOLEAN, CATEGORICAL, DATETIME, NUMERIC, InputSchema

DEFAULT_BINS = 10
MAX_CATEGORIES = 100
OTHER = "__other__"
# Bounds the manifest size on wide data: at most this many sampled values over all features.
MAX_SAMPLE_TOTAL = 200_000
MAX_SAMPLE_PER_FEATURE = 1_000
MIN_SAMPLE_PER_FEATURE = 50

FeatureStats = Mapping[str, Any]


def sample_size_for(n_features: int) -> int:
    """Per-feature KS sample size so that the whole manifest stays bounded."""
    share = MAX_SAMPLE_TOTAL // max(n_features, 1)
    return int(min(MAX_SAMPLE_PER_FEATURE, max(MIN_SAMPLE_PER_FEATURE, share)))


def frame_stats(
    frame: pd.DataFrame, schema: InputSchema, *, seed: int = 0, bins: int = DEFAULT_BINS
) -> dict[str, dict[str, Any]]:
    """Statistics of every schema column of ``frame`` (deterministic for a given seed)."""
    sample_size = sample_size_for(len(schema.columns))
    rng = np.random.default_rng(seed)
    return {
        column.name: series_stats(
            frame[column.name], column.kind, bins=bins, sample_size=sample_size, rng=rng
        )
        for column in schema.columns
    }


def series_stats(
    series: pd.Series,
    kind: str,
    *,
    bins: int = DEFAULT_BINS,
    sample_size: int = MAX_SAMPLE_PER_FEATURE,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """Statistics of one column of the given kind (see the module docstring)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    if kind in (CATEGORICAL, BOOLEAN):
        return categorical_stats(series, kind=kind)
    values = datetime_seconds(series) if kind == DATETIME else numeric_values(series)
    return numeric_stats(values, kind=kind, bins=bins, sample_size=sample_size, rng=rng)


def numeric_values(series: pd.Series | np.ndarray | list[Any]) -> np.ndarray:
    """float64 values with missing (and non-numeric) entries as NaN."""
    values = series if isinstance(series, pd.Series) else pd.Series(np.asarray(series))
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    numeric = pd.to_numeric(values, errors="coerce")
    return numeric.to_numpy(dtype="float64", na_value=np.nan)


def datetime_seconds(series: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(series, errors="coerce")
    seconds = stamps.astype("int64").to_numpy(dtype="float64") / 1e9
    seconds[stamps.isna().to_numpy()] = np.nan
    return seconds


def numeric_stats(
    values: np.ndarray,
    *,
    kind: str = NUMERIC,
    bins: int = DEFAULT_BINS,
    sample_size: int = MAX_SAMPLE_PER_FEATURE,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    rng = rng if rng is not None else np.random.default_rng(0)
    count = int(values.size)
    finite = values[np.isfinite(values)]
    stats: dict[str, Any] = {
        "kind": kind,
        "count": count,
        "missing_ratio": _ratio(count - finite.size, count),
    }
    if finite.size == 0:
        stats.update(
            mean=None, std=None, min=None, max=None, bin_edges=[], bin_fractions=[], sample=[]
        )
        return stats
    edges = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    counts = bin_counts(edges, finite)
    take = min(sample_size, finite.size)
    sample = np.sort(rng.choice(finite, size=take, replace=False)) if take else finite
    stats.update(
        mean=float(finite.mean()),
        std=float(finite.std()),
        min=float(finite.min()),
        max=float(finite.max()),
        bin_edges=[float(edge) for edge in edges],
        bin_fractions=[_ratio(int(c), count) for c in counts],
        sample=[float(value) for value in sample],
    )
    return stats


def bin_counts(edges: np.ndarray | list[float], finite: np.ndarray) -> np.ndarray:
    """Counts per bin (-inf, e0], (e0, e1], ..., (e_last, inf) of finite values."""
    index = np.searchsorted(np.asarray(edges, dtype="float64"), finite, side="left")
    return np.bincount(index, minlength=len(edges) + 1)


def category_keys(series: pd.Series | np.ndarray | list[Any]) -> pd.Series:
    """Values as strings (the key space of categorical stats); missing stays NaN."""
    values = pd.Series(series, dtype=object) if not isinstance(series, pd.Series) else series
    values = values.astype(object)
    missing = values.isna()
    keys = values.map(str)
    keys[missing] = np.nan
    return keys


def categorical_stats(series: pd.Series, *, kind: str = CATEGORICAL) -> dict[str, Any]:
    keys = category_keys(series)
    count = int(keys.size)
    present = keys.dropna()
    counts = present.value_counts()
    # Deterministic order: most frequent first, ties by key.
    ordered = sorted(counts.items(), key=lambda item: (-int(item[1]), str(item[0])))
    kept = ordered[:MAX_CATEGORIES]
    rest = sum(int(n) for _, n in ordered[MAX_CATEGORIES:])
    frequencies = {str(key): _ratio(int(n), count) for key, n in kept}
    if rest:
        frequencies[OTHER] = _ratio(rest, count)
    return {
        "kind": kind,
        "count": count,
        "missing_ratio": _ratio(count - int(present.size), count),
        "distinct": len(ordered),
        "frequencies": frequencies,
    }


def target_stats(y: pd.Series | np.ndarray, task: str) -> dict[str, Any]:
    """Label distribution: categorical for classification, numeric for regression."""
    series = pd.Series(np.asarray(y).ravel() if not isinstance(y, pd.Series) else y)
    if task == "regression":
        return numeric_stats(numeric_values(series))
    return categorical_stats(series)


def _ratio(part: int, whole: int) -> float:
    return float(part) / whole if whole else 0.0
