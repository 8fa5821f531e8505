"""A classifier layer split by class across torch.distributed ranks (model parallelism).

For classification over very many classes (face recognition's millions of identities) the last
fully connected layer is the largest part of the model. :class:`ShardedClassifier` gives each
rank of a process group the weight rows of a contiguous block of classes (1/N of the layer) and
computes the softmax cross-entropy -- plain, or with an ArcFace additive angular margin (Deng et
al. 2019) -- without any rank ever holding the full layer or the full logit matrix:

1. every rank's features and labels are all-gathered (``torch.distributed.nn.functional
   .all_gather``, whose backward sums each rank's partial feature gradient back to the rank
   that owns the rows);
2. each rank computes the logits of its own classes for the whole gathered batch;
3. the row maxima are all-reduced with MAX (a constant shift, so no gradient flows through it),
   the softmax normalisers ``sum(exp(logit - max))`` and the target logits (non-zero only on
   the rank that owns the target class) with SUM.

Every rank returns the same loss: the mean over the gathered batch, equal to the unsharded
layer's loss on the concatenated batch. The normaliser and target sums are the same value on
every rank, so their backward passes the gradient through unchanged (:class:`_SumAcrossRanks`;
torch's ``all_reduce`` would sum the identical gradients, i.e. scale them by the world size).
The gradients then match the unsharded layer's: each weight shard gets exactly the rows of the
full gradient, and each rank's features get their rows of the full feature gradient (the
gradient of the *global* mean loss -- a data-parallel backbone under DDP averages gradients
over ranks, so multiply its loss by the world size, or divide the learning rate, to keep the
single-process step).

All ranks must pass the same number of rows per step (``DistributedSampler(drop_last=True)``);
a mismatch raises ``ValueError`` on every rank alike.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F
from torch import nn

LOSSES = ("softmax", "arcface")


def shard_bounds(num_classes: int, world_size: int, rank: int) -> tuple[int, int]:
    """``[start, stop)`` of the classes ``rank`` holds: contiguous blocks, the first
    ``num_classes % world_size`` ranks one class larger (as ``numpy.array_split``)."""
    base, extra = divmod(num_classes, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class _SumAcrossRanks(torch.autograd.Function):
    """All-reduce SUM whose result every rank uses identically in the same loss: the gradient
    of that loss with respect to each rank's addend is the gradient with respect to the sum,
    passed through unchanged."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class ShardedClassifier(nn.Module):
    """The last fully connected layer of a ``num_classes``-way classifier, split by class over
    the ranks of ``group`` (the default process group when None); call it with this rank's
    ``features`` (B x in_features) and global class ``labels`` (B) to get the loss.

    ``loss="softmax"``: cross-entropy of ``features @ W.T`` (no bias, as in face recognition
    heads). ``loss="arcface"``: features and weight rows are L2-normalised, the target class's
    angle gets the additive margin ``margin`` (radians) and the cosines are scaled by ``scale``
    (ArcFace: ``s * cos(theta_y + m)``; past ``theta + m > pi`` the usual linear fallback
    ``cos(theta) - m * sin(m)`` keeps the logit decreasing).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        loss: str = "softmax",
        margin: float = 0.5,
        scale: float = 64.0,
        group: Any = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES} (got {loss!r})")
        if in_features < 1 or num_classes < 1:
            raise ValueError(
                f"in_features and num_classes must be >= 1 (got {in_features}, {num_classes})"
            )
        if not dist.is_initialized():
            raise RuntimeError("ShardedClassifier needs torch.distributed.init_process_group()")
        self.group = group
        self.world_size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        if num_classes < self.world_size:
            raise ValueError(
                f"num_classes ({num_classes}) must be at least the number of ranks "
                f"({self.world_size}): every rank holds one class or more"
            )
        self.in_features, self.num_classes = in_features, num_classes
        self.loss_kind, self.margin, self.scale = loss, float(margin), float(scale)
        self.class_start, self.class_stop = shard_bounds(num_classes, self.world_size, self.rank)
        # Only this rank's rows are ever allocated (same init scale as nn.Linear).
        weight = torch.empty(self.class_stop - self.class_start, in_features)
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(weight.uniform_(-bound, bound, generator=generator))

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, "
            f"classes=[{self.class_start}, {self.class_stop}), loss={self.loss_kind}"
        )

    # -- collectives ---------------------------------------------------------------------------
    def _gather(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        sizes = [torch.zeros(1, dtype=torch.long) for _ in range(self.world_size)]
        dist.all_gather(sizes, torch.tensor([features.shape[0]]), group=self.group)
        if len({int(s) for s in sizes}) != 1:
            raise ValueError(
                "every rank must pass the same number of rows per step (got "
                f"{[int(s) for s in sizes]}); use DistributedSampler(drop_last=True)"
            )
        gathered = torch.cat(dist_nn.all_gather(features.contiguous(), group=self.group))
        label_parts = [torch.empty_like(labels) for _ in range(self.world_size)]
        dist.all_gather(label_parts, labels.contiguous(), group=self.group)
        return gathered, torch.cat(label_parts)

    def _check_labels(self, labels: torch.Tensor) -> None:
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        if bad.numel():
            raise ValueError(
                f"label {int(bad[0])} is outside the {self.num_classes} classes this sharded "
                "layer was configured for (labels must be 0..num_classes-1)"
            )

    # -- the loss -------------------------------------------------------------------------------
    def local_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits (cosines times ``scale`` for ArcFace, before the margin) of this rank's
        classes for ``features``: B x (class_stop - class_start)."""
        if self.loss_kind == "arcface":
            return self.scale * (F.normalize(features, dim=1) @ F.normalize(self.weight, dim=1).T)
        return features @ self.weight.T

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean loss over the batch gathered from every rank (the same value on each rank)."""
        if features.dim() != 2 or features.shape[1] != self.in_features:
            raise ValueError(
                f"features must be B x {self.in_features} (got {tuple(features.shape)})"
            )
        if labels.shape != features.shape[:1]:
            raise ValueError(
                f"labels must be a vector of {features.shape[0]} (got {tuple(labels.shape)})"
            )
        labels = labels.long()
        all_features, all_labels = self._gather(features, labels)
        self._check_labels(all_labels)
        logits = self.local_logits(all_features)
        local = (all_labels >= self.class_start) & (all_labels < self.class_stop)
        rows = torch.nonzero(local).squeeze(1)
        cols = all_labels[rows] - self.class_start
        if self.loss_kind == "arcface" and rows.numel():
            logits = logits.index_put((rows, cols), self._with_margin(logits[rows, cols]))
        # The shift only stabilises exp(); the loss does not depend on it.
        row_max = logits.detach().max(dim=1).values
        dist.all_reduce(row_max, op=dist.ReduceOp.MAX, group=self.group)
        shifted = logits - row_max[:, None]
        normaliser = _SumAcrossRanks.apply(shifted.exp().sum(dim=1), self.group)
        target = torch.zeros_like(row_max).index_put((rows,), shifted[rows, cols])
        target = _SumAcrossRanks.apply(target, self.group)
        return (normaliser.log() - target).mean()

    def _with_margin(self, scaled_cos: torch.Tensor) -> torch.Tensor:
        """``s * cos(theta + m)`` from ``s * cos(theta)`` (ArcFace's target logit)."""
        eps = 1e-7  # sqrt'(0) is infinite: keep |cos| < 1
        cos = (scaled_cos / self.scale).clamp(-1.0 + eps, 1.0 - eps)
        sin = (1.0 - cos * cos).sqrt()
        m = self.margin
        with_margin = cos * math.cos(m) - sin * math.sin(m)
        fallback = cos - math.sin(math.pi - m) * m  # theta + m past pi
        return self.scale * torch.where(cos > math.cos(math.pi - m), with_margin, fallback)

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Global class ids of the best logit for this rank's ``features`` (every rank must
        call it; each gets its own rows' predictions). Only the per-rank best logit and class
        travel, never the logit matrix."""
        gathered = [torch.empty_like(features) for _ in range(self.world_size)]
        dist.all_gather(gathered, features.contiguous(), group=self.group)
        best, index = self.local_logits(torch.cat(gathered)).max(dim=1)
        bests = [torch.empty_like(best) for _ in range(self.world_size)]
        indices = [torch.empty_like(index) for _ in range(self.world_size)]
        dist.all_gather(bests, best, group=self.group)
        dist.all_gather(indices, index + self.class_start, group=self.group)
        winner = torch.stack(bests).argmax(dim=0)
        chosen = torch.stack(indices).gather(0, winner[None]).squeeze(0)
        rows = features.shape[0]
        return chosen[self.rank * rows : (self.rank + 1) * rows]

    @torch.no_grad()
    def load_full_weight(self, full: torch.Tensor) -> None:
        """Copy this rank's rows out of a full ``num_classes x in_features`` weight (e.g. to
        shard a layer trained unsharded); the full tensor is only read."""
        if tuple(full.shape) != (self.num_classes, self.in_features):
            raise ValueError(
                f"full weight must be {self.num_classes} x {self.in_features} "
                f"(got {tuple(full.shape)})"
            )
        self.weight.copy_(full[self.class_start : self.class_stop])
