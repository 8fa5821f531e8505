"""GNN models for node classification: GraphSAGE (mean aggregator) and GAT, and for
heterogeneous graphs :class:`HeteroGNN` (R-GCN or GraphSAGE per relation).

Both take a list of message-flow blocks (one per layer, as DGL's neighbour samplers yield
them) and expose ``embed`` (the last hidden layer: the node embedding) and ``forward``
(class scores).
"""

from __future__ import annotations

from typing import Any

import torch
from dgl.nn import GATConv, GraphConv, HeteroGraphConv, SAGEConv
from torch import nn


class SAGE(nn.Module):
    def __init__(
        self, in_dims: int, hidden: int, classes: int, layers: int, dropout: float = 0.5, **_: Any
    ) -> None:
        super().__init__()
        dims = [in_dims] + [hidden] * (layers - 1) + [classes]
        self.layers = nn.ModuleList(SAGEConv(dims[i], dims[i + 1], "mean") for i in range(layers))
        self.dropout = nn.Dropout(dropout)

    def embed(self, blocks: list[Any], x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer, block in zip(self.layers[:-1], blocks[:-1]):
            h = self.dropout(torch.relu(layer(block, h)))
        return h

    def forward(self, blocks: list[Any], x: torch.Tensor) -> torch.Tensor:
        return self.layers[-1](blocks[-1], self.embed(blocks, x))

    def forward_with_embedding(
        self, blocks: list[Any], x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(blocks, x)
        # The embedding of the output nodes: the destination rows of the last block.
        return self.layers[-1](blocks[-1], h), h[: blocks[-1].num_dst_nodes()]


class GAT(nn.Module):
    def __init__(
        self,
        in_dims: int,
        hidden: int,
        classes: int,
        layers: int,
        dropout: float = 0.5,
        heads: int = 4,
        **_: Any,
    ) -> None:
        super().__init__()
        heads = max(1, heads)
        self.layers = nn.ModuleList()
        dims = in_dims
        for _layer in range(layers - 1):
            self.layers.append(
                GATConv(
                    dims, hidden // heads or 1, heads, feat_drop=dropout, allow_zero_in_degree=True
                )
            )
            dims = (hidden // heads or 1) * heads
        self.layers.append(GATConv(dims, classes, 1, allow_zero_in_degree=True))

    def embed(self, blocks: list[Any], x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer, block in zip(self.layers[:-1], blocks[:-1]):
            h = torch.relu(layer(block, h).flatten(1))
        return h

    def forward(self, blocks: list[Any], x: torch.Tensor) -> torch.Tensor:
        return self.layers[-1](blocks[-1], self.embed(blocks, x)).mean(1)

    def forward_with_embedding(
        self, blocks: list[Any], x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(blocks, x)
        return self.layers[-1](blocks[-1], h).mean(1), h[: blocks[-1].num_dst_nodes()]


class HeteroGNN(nn.Module):
    """Node classification of one ``target`` node type of a heterogeneous graph, or (with
    ``target=None``: link prediction) an encoder whose last layer computes every node type.

    Each node type's features are projected to ``hidden`` (types have their own widths; a
    type without features has one constant column). Each layer runs one convolution per
    relation (``dgl.nn.HeteroGraphConv``, summed over the relations into each destination
    type) plus a per-type self-loop: ``conv="rgcn"`` is R-GCN (``GraphConv`` with mean
    normalisation per relation, h' = W0 h + sum_r mean_{j in N_r} W_r h_j), ``"graphsage"``
    a mean-aggregating ``SAGEConv`` per relation, ``"gat"`` a ``GATConv`` per relation (its
    heads averaged). Takes DGL's heterogeneous blocks and a dict
    of input features per type; returns the target type's class scores.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        hidden: int,
        classes: int,
        layers: int,
        relations: list[list[str]],
        target: str | None,
        conv: str = "graphsage",
        dropout: float = 0.5,
        heads: int = 4,
        **_: Any,
    ) -> None:
        super().__init__()
        self.target = target
        self.project = nn.ModuleDict({t: nn.Linear(max(1, d), hidden) for t, d in in_dims.items()})
        dims = [hidden] * layers + [classes]
        self.convs = nn.ModuleList()
        self.loops = nn.ModuleList()
        for i in range(layers):
            # The last layer only computes the target type: only relations into it.
            last = i == layers - 1 and target is not None
            rels = [r for r in relations if not last or r[2] == target]
            self.convs.append(
                HeteroGraphConv(
                    {
                        (r[0], r[1], r[2]): _relation_conv(conv, dims[i], dims[i + 1], heads)
                        for r in rels
                    },
                    aggregate="sum",
                )
            )
            types = [target] if last and target is not None else list(in_dims)
            self.loops.append(nn.ModuleDict({t: nn.Linear(dims[i], dims[i + 1]) for t in types}))
        self.dropout = nn.Dropout(dropout)

    def _layer(self, i: int, block: Any, h: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # Destination types this layer computes (the last: the target only); relations into
        # other types are skipped by HeteroGraphConv.
        dst = {t: x[: block.num_dst_nodes(t)] for t, x in h.items() if t in self.loops[i]}
        messages = self.convs[i](block, (h, dst))
        out = {}
        for t, x in dst.items():
            y = self.loops[i][t](x)
            out[t] = y + messages[t] if t in messages else y
        return out

    def embed(self, blocks: list[Any], x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        h = {t: torch.relu(self.project[t](v)) for t, v in x.items()}
        for i, block in enumerate(blocks[:-1]):
            h = {t: self.dropout(torch.relu(v)) for t, v in self._layer(i, block, h).items()}
        return h

    def forward(self, blocks: list[Any], x: dict[str, torch.Tensor]) -> Any:
        """The target type's class scores; without a target, every type's output (by type)."""
        out = self._layer(len(blocks) - 1, blocks[-1], self.embed(blocks, x))
        return out if self.target is None else out[self.target]

    def embed_types(self, blocks: list[Any], x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every output node's embedding, by type: the last layer's output without a target
        (link prediction), else the last hidden layer (as ``forward_with_embedding``)."""
        if self.target is None:
            out: dict[str, torch.Tensor] = self.forward(blocks, x)
            return out
        h = self.embed(blocks, x)
        return {t: v[: blocks[-1].num_dst_nodes(t)] for t, v in h.items()}

    def forward_with_embedding(
        self, blocks: list[Any], x: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(blocks, x)
        assert self.target is not None  # node classification
        logits = self._layer(len(blocks) - 1, blocks[-1], h)[self.target]
        return logits, h[self.target][: blocks[-1].num_dst_nodes(self.target)]


class _RelationGAT(nn.Module):
    """GAT on one relation: ``heads`` attention heads of ``out_dims`` each, averaged (so the
    relation's output is ``out_dims`` wide, as the other relations' and the self-loop's)."""

    def __init__(self, in_dims: int, out_dims: int, heads: int) -> None:
        super().__init__()
        self.conv = GATConv(in_dims, out_dims, max(1, heads), allow_zero_in_degree=True)

    def forward(self, graph: Any, x: Any) -> torch.Tensor:
        out: torch.Tensor = self.conv(graph, x).mean(1)
        return out


def _relation_conv(conv: str, in_dims: int, out_dims: int, heads: int = 4) -> nn.Module:
    if conv == "rgcn":
        return GraphConv(in_dims, out_dims, norm="right", bias=False, allow_zero_in_degree=True)
    if conv == "gat":
        return _RelationGAT(in_dims, out_dims, heads)
    return SAGEConv(in_dims, out_dims, "mean")


MODELS: dict[str, type[nn.Module]] = {"graphsage": SAGE, "gat": GAT}


def build_model(config: dict[str, Any]) -> nn.Module:
    """``config``: model, in_dims, hidden, classes, layers, dropout, heads (the bundle's
    ``config.json``); heterogeneous models also ``hetero``, ``relations`` (canonical edge
    types) and ``target``, with ``in_dims`` per node type."""
    if config.get("hetero"):
        return HeteroGNN(
            config["in_dims"],
            config["hidden"],
            config["classes"],
            config["layers"],
            relations=config["relations"],
            target=config.get("target"),
            conv=config["model"],
            dropout=config["dropout"],
            heads=config.get("heads", 4),
        )
    cls = MODELS[config["model"]]
    return cls(
        config["in_dims"],
        config["hidden"],
        config["classes"],
        config["layers"],
        dropout=config["dropout"],
        heads=config.get("heads", 4),
    )
