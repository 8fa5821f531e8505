"""Held-out edges for link prediction, decided by their endpoints, and the neighbour sampler
that keeps them (and a batch's own positive edges) out of message passing.

A node pair's split (train / val / test) is a hash of its two node ids, the smaller first,
and a seed: both directions of an undirected pair fall on the same side, and any process can
tell whether an edge is held out from the edge itself, so no per-edge table exists anywhere
(the graph may have billions of edges).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

TRAIN, VAL, TEST = 0, 1, 2
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: Any) -> Any:
    """splitmix64's finaliser: every input bit moves every output bit (wrapping uint64)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def pair_hash(src: Any, dst: Any, seed: int) -> np.ndarray:
    """A 64-bit hash of each unordered pair {src, dst} (new node ids) under ``seed``."""
    s = np.asarray(src, dtype=np.int64)
    d = np.asarray(dst, dtype=np.int64)
    lo = np.minimum(s, d).astype(np.uint64)
    hi = np.maximum(s, d).astype(np.uint64)
    with np.errstate(over="ignore"):
        return _mix(_mix(lo ^ _mix(np.uint64(seed & (2**64 - 1)))) ^ hi)


@dataclass(frozen=True)
class EdgeSplit:
    """Which side each pair is on: a fraction ``test_fraction`` of pairs is test,
    ``val_fraction`` validation, the rest train."""

    val_fraction: float
    test_fraction: float
    seed: int

    def part(self, src: Any, dst: Any) -> np.ndarray:
        unit = (pair_hash(src, dst, self.seed) >> np.uint64(11)).astype(np.float64) / 2.0**53
        out = np.full(len(unit), TRAIN, dtype=np.int8)
        out[unit < self.test_fraction + self.val_fraction] = VAL
        out[unit < self.test_fraction] = TEST
        return out

    def held_out(self, src: Any, dst: Any) -> np.ndarray:
        return self.part(src, dst) != TRAIN


def reverse_edge_type(etype: tuple[str, str, str]) -> tuple[str, str, str]:
    """The relation ``edge_policy.add_reverse_edges`` makes for ``etype`` (dst:rev_rel:src)."""
    src, rel, dst = etype
    return (dst, f"rev_{rel}", src)


def guarded_edge_types(
    target: tuple[str, str, str], canonical: list[tuple[str, str, str]]
) -> list[tuple[str, str, str]]:
    """The relations whose edges between held-out pairs must carry no message: the target
    edge type and, when the graph has it, its reverse (the same pairs the other way)."""
    reverse = reverse_edge_type(target)
    return [target] + ([reverse] if reverse in canonical and reverse != target else [])


