"""Confidence-threshold auto-labeling, as SageMaker Ground Truth does it.

On items that humans labeled, find the lowest model score at which the model's labels are
accurate enough; unlabeled items scoring at or above it may be labeled by the model
(source = model), the rest go to people.
"""

from __future__ import annotations

import numpy as np


def threshold_for_accuracy(
    scores: np.ndarray,
    correct: np.ndarray,
    target: float,
    min_count: int = 30,
    confidence: float | None = None,
) -> float | None:
    """The lowest score threshold t at which items scoring >= t reach `target` accuracy.

    Args:
        scores: the model's score for each human-labeled item (e.g. its top probability).
        correct: whether the model's label matched the human label, per item.
        target: required accuracy in (0, 1].
        min_count: at least this many human-labeled items must score >= t, so a handful of
            lucky high scores cannot open auto-labeling.
        confidence: if given (e.g. 0.95), the one-sided Wilson lower bound of the accuracy
            at that confidence must reach `target`, not just the observed accuracy.

    Returns:
        t, one of the observed scores (items with equal scores are in or out together), or
        None when no threshold meets the target with `min_count` items.

    Raises:
        ValueError: shapes differ, non-finite scores, target/min_count/confidence out of range.
    """
    scores = np.asarray(scores, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    if scores.ndim != 1 or scores.shape != correct.shape:
        raise ValueError("scores and correct must be 1-D of the same length")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    if not 0 < target <= 1:
        raise ValueError(f"target must be in (0, 1], got {target}")
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    if confidence is not None and not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if scores.size == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    s, c = scores[order], correct[order]
    n_above = np.arange(1, s.size + 1)
    right_above = np.cumsum(c)
    # a threshold is only a boundary after the last item with that score
    last_of_tie = np.append(s[1:] != s[:-1], True)
    accuracy = right_above / n_above
    if confidence is not None:
        accuracy = _wilson_lower(right_above, n_above, confidence)
    # float tolerance: 19/20 must count as reaching 0.95
    ok = last_of_tie & (n_above >= min_count) & (accuracy >= target - 1e-12)
    if not ok.any():
        return None
    return float(s[np.flatnonzero(ok)[-1]])


def _wilson_lower(successes: np.ndarray, n: np.ndarray, confidence: float) -> np.ndarray:
    from scipy.stats import norm

    z = float(norm.ppf(confidence))
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)
