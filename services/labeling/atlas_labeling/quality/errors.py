"""Label errors: which (consensus) labels a model's out-of-sample probabilities contradict.

Confident learning (Northcutt et al., 2021) through `cleanlab>=2.8` (Apache-2.0). The
probabilities must be out-of-sample for every item: out-of-fold predictions of a trainer job,
or an endpoint's predictions only for items that were not in that model's training data.
In-sample probabilities have memorised the given labels and hide their errors.

Flags only say where to look again; nothing here changes a label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

FilterBy = Literal[
    "prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given"
]


def flag_label_issues(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    filter_by: FilterBy = "prune_by_noise_rate",
) -> np.ndarray:
    """Boolean mask of the labels confident learning finds likely wrong.

    Args:
        labels: integer class per item, in [0, n_classes).
        pred_probs: items x classes out-of-sample probabilities, rows summing to 1.
        filter_by: cleanlab's `find_label_issues` rule. The default is cleanlab's own;
            "prune_by_class" trades precision for recall, "both" the reverse, and
            "predicted_neq_given" is the `disagrees_with_prediction` baseline.

    Raises:
        ValueError: shapes or values outside the contract above.
    """
    from cleanlab.filter import find_label_issues  # heavy import (pandas, sklearn) kept lazy

    labels, pred_probs = _check(labels, pred_probs)
    if len(labels) == 0:
        return np.zeros(0, dtype=bool)
    # n_jobs=1: the service runs this inside its own worker; a nested process pool per call
    # would only fight it for the same cores.
    mask = find_label_issues(labels, pred_probs, filter_by=filter_by, n_jobs=1)
    return np.asarray(mask, dtype=bool)


def disagrees_with_prediction(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """The baseline: flag every label that differs from the model's most probable class."""
    labels, pred_probs = _check(labels, pred_probs)
    return np.argmax(pred_probs, axis=1) != labels


def label_quality(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Per-item label quality in [0, 1] (cleanlab's self-confidence); low = review first."""
    from cleanlab.rank import get_label_quality_scores

    labels, pred_probs = _check(labels, pred_probs)
    if len(labels) == 0:
        return np.zeros(0)
    return np.asarray(get_label_quality_scores(labels, pred_probs), dtype=float)


@dataclass(frozen=True)
class LabelIssue:
    """A flagged label: the item, its label, the model's choice and the label's quality."""

    item: str
    given: str
    suggested: str
    quality: float


def find_label_issues_by_item(
    items: Sequence[str],
    labels: Sequence[str],
    pred_probs: np.ndarray,
    classes: Sequence[str],
    filter_by: FilterBy = "prune_by_noise_rate",
) -> list[LabelIssue]:
    """`flag_label_issues` over named items and string labels, worst label first.

    Args:
        items: item ids, one per row of `pred_probs`.
        labels: the current (consensus) label of each item.
        pred_probs: items x classes out-of-sample probabilities.
        classes: the label of each column of `pred_probs`.

    Raises:
        ValueError: lengths disagree, or a label is not in `classes`.
    """
    if not len(items) == len(labels) == len(pred_probs):
        raise ValueError("items, labels and pred_probs must have the same length")
    index = {c: k for k, c in enumerate(classes)}
    if len(index) != len(classes):
        raise ValueError("classes must be distinct")
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ValueError(f"labels not in classes: {unknown}")
    y = np.fromiter((index[v] for v in labels), dtype=np.int64, count=len(labels))
    mask = flag_label_issues(y, pred_probs, filter_by=filter_by)
    quality = label_quality(y, pred_probs)
    suggested = np.argmax(np.asarray(pred_probs), axis=1)
    issues = [
        LabelIssue(items[i], labels[i], classes[suggested[i]], float(quality[i]))
        for i in np.flatnonzero(mask)
    ]
    issues.sort(key=lambda issue: (issue.quality, issue.item))
    return issues


def _check(labels: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    pred_probs = np.asarray(pred_probs, dtype=float)
    if pred_probs.ndim != 2 or pred_probs.shape[1] < 2:
        raise ValueError(f"pred_probs must be items x classes (>= 2), got {pred_probs.shape}")
    if labels.ndim != 1 or labels.shape[0] != pred_probs.shape[0]:
        raise ValueError(f"labels must be 1-D with {pred_probs.shape[0]} entries")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError("labels must be integer class indices")
    if labels.size and (labels.min() < 0 or labels.max() >= pred_probs.shape[1]):
        raise ValueError(f"labels must be in [0, {pred_probs.shape[1]})")
    if not np.isfinite(pred_probs).all() or (pred_probs < 0).any() or (pred_probs > 1).any():
        raise ValueError("pred_probs must be finite and in [0, 1]")
    if pred_probs.size and not np.allclose(pred_probs.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("pred_probs rows must sum to 1")
    return labels.astype(np.int64, copy=False), pred_probs
