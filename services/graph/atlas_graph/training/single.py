"""The same model trained in one process with plain DGL (no partitions, no servers): the
baseline ``bench/graph.py`` compares the distributed job against."""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

from atlas_graph.graph_data import GraphData
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
