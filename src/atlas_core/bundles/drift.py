"""Drift of live data against a bundle's training statistics: PSI and KS per feature.

Used by serving's monitor: ``drift_report(bundle.training_stats, captured_inputs)`` and
``drift_report(bundle.prediction_stats, prediction_frame(task, labels, probabilities))``.

* PSI (population stability index) over the training bins (numeric: the stored quantile bins;
  categorical: the stored categories + ``__other__``), plus one bucket for missing values;
  zero shares are floored at :data:`PSI_EPSILON`. Rule of thumb: < 0.1 stable, 0.1-0.2
  moderate shift, > 0.2 significant shift.
* KS: two-sample Kolmogorov-Smirnov statistic and p-value between the stored training sample
  and the live values (numeric features only).

A feature counts as drifted when ``psi >= psi_threshold``, or when the KS test rejects at
``ks_alpha`` with a statistic of at least ``ks_min_statistic`` (large samples make tiny,
harmless differences significant, hence the effect-size floor).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from atlas_core.bundles._stats import (
    OTHER,
    bin_counts,
    category_keys,
    datetime_seconds,
    numeric_values,
)

PSI_EPSILON = 1e-4
DEFAULT_PSI_THRESHOLD = 0.2
DEFAULT_KS_ALPHA = 0.01
DEFAULT_KS_MIN_STATISTIC = 0.1
_NUMERIC_KINDS = ("numeric", "datetime")


class KsResult(NamedTuple):
    statistic: float
    pvalue: float


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str
    rows: int
    psi: float
    ks_statistic: float | None
    ks_pvalue: float | None
    expected_missing_ratio: float
    actual_missing_ratio: float
    drifted: bool


@dataclass(frozen=True)
class DriftReport:
    """Per-feature drift plus a summary. ``drifted`` when any feature drifted."""

    rows: int
    features: dict[str, FeatureDrift]
    missing_features: list[str] = field(default_factory=list)
    psi_threshold: float = DEFAULT_PSI_THRESHOLD

    @property
    def drifted_features(self) -> list[str]:
        return [name for name, item in self.features.items() if item.drifted]

    @property
    def drifted(self) -> bool:
        return bool(self.drifted_features)

    @property
    def max_psi(self) -> float:
        values = [item.psi for item in self.features.values() if math.isfinite(item.psi)]
        return max(values) if values else float("nan")

    @property
    def mean_psi(self) -> float:
        values = [item.psi for item in self.features.values() if math.isfinite(item.psi)]
        return float(np.mean(values)) if values else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "drifted": self.drifted,
            "drifted_features": self.drifted_features,
            "max_psi": self.max_psi,
            "mean_psi": self.mean_psi,
            "missing_features": list(self.missing_features),
            "features": {name: asdict(item) for name, item in self.features.items()},
        }


def psi(expected: Mapping[str, Any], values: pd.Series | np.ndarray | Sequence[Any]) -> float:
    """PSI of ``values`` against one feature's training statistics; NaN for no values."""
    actual_shares, expected_shares = _shares(expected, values)
    if actual_shares is None:
        return float("nan")
    e = np.maximum(np.asarray(expected_shares, dtype="float64"), PSI_EPSILON)
    a = np.maximum(actual_shares, PSI_EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def ks(
    expected_sample: Sequence[float] | np.ndarray, values: pd.Series | np.ndarray | Sequence[Any]
) -> KsResult:
    """Two-sample KS between the training sample and the finite numeric ``values``;
    ``(nan, nan)`` when either side is empty."""
    from scipy.stats import ks_2samp  # lazy: scipy is heavy and only the monitor needs it

    reference = np.asarray(expected_sample, dtype="float64")
    live = _finite(values)
    if reference.size == 0 or live.size == 0:
        return KsResult(float("nan"), float("nan"))
    result = ks_2samp(reference, live)
    return KsResult(float(result.statistic), float(result.pvalue))


def drift_report(
    training_stats: Mapping[str, Mapping[str, Any]],
    frame: pd.DataFrame,
    *,
    psi_threshold: float = DEFAULT_PSI_THRESHOLD,
    ks_alpha: float = DEFAULT_KS_ALPHA,
    ks_min_statistic: float = DEFAULT_KS_MIN_STATISTIC,
) -> DriftReport:
    """PSI/KS of every feature in ``training_stats`` present in ``frame`` (others are listed
    in ``missing_features``; extra columns are ignored)."""
    features: dict[str, FeatureDrift] = {}
    missing: list[str] = []
    for name, stats in training_stats.items():
        if name not in frame.columns:
            missing.append(name)
            continue
        column = frame[name]
        kind = str(stats.get("kind", "numeric"))
        score = psi(stats, column)
        statistic = pvalue = None
        if kind in _NUMERIC_KINDS:
            values = datetime_seconds(column) if kind == "datetime" else column
            result = ks(stats.get("sample", []), values)
            if math.isfinite(result.statistic):
                statistic, pvalue = result.statistic, result.pvalue
        ks_drift = (
            statistic is not None
            and pvalue is not None
            and pvalue < ks_alpha
            and statistic >= ks_min_statistic
        )
        features[name] = FeatureDrift(
            feature=name,
            kind=kind,
            rows=len(column),
            psi=score,
            ks_statistic=statistic,
            ks_pvalue=pvalue,
            expected_missing_ratio=float(stats.get("missing_ratio", 0.0)),
            actual_missing_ratio=float(column.isna().mean()) if len(column) else float("nan"),
            drifted=bool((math.isfinite(score) and score >= psi_threshold) or ks_drift),
        )
    return DriftReport(
        rows=len(frame), features=features, missing_features=missing, psi_threshold=psi_threshold
    )


def row_drift_scores(
    training_stats: Mapping[str, Mapping[str, Any]], frame: pd.DataFrame
) -> tuple[np.ndarray, list[str]]:
    """How far outside the training distribution each row of ``frame`` lies: per row, the
    largest over its features of a score in [0, 1], and that feature's name ("" for none).

    * numeric and datetime: ``1 - 2 * min(F, 1 - F)`` with F the value's mid-rank in the
      stored training sample (smoothed: a value beyond the whole sample of m scores
      m / (m + 1)); a value outside the training [min, max] scores 1;
    * categorical: a category the training data never had scores ``1 - share(__other__)``;
      a known one 0;
    * a missing value scores ``1 - missing_ratio`` (missing is unusual only where it was rare).

    Rows at or above a score of 0.99 lie beyond the central 99% of the training values of
    at least one feature (serving's HIGH_DRIFT bad cases)."""
    rows = len(frame)
    best = np.zeros(rows)
    which = [""] * rows
    for name, stats in training_stats.items():
        if name not in frame.columns:
            continue
        score = _feature_row_scores(stats, frame[name])
        if score is None:
            continue
        higher = score > best
        best = np.where(higher, score, best)
        for i in np.flatnonzero(higher):
            which[i] = name
    return best, which


def _feature_row_scores(stats: Mapping[str, Any], column: pd.Series) -> np.ndarray | None:
    kind = str(stats.get("kind", "numeric"))
    missing_score = 1.0 - float(stats.get("missing_ratio", 0.0))
    if kind in _NUMERIC_KINDS:
        values = datetime_seconds(column) if kind == "datetime" else numeric_values(column)
        sample = np.sort(np.asarray(stats.get("sample", []), dtype="float64"))
        if sample.size == 0:
            return None
        below = np.searchsorted(sample, values, side="left")
        equal = np.searchsorted(sample, values, side="right") - below
        cdf = (below + 0.5 * equal + 0.5) / (sample.size + 1)
        score = 1.0 - 2.0 * np.minimum(cdf, 1.0 - cdf)
        low, high = stats.get("min"), stats.get("max")
        if low is not None and high is not None:
            score = np.where((values < float(low)) | (values > float(high)), 1.0, score)
        return np.where(np.isfinite(values), score, missing_score)
    keys = category_keys(column)
    frequencies: Mapping[str, float] = stats.get("frequencies", {})
    known = keys.isin([k for k in frequencies if k != OTHER]).to_numpy()
    missing = keys.isna().to_numpy()
    unseen = 1.0 - float(frequencies.get(OTHER, 0.0))
    return np.where(missing, missing_score, np.where(known, 0.0, unseen))


def prediction_frame(
    task: str, labels: Sequence[Any] | np.ndarray, probabilities: np.ndarray | None = None
) -> pd.DataFrame:
    """Model outputs shaped like a bundle's ``prediction_stats`` (``label``/``score`` for
    classifiers -- score is P(classes[1]) for binary, the top probability for multiclass --
    or ``value`` for regression), ready for :func:`drift_report`."""
    if task == "regression":
        return pd.DataFrame({"value": np.asarray(labels, dtype="float64")})
    frame = pd.DataFrame({"label": pd.Series(np.asarray(labels), dtype=object)})
    if probabilities is not None:
        proba = np.asarray(probabilities, dtype="float64")
        frame["score"] = proba[:, 1] if task == "binary" else proba.max(axis=1)
    return frame


def _shares(
    expected: Mapping[str, Any], values: pd.Series | np.ndarray | Sequence[Any]
) -> tuple[np.ndarray | None, list[float]]:
    kind = str(expected.get("kind", "numeric"))
    series = _as_series(values)
    total = len(series)
    missing_expected = float(expected.get("missing_ratio", 0.0))
    if kind in _NUMERIC_KINDS:
        numbers = datetime_seconds(series) if kind == "datetime" else numeric_values(series)
        finite = numbers[np.isfinite(numbers)]
        edges = expected.get("bin_edges", [])
        expected_shares = list(expected.get("bin_fractions", [])) + [missing_expected]
        if not expected.get("bin_fractions"):
            expected_shares = [1.0 - missing_expected, missing_expected]
            counts = np.array([finite.size])
        else:
            counts = bin_counts(edges, finite)
    else:
        frequencies: Mapping[str, float] = expected.get("frequencies", {})
        keys = category_keys(series)
        present = keys.dropna()
        categories = [key for key in frequencies if key != OTHER]
        known = present.isin(categories)
        tallies = present[known].value_counts()
        counts = np.array([int(tallies.get(key, 0)) for key in categories] + [int((~known).sum())])
        expected_shares = (
            [float(frequencies[key]) for key in categories]
            + [float(frequencies.get(OTHER, 0.0))]
            + [missing_expected]
        )
    if total == 0:
        return None, expected_shares
    missing_count = total - int(np.sum(counts))
    actual = np.append(counts, missing_count).astype("float64") / total
    return actual, expected_shares


def _finite(values: pd.Series | np.ndarray | Sequence[Any]) -> np.ndarray:
    numbers = numeric_values(_as_series(values))
    return numbers[np.isfinite(numbers)]


def _as_series(values: pd.Series | np.ndarray | Sequence[Any]) -> pd.Series:
    if isinstance(values, pd.Series):
        return values
    if isinstance(values, np.ndarray):
        return pd.Series(values)
    return pd.Series(list(values), dtype=object)
