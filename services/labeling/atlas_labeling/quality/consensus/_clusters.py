"""Grouping regions drawn by several annotators into one cluster per object."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def cluster_across_annotators(
    owners: Sequence[str], similarity: np.ndarray, threshold: float
) -> list[list[int]]:
    """Greedy complete-linkage clustering with at most one region per annotator per cluster.

    Pairs are considered from the most to the least similar (ties by index); two clusters
    join when they share no annotator and every cross pair reaches `threshold`. Complete
    linkage keeps a chain of overlapping boxes (A~B, B~C, A!~C) from becoming one object.

    Args:
        owners: annotator of each region.
        similarity: symmetric regions x regions matrix (IoU, Jaccard, ...).
        threshold: the minimum similarity inside a cluster.

    Returns:
        Clusters as sorted index lists (singletons included), ordered by their first index.
    """
    n = len(owners)
    if similarity.shape != (n, n):
        raise ValueError(f"similarity must be {n}x{n}, got {similarity.shape}")
    cluster_of = list(range(n))
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    annotators: dict[int, set[str]] = {i: {owners[i]} for i in range(n)}
    rows, cols = np.triu_indices(n, k=1)
    sims = similarity[rows, cols]
    _, owner_ids = np.unique(np.asarray(owners, dtype=object), return_inverse=True)
    keep = (sims >= threshold) & (owner_ids[rows] != owner_ids[cols])
    rows, cols, sims = rows[keep], cols[keep], sims[keep]
    for p in np.lexsort((cols, rows, -sims)):
        a, b = cluster_of[rows[p]], cluster_of[cols[p]]
        if a == b or annotators[a] & annotators[b]:
            continue
        if similarity[np.ix_(members[a], members[b])].min() < threshold:
            continue
        a, b = min(a, b), max(a, b)
        for i in members[b]:
            cluster_of[i] = a
        members[a] = sorted(members[a] + members.pop(b))
        annotators[a] |= annotators.pop(b)
    return [members[k] for k in sorted(members)]


def medoid(similarity: np.ndarray, order_key: Sequence[object]) -> int:
    """Index of the member most similar to the others (sum of similarities); ties by key."""
    totals = similarity.sum(axis=1)
    return min(range(len(totals)), key=lambda i: (-totals[i], order_key[i]))


def mean_pairwise(similarity: np.ndarray) -> float:
    """Mean off-diagonal similarity; 1.0 for a single member."""
    n = similarity.shape[0]
    if n < 2:
        return 1.0
    return float((similarity.sum() - np.trace(similarity)) / (n * (n - 1)))
