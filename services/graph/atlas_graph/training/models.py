"""GNN models for node classification: GraphSAGE (mean aggregator) and GAT.

Both take a list of message-flow blocks (one per layer, as DGL's neighbour samplers yield
them) and expose ``embed`` (the last hidden layer: the node embedding) and ``forward``
(class scores).
"""

from __future__ import annotations

from typing import Any

import torch
from dgl.nn import GATConv, SAGEConv
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


MODELS: dict[str, type[nn.Module]] = {"graphsage": SAGE, "gat": GAT}


def build_model(config: dict[str, Any]) -> nn.Module:
    """``config``: model, in_dims, hidden, classes, layers, dropout, heads (the bundle's
    ``config.json``)."""
    cls = MODELS[config["model"]]
    return cls(
        config["in_dims"],
        config["hidden"],
        config["classes"],
        config["layers"],
        dropout=config["dropout"],
        heads=config.get("heads", 4),
    )
