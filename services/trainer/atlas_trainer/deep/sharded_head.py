"""A data-parallel job's class-sharded last layer (``params.sharded_classifier``).

The net's last fully connected layer is taken out of the replicated model and replaced by a
:class:`~atlas_trainer.parallel.sharded_classifier.ShardedClassifier`: each worker holds the
weight rows of 1/N of the classes and the loss (softmax, or ArcFace's additive angular margin)
is computed from all-gathered features and all-reduced normalisers. The rest of the net (the
"backbone") stays under DistributedDataParallel.

Gradients: the sharded loss is the mean over the batch gathered from every worker, and each
worker's features receive their rows of its gradient; DDP then *averages* the backbone's
gradients over the workers, so the feature gradient is scaled by the world size first -- the
backbone then steps as on the whole global batch, as an unsharded DDP job does.

The served model is an ordinary net: at evaluation and checkpoints the shards are gathered on
rank 0 only (``dist.gather``) into a plain ``nn.Linear`` (bias 0) in the layer's place; for
ArcFace the features are L2-normalised before it (:class:`L2Normalize`, built into the net by
:func:`with_normalized_features`) and its weight is ``scale * normalize(W)``, so the served
logits are the training logits without the margin. Rows beyond the target's classes
(``sharded_classes`` reserve) stay in the checkpoint, not in the served layer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from atlas_trainer.deep.models import BlockNet
from atlas_trainer.deep.params import DeepConfig
from atlas_trainer.parallel.sharded_classifier import ShardedClassifier, shard_bounds


class L2Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1)


def with_normalized_features(model: BlockNet) -> None:
    """Put :class:`L2Normalize` before the last layer (ArcFace nets, built so by new_model)."""
    head = model.head
    if isinstance(head, nn.Linear):
        model.head = nn.Sequential(L2Normalize(), head)
    else:
        layers = list(head.children())
        model.head = nn.Sequential(*layers[:-1], L2Normalize(), layers[-1])


def _last_layer(model: BlockNet) -> tuple[nn.Module, str, str]:
    """(parent, attribute, state-dict prefix) of the net's last ``nn.Linear``."""
    if isinstance(model.head, nn.Linear):
        return model, "head", "head"
    name = str(len(model.head) - 1)
    if not isinstance(getattr(model.head, name), nn.Linear):
        raise ValueError("the net's head does not end in a linear layer")
    return model.head, name, f"head.{name}"


class ShardedHead:
    """Takes the last layer out of ``model`` (which then outputs features) and holds this
    rank's shard of it. ``saved``: a checkpoint to resume from (its gathered layer)."""

    def __init__(
        self, model: BlockNet, cfg: DeepConfig, *, saved: dict[str, Any] | None = None
    ) -> None:
        self.model, self.cfg = model, cfg
        self.parent, self.attribute, self.prefix = _last_layer(model)
        linear = getattr(self.parent, self.attribute)
        self.served_classes = linear.out_features
        classes = cfg.params.sharded_classes or self.served_classes
        setattr(self.parent, self.attribute, nn.Identity())
        self.world, self.rank = dist.get_world_size(), dist.get_rank()
        p = cfg.params
        self.layer = ShardedClassifier(
            linear.in_features,
            classes,
            loss=p.margin,
            margin=p.arcface_margin,
            scale=p.arcface_scale,
            generator=torch.Generator().manual_seed(cfg.seed * 1000 + self.rank),
        )
        if saved is not None:
            self.layer.load_full_weight(saved["sharded_classifier"]["weight"])

    def loss(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if features.requires_grad:
            features.register_hook(lambda grad: grad * self.world)  # see the module docstring
        return self.layer(features, labels)

    def shards(self) -> list[dict[str, int]]:
        """Every rank's classes and weight elements (the same on every rank)."""
        out = []
        for rank in range(self.world):
            start, stop = shard_bounds(self.layer.num_classes, self.world, rank)
            out.append(
                {
                    "rank": rank,
                    "class_start": start,
                    "class_stop": stop,
                    "params": (stop - start) * self.layer.in_features,
                }
            )
        return out

    def gather_weight(self) -> torch.Tensor | None:
        """The full ``classes x in_features`` weight on rank 0 (None elsewhere); every rank
        must call it. Shards differ by a row at most: padded to the largest for the gather."""
        rows = -(-self.layer.num_classes // self.world)
        mine = self.layer.weight.detach()
        padded = torch.zeros(rows, self.layer.in_features, dtype=mine.dtype)
        padded[: mine.shape[0]] = mine
        parts = [torch.empty_like(padded) for _ in range(self.world)] if self.rank == 0 else None
        dist.gather(padded, parts, dst=0)
        if parts is None:
            return None
        return torch.cat(
            [part[: b - a] for part, (a, b) in zip(parts, self._bounds(), strict=True)]
        )

    def _bounds(self) -> list[tuple[int, int]]:
        return [shard_bounds(self.layer.num_classes, self.world, r) for r in range(self.world)]

    def served_linear(self, full: torch.Tensor) -> nn.Linear:
        """The plain layer serving uses, from the gathered weight."""
        weight = full[: self.served_classes]
        if self.cfg.params.margin == "arcface":
            weight = self.cfg.params.arcface_scale * F.normalize(weight, dim=1)
        linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            linear.weight.copy_(weight)
            linear.bias.zero_()
        return linear

    @contextmanager
    def serving(self, full: torch.Tensor) -> Iterator[BlockNet]:
        """The model with the served layer in place (rank 0, for evaluation)."""
        setattr(self.parent, self.attribute, self.served_linear(full))
        try:
            yield self.model
        finally:
            setattr(self.parent, self.attribute, nn.Identity())

    def served_state(self, full: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model's state dict as an ordinary (unsharded) net's."""
        linear = self.served_linear(full)
        state = dict(self.model.state_dict())
        state[f"{self.prefix}.weight"] = linear.weight.detach().clone()
        state[f"{self.prefix}.bias"] = linear.bias.detach().clone()
        return state
