"""Pre-training label bias for a facet column, following SageMaker Clarify's definitions.

For each facet value ``d`` (the group examined) against the rest ``a``, with the label
collapsed to positive/negative outcomes (as Clarify does for multi-category labels):

* CI  = (n_a - n_d) / (n_a + n_d)                      class imbalance
* DPL = q_a - q_d                                       q = share of positive labels
* KL  = sum Pa * ln(Pa / Pd)                            over the label outcomes
* JS  = 0.5 * (sum Pa ln(Pa/P) + sum Pd ln(Pd/P)),  P = (Pa + Pd) / 2
* KS  = max |Pa - Pd|
* TVD = 0.5 * sum |Pa - Pd|

Like Clarify, KL/JS/KS/TVD use only the outcomes present in both groups ("aligned non-zero"
distributions). A metric that is undefined (e.g. the facet covers every row) is NaN.
Numeric facets with many distinct values are bucketed into quantile ranges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from atlas_core.errors import InvalidArgument

MISSING = "<missing>"
MAX_FACET_VALUES = 50
NUMERIC_FACET_BUCKETS = 4
_BUCKET_ABOVE = 10  # numeric facets with more distinct values than this are bucketed


@dataclass(frozen=True)
class BiasMetrics:
    facet_column: str
    facet_value: str
    class_imbalance: float
    difference_in_proportions: float
    kl_divergence: float
    js_divergence: float
    ks_distance: float
    total_variation: float
    rows: int


def bias_metrics(
    frame: pd.DataFrame,
    *,
    facet_column: str,
    label_column: str,
    positive_labels: Sequence[Any] | None = None,
    label_threshold: float | None = None,
    facet_values: Sequence[str] | None = None,
) -> list[BiasMetrics]:
    """Bias metrics of every facet value (or those in ``facet_values``) versus the rest.

    A label is positive when it is one of ``positive_labels`` (compared as strings), or above
    ``label_threshold``; by default the last label in sorted order is positive (``1`` of 0/1,
    ``True``, ``"yes"`` of no/yes), and numeric labels with many values (regression) are
    split at their median.

    Raises:
        InvalidArgument: facet or label column missing or entirely empty (named), a requested
            facet value absent, a facet with more than 50 values, or labels with no positive or
            no negative outcome.
    """
    for role, column in (("facet", facet_column), ("label", label_column)):
        if column not in frame.columns:
            raise InvalidArgument(
                f"{role} column '{column}' is not in the dataset",
                reason="COLUMN_NOT_FOUND",
                metadata={"column": column},
            )
    labels = frame[label_column]
    if labels.isna().all():
        raise InvalidArgument(
            f"label column '{label_column}' has no values",
            reason="EMPTY_COLUMN",
            metadata={"column": label_column},
        )
    keep = labels.notna().to_numpy()
    positive = _positive_index(labels[keep], positive_labels, label_threshold, label_column)
    groups = _facet_groups(frame[facet_column][keep], facet_column)
    values = sorted(set(groups), key=_natural)
    if facet_values:
        absent = [str(v) for v in facet_values if str(v) not in values]
        if absent:
            raise InvalidArgument(
                f"facet column '{facet_column}' has no value {', '.join(absent)} "
                f"(values: {', '.join(values[:20])})",
                reason="FACET_VALUE_NOT_FOUND",
                metadata={"column": facet_column, "values": ",".join(absent)},
            )
        values = [str(v) for v in facet_values]
    if len(values) > MAX_FACET_VALUES:
        raise InvalidArgument(
            f"facet column '{facet_column}' has {len(values)} values (max {MAX_FACET_VALUES}); "
            "choose facet values or a coarser column",
            reason="TOO_MANY_FACET_VALUES",
            metadata={"column": facet_column},
        )
    return [
        facet_metrics(positive, groups == value, facet_column=facet_column, facet_value=value)
        for value in values
    ]


def facet_metrics(
    positive: np.ndarray, in_facet: np.ndarray, *, facet_column: str, facet_value: str
) -> BiasMetrics:
    """Metrics of one facet group (``in_facet``) against the rest, for boolean outcomes."""
    positive = np.asarray(positive, dtype=bool)
    in_facet = np.asarray(in_facet, dtype=bool)
    n_d = int(in_facet.sum())
    n_a = int((~in_facet).sum())
    ci = (n_a - n_d) / (n_a + n_d) if n_a + n_d else float("nan")
    if n_a == 0 or n_d == 0:
        nan = float("nan")
        return BiasMetrics(facet_column, facet_value, ci, nan, nan, nan, nan, nan, n_d)
    q_a = float(positive[~in_facet].mean())
    q_d = float(positive[in_facet].mean())
    pa, pd_ = _aligned_nonzero(np.array([1 - q_a, q_a]), np.array([1 - q_d, q_d]))
    if pa.size == 0:
        kl = js = ks = tvd = float("nan")
    else:
        mix = (pa + pd_) / 2
        kl = float(np.sum(pa * np.log(pa / pd_)))
        js = float(0.5 * (np.sum(pa * np.log(pa / mix)) + np.sum(pd_ * np.log(pd_ / mix))))
        ks = float(np.max(np.abs(pa - pd_)))
        tvd = float(0.5 * np.sum(np.abs(pa - pd_)))
    return BiasMetrics(facet_column, facet_value, ci, q_a - q_d, kl, js, ks, tvd, n_d)


def _aligned_nonzero(pa: np.ndarray, pd_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    both = (pa > 0) & (pd_ > 0)
    return pa[both], pd_[both]


def _positive_index(
    labels: pd.Series, positive_labels: Sequence[Any] | None, threshold: float | None, name: str
) -> np.ndarray:
    if positive_labels:
        wanted = {str(value) for value in positive_labels}
        positive = labels.map(str).isin(wanted).to_numpy()
    elif threshold is not None:
        positive = (pd.to_numeric(labels, errors="coerce") > threshold).to_numpy()
    else:
        distinct = labels.unique()
        if pd.api.types.is_numeric_dtype(labels) and len(distinct) > _BUCKET_ABOVE:
            positive = (labels > labels.median()).to_numpy()
        else:
            top = sorted(distinct, key=_natural)[-1]
            positive = (labels == top).to_numpy()
    if positive.all() or not positive.any():
        raise InvalidArgument(
            f"label column '{name}' has only {'positive' if positive.all() else 'negative'} "
            "outcomes for the chosen positive labels/threshold",
            reason="DEGENERATE_LABELS",
            metadata={"column": name},
        )
    return positive


def _facet_groups(facet: pd.Series, name: str) -> np.ndarray:
    if facet.isna().all():
        raise InvalidArgument(
            f"facet column '{name}' has no values",
            reason="EMPTY_COLUMN",
            metadata={"column": name},
        )
    if (
        pd.api.types.is_numeric_dtype(facet)
        and not pd.api.types.is_bool_dtype(facet)
        and facet.nunique() > _BUCKET_ABOVE
    ):
        buckets = pd.qcut(facet, NUMERIC_FACET_BUCKETS, duplicates="drop")
        keys = buckets.astype(str).to_numpy(dtype=object)
    else:
        keys = facet.map(str).to_numpy(dtype=object)
    keys[facet.isna().to_numpy()] = MISSING
    return keys


def _natural(value: Any) -> tuple[int, Any]:
    """Sort numbers numerically, then everything else as text."""
    try:
        return (0, float(value))
    except (TypeError, ValueError):
        return (1, str(value))
