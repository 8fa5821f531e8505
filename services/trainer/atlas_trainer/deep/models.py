"""The architectures: MLP, a small CNN, a MobileNet-style depthwise-separable CNN, a text CNN
and an embedding bag (fastText-style), all ``stem -> blocks -> head`` classifiers.

The blocks are what recomputation wraps (``torch.utils.checkpoint``, the non-reentrant variant
torch recommends): a checkpointed run of blocks keeps only its input after forward and
recomputes its activations in backward, trading compute for memory as in Chen et al. 2016.
``checkpointing`` chooses the runs (:func:`segment_plan`):

- ``"segments"`` (what ``params.checkpointing: true`` means): Chen et al.'s sqrt(n) plan, as
  ``torch.utils.checkpoint.checkpoint_sequential`` does it -- about sqrt(n) segments of
  consecutive blocks, every segment but the last checkpointed (the last one's activations are
  needed first in backward, so recomputing them would only cost time). Fewer, longer
  checkpointed runs than one per block: less recomputation and less per-checkpoint overhead.
- ``"every_block"``: each block its own checkpoint (the least memory for nets whose memory sits
  in one or two large blocks, the most recomputation).
- ``"off"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from atlas_trainer.deep.params import DeepParams


@dataclass(frozen=True)
class InputInfo:
    """What the net reads: ``features`` (tabular width), ``image_shape`` (C, H, W) or
    ``vocab_size`` (text ids, 0 = padding)."""

    kind: str
    features: int = 0
    image_shape: tuple[int, int, int] = (0, 0, 0)
    vocab_size: int = 0


CHECKPOINT_MODES = ("off", "segments", "every_block")


def segment_plan(blocks: int, mode: str) -> list[tuple[int, int, bool]]:
    """``(start, stop, checkpointed)`` runs of blocks covering ``range(blocks)``.

    ``segments``: ``max(2, round(sqrt(n)))`` near-equal segments (``numpy.array_split``
    sizes), all but the last checkpointed; a single block is checkpointed on its own (there
    is nothing to split).
    """
    if mode == "off" or blocks == 0:
        return [(0, blocks, False)] if blocks else []
    if mode == "every_block" or blocks == 1:
        return [(i, i + 1, True) for i in range(blocks)]
    count = min(blocks, max(2, round(math.sqrt(blocks))))
    base, extra = divmod(blocks, count)
    plan, start = [], 0
    for i in range(count):
        stop = start + base + (1 if i < extra else 0)
        plan.append((start, stop, i < count - 1))
        start = stop
    return plan


class RecomputeTracker(Protocol):
    """What deep.memory listens to while it measures one forward."""

    def hold(self, x: torch.Tensor, blocks: list[nn.Module]) -> None:
        """A checkpointed run of ``blocks`` starts from (and keeps) ``x``."""

    def tail_starts(self) -> None:
        """The blocks after the last checkpointed run (and the head) start."""


def _run_blocks(blocks: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for block in blocks:
        x = block(x)
    return x


class BlockNet(nn.Module):
    """``head(blocks(stem(x)))``; while training, runs of blocks go under ``checkpoint`` as
    ``checkpointing`` plans them (see the module docstring)."""

    def __init__(self, stem: nn.Module, blocks: list[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.checkpointing = "off"
        # Set by deep.memory while it measures: told what checkpoints hold.
        self.tracker: RecomputeTracker | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        mode = self.checkpointing if self.training and torch.is_grad_enabled() else "off"
        for start, stop, recompute in segment_plan(len(self.blocks), mode):
            run = list(self.blocks[start:stop])
            if recompute:
                if self.tracker is not None:
                    self.tracker.hold(x, run)
                x = checkpoint(_run_blocks, run, x, use_reentrant=False)
            else:
                if self.tracker is not None:
                    self.tracker.tail_starts()
                x = _run_blocks(run, x)
        if self.tracker is not None:
            self.tracker.tail_starts()
        return self.head(x)


class _TextConvs(nn.Module):
    """Parallel 1-D convolutions of several widths over the embedded words, max over time."""

    def __init__(self, dim: int, filters: int, kernel_sizes: list[int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(dim, filters, k, padding=k // 2) for k in kernel_sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # [batch, dim, words]
        return torch.cat([torch.relu(c(x)).amax(dim=2) for c in self.convs], dim=1)


def _conv_block(cin: int, cout: int, pool: bool) -> nn.Module:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def _separable_block(cin: int, cout: int, stride: int) -> nn.Module:
    """MobileNet's depthwise 3x3 (one filter per channel) then pointwise 1x1."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


def _image_head(width: int, classes: int, dropout: float) -> nn.Module:
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(width, classes)
    )


def build_model(architecture: str, params: DeepParams, info: InputInfo, classes: int) -> BlockNet:
    """The untrained net (deterministic for a fixed ``torch.manual_seed``)."""
    if architecture == "mlp":
        blocks: list[nn.Module] = []
        width = info.features
        for h in params.hidden:
            blocks.append(nn.Sequential(nn.Linear(width, h), nn.ReLU(), nn.Dropout(params.dropout)))
            width = h
        return BlockNet(nn.Identity(), blocks, nn.Linear(width, classes))
    if architecture in ("cnn", "mobilenet"):
        channels, height, width_px = info.image_shape
        blocks = []
        size = min(height, width_px)
        if architecture == "cnn":
            cin = channels
            for i, cout in enumerate(params.channels):
                pool = i > 0 and size >= 2
                blocks.append(_conv_block(cin, cout, pool))
                size = size // 2 if pool else size
                cin = cout
            stem: nn.Module = nn.Identity()
        else:
            first = params.channels[0]
            stem = _conv_block(channels, first, pool=False)
            cin = first
            for i, cout in enumerate(params.channels):
                stride = 2 if i > 0 and size >= 2 else 1
                blocks.append(_separable_block(cin, cout, stride))
                size = (size + 1) // 2 if stride == 2 else size
                cin = cout
        return BlockNet(stem, blocks, _image_head(cin, classes, params.dropout))
    if architecture == "text_cnn":
        dim = params.embedding_dim
        convs = _TextConvs(dim, params.filters, params.kernel_sizes)
        head = nn.Sequential(
            nn.Dropout(params.dropout),
            nn.Linear(params.filters * len(params.kernel_sizes), classes),
        )
        return BlockNet(nn.Embedding(info.vocab_size, dim, padding_idx=0), [convs], head)
    if architecture == "embedding_bag":
        bag = nn.EmbeddingBag(info.vocab_size, params.embedding_dim, mode="mean", padding_idx=0)
        return BlockNet(
            bag,
            [],
            nn.Sequential(nn.Dropout(params.dropout), nn.Linear(params.embedding_dim, classes)),
        )
    raise ValueError(f"unknown architecture {architecture}")


def parameter_count(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def to_torchscript(model: nn.Module, example: Any) -> bytes:
    """The eval-mode net traced to TorchScript bytes (what the bundle serves)."""
    import io

    model.eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    return buffer.getvalue()
