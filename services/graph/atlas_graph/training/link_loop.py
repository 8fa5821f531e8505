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

from atlas_graph.training.link_split import (
    TEST,
    TRAIN,
    VAL,
    EdgeSplit,
    excluding_sampler,
    guarded_edge_types,
)
from atlas_graph.training.loop import Emit, rank_batch
from atlas_graph.training.models import build_model

FIND_CHUNK = 1 << 20


def edge_split(cfg: dict[str, Any]) -> EdgeSplit:
    link = cfg["link"]
    return EdgeSplit(link["val_fraction"], link["test_fraction"], int(cfg["split_seed"]))


class LinkEdges:
    """The edges a job scores: every edge of a homogeneous graph, or the edges of one
    canonical type (``etype``, from ``link.target_edge_type``) of a heterogeneous one, whose
    endpoints are nodes of its src and dst types (per-type ids)."""

    def __init__(self, graph: Any, cfg: dict[str, Any]) -> None:
        name = (cfg.get("link") or {}).get("target_edge_type")
        self.graph = graph
        src, rel, dst = name.split(":") if name else ("", "", "")
        self.etype: tuple[str, str, str] | None = (src, rel, dst) if name else None
        self.guarded = (
            guarded_edge_types(self.etype, [tuple(c) for c in graph.canonical_etypes])
            if self.etype
            else None
        )

    def num_edges(self) -> int:
        return int(self.graph.num_edges(self.etype) if self.etype else self.graph.num_edges())

    def find(self, eids: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        found = (
            self.graph.find_edges(eids, etype=self.etype)
            if self.etype
            else self.graph.find_edges(eids)
        )
        return found[0].numpy(), found[1].numpy()

    def seeds(self, eids: torch.Tensor) -> Any:
        return {self.etype: eids} if self.etype else eids

    def sampler(self, fan_outs: list[int], split: EdgeSplit) -> Any:
        return excluding_sampler(fan_outs, split, self.etype, self.guarded)

    def features(self, input_nodes: Any) -> Any:
        if not self.etype:
            return self.graph.ndata["feat"][input_nodes]
        return {t: self.graph.nodes[t].data["feat"][ids] for t, ids in input_nodes.items()}

    def scores(self, pair_graph: Any, h: Any) -> torch.Tensor:
        if not self.etype:
            return edge_scores(pair_graph, h)
        import dgl.function as fn

        src, _, dst = self.etype
        with pair_graph.local_scope():
            pair_graph.nodes[src].data["h"] = h[src]
            pair_graph.nodes[dst].data["h"] = h[dst]
            pair_graph.apply_edges(fn.u_dot_v("h", "h", "score"), etype=self.etype)
            return pair_graph.edges[self.etype].data["score"].squeeze(1)


def _my_edges(edges: LinkEdges, split: EdgeSplit, rank: int, world: int) -> dict[int, np.ndarray]:
    """This rank's contiguous share of the (target type's) edge ids, by side: train edge
    ids, and the (src, dst) pairs of its validation and test edges as a (2, n) array."""
    total = edges.num_edges()
    share = -(-total // world)
    train: list[np.ndarray] = []
    held: dict[int, list[np.ndarray]] = {VAL: [], TEST: []}
    for start in range(rank * share, min(total, (rank + 1) * share), FIND_CHUNK):
        eids = torch.arange(start, min(start + FIND_CHUNK, (rank + 1) * share, total))
        src, dst = edges.find(eids)
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


# On typed graphs the relations' messages are summed, so early dot-product scores grow fast;
# unclipped, one bad step could leave the encoder outputting a constant (the training loss
# sat at ln 2 for whole runs at lr 0.02). The gradient norm is clipped there.
MAX_TYPED_GRAD_NORM = 1.0


def clip_typed(model: torch.nn.Module) -> None:
    torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_TYPED_GRAD_NORM)


# Clipping alone does not stop the collapse: Adam's step is (nearly) invariant to the
# gradient's scale, so its first steps move every weight by ~lr whatever the clip. Measured
# on the 20k-node bench graph (2 trainers, lr 0.01): step 1 took the scores from ~0.7 to ±46
# (grad norm 47), the next steps oscillated, and by step 7 the encoder's output was constant
# (grad norm 0.06, loss ln 2 for the rest of the run). The learning rate of typed link
# prediction therefore ramps up linearly over its first steps (both the distributed and the
# single-process loop).
TYPED_WARMUP_STEPS = 50


def typed_warmup(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: min(1.0, (step + 1) / TYPED_WARMUP_STEPS)
    )


def edge_scores(pair_graph: Any, h: torch.Tensor) -> torch.Tensor:
    import dgl.function as fn

    with pair_graph.local_scope():
        pair_graph.ndata["h"] = h
        pair_graph.apply_edges(fn.u_dot_v("h", "h", "score"))
        return pair_graph.edata["score"].squeeze(1)


def link_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of positive pairs' scores against 1 and negatives' against 0."""
    return F.binary_cross_entropy_with_logits(
        torch.cat([pos, neg]), torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
    )


def train_link_prediction(cfg: dict[str, Any], graph: Any, emit: Emit) -> None:
    import dgl

    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(cfg["seed"] + rank)
    split = edge_split(cfg)
    edges = LinkEdges(graph, cfg)
    mine = _my_edges(edges, split, rank, world)
    model = build_model(cfg["model"])
    opt = torch.optim.Adam(model.parameters(), lr=cfg["learning_rate"])
    start_epoch = 0
    if cfg.get("resume_path"):
        state = torch.load(cfg["resume_path"], map_location="cpu")
        model.load_state_dict(state["model"])
        if "optimizer" in state:
            opt.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
    # Per-process state: a resumed job ramps up again (its Adam moments are restored).
    warmup = typed_warmup(opt) if edges.etype else None
    if start_epoch < cfg["epochs"]:
        # A heterogeneous batch may sample no edge of some relation: its weights get no gradient.
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, find_unused_parameters=edges.etype is not None
        )
        loader = dgl.dataloading.DistEdgeDataLoader(
            graph,
            edges.seeds(_equal_share(mine[TRAIN])),
            edges.sampler(cfg["fan_outs"], split),
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
            h = ddp(blocks, edges.features(input_nodes))
            loss = link_loss(edges.scores(pos_graph, h), edges.scores(neg_graph, h))
            opt.zero_grad()
            loss.backward()
            if edges.etype:
                clip_typed(model)
            opt.step()
            if warmup is not None:
                warmup.step()
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
    _evaluate(cfg, edges, model, split, mine, rank, world, emit)


@torch.no_grad()
def _embed_all(
    cfg: dict[str, Any],
    edges: LinkEdges,
    model: torch.nn.Module,
    split: EdgeSplit,
    rank: int,
    world: int,
) -> dict[str | None, tuple[torch.Tensor, torch.Tensor]]:
    """This rank's share of every node (of every type), embedded over its full neighbourhood
    minus the held-out edges: ``{type or None: (ids, embeddings)}``, saved under its rank."""
    import dgl

    graph = edges.graph
    types: list[str | None] = list(graph.ntypes) if edges.etype else [None]
    share = {
        t: torch.tensor_split(torch.arange(graph.num_nodes(t)), world)[rank].clone() for t in types
    }
    seeds = share[None] if edges.etype is None else share
    loader = dgl.dataloading.DistNodeDataLoader(
        graph,
        seeds,
        edges.sampler([-1] * len(cfg["fan_outs"]), split),
        batch_size=cfg["infer_batch_size"],
        shuffle=False,
        drop_last=False,
    )
    ids: dict[str | None, list[torch.Tensor]] = {t: [] for t in types}
    embs: dict[str | None, list[torch.Tensor]] = {t: [] for t in types}
    for input_nodes, out_nodes, blocks in loader:
        h = model(blocks, edges.features(input_nodes))
        if edges.etype is None:
            ids[None].append(out_nodes)
            embs[None].append(h)
            continue
        for t, seen in out_nodes.items():
            if len(seen):
                ids[t].append(seen)
                embs[t].append(h[t][: len(seen)])
    out = Path(cfg["out_dir"])
    width = cfg["model"]["classes"]
    result = {}
    for t in types:
        new_ids = torch.cat(ids[t]) if ids[t] else torch.empty(0, dtype=torch.int64)
        emb = torch.cat(embs[t]) if embs[t] else torch.empty(0, width)
        suffix = f"-{t}" if t else ""
        np.save(out / f"rank{rank}-ids{suffix}.npy", new_ids.numpy())
        np.save(out / f"rank{rank}-emb{suffix}.npy", emb.numpy().astype(np.float32))
        result[t] = (new_ids, emb)
    if edges.etype:  # the job's single `embeddings` output: the source type's
        np.save(out / f"rank{rank}-ids.npy", result[edges.etype[0]][0].numpy())
        np.save(out / f"rank{rank}-emb.npy", result[edges.etype[0]][1].numpy().astype(np.float32))
    return result


def _gathered(pieces: list[Any], num_nodes: int, width: int) -> torch.Tensor:
    every = torch.empty(num_nodes, width)
    every[torch.cat([p[0] for p in pieces])] = torch.cat([p[1] for p in pieces])
    return every


@torch.no_grad()
def _evaluate(
    cfg: dict[str, Any],
    edges: LinkEdges,
    model: torch.nn.Module,
    split: EdgeSplit,
    mine: dict[int, np.ndarray],
    rank: int,
    world: int,
    emit: Emit,
) -> None:
    from atlas_graph.training.link_split import link_metrics

    model.eval()
    embedded = _embed_all(cfg, edges, model, split, rank, world)
    src_type, dst_type = (edges.etype[0], edges.etype[2]) if edges.etype else (None, None)
    # Rank 0 scores every held-out edge: it needs any node's embedding, so it gathers the
    # endpoint types' (N x hidden floats, as the job process holds them to write them anyway).
    gathered: list[Any] = [None] * world if rank == 0 else []
    dist.gather_object(
        (embedded[src_type], embedded[dst_type] if edges.etype else None, mine[VAL], mine[TEST]),
        gathered if rank == 0 else None,
        dst=0,
    )
    if rank != 0:
        return
    graph, width = edges.graph, cfg["model"]["classes"]
    heads = _gathered([g[0] for g in gathered], int(graph.num_nodes(src_type)), width)
    tails = (
        _gathered([g[1] for g in gathered], int(graph.num_nodes(dst_type)), width)
        if edges.etype
        else None
    )
    metrics: dict[str, float] = {}
    for name, side in (("val", 2), ("test", 3)):
        pairs = np.concatenate([g[side] for g in gathered], 1)
        metrics[f"{name}_edges"] = float(pairs.shape[1])
        if pairs.shape[1]:
            scored = link_metrics(
                heads, pairs[0], pairs[1], cfg["link"]["eval_negatives"], split.seed, tails
            )
            metrics.update({f"{name}_{k}": v for k, v in scored.items()})
    if not metrics["test_edges"]:
        raise ValueError("no edge was held out for test: the graph has too few edges")
    emit("metrics", **metrics)
