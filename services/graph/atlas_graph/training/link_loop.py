"""Link prediction on a DistGraph, the loop each trainer runs for task "link_prediction".

Edges are scored by the dot product of their endpoints' embeddings (the GNN's output layer,
``hidden`` wide). Training: DGL's distributed edge loader over this trainer's training edges,
uniform negative tails (``dgl.dataloading.negative_sampler.Uniform``), binary cross-entropy,
DDP; a batch's own edges and every held-out edge are kept out of message passing
(:mod:`~atlas_graph.training.link_split`). Evaluation: every node embedded over its full
neighbourhood minus the held-out edges, then ROC AUC and MRR of the validation and test
edges against uniform negatives, computed on rank 0.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from atlas_graph.training.link_split import TEST, TRAIN, VAL, EdgeSplit, excluding_sampler
from atlas_graph.training.loop import Emit, rank_batch
from atlas_graph.training.models import build_model

FIND_CHUNK = 1 << 20


def edge_split(cfg: dict[str, Any]) -> EdgeSplit:
    link = cfg["link"]
    return EdgeSplit(link["val_fraction"], link["test_fraction"], int(cfg["split_seed"]))


def _my_edges(graph: Any, split: EdgeSplit, rank: int, world: int) -> dict[int, np.ndarray]:
    """This rank's contiguous share of the edge ids, by side: train edge ids, and the
    (src, dst) pairs of its validation and test edges as a (2, n) array."""
    total = graph.num_edges()
    share = -(-total // world)
    train: list[np.ndarray] = []
    held: dict[int, list[np.ndarray]] = {VAL: [], TEST: []}
    for start in range(rank * share, min(total, (rank + 1) * share), FIND_CHUNK):
        eids = torch.arange(start, min(start + FIND_CHUNK, (rank + 1) * share, total))
        src, dst = (t.numpy() for t in graph.find_edges(eids))
        side = split.part(src, dst)
        train.append(eids.numpy()[side == TRAIN])
        for kind in held:
            held[kind].append(np.stack([src[side == kind], dst[side == kind]]))
    empty = np.empty((2, 0), np.int64)
    return {
        TRAIN: np.concatenate(train) if train else np.empty(0, np.int64),
        **{k: np.concatenate(v, 1) if v else empty for k, v in held.items()},
    }


def _equal_share(eids: np.ndarray) -> torch.Tensor:
    """Pad every rank's training edges (wrapping around its own) to the largest count, so
    every rank runs the same number of batches and DDP's all-reduces pair up."""
    count = torch.tensor([len(eids)], dtype=torch.int64)
    dist.all_reduce(count, op=dist.ReduceOp.MAX)
    if not len(eids):
        raise ValueError("a trainer's share of the edges holds no training edge")
    return torch.from_numpy(eids[np.arange(int(count)) % len(eids)])


def edge_scores(pair_graph: Any, h: torch.Tensor) -> torch.Tensor:
    import dgl.function as fn

    with pair_graph.local_scope():
        pair_graph.ndata["h"] = h
        pair_graph.apply_edges(fn.u_dot_v("h", "h", "score"))
        return pair_graph.edata["score"].squeeze(1)


