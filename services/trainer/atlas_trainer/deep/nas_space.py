"""The search space of one-shot NAS: architectures (elastic depth, widths, kernel sizes and an
activation), their analytic costs, and the random, mutation and crossover moves of the
evolutionary search.

Costs count what a sub-network extracted from the supernet holds and does per example:
parameters (convolution / linear weights, batch-norm scale and shift, the head's bias) and
multiply-accumulates of the convolutions and linear layers (batch norm, activations and
pooling are not counted; ``torch.utils.flop_counter`` agrees at 2 FLOPs per MAC).
The submission checks the limits with them (no net is built).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from atlas_core.errors import InvalidArgument
from atlas_trainer.deep.models import InputInfo
from atlas_trainer.deep.params import NasConfig

MUTATION_PROBABILITY = 0.25


@dataclass(frozen=True)
class Arch:
    """One sub-network: the first ``depth`` entries of ``widths`` / ``kernels`` are used (the
    genome keeps all ``max_layers`` so mutations of depth keep the deeper genes)."""

    depth: int
    widths: tuple[int, ...]
    kernels: tuple[int, ...]
    activation: str

    def key(self) -> tuple[Any, ...]:
        d = self.depth
        return (d, self.widths[:d], self.kernels[:d], self.activation)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"depth": self.depth, "widths": list(self.widths[: self.depth])}
        if self.kernels:
            out["kernel_sizes"] = list(self.kernels[: self.depth])
        return out | {"activation": self.activation}

    def describe(self, kind: str) -> str:
        d = self.depth
        if self.kernels:
            layers = ", ".join(f"{w}k{k}" for w, k in zip(self.widths[:d], self.kernels[:d]))
        else:
            layers = ", ".join(str(w) for w in self.widths[:d])
        return f"{kind} d={d} [{layers}] {self.activation}"


@dataclass(frozen=True)
class Cost:
    parameters: int
    macs: int


@dataclass(frozen=True)
class SearchSpace:
    """The choices of one job's supernet, over its input and class count."""

    kind: str  # "mlp" or "cnn"
    config: NasConfig
    info: InputInfo
    classes: int

    @property
    def kernels(self) -> tuple[int, ...]:
        return self.config.kernel_sizes if self.kind == "cnn" else ()

    def largest(self) -> Arch:
        c = self.config
        kernels = (max(self.kernels),) * c.max_layers if self.kernels else ()
        return Arch(c.max_layers, (max(c.widths),) * c.max_layers, kernels, c.activations[0])

    def smallest(self) -> Arch:
        c = self.config
        kernels = (min(self.kernels),) * c.max_layers if self.kernels else ()
        return Arch(1, (min(c.widths),) * c.max_layers, kernels, c.activations[0])

    def sample(self, rng: random.Random) -> Arch:
        c = self.config
        return Arch(
            rng.randint(1, c.max_layers),
            tuple(rng.choice(c.widths) for _ in range(c.max_layers)),
            tuple(rng.choice(self.kernels) for _ in range(c.max_layers)) if self.kernels else (),
            rng.choice(c.activations),
        )

    def mutate(self, arch: Arch, rng: random.Random) -> Arch:
        c, p = self.config, MUTATION_PROBABILITY
        return Arch(
            rng.randint(1, c.max_layers) if rng.random() < p else arch.depth,
            tuple(rng.choice(c.widths) if rng.random() < p else w for w in arch.widths),
            tuple(rng.choice(self.kernels) if rng.random() < p else k for k in arch.kernels),
            rng.choice(c.activations) if rng.random() < p else arch.activation,
        )

    @staticmethod
    def crossover(a: Arch, b: Arch, rng: random.Random) -> Arch:
        def pick(x: Any, y: Any) -> Any:
            return x if rng.random() < 0.5 else y

        return Arch(
            pick(a.depth, b.depth),
            tuple(pick(x, y) for x, y in zip(a.widths, b.widths)),
            tuple(pick(x, y) for x, y in zip(a.kernels, b.kernels)),
            pick(a.activation, b.activation),
        )

    def cost(self, arch: Arch) -> Cost:
        if self.kind == "mlp":
            return mlp_cost(self.info.features, arch.widths[: arch.depth], self.classes)
        return cnn_cost(
            self.info.image_shape,
            arch.widths[: arch.depth],
            arch.kernels[: arch.depth],
            self.classes,
        )

    def within(self, cost: Cost) -> bool:
        c = self.config
        return (not c.max_parameters or cost.parameters <= c.max_parameters) and (
            not c.max_macs or cost.macs <= c.max_macs
        )

    def sample_within(self, rng: random.Random, attempts: int = 200) -> Arch:
        """A random architecture within the limits (the smallest when none is found: the
        submission checked that it fits)."""
        for _ in range(attempts):
            arch = self.sample(rng)
            if self.within(self.cost(arch)):
                return arch
        return self.smallest()


def mlp_cost(features: int, widths: tuple[int, ...], classes: int) -> Cost:
    """Linear (no bias: batch norm follows) + BatchNorm1d per hidden layer, linear head."""
    params = macs = 0
    fan_in = features
    for w in widths:
        macs += fan_in * w
        params += fan_in * w + 2 * w
        fan_in = w
    return Cost(params + fan_in * classes + classes, macs + fan_in * classes)


def pooled_after(block: int, size: int) -> bool:
    """Blocks after the first halve the image while it is at least 2 pixels (as ``cnn``)."""
    return block > 0 and size >= 2


def cnn_cost(
    shape: tuple[int, int, int], widths: tuple[int, ...], kernels: tuple[int, ...], classes: int
) -> Cost:
    """Conv k x k ('same' padding, no bias) + BatchNorm2d per block, 2x2 max pool after every
    block but the first, global average pool, linear head."""
    cin, height, width = shape
    params = macs = 0
    for i, (w, k) in enumerate(zip(widths, kernels)):
        macs += height * width * w * cin * k * k
        params += w * cin * k * k + 2 * w
        if pooled_after(i, min(height, width)):
            height, width = height // 2, width // 2
        cin = w
    return Cost(params + cin * classes + classes, macs + cin * classes)


def check_nas_limits(config: NasConfig, kind: str, info: InputInfo, classes: int) -> None:
    """The limits admit at least the smallest sub-network of this data's search space.

    Raises:
        InvalidArgument: ``BAD_NAS_SPEC`` naming the limit.
    """
    space = SearchSpace(kind, config, info, classes)
    least = space.cost(space.smallest())
    for name, limit, need in (
        ("max_parameters", config.max_parameters, least.parameters),
        ("max_macs", config.max_macs, least.macs),
    ):
        if limit and limit < need:
            raise InvalidArgument(
                f"deep_learning.nas.{name}: {limit} is below the smallest sub-network of the "
                f"search space ({space.smallest().describe(kind)}: {need}); raise it or add "
                "smaller nas.widths",
                reason="BAD_NAS_SPEC",
                metadata={"field": f"deep_learning.nas.{name}"},
            )
