"""The held-out split of link prediction is a function of the node pair: both directions on
one side, the asked fractions, stable across calls; the metrics rank true edges first."""

from __future__ import annotations

import numpy as np
import torch

from atlas_graph.training.link_split import (
    TEST,
    TRAIN,
    VAL,
    EdgeSplit,
    excluding_sampler,
    guarded_edge_types,
    link_metrics,
)


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
    # (a drawn tail that is the head or its partner ties, about one edge in five: raw metrics
    # count each tie as half a negative above)
    assert perfect["auc"] > 0.98 and perfect["mrr"] > 0.85
    noise = link_metrics(torch.randn(n, 8), src, src + 1, negatives=20, seed=0)
    assert 0.3 < noise["auc"] < 0.7 and noise["mrr"] < 0.5
    # A collapsed encoder (one score for every pair) ranks the true tail mid-field, not first.
    tied = link_metrics(torch.ones(n, 8), src, src + 1, negatives=20, seed=0)
    assert tied["auc"] == 0.5 and abs(tied["mrr"] - 1 / 11) < 1e-12


def _typed_graph() -> tuple[object, np.ndarray, np.ndarray]:
    import dgl

    rng = np.random.default_rng(1)
    users, merchants = 300, 40
    src, dst = rng.integers(0, users, 2000), rng.integers(0, merchants, 2000)
    g = dgl.heterograph(
        {
            ("user", "pays", "merchant"): (torch.from_numpy(src), torch.from_numpy(dst)),
            ("merchant", "rev_pays", "user"): (torch.from_numpy(dst), torch.from_numpy(src)),
            # Same endpoints as some held-out payments, another relation: never dropped.
            ("merchant", "visited_by", "user"): (torch.from_numpy(dst), torch.from_numpy(src)),
        },
        {"user": users, "merchant": merchants},
    )
    return g, src, dst


def test_guarded_relations_are_the_target_and_its_reverse() -> None:
    pays = ("user", "pays", "merchant")
    every = [pays, ("merchant", "rev_pays", "user"), ("user", "uses", "device")]
    assert guarded_edge_types(pays, every) == [pays, ("merchant", "rev_pays", "user")]
    assert guarded_edge_types(pays, [pays]) == [pays]
    refers = ("user", "refers", "user")
    assert guarded_edge_types(refers, [refers, ("user", "rev_refers", "user")]) == [
        refers,
        ("user", "rev_refers", "user"),
    ]


def test_typed_sampler_drops_held_out_pairs_of_the_target_edge_type_both_ways() -> None:
    g, src, dst = _typed_graph()
    pays = ("user", "pays", "merchant")
    split = EdgeSplit(val_fraction=0.1, test_fraction=0.2, seed=7)
    held = split.held_out(src, dst)
    assert 0.2 < held.mean() < 0.4
    sampler = excluding_sampler(
        [-1], split, pays, guarded_edge_types(pays, [tuple(c) for c in g.canonical_etypes])
    )
    seeds = {"user": torch.arange(300), "merchant": torch.arange(40)}
    _, _, (block,) = sampler.sample_blocks(g, seeds)
    for etype in (pays, ("merchant", "rev_pays", "user")):
        eids = block.edges[etype].data[dgl_eid()].numpy()
        # every kept edge is a training pair, and every training pair is kept
        assert not held[eids].any()
        assert len(eids) == int((~held).sum())
    kept = block.edges[("merchant", "visited_by", "user")].data[dgl_eid()]
    assert len(kept) == 2000  # another relation between the same pairs keeps every edge

    # A training batch's own positive edges are dropped too (exclude="self"), both ways.
    batch = torch.from_numpy(np.nonzero(~held)[0][:50])
    _, _, (block,) = sampler.sample_blocks(g, seeds, exclude_eids={pays: batch})
    batch_pairs = {(int(s), int(d)) for s, d in zip(src[batch], dst[batch])}
    for etype, flip in ((pays, False), (("merchant", "rev_pays", "user"), True)):
        eids = block.edges[etype].data[dgl_eid()].numpy()
        pairs = {(int(s), int(d)) for s, d in zip(src[eids], dst[eids])}
        assert not pairs & batch_pairs, flip


def test_typed_split_and_metrics_use_the_destination_type() -> None:
    # Users 0..99 pay merchant u % 10; merchants embed as the one-hot of their id.
    users = np.arange(100)
    merchants = users % 10
    heads = torch.zeros(100, 10)
    heads[torch.arange(100), torch.from_numpy(merchants)] = 1.0
    tails = torch.eye(10)
    scored = link_metrics(heads, users, merchants, negatives=5, seed=0, tail_emb=tails)
    assert scored["auc"] > 0.85  # (a negative drawn equal to the true merchant ties)
    rng = np.random.default_rng(0)
    noise = link_metrics(
        torch.randn(100, 4),
        users,
        merchants,
        5,
        0,
        torch.from_numpy(rng.normal(size=(10, 4))).float(),
    )
    assert 0.3 < noise["auc"] < 0.7


def dgl_eid() -> str:
    import dgl

    return str(dgl.EID)
