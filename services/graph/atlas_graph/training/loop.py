"""The training loop each trainer runs on a DistGraph: DDP over mini-batches of sampled
neighbourhoods, checkpoints from rank 0, then inference over full neighbourhoods for this
trainer's share of all nodes (embeddings, class scores and labels saved under its rank for the
cluster to merge)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from atlas_graph.training.models import build_model

Emit = Callable[..., None]


def _loader(graph: Any, nids: Any, fan_outs: list[int], batch: int, shuffle: bool) -> Any:
    import dgl

    sampler = dgl.dataloading.NeighborSampler(fan_outs)
    return dgl.dataloading.DistNodeDataLoader(
        graph, nids, sampler, batch_size=batch, shuffle=shuffle, drop_last=False
    )


def rank_share(
    mask: Any, num_nodes: int, rank: int, world: int, block: int = 1 << 20
) -> torch.Tensor:
    """This rank's contiguous slice of the (new) ids where ``mask`` is set.

    Not ``dgl.distributed.node_split``: it splits by the partition book's ``partid``, which is
    0 for every trainer when all partitions' servers share one host (DGL maps a client to the
    first partition of its IP), so every trainer got partition 0's nodes and partition 1 was
    never trained on; it also refuses fewer trainers than partitions. New ids are contiguous
    per partition, so an even split in id order still keeps each trainer's seeds mostly in one
    partition.
    """
    ids = [
        torch.nonzero(mask[start : min(start + block, num_nodes)]).squeeze(1) + start
        for start in range(0, num_nodes, block)
    ]
    every = torch.cat(ids) if ids else torch.empty(0, dtype=torch.int64)
    if not len(every):
        raise ValueError("no node has the mask set")
    # Equal shares (the short ones wrap around, as torch's DistributedSampler pads), so every
    # rank runs the same number of batches and DDP's all-reduces pair up without join().
    share = -(-len(every) // world)
    return every[torch.arange(rank * share, (rank + 1) * share) % len(every)]


def rank_batch(global_batch: int, world: int) -> int:
    """Each trainer's share of the spec's (global) batch size.

    With W trainers each takes ceil(B / W) of its 1/W of the training nodes per step, so an
    epoch is the same number of optimizer steps whatever W is, and DDP's gradient average over
    the W equal shares is the gradient of one batch of B: the trainer count changes the speed,
    not the model trained at a given epoch (docs/graph.md, "Trainer count").
    """
    return max(1, -(-global_batch // world))


class TargetNodes:
    """The nodes a job classifies: every node of a homogeneous graph, or the nodes of one
    type (``ntype``) of a heterogeneous one, whose ids, seeds and features are per type."""

    def __init__(self, graph: Any, ntype: str | None = None) -> None:
        self.graph, self.ntype = graph, ntype
        self.data = graph.nodes[ntype].data if ntype else graph.ndata
        self.num_nodes = int(graph.num_nodes(ntype) if ntype else graph.num_nodes())

    def seeds(self, ids: torch.Tensor) -> Any:
        return {self.ntype: ids} if self.ntype else ids

    def seed_ids(self, seeds: Any) -> torch.Tensor:
        return seeds[self.ntype] if self.ntype else seeds

    def features(self, input_nodes: Any) -> Any:
        if not self.ntype:
            return self.graph.ndata["feat"][input_nodes]
        return {t: self.graph.nodes[t].data["feat"][ids] for t, ids in input_nodes.items()}


def train_and_infer(cfg: dict[str, Any], graph: Any, emit: Emit) -> None:
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(cfg["seed"] + rank)
    nodes = TargetNodes(graph, cfg.get("target_ntype"))
    train_nid = rank_share(nodes.data["train_mask"], nodes.num_nodes, rank, world)
    model_cfg = cfg["model"]
    model = build_model(model_cfg)
    start_epoch = 0
    opt = torch.optim.Adam(model.parameters(), lr=cfg["learning_rate"])
    if cfg.get("resume_path"):
        state = torch.load(cfg["resume_path"], map_location="cpu")
        model.load_state_dict(state["model"])
        if "optimizer" in state:
            opt.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
    # A heterogeneous batch may sample no edge of some relation: its weights get no gradient.
    ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=bool(nodes.ntype))
    loader = _loader(
        graph, nodes.seeds(train_nid), cfg["fan_outs"], rank_batch(cfg["batch_size"], world), True
    )
    every = max(1, cfg["checkpoint_every_epochs"])
    for epoch in range(start_epoch, cfg["epochs"]):
        ddp.train()
        started = time.monotonic()
        total_loss, batches, correct, seen = 0.0, 0, 0, 0
        for input_nodes, seeds, blocks in loader:
            x = nodes.features(input_nodes)
            y = nodes.data["label"][nodes.seed_ids(seeds)]
            logits = ddp(blocks, x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total_loss += float(loss)
            batches += 1
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            if rank == 0 and batches % 20 == 0:
                emit("batch", epoch=epoch + 1, batch=batches, loss=float(loss))
        sums = torch.tensor([total_loss, batches, correct, seen], dtype=torch.float64)
        dist.all_reduce(sums)
        elapsed = time.monotonic() - started
        if rank == 0:
            emit(
                "epoch",
                epoch=epoch + 1,
                epochs=cfg["epochs"],
                seconds=elapsed,
                loss=float(sums[0] / max(sums[1], 1)),
                train_accuracy=float(sums[2] / max(sums[3], 1)),
            )
            if (epoch + 1) % every == 0 or epoch + 1 == cfg["epochs"]:
                path = Path(cfg["out_dir"]) / f"checkpoint-epoch{epoch + 1}.pt"
                torch.save(
                    {
                        "epoch": epoch + 1,
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "config": model_cfg,
                    },
                    path,
                )
                emit("checkpoint", epoch=epoch + 1, path=str(path))
        dist.barrier()
    if rank == 0:
        torch.save(model.state_dict(), Path(cfg["out_dir"]) / "model.pt")
    _infer(cfg, graph, nodes, model, rank, world, emit)


@torch.no_grad()
def _infer(
    cfg: dict[str, Any],
    graph: Any,
    nodes: TargetNodes,
    model: torch.nn.Module,
    rank: int,
    world: int,
    emit: Emit,
) -> None:
    model.eval()
    mine = torch.tensor_split(torch.arange(nodes.num_nodes), world)[rank].clone()
    ids, embeddings, scores = [], [], []
    # Every neighbour (fan-out -1), not a sample: a node's answer is deterministic, so the
    # serving bundle, the predictions and the reported accuracies all agree.
    full = [-1] * len(cfg["fan_outs"])
    batches = _loader(graph, nodes.seeds(mine), full, cfg["infer_batch_size"], False)
    for input_nodes, seeds, blocks in batches:
        logits, emb = model.forward_with_embedding(blocks, nodes.features(input_nodes))
        ids.append(nodes.seed_ids(seeds))
        embeddings.append(emb)
        scores.append(torch.softmax(logits, 1))
    new_ids = torch.cat(ids) if ids else torch.empty(0, dtype=torch.int64)
    prob = torch.cat(scores) if scores else torch.empty(0, model_classes(cfg))
    counts = []
    labels = nodes.data["label"][new_ids]
    pred = prob.argmax(1)
    for mask in ("train_mask", "val_mask", "test_mask"):
        m = nodes.data[mask][new_ids].bool()
        counts += [int((pred[m] == labels[m]).sum()), int(m.sum())]
    totals = torch.tensor(counts, dtype=torch.float64)
    dist.all_reduce(totals)
    out = Path(cfg["out_dir"])
    np.save(out / f"rank{rank}-ids.npy", new_ids.numpy())
    np.save(out / f"rank{rank}-scores.npy", prob.numpy().astype(np.float32))
    np.save(out / f"rank{rank}-labels.npy", labels.numpy().astype(np.int64))
    if cfg.get("write_embeddings"):
        emb = torch.cat(embeddings).numpy().astype(np.float32)
        np.save(out / f"rank{rank}-emb.npy", emb)
        if nodes.ntype:  # every type's, each under its type's name (the target's: the same)
            np.save(out / f"rank{rank}-ids-{nodes.ntype}.npy", new_ids.numpy())
            np.save(out / f"rank{rank}-emb-{nodes.ntype}.npy", emb)
            _embed_other_types(cfg, graph, nodes, model, rank, world)
    if rank == 0:
        names = ("train_accuracy", "val_accuracy", "test_accuracy")
        emit(
            "metrics",
            **{
                name: float(totals[2 * i] / max(totals[2 * i + 1], 1))
                for i, name in enumerate(names)
            },
        )


def model_classes(cfg: dict[str, Any]) -> int:
    return int(cfg["model"]["classes"])


@torch.no_grad()
def _embed_other_types(
    cfg: dict[str, Any], graph: Any, nodes: TargetNodes, model: Any, rank: int, world: int
) -> None:
    """This rank's share of every other node type's embeddings (the last hidden layer, over
    full neighbourhoods, as the target's), saved as ``rank{r}-{ids,emb}-{type}.npy``."""
    full = [-1] * len(cfg["fan_outs"])
    out = Path(cfg["out_dir"])
    for ntype in graph.ntypes:
        if ntype == nodes.ntype:
            continue
        mine = torch.tensor_split(torch.arange(graph.num_nodes(ntype)), world)[rank].clone()
        ids, embeddings = [], []
        for input_nodes, seeds, blocks in _loader(
            graph, {ntype: mine}, full, cfg["infer_batch_size"], False
        ):
            ids.append(seeds[ntype])
            embeddings.append(model.embed_types(blocks, nodes.features(input_nodes))[ntype])
        new_ids = torch.cat(ids) if ids else torch.empty(0, dtype=torch.int64)
        emb = torch.cat(embeddings) if embeddings else torch.empty(0, cfg["model"]["hidden"])
        np.save(out / f"rank{rank}-ids-{ntype}.npy", new_ids.numpy())
        np.save(out / f"rank{rank}-emb-{ntype}.npy", emb.numpy().astype(np.float32))
