"""Activation memory of one training step, measured with and without recomputation.

What a step keeps for backward is counted as it happens: every tensor autograd saves passes
through ``torch.autograd.graph.saved_tensors_hooks`` (distinct storages, parameters
excluded), and with recomputation each checkpointed run's input, which the checkpoint holds
to recompute the run, is added (:class:`_Tracker`). Inside a checkpointed run nothing is kept
during forward: torch's checkpoint installs its own hooks there, so those tensors never reach
ours, exactly as they never stay in memory.

The peak: without recomputation, the memory held at the end of forward (backward only frees).
With it, backward recomputes one checkpointed run at a time, and while it does, that run's
activations live beside what every earlier run and the stem hold; the run after the last
checkpoint and the head are already freed then (autograd frees a node's saved tensors once
its backward ran). So the peak is ``max(end of forward, held before the tail + the largest
run's recomputed activations)``, each term counted by the same hooks (a run's activations by
running it once, uncheckpointed, under them). An upper bound on the true peak: it adds the
largest run to everything held before the tail, though the later runs' inputs are freed by
the time the earlier runs recompute.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from atlas_trainer.deep.models import BlockNet

METHOD = "saved_tensors_hooks+recompute_peak"
TIMED_STEPS = 3


@dataclass(frozen=True)
class ActivationMemory:
    with_checkpointing: int
    without_checkpointing: int
    step_seconds_with: float
    step_seconds_without: float
    checkpointing: str

    def to_json(self) -> dict[str, Any]:
        return {
            "peak_bytes_with_checkpointing": self.with_checkpointing,
            "peak_bytes_without_checkpointing": self.without_checkpointing,
            "step_seconds_with_checkpointing": self.step_seconds_with,
            "step_seconds_without_checkpointing": self.step_seconds_without,
            "checkpointing": self.checkpointing != "off",
            # the plan measured: the job's own, or segments when it trains without
            "checkpointing_mode": self.checkpointing if self.checkpointing != "off" else "segments",
            "method": METHOD,
        }


@dataclass
class _Tracker:
    """Counts distinct saved storages; listens to the net's checkpoints (RecomputeTracker)."""

    params: set[int]
    seen: dict[int, int] = field(default_factory=dict)
    runs: list[tuple[torch.Tensor, list[nn.Module]]] = field(default_factory=list)
    before_tail: int | None = None

    def count(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self.params:
            self.seen[ptr] = storage.nbytes()

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        self.count(tensor)
        return tensor

    def hold(self, x: torch.Tensor, blocks: list[nn.Module]) -> None:
        self.count(x)
        self.runs.append((x, blocks))

    def tail_starts(self) -> None:
        if self.before_tail is None:
            self.before_tail = sum(self.seen.values())


def _run_bytes(params: set[int], x: torch.Tensor, blocks: list[nn.Module]) -> int:
    """What recomputing one run keeps while its backward runs (its input excluded: the
    checkpoint already holds it)."""
    inner = _Tracker(params | {x.untyped_storage().data_ptr()})
    with torch.autograd.graph.saved_tensors_hooks(inner.pack, lambda t: t):
        out = x.detach().requires_grad_(x.requires_grad)
        for block in blocks:
            out = block(out)
    return sum(inner.seen.values())


def saved_activation_bytes(model: BlockNet, inputs: torch.Tensor, labels: torch.Tensor) -> int:
    """Peak bytes of activations a training step keeps for backward (module docstring)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    tracker = _Tracker(params)
    model.tracker = tracker
    try:
        with torch.autograd.graph.saved_tensors_hooks(tracker.pack, lambda t: t):
            loss = nn.functional.cross_entropy(model(inputs), labels)
        end_of_forward = sum(tracker.seen.values())
        recomputed = max((_run_bytes(params, x, run) for x, run in tracker.runs), default=0)
        loss.backward()
    finally:
        model.tracker = None
        model.zero_grad(set_to_none=True)
    if not tracker.runs:
        return end_of_forward
    return max(end_of_forward, (tracker.before_tail or 0) + recomputed)


def step_seconds(
    model: BlockNet,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    steps: int = TIMED_STEPS,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Median time of ``steps`` forward+backward steps (no optimizer step): wall time, or
    e.g. ``time.thread_time`` (the CPU this thread used: what other tenants of a loaded host
    disturb least, with one torch thread)."""
    times = []
    for _ in range(steps):
        started = clock()
        nn.functional.cross_entropy(model(inputs), labels).backward()
        times.append(clock() - started)
        model.zero_grad(set_to_none=True)
    return sorted(times)[len(times) // 2]


def measure(model: BlockNet, inputs: torch.Tensor, labels: torch.Tensor) -> ActivationMemory:
    """Both figures on the same batch; the model's own setting is restored. ``with`` is the
    model's own mode, or ``segments`` when it trains without recomputation. Batch-norm
    statistics move a little (a few training-mode steps): call it before training."""
    chosen = model.checkpointing
    model.train()
    out = {}
    try:
        for recompute in (False, True):
            model.checkpointing = (
                (chosen if chosen != "off" else "segments") if recompute else "off"
            )
            out[recompute] = (
                saved_activation_bytes(model, inputs, labels),
                step_seconds(model, inputs, labels),
            )
    finally:
        model.checkpointing = chosen
    return ActivationMemory(
        with_checkpointing=out[True][0],
        without_checkpointing=out[False][0],
        step_seconds_with=out[True][1],
        step_seconds_without=out[False][1],
        checkpointing=chosen,
    )
