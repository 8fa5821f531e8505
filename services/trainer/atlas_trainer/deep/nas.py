"""One-shot NAS: train the supernet once (sandwich rule with in-place distillation), search
its sub-networks by evolution under the parameter / MAC limits, keep the Pareto front.

Sandwich rule (Yu et al., "BigNAS" / "Universally Slimmable Networks"): each step trains the
largest sub-network on the labels, then the smallest and two random ones on the largest's
soft outputs (in-place distillation), accumulating gradients into the shared weights before
one optimizer step. The search scores each architecture once (accuracy is cached by its
key) on the validation rows after recalibrating batch-norm statistics on a few fixed
training batches, so hundreds of architectures cost seconds.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from atlas_trainer.deep.nas_space import Arch, Cost, SearchSpace
from atlas_trainer.deep.supernet import Supernet

RANDOM_PER_STEP = 2
CALIBRATION_BATCHES = 4
CALIBRATION_BATCH_SIZE = 128
PARENT_FRACTION = 0.25
NOVELTY_ATTEMPTS = 30


@dataclass(frozen=True)
class Scored:
    arch: Arch
    accuracy: float
    cost: Cost

    def to_json(self, kind: str) -> dict[str, Any]:
        return {
            "architecture": self.arch.to_json(),
            "description": self.arch.describe(kind),
            "accuracy": self.accuracy,
            "parameters": self.cost.parameters,
            "macs": self.cost.macs,
        }


def train_supernet(
    net: Supernet,
    inputs: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    on_epoch: Callable[[int, float], None] = lambda e, loss: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Sandwich-rule training; ``on_epoch(epoch, mean largest-net loss)``. Returns the epochs
    finished (fewer when ``should_stop`` said so)."""
    space = net.space
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    x_all, y_all = torch.from_numpy(inputs), torch.from_numpy(labels)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    largest, smallest = space.largest(), space.smallest()
    net.train()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(x_all), generator=generator)
        total, rows = 0.0, 0
        for batch in torch.split(order, batch_size):
            if should_stop():
                return epoch - 1
            x, y = x_all[batch], y_all[batch]
            optimizer.zero_grad(set_to_none=True)
            logits = net(x, largest)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            teacher = logits.detach().softmax(dim=1)
            students = [smallest] + [space.sample(rng) for _ in range(RANDOM_PER_STEP)]
            for arch in students:
                out = F.log_softmax(net(x, arch), dim=1)
                (-(teacher * out).sum(dim=1).mean()).backward()
            optimizer.step()
            total += float(loss) * len(y)
            rows += len(y)
        on_epoch(epoch, total / max(1, rows))
    return epochs


class Evaluator:
    """Validation accuracy of sub-networks with recalibrated batch norm, cached per arch."""

    def __init__(
        self,
        net: Supernet,
        train_inputs: np.ndarray,
        validation_inputs: np.ndarray,
        validation_labels: np.ndarray,
        seed: int,
    ) -> None:
        self.net = net
        rows = np.random.default_rng(seed).permutation(len(train_inputs))
        calib = torch.from_numpy(train_inputs[rows[: CALIBRATION_BATCHES * CALIBRATION_BATCH_SIZE]])
        self.calibration = list(torch.split(calib, CALIBRATION_BATCH_SIZE))
        self.inputs = torch.from_numpy(validation_inputs)
        self.labels = torch.from_numpy(validation_labels)
        self.cache: dict[tuple[Any, ...], float] = {}

    def logits(self, arch: Arch) -> torch.Tensor:
        self.net.recalibrate(arch, self.calibration)
        with torch.no_grad():
            return torch.cat([self.net(chunk, arch) for chunk in torch.split(self.inputs, 1024)])

    def loss_and_accuracy(self, arch: Arch) -> tuple[float, float]:
        logits = self.logits(arch)
        return (
            float(F.cross_entropy(logits, self.labels)),
            float((logits.argmax(dim=1) == self.labels).float().mean()),
        )

    def accuracy(self, arch: Arch) -> float:
        key = arch.key()
        if key not in self.cache:
            self.cache[key] = self.loss_and_accuracy(arch)[1]
        return self.cache[key]


@dataclass
class SearchResult:
    scored: list[Scored] = field(default_factory=list)  # within the limits, distinct
    generations: int = 0

    @property
    def best(self) -> Scored:
        return max(self.scored, key=lambda s: (s.accuracy, -s.cost.macs, -s.cost.parameters))