def train_link_prediction(cfg: dict[str, Any], graph: Any, emit: Emit) -> None:
    import dgl

    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(cfg["seed"] + rank)
    split = edge_split(cfg)
    mine = _my_edges(graph, split, rank, world)
    model = build_model(cfg["model"])
    opt = torch.optim.Adam(model.parameters(), lr=cfg["learning_rate"])
    start_epoch = 0
    if cfg.get("resume_path"):
        state = torch.load(cfg["resume_path"], map_location="cpu")
        model.load_state_dict(state["model"])
        if "optimizer" in state:
            opt.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
    if start_epoch < cfg["epochs"]:
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        loader = dgl.dataloading.DistEdgeDataLoader(
            graph,
            _equal_share(mine[TRAIN]),
            excluding_sampler(cfg["fan_outs"], split),
            exclude="self",  # with the sampler above: the batch's pairs, both directions
            negative_sampler=dgl.dataloading.negative_sampler.Uniform(cfg["link"]["negatives"]),
            batch_size=rank_batch(cfg["batch_size"], world),
            shuffle=True,
            drop_last=False,
        )
    every = max(1, cfg["checkpoint_every_epochs"])
    for epoch in range(start_epoch, cfg["epochs"]):
        ddp.train()
        started = time.monotonic()
        total_loss, batches = 0.0, 0
        for input_nodes, pos_graph, neg_graph, blocks in loader:
            h = ddp(blocks, graph.ndata["feat"][input_nodes])
            pos, neg = edge_scores(pos_graph, h), edge_scores(neg_graph, h)
            loss = F.binary_cross_entropy_with_logits(
                torch.cat([pos, neg]), torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            total_loss += float(loss)
            batches += 1
            if rank == 0 and batches % 20 == 0:
                emit("batch", epoch=epoch + 1, batch=batches, loss=float(loss))
        sums = torch.tensor([total_loss, batches], dtype=torch.float64)
        dist.all_reduce(sums)
        if rank == 0:
            emit(
                "epoch",
                epoch=epoch + 1,
                epochs=cfg["epochs"],
                seconds=time.monotonic() - started,
                loss=float(sums[0] / max(sums[1], 1)),
            )
            if (epoch + 1) % every == 0 or epoch + 1 == cfg["epochs"]:
                path = Path(cfg["out_dir"]) / f"checkpoint-epoch{epoch + 1}.pt"
                torch.save(
                    {
                        "epoch": epoch + 1,
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "config": cfg["model"],
                    },
                    path,
                )
                emit("checkpoint", epoch=epoch + 1, path=str(path))
        dist.barrier()
    if rank == 0:
        torch.save(model.state_dict(), Path(cfg["out_dir"]) / "model.pt")
    _evaluate(cfg, graph, model, split, mine, rank, world, emit)


@torch.no_grad()
def _evaluate(
    cfg: dict[str, Any],
    graph: Any,
    model: torch.nn.Module,
    split: EdgeSplit,
    mine: dict[int, np.ndarray],
    rank: int,
    world: int,
    emit: Emit,
) -> None:
    import dgl

    from atlas_graph.training.link_split import link_metrics

    model.eval()
    nodes = torch.tensor_split(torch.arange(graph.num_nodes()), world)[rank].clone()
    full = excluding_sampler([-1] * len(cfg["fan_outs"]), split)
    loader = dgl.dataloading.DistNodeDataLoader(
        graph, nodes, full, batch_size=cfg["infer_batch_size"], shuffle=False, drop_last=False
    )
    ids, embeddings = [], []
    for input_nodes, seeds, blocks in loader:
        ids.append(seeds)
        embeddings.append(model(blocks, graph.ndata["feat"][input_nodes]))
    new_ids = torch.cat(ids) if ids else torch.empty(0, dtype=torch.int64)
    emb = torch.cat(embeddings) if embeddings else torch.empty(0, cfg["model"]["classes"])
    out = Path(cfg["out_dir"])
    np.save(out / f"rank{rank}-ids.npy", new_ids.numpy())
    np.save(out / f"rank{rank}-emb.npy", emb.numpy().astype(np.float32))
    # Rank 0 scores every held-out edge: it needs any node's embedding, so it gathers them
    # (N x hidden floats, as the job process holds them to write the embeddings anyway).
    gathered: list[Any] = [None] * world if rank == 0 else []
    dist.gather_object(
        (new_ids, emb, mine[VAL], mine[TEST]), gathered if rank == 0 else None, dst=0
    )
    if rank != 0:
        return
    order = torch.cat([g[0] for g in gathered])
    every = torch.empty(graph.num_nodes(), emb.shape[1])
    every[order] = torch.cat([g[1] for g in gathered])
    metrics: dict[str, float] = {}
    for name, side in (("val", 2), ("test", 3)):
        pairs = np.concatenate([g[side] for g in gathered], 1)
        metrics[f"{name}_edges"] = float(pairs.shape[1])
        if pairs.shape[1]:
            scored = link_metrics(
                every, pairs[0], pairs[1], cfg["link"]["eval_negatives"], split.seed
            )
            metrics.update({f"{name}_{k}": v for k, v in scored.items()})
    if not metrics["test_edges"]:
        raise ValueError("no edge was held out for test: the graph has too few edges")
    emit("metrics", **metrics)
