"""The held-out split of link prediction is a function of the node pair: both directions on
one side, the asked fractions, stable across calls; the metrics rank true edges first."""

from __future__ import annotations

import numpy as np
import torch

from atlas_graph.training.link_split import TEST, TRAIN, VAL, EdgeSplit, link_metrics


def test_a_pair_and_its_reverse_share_a_side_at_the_asked_fractions() -> None:
    rng = np.random.default_rng(0)
    src, dst = rng.integers(0, 10**9, 200_000), rng.integers(0, 10**9, 200_000)
    split = EdgeSplit(val_fraction=0.05, test_fraction=0.1, seed=3)
    side = split.part(src, dst)
    assert np.array_equal(side, split.part(dst, src))
    assert np.array_equal(side, EdgeSplit(0.05, 0.1, 3).part(src, dst))
    assert abs((side == TEST).mean() - 0.1) < 0.005 and abs((side == VAL).mean() - 0.05) < 0.005
    assert not np.array_equal(side, EdgeSplit(0.05, 0.1, 4).part(src, dst))  # the seed counts
    assert np.array_equal(split.held_out(src, dst), side != TRAIN)


def test_metrics_of_perfect_and_of_random_embeddings() -> None:
    # Nodes 2k and 2k+1 share a one-hot direction; edges join them: a perfect scorer.
    n = 200
    emb = torch.zeros(n, n // 2)
    emb[torch.arange(n), torch.arange(n) // 2] = 1.0
    src = np.arange(0, n, 2)
    perfect = link_metrics(emb, src, src + 1, negatives=20, seed=0)
    # (a drawn tail that is the head or its partner ties: raw metrics count it)
    assert perfect["auc"] > 0.98 and perfect["mrr"] > 0.99
    noise = link_metrics(torch.randn(n, 8), src, src + 1, negatives=20, seed=0)
    assert 0.3 < noise["auc"] < 0.7 and noise["mrr"] < 0.5