def excluding_sampler(
    fan_outs: list[int],
    split: EdgeSplit,
    target: tuple[str, str, str] | None = None,
    guarded: list[tuple[str, str, str]] | None = None,
) -> Any:
    """A ``dgl.dataloading.NeighborSampler`` that drops, from every sampled frontier, the
    held-out edges and (given ``exclude_eids``: a training batch's positive edges) every
    edge between the same pairs as those, in either direction.

    On a heterogeneous graph the split is of the ``target`` edge type's pairs (per-type ids),
    and the edges dropped are those of the ``guarded`` relations (:func:`guarded_edge_types`)
    between such pairs; other relations keep every edge.

    Why not DGL's own ``exclude=``: ``DistGraph.sample_neighbors`` ignores ``exclude_edges``
    in DGL 2.1, so the exclusion is applied to each frontier here. A node next to an excluded
    edge gets one neighbour fewer than its fan-out; a fan-out of -1 sees exactly the rest.
    """
    import dgl

    def batch_hashes(g: Any, exclude_eids: Any) -> np.ndarray | None:
        if exclude_eids is None:
            return None
        if target is not None:  # {etype: eids}: only the target's are positives
            eids = {g.to_canonical_etype(k): v for k, v in exclude_eids.items()}.get(target)
            if eids is None or not len(eids):
                return None
            src, dst = g.find_edges(eids, etype=target)
        elif len(exclude_eids):
            src, dst = g.find_edges(exclude_eids)
        else:
            return None
        return pair_hash(src.numpy(), dst.numpy(), split.seed)

    def dropped(src: np.ndarray, dst: np.ndarray, batch: np.ndarray | None) -> np.ndarray:
        drop = split.held_out(src, dst)
        if batch is not None:
            drop |= np.isin(pair_hash(src, dst, split.seed), batch)
        return drop

    # The relations to clean: the guarded ones, or the one relation of a homogeneous graph.
    relations: list[tuple[str, str, str] | None] = list(guarded or []) if target else [None]

    class ExcludingSampler(dgl.dataloading.NeighborSampler):
        def sample_blocks(
            self, g: Any, seed_nodes: Any, exclude_eids: Any = None
        ) -> tuple[Any, Any, list[Any]]:
            batch = batch_hashes(g, exclude_eids)
            output_nodes = seed_nodes
            blocks: list[Any] = []
            for fanout in reversed(self.fanouts):
                frontier = g.sample_neighbors(
                    seed_nodes, fanout, edge_dir=self.edge_dir, replace=self.replace
                )
                for etype in relations:
                    # DGL leaves a relation that sampled no edge out of the frontier.
                    if etype is not None and etype not in frontier.canonical_etypes:
                        continue
                    src, dst = (t.numpy() for t in frontier.edges(etype=etype))
                    drop = dropped(src, dst, batch)
                    if drop.any():
                        frontier = dgl.remove_edges(
                            frontier, torch.from_numpy(np.nonzero(drop)[0]), etype=etype
                        )
                block = dgl.to_block(frontier, seed_nodes)
                block.edata[dgl.EID] = frontier.edata[dgl.EID]
                seed_nodes = block.srcdata[dgl.NID]
                blocks.insert(0, block)
            return seed_nodes, output_nodes, blocks

    return ExcludingSampler(fan_outs)


def link_metrics(
    emb: torch.Tensor,
    src: np.ndarray,
    dst: np.ndarray,
    negatives: int,
    seed: int,
    tail_emb: torch.Tensor | None = None,
) -> dict[str, float]:
    """ROC AUC and MRR of held-out edges ``src -> dst`` scored by the embeddings' dot
    product, against ``negatives`` uniformly drawn tails per edge (raw: a drawn tail that
    happens to be an edge still counts as a negative). AUC over every positive and negative
    score; MRR = mean of 1 / (1 + negatives scoring above the true tail + half of those tying
    with it), so a scorer that gives every pair the same score gets no credit for it.
    ``tail_emb``: the destination type's embeddings when it differs from the source's
    (heterogeneous graphs); negatives are drawn from its rows."""
    tails_of = emb if tail_emb is None else tail_emb
    from sklearn.metrics import roc_auc_score

    # The edges in one order (by src, then dst) whoever gathered them, so each edge draws the
    # same negatives at any trainer count.
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    rng = np.random.default_rng(seed)
    pos_scores, neg_scores = [], []
    chunk = max(1, (1 << 22) // max(1, negatives * emb.shape[1]))  # bound the gathered rows
    for start in range(0, len(src), chunk):
        s = torch.from_numpy(src[start : start + chunk])
        d = torch.from_numpy(dst[start : start + chunk])
        tails = torch.from_numpy(rng.integers(0, tails_of.shape[0], (len(s), negatives)))
        head = emb[s]
        pos_scores.append((head * tails_of[d]).sum(1))
        neg_scores.append(torch.einsum("nd,nkd->nk", head, tails_of[tails]))
    pos = torch.cat(pos_scores).numpy()
    neg = torch.cat(neg_scores).numpy()
    labels = np.concatenate([np.ones(len(pos)), np.zeros(neg.size)])
    auc = float(roc_auc_score(labels, np.concatenate([pos, neg.reshape(-1)])))
    above = (neg > pos[:, None]).sum(1) + 0.5 * (neg == pos[:, None]).sum(1)
    mrr = float(np.mean(1.0 / (1.0 + above)))
    return {"auc": auc, "mrr": mrr}
