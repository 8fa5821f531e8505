"""Active learning: which items people should label next.

Uncertainty sampling over the latest predictions (least confidence, margin, entropy), and
greedy k-center (core-set, Sener & Savarese 2018) for a diverse batch over embeddings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

Strategy = Literal["least_confidence", "margin", "entropy"]


def uncertainty(probs: np.ndarray, strategy: Strategy) -> float:
    """How uncertain one prediction is, in [0, 1]; higher = more informative.

    least_confidence: 1 - max p. margin: 1 - (p1 - p2), the two highest. entropy: Shannon
    entropy divided by log(n_classes).

    Raises:
        ValueError: not a probability vector over 2+ classes (sum within 1e-3 of 1).
    """
    p = np.asarray(probs, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"probabilities must be a 1-D vector, got shape {p.shape}")
    return float(uncertainties(p[None, :], strategy)[0])


def uncertainties(probs: np.ndarray, strategy: Strategy) -> np.ndarray:
    """`uncertainty` of each row of an items x classes matrix."""
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probabilities must be over 2+ classes, got shape {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any() or (np.abs(p.sum(axis=1) - 1.0) > 1e-3).any():
        raise ValueError("probabilities must be >= 0 and sum to 1")
    if strategy == "least_confidence":
        return 1.0 - p.max(axis=1)
    if strategy == "margin":
        top2 = np.partition(p, -2, axis=1)[:, -2:]
        return 1.0 - (top2[:, 1] - top2[:, 0])
    if strategy == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * np.log(p), 0.0)
        return -terms.sum(axis=1) / math.log(p.shape[1])
    raise ValueError(f"unknown strategy {strategy!r}")


def order(
    items_probs: Mapping[str, np.ndarray | None],
    strategy: Strategy,
    unscored_every: int = 2,
) -> list[str]:
    """Queue order, most informative first, without starving items that have no prediction.

    Scored items are sorted by `uncertainty` (descending; ties keep the mapping's order).
    Items whose prediction is None keep the mapping's order (pass them oldest first) and
    are interleaved: every `unscored_every`-th position goes to the next unscored item
    while both kinds remain, starting with a scored one. With the default 2 the two kinds
    alternate, so a new item waits at most one scored item per unscored item ahead of it,
    however many predictions exist. When one kind runs out the other follows in its order.

    Raises:
        ValueError: unscored_every < 2, unknown strategy, or an invalid probability vector.
    """
    if unscored_every < 2:
        raise ValueError(f"unscored_every must be >= 2, got {unscored_every}")
    if strategy not in ("least_confidence", "margin", "entropy"):
        raise ValueError(f"unknown strategy {strategy!r}")
    unscored = [item for item, probs in items_probs.items() if probs is None]
    scored = [
        (item, np.asarray(p, dtype=float)) for item, p in items_probs.items() if p is not None
    ]
    # one vectorised pass per vector length (a project's items normally share one)
    values = np.empty(len(scored))
    by_length: dict[tuple[int, ...], list[int]] = {}
    for pos, (_, p) in enumerate(scored):
        by_length.setdefault(p.shape, []).append(pos)
    for shape, positions in by_length.items():
        if len(shape) != 1:
            raise ValueError(f"probabilities must be 1-D vectors, got shape {shape}")
        values[positions] = uncertainties(np.stack([scored[i][1] for i in positions]), strategy)
    ranked = [scored[i][0] for i in np.argsort(-values, kind="stable")]
    out: list[str] = []
    i = j = 0
    while i < len(ranked) and j < len(unscored):
        if (len(out) + 1) % unscored_every == 0:
            out.append(unscored[j])
            j += 1
        else:
            out.append(ranked[i])
            i += 1
    out.extend(ranked[i:])
    out.extend(unscored[j:])
    return out


def k_center(
    embeddings: np.ndarray,
    k: int,
    seed: int = 0,
    already_selected: Sequence[int] = (),
) -> list[int]:
    """Greedy k-center: k row indices that cover the embedding space (Euclidean).

    Each pick is the point farthest from everything picked so far (and from
    `already_selected`, e.g. the items labeled already, which are never returned). The
    first pick, when nothing is selected yet, is random with `seed`; ties go to the
    lowest index. Returns min(k, available) indices in pick order.

    Raises:
        ValueError: embeddings not 2-D or not finite, k < 0, or a selected index out of range.
    """
    x = np.asarray(embeddings, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be items x dims, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings must be finite")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    n = x.shape[0]
    chosen = list(dict.fromkeys(int(i) for i in already_selected))
    if any(not 0 <= i < n for i in chosen):
        raise ValueError(f"already_selected indices must be in [0, {n})")
    budget = min(k, n - len(chosen))
    if budget <= 0:
        return []
    nearest = np.full(n, np.inf)
    for c in chosen:
        nearest = np.minimum(nearest, _sq_dist(x, c))
    taken = np.zeros(n, dtype=bool)
    taken[chosen] = True
    picks: list[int] = []
    if not chosen:
        first = int(np.random.default_rng(seed).integers(n))
        picks.append(first)
        taken[first] = True
        nearest = _sq_dist(x, first)
    while len(picks) < budget:
        candidate = np.where(taken, -1.0, nearest)
        pick = int(np.argmax(candidate))
        picks.append(pick)
        taken[pick] = True
        nearest = np.minimum(nearest, _sq_dist(x, pick))
    return picks


def _sq_dist(x: np.ndarray, i: int) -> np.ndarray:
    d = x - x[i]
    return np.einsum("ij,ij->i", d, d)