def evolve(
    space: SearchSpace,
    score: Callable[[Arch], float],
    *,
    seed: int,
    should_stop: Callable[[], bool] = lambda: False,
) -> SearchResult:
    """Evolution (as in Once-for-All's search): a random population within the limits, then
    per generation the best quarter survives and the rest is refilled by mutation and
    crossover of survivors. Children already scored are redrawn a few times, so the search
    keeps exploring instead of re-scoring its elite; at most ``max_candidates`` distinct
    architectures are scored."""
    cfg = space.config
    rng = random.Random(seed)
    limit = cfg.max_candidates or cfg.population * (cfg.generations + 1)
    seen: dict[tuple[Any, ...], Scored] = {}
    result = SearchResult()

    def rate(arch: Arch) -> Scored:
        key = arch.key()
        if key not in seen:
            seen[key] = Scored(arch, score(arch), space.cost(arch))
            result.scored.append(seen[key])
        return seen[key]

    def fresh(make: Callable[[], Arch]) -> Arch:
        for _ in range(NOVELTY_ATTEMPTS):
            arch = make()
            if arch.key() not in seen and space.within(space.cost(arch)):
                return arch
        for _ in range(NOVELTY_ATTEMPTS):  # the survivors' neighbourhood is spent: explore
            arch = space.sample_within(rng)
            if arch.key() not in seen:
                break
        return arch

    def child(parents: list[Scored]) -> Arch:
        if rng.random() < 0.5:
            return space.mutate(rng.choice(parents).arch, rng)
        a, b = rng.sample(parents, 2)
        return space.crossover(a.arch, b.arch, rng)

    population: list[Scored] = []
    for _ in range(cfg.population):
        if len(seen) >= limit or (seen and should_stop()):
            return result
        population.append(rate(fresh(lambda: space.sample_within(rng))))
    parents_kept = max(2, int(cfg.population * PARENT_FRACTION))
    for _ in range(cfg.generations):
        parents = sorted(population, key=lambda s: (-s.accuracy, s.cost.macs))[:parents_kept]
        population = list(parents)
        while len(population) < cfg.population:
            if len(seen) >= limit or (seen and should_stop()):
                return result

            population.append(rate(fresh(functools.partial(child, parents))))
        result.generations += 1
    return result


def pick_on_holdout(
    search: SearchResult, holdout_score: Callable[[Arch], float], top_k: int
) -> Scored:
    """The final pick, against the winner's curse of choosing among hundreds of candidates
    on the rows that ranked them: the ``top_k`` of the search (by its own score) are
    re-scored with ``holdout_score`` (rows the search never saw) and the best there wins;
    ties go to the search's order. The result carries the held-out accuracy."""
    ranked = sorted(search.scored, key=lambda s: (-s.accuracy, s.cost.macs, s.cost.parameters))[
        : max(1, top_k)
    ]
    rescored = [Scored(s.arch, holdout_score(s.arch), s.cost) for s in ranked]
    return max(rescored, key=lambda s: s.accuracy)  # max keeps the first of equals


def pareto_front(scored: list[Scored]) -> list[Scored]:
    """Candidates no other one beats on accuracy, MACs and parameters at once, by MACs."""

    def dominates(a: Scored, b: Scored) -> bool:
        no_worse = (
            a.accuracy >= b.accuracy
            and a.cost.macs <= b.cost.macs
            and a.cost.parameters <= b.cost.parameters
        )
        return no_worse and (
            a.accuracy > b.accuracy
            or a.cost.macs < b.cost.macs
            or a.cost.parameters < b.cost.parameters
        )

    front = [s for s in scored if not any(dominates(o, s) for o in scored)]
    unique = {s.arch.key(): s for s in front}  # equal points: one of them
    return sorted(unique.values(), key=lambda s: (s.cost.macs, s.cost.parameters, -s.accuracy))


def fine_tune(
    model: nn.Module,
    inputs: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    on_epoch: Callable[[float], None] = lambda loss: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[float]:
    """A few epochs of plain training of the extracted net (``on_epoch(mean loss)`` after
    each); the mean losses. Leaves the net in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    x_all, y_all = torch.from_numpy(inputs), torch.from_numpy(labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses: list[float] = []
    model.train()
    for _ in range(epochs):
        total, rows = 0.0, 0
        for batch in torch.split(torch.randperm(len(x_all), generator=generator), batch_size):
            if should_stop():
                model.eval()
                return losses
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x_all[batch]), y_all[batch])
            loss.backward()
            optimizer.step()
            total += float(loss) * len(batch)
            rows += len(batch)
        losses.append(total / max(1, rows))
        if not math.isfinite(losses[-1]):
            raise FloatingPointError("fine-tuning diverged: lower deep_learning.params.lr")
        model.eval()
        on_epoch(losses[-1])
        model.train()
    model.eval()
    return losses
