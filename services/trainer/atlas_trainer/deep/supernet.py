"""Weight-entangled supernets: every sub-network runs on slices of the SAME tensors.

A layer holds the weights of its largest choice; a sub-network with width ``w`` uses the first
``w`` output units / channels (and the first inputs its predecessor produces), a kernel size
``k`` uses the centre ``k x k`` crop of the largest kernel, and depth ``d`` uses the first
``d`` blocks; the head reads the first channels of whatever the last block produces. Batch
norm statistics are sliced the same way; since every sub-network updates them while the
supernet trains, they are recalibrated for each sub-network before it is scored
(:meth:`Supernet.recalibrate`). :meth:`Supernet.extract` copies one sub-network's slices
into a standalone :class:`~atlas_trainer.deep.models.BlockNet` (the bundle's net).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

from atlas_trainer.deep.models import BlockNet
from atlas_trainer.deep.nas_space import Arch, SearchSpace, pooled_after

_ACTIVATION_FNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "silu": F.silu,
    "tanh": torch.tanh,
}
_ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


def _crop(kernel: torch.Tensor, k: int) -> torch.Tensor:
    start = (kernel.shape[-1] - k) // 2
    return kernel[..., start : start + k, start : start + k]


class Supernet(nn.Module):
    """The largest net of a :class:`SearchSpace`; ``forward(x, arch)`` runs a sub-network."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        top = space.largest()
        width = max(space.config.widths)
        self.layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        if space.kind == "mlp":
            fan_in = space.info.features
            for _ in range(top.depth):
                self.layers.append(nn.Linear(fan_in, width, bias=False))
                self.norms.append(nn.BatchNorm1d(width))
                fan_in = width
        else:
            cin = space.info.image_shape[0]
            kernel = max(space.kernels)
            for _ in range(top.depth):
                self.layers.append(nn.Conv2d(cin, width, kernel, bias=False))
                self.norms.append(nn.BatchNorm2d(width))
                cin = width
        self.head = nn.Linear(width, space.classes)
        # None: the batch norms' own momentum; recalibration averages its batches equally.
        self._momentum: float | None = None

    def _norm(self, i: int, x: torch.Tensor, width: int) -> torch.Tensor:
        bn = self.norms[i]
        assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
        assert bn.running_mean is not None and bn.running_var is not None
        # Slices are views: batch statistics update the supernet's own buffers in place.
        return F.batch_norm(
            x,
            bn.running_mean[:width],
            bn.running_var[:width],
            bn.weight[:width],
            bn.bias[:width],
            training=self.training,
            momentum=bn.momentum if self._momentum is None else self._momentum,
            eps=bn.eps,
        )

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        act = _ACTIVATION_FNS[arch.activation]
        size = min(x.shape[-2:]) if self.space.kind == "cnn" else 0
        for i in range(arch.depth):
            layer, width = self.layers[i], arch.widths[i]
            fan_in = x.shape[1]
            if self.space.kind == "mlp":
                x = F.linear(x, layer.weight[:width, :fan_in])
            else:
                k = arch.kernels[i]
                x = F.conv2d(x, _crop(layer.weight[:width, :fan_in], k), padding=k // 2)
            x = act(self._norm(i, x, width))
            if self.space.kind == "cnn":
                if pooled_after(i, size):
                    x = F.max_pool2d(x, 2)
                    size //= 2
        if self.space.kind == "cnn":
            x = x.mean(dim=(2, 3))
        return F.linear(x, self.head.weight[:, : x.shape[1]], self.head.bias)

    @torch.no_grad()
    def recalibrate(self, arch: Arch, batches: Iterable[torch.Tensor]) -> None:
        """Reset the batch-norm statistics and re-estimate them for ``arch`` as the equal
        average over ``batches`` (train-mode forwards, no gradients); leaves eval mode."""
        for bn in self.norms:
            assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
            bn.reset_running_stats()
        self.train()
        try:
            for n, batch in enumerate(batches):
                self._momentum = 1.0 / (n + 1)  # cumulative average, as momentum=None does
                self(batch, arch)
        finally:
            self._momentum = None
            self.eval()

    @torch.no_grad()
    def extract(self, arch: Arch, dropout: float = 0.0) -> BlockNet:
        """``arch`` as a standalone net holding copies of its slices (same outputs in eval
        mode); the ``cnn`` / ``mlp`` block layout of :func:`~atlas_trainer.deep.models.
        build_model`, with per-block widths and kernels."""
        blocks: list[nn.Module] = []
        fan_in = (
            self.space.info.image_shape[0] if self.space.kind == "cnn" else self.space.info.features
        )
        size = min(self.space.info.image_shape[1:]) if self.space.kind == "cnn" else 0
        for i in range(arch.depth):
            width, source = arch.widths[i], self.layers[i]
            bn = self.norms[i]
            assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
            layer: nn.Module
            if self.space.kind == "mlp":
                layer = nn.Linear(fan_in, width, bias=False)
                layer.weight.copy_(source.weight[:width, :fan_in])
                norm: nn.modules.batchnorm._BatchNorm = nn.BatchNorm1d(width)
            else:
                k = arch.kernels[i]
                layer = nn.Conv2d(fan_in, width, k, padding=k // 2, bias=False)
                layer.weight.copy_(_crop(source.weight[:width, :fan_in], k))
                norm = nn.BatchNorm2d(width)
            norm.weight.copy_(bn.weight[:width])
            norm.bias.copy_(bn.bias[:width])
            assert norm.running_mean is not None and bn.running_mean is not None
            assert norm.running_var is not None and bn.running_var is not None
            norm.running_mean.copy_(bn.running_mean[:width])
            norm.running_var.copy_(bn.running_var[:width])
            parts = [layer, norm, _ACTIVATION_MODULES[arch.activation]()]
            if self.space.kind == "mlp":
                parts.append(nn.Dropout(dropout))
            elif pooled_after(i, size):
                parts.append(nn.MaxPool2d(2))
                size //= 2
            blocks.append(nn.Sequential(*parts))
            fan_in = width
        head = nn.Linear(fan_in, self.space.classes)
        head.weight.copy_(self.head.weight[:, :fan_in])
        head.bias.copy_(self.head.bias)
        if self.space.kind == "cnn":
            return BlockNet(
                nn.Identity(),
                blocks,
                nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), head),
            )
        return BlockNet(nn.Identity(), blocks, head)
