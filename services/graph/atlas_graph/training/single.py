"""The same model trained in one process with plain DGL (no partitions, no servers): the
baseline ``bench/graph.py`` compares the distributed job against."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from atlas_graph.graph_data import GraphData
from atlas_graph.hetero import HeteroGraphData
from atlas_graph.training.models import build_model


def train_single(
    graph: GraphData,
    model_cfg: dict[str, Any],
    fan_outs: list[int],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int = 0,
) -> dict[str, float]:
    """Returns test/val/train accuracy and the mean epoch time."""
    import dgl

    torch.manual_seed(seed)
    g = graph.to_dgl()
    model = build_model(model_cfg)
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    sampler = dgl.dataloading.NeighborSampler(fan_outs)
    train_nid = torch.nonzero(g.ndata["train_mask"]).squeeze(1)
    loader = dgl.dataloading.DataLoader(g, train_nid, sampler, batch_size=batch_size, shuffle=True)
    times = []
    for _ in range(epochs):
        model.train()
        started = time.monotonic()
        for input_nodes, seeds, blocks in loader:
            loss = F.cross_entropy(
                model(blocks, g.ndata["feat"][input_nodes]), g.ndata["label"][seeds]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.monotonic() - started)
    model.eval()
    pred = torch.empty(g.num_nodes(), dtype=torch.int64)
    with torch.no_grad():
        for input_nodes, seeds, blocks in dgl.dataloading.DataLoader(
            g, torch.arange(g.num_nodes()), sampler, batch_size=2048
        ):
            pred[seeds] = model(blocks, g.ndata["feat"][input_nodes]).argmax(1)
    out = {"epoch_s": sum(times) / max(1, len(times))}
    for mask in ("train_mask", "val_mask", "test_mask"):
        m = g.ndata[mask]
        out[mask.replace("mask", "accuracy")] = float(
            (pred[m] == g.ndata["label"][m]).float().mean()
        )
    return out


def train_single_link(
    graph: GraphData,
    model_cfg: dict[str, Any],
    fan_outs: list[int],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    link: dict[str, Any],
    split_seed: int = 0,
    seed: int = 0,
) -> dict[str, float]:
    """Link prediction in one process: the same split (by node ids, so give the graph in
    the partitioning's new-id order to compare with a distributed job), sampler, negatives
    and metrics as :mod:`~atlas_graph.training.link_loop`. Returns val/test AUC and MRR."""
    import dgl

    from atlas_graph.training.link_loop import edge_scores, link_loss
    from atlas_graph.training.link_split import (
        TEST,
        TRAIN,
        VAL,
        EdgeSplit,
        excluding_sampler,
        link_metrics,
    )

    torch.manual_seed(seed)
    g = graph.to_dgl()
    split = EdgeSplit(link["val_fraction"], link["test_fraction"], split_seed)
    side = split.part(graph.src, graph.dst)
    model = build_model(model_cfg)
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    sampler = dgl.dataloading.as_edge_prediction_sampler(
        excluding_sampler(fan_outs, split),
        exclude="self",
        negative_sampler=dgl.dataloading.negative_sampler.Uniform(link["negatives"]),
    )
    train_eids = torch.from_numpy(np.nonzero(side == TRAIN)[0])
    loader = dgl.dataloading.DataLoader(g, train_eids, sampler, batch_size=batch_size, shuffle=True)
    for _ in range(epochs):
        model.train()
        for input_nodes, pos_graph, neg_graph, blocks in loader:
            h = model(blocks, g.ndata["feat"][input_nodes])
            loss = link_loss(edge_scores(pos_graph, h), edge_scores(neg_graph, h))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    emb = torch.empty(g.num_nodes(), model_cfg["classes"])
    full = excluding_sampler([-1] * len(fan_outs), split)
    with torch.no_grad():
        for input_nodes, seeds, blocks in dgl.dataloading.DataLoader(
            g, torch.arange(g.num_nodes()), full, batch_size=2048
        ):
            emb[seeds] = model(blocks, g.ndata["feat"][input_nodes])
    out = {}
    for name, kind in (("val", VAL), ("test", TEST)):
        m = side == kind
        scored = link_metrics(emb, graph.src[m], graph.dst[m], link["eval_negatives"], split_seed)
        out.update({f"{name}_{k}": v for k, v in scored.items()})
    return out


def train_single_hetero(
    graph: HeteroGraphData,
    model_cfg: dict[str, Any],
    fan_outs: list[int],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int = 0,
) -> dict[str, float]:
    """The heterogeneous model (``model_cfg`` with ``hetero``, ``target``) trained in one
    process on the in-memory heterograph: same sampler, batch size and full-neighbourhood
    evaluation as the distributed job. Returns accuracies and the mean epoch time."""
    import dgl

    torch.manual_seed(seed)
    g = graph.to_dgl()
    target = model_cfg["target"]
    data = g.nodes[target].data
    model = build_model(model_cfg)
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    train_nid = {target: torch.nonzero(data["train_mask"]).squeeze(1)}
    loader = dgl.dataloading.DataLoader(
        g, train_nid, dgl.dataloading.NeighborSampler(fan_outs), batch_size=batch_size, shuffle=True
    )

    def features(input_nodes: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {t: g.nodes[t].data["feat"][ids] for t, ids in input_nodes.items()}

    times = []
    for _ in range(epochs):
        model.train()
        started = time.monotonic()
        for input_nodes, seeds, blocks in loader:
            loss = F.cross_entropy(
                model(blocks, features(input_nodes)), data["label"][seeds[target]]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.monotonic() - started)
    model.eval()
    pred = torch.empty(g.num_nodes(target), dtype=torch.int64)
    full = dgl.dataloading.NeighborSampler([-1] * len(fan_outs))
    with torch.no_grad():
        for input_nodes, seeds, blocks in dgl.dataloading.DataLoader(
            g, {target: torch.arange(g.num_nodes(target))}, full, batch_size=2048
        ):
            pred[seeds[target]] = model(blocks, features(input_nodes)).argmax(1)
    out = {"epoch_s": sum(times) / max(1, len(times))}
    for mask in ("train_mask", "val_mask", "test_mask"):
        m = data[mask]
        out[mask.replace("mask", "accuracy")] = float((pred[m] == data["label"][m]).float().mean())
    return out


def train_single_hetero_link(
    graph: HeteroGraphData,
    model_cfg: dict[str, Any],
    fan_outs: list[int],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    link: dict[str, Any],
    split_seed: int = 0,
    seed: int = 0,
) -> dict[str, float]:
    """Link prediction of ``link["target_edge_type"]`` on the in-memory heterograph: the
    same split (per-type ids: give the graph in the partitioning's order to compare with a
    distributed job), excluding sampler, negatives of the dst type and metrics as
    :mod:`~atlas_graph.training.link_loop`. Returns val/test AUC and MRR."""
    import dgl

    from atlas_graph.training.link_loop import LinkEdges, clip_typed, link_loss, typed_warmup
    from atlas_graph.training.link_split import TEST, TRAIN, VAL, EdgeSplit, link_metrics

    torch.manual_seed(seed)
    g = graph.to_dgl()
    edges = LinkEdges(g, {"link": link})
    assert edges.etype is not None  # a typed graph scores one edge type
    src_t, _, dst_t = edges.etype
    split = EdgeSplit(link["val_fraction"], link["test_fraction"], split_seed)
    src, dst = edges.find(torch.arange(edges.num_edges()))
    side = split.part(src, dst)
    model = build_model(model_cfg)
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    warmup = typed_warmup(opt)
    sampler = dgl.dataloading.as_edge_prediction_sampler(
        edges.sampler(fan_outs, split),
        exclude="self",
        negative_sampler=dgl.dataloading.negative_sampler.Uniform(link["negatives"]),
    )
    train_eids = edges.seeds(torch.from_numpy(np.nonzero(side == TRAIN)[0]))
    loader = dgl.dataloading.DataLoader(g, train_eids, sampler, batch_size=batch_size, shuffle=True)
    for _ in range(epochs):
        model.train()
        for input_nodes, pos_graph, neg_graph, blocks in loader:
            h = model(blocks, edges.features(input_nodes))
            loss = link_loss(edges.scores(pos_graph, h), edges.scores(neg_graph, h))
            opt.zero_grad()
            loss.backward()
            clip_typed(model)
            opt.step()
            warmup.step()
    model.eval()
    emb = {t: torch.empty(g.num_nodes(t), model_cfg["classes"]) for t in (src_t, dst_t)}
    full = edges.sampler([-1] * len(fan_outs), split)
    with torch.no_grad():
        for t in emb:
            for input_nodes, seeds, blocks in dgl.dataloading.DataLoader(
                g, {t: torch.arange(g.num_nodes(t))}, full, batch_size=2048
            ):
                emb[t][seeds[t]] = model(blocks, edges.features(input_nodes))[t]
    out = {}
    for name, kind in (("val", VAL), ("test", TEST)):
        m = side == kind
        scored = link_metrics(
            emb[src_t], src[m], dst[m], link["eval_negatives"], split_seed, emb[dst_t]
        )
        out.update({f"{name}_{k}": v for k, v in scored.items()})
    return out
