"""Activation memory of one training step, measured with and without recomputation.

What a step keeps for backward is counted as it happens: every tensor autograd saves passes
through ``torch.autograd.graph.saved_tensors_hooks`` (distinct storages, parameters
excluded), and with recomputation each checkpointed block's input, which the checkpoint
holds to recompute the block, is added (:attr:`BlockNet.held_inputs`). Inside a checkpointed
block nothing is kept: torch's checkpoint installs its own hooks there, so those tensors never
reach ours, exactly as they never stay in memory. The figure is the memory held at the end of
forward, the peak a step's activations reach before backward frees them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from atlas_trainer.deep.models import BlockNet

METHOD = "saved_tensors_hooks"
TIMED_STEPS = 3


@dataclass(frozen=True)
class ActivationMemory:
    with_checkpointing: int
    without_checkpointing: int
    step_seconds_with: float
    step_seconds_without: float
    checkpointing: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "peak_bytes_with_checkpointing": self.with_checkpointing,
            "peak_bytes_without_checkpointing": self.without_checkpointing,
            "step_seconds_with_checkpointing": self.step_seconds_with,
            "step_seconds_without_checkpointing": self.step_seconds_without,
            "checkpointing": self.checkpointing,
            "method": METHOD,
        }


def saved_activation_bytes(model: BlockNet, inputs: torch.Tensor, labels: torch.Tensor) -> int:
    """Bytes of activations one forward keeps for backward (see the module docstring)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def count(tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in params:
            seen[ptr] = storage.nbytes()

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        count(tensor)
        return tensor

    model.held_inputs = []
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = nn.functional.cross_entropy(model(inputs), labels)
        for held in model.held_inputs:
            count(held)
        loss.backward()
    finally:
        model.held_inputs = None
        model.zero_grad(set_to_none=True)
    return sum(seen.values())


def _step_seconds(model: BlockNet, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    times = []
    for _ in range(TIMED_STEPS):
        started = time.perf_counter()
        nn.functional.cross_entropy(model(inputs), labels).backward()
        times.append(time.perf_counter() - started)
        model.zero_grad(set_to_none=True)
    return sorted(times)[len(times) // 2]


def measure(model: BlockNet, inputs: torch.Tensor, labels: torch.Tensor) -> ActivationMemory:
    """Both figures on the same batch; the model's own setting is restored. Batch-norm
    statistics move a little (a few training-mode steps): call it before training."""
    chosen = model.checkpointing
    model.train()
    out = {}
    try:
        for recompute in (False, True):
            model.checkpointing = recompute
            out[recompute] = (
                saved_activation_bytes(model, inputs, labels),
                _step_seconds(model, inputs, labels),
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
