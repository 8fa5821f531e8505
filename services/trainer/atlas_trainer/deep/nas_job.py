"""The architecture-search part of a deep-learning job (``deep_learning.nas``): train the
supernet, search it, extract and fine-tune the best sub-network.

The job (``deep.job``) bundles the returned net like any other; the search's Pareto front
becomes leaderboard rows and ``DeepLearningResult.nas``. With a wall budget the remaining
time is shared: supernet training until half of it, the search until 80%, fine-tuning after.
NAS runs in the job process and keeps no checkpoints: a job that is resumed starts over.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from atlas_core.jobs import JobContext
from atlas_trainer.deep.loop import TensorData
from atlas_trainer.deep.models import BlockNet, parameter_count
from atlas_trainer.deep.nas import (
    Evaluator,
    Scored,
    evolve,
    fine_tune,
    pareto_front,
    train_supernet,
)
from atlas_trainer.deep.nas_space import SearchSpace
from atlas_trainer.deep.params import DeepConfig
from atlas_trainer.deep.supernet import Supernet

SUPERNET_SHARE = 0.5
SEARCH_SHARE = 0.8


@dataclass
class NasOutcome:
    model: BlockNet
    history: list[dict[str, float]]
    best: Scored
    front: list[Scored]
    result: dict[str, Any]  # DeepLearningResult.nas


def run_nas(
    ctx: JobContext,
    cfg: DeepConfig,
    data: TensorData,
    on_epoch: Callable[[dict[str, float]], None],
    deadline: float = math.inf,
) -> NasOutcome:
    assert cfg.nas is not None
    nas = cfg.nas
    space = SearchSpace(cfg.architecture, nas, data.info, data.classes)
    now = time.monotonic()
    left = deadline - now

    def stop_at(share: float) -> Callable[[], bool]:
        until = now + left * share
        return lambda: ctx.cancelled() or time.monotonic() > until

    torch.manual_seed(cfg.seed)
    net = Supernet(space)
    evaluator = Evaluator(
        net, data.train_inputs, data.validation_inputs, data.validation_labels, cfg.seed
    )
    history: list[dict[str, float]] = []
    epoch_started = time.perf_counter()

    def supernet_epoch(epoch: int, loss: float) -> None:
        nonlocal epoch_started
        val_loss, val_accuracy = evaluator.loss_and_accuracy(space.largest())
        net.train()
        record = {
            "epoch": float(epoch),
            "train_loss": loss,
            "validation_loss": val_loss,
            "validation_accuracy": val_accuracy,
            "seconds": time.perf_counter() - epoch_started,
        }
        history.append(record)
        on_epoch(record)
        epoch_started = time.perf_counter()

    ctx.report(
        0.03, f"training the {cfg.architecture} supernet ({nas.max_layers} layers, sandwich rule)"
    )
    started = time.monotonic()
    done = train_supernet(
        net,
        data.train_inputs,
        data.train_labels,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.params.lr,
        weight_decay=cfg.params.weight_decay,
        seed=cfg.seed,
        on_epoch=supernet_epoch,
        should_stop=stop_at(SUPERNET_SHARE),
    )
    ctx.raise_if_cancelled()
    if not done:
        raise RuntimeError("no supernet epoch finished within budget.wall_time: raise it")
    supernet_seconds = time.monotonic() - started
    ctx.report(0.5, "searching sub-networks (evolution, batch norm recalibrated per network)")
    started = time.monotonic()
    search = evolve(space, evaluator.accuracy, seed=cfg.seed, should_stop=stop_at(SEARCH_SHARE))
    ctx.raise_if_cancelled()
    search_seconds = time.monotonic() - started
    best = search.best
    front = pareto_front(search.scored)
    ctx.report(
        0.8,
        f"scored {len(search.scored)} architectures in {search_seconds:.1f} s; best "
        f"{best.arch.describe(cfg.architecture)} (accuracy {best.accuracy:.4f}, "
        f"{best.cost.macs} MACs, {best.cost.parameters} parameters); fine-tuning it",
    )
    net.recalibrate(best.arch, evaluator.calibration)
    model = net.extract(best.arch, dropout=cfg.params.dropout)
    assert parameter_count(model) == best.cost.parameters
    inputs = torch.from_numpy(data.validation_inputs)
    labels = torch.from_numpy(data.validation_labels)
    epoch_started = time.perf_counter()
    accuracy = best.accuracy

    def fine_tune_epoch(loss: float) -> None:
        nonlocal epoch_started, accuracy
        with torch.no_grad():
            logits = model(inputs)
        accuracy = float((logits.argmax(dim=1) == labels).float().mean())
        record = {
            "epoch": float(len(history) + 1),
            "train_loss": loss,
            "validation_loss": float(torch.nn.functional.cross_entropy(logits, labels)),
            "validation_accuracy": accuracy,
            "seconds": time.perf_counter() - epoch_started,
        }
        history.append(record)
        on_epoch(record)
        epoch_started = time.perf_counter()

    fine_tune(
        model,
        data.train_inputs,
        data.train_labels,
        epochs=nas.fine_tune_epochs,
        batch_size=cfg.batch_size,
        lr=cfg.params.lr / 3,  # a trained net: a gentler step than from scratch
        seed=cfg.seed,
        on_epoch=fine_tune_epoch,
        should_stop=lambda: ctx.cancelled() or time.monotonic() > deadline,
    )
    ctx.raise_if_cancelled()
    result = {
        "architectures_evaluated": len(search.scored),
        "generations": search.generations,
        "pareto_front": [s.to_json(cfg.architecture) for s in front],
        "best": best.to_json(cfg.architecture),
        "fine_tuned_accuracy": accuracy,
        "supernet_parameters": parameter_count(net),
        "max_parameters": nas.max_parameters,
        "max_macs": nas.max_macs,
        "supernet_seconds": supernet_seconds,
        "search_seconds": search_seconds,
    }
    return NasOutcome(model, history, best, front, result)


def pareto_rows(outcome: NasOutcome, kind: str) -> list[dict[str, Any]]:
    """Leaderboard rows of the Pareto front (numbered from 1; row 0 is the bundle's net),
    most accurate first; each with its MACs and parameters as metrics."""
    ranked = sorted(outcome.front, key=lambda s: (-s.accuracy, s.cost.macs))
    return [
        {
            "number": i,
            "trial": i,
            "state": "COMPLETE",
            "pipeline": s.arch.describe(kind),
            "family": "",
            "params": s.arch.to_json(),
            "score": s.accuracy,
            "metrics": {"macs": float(s.cost.macs), "parameters": float(s.cost.parameters)},
            "fidelity": 0.0,
            "origin": "nas_pareto_front",
        }
        for i, s in enumerate(ranked, start=1)
    ]
