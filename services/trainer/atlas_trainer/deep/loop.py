"""The training loop: one process, or one rank of a data-parallel job.

With a process group (``torch.distributed`` initialised) the net is wrapped in
DistributedDataParallel, which all-reduces gradients in backward, and each rank reads its
share of every epoch from a DistributedSampler. Without one the same sampler (one replica)
shuffles, so a single process and a resumed job see the same epoch orders: a sampler's order
is a function of its seed and epoch, which is all a checkpoint needs to keep of it.

A checkpoint is one ``torch.save`` blob: model and optimizer state, the epochs done, the
sampler's seed, and the loss history; ``load_checkpoint`` restores all of it. With a sharded
last layer (``params.sharded_classifier``, deep.sharded_head) the model state is the ordinary
net's (the shards gathered on rank 0) and the blob adds the gathered layer and every rank's
optimizer state for its shard.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from atlas_trainer.deep.models import BlockNet, InputInfo, build_model
from atlas_trainer.deep.params import DeepConfig


@dataclass
class TensorData:
    """Training and validation tensors (what workers load from the job's work directory)."""

    train_inputs: np.ndarray
    train_labels: np.ndarray
    validation_inputs: np.ndarray
    validation_labels: np.ndarray
    info: InputInfo
    classes: int
    # Pretrained word vectors for a text net's embedding ([vocab, dim]), or None.
    embedding: np.ndarray | None = None

    def save(self, path: str) -> None:
        extra = {} if self.embedding is None else {"embedding": self.embedding}
        np.savez(
            path,
            **extra,
            train_inputs=self.train_inputs,
            train_labels=self.train_labels,
            validation_inputs=self.validation_inputs,
            validation_labels=self.validation_labels,
            info=np.array(
                [self.info.kind, self.info.features, *self.info.image_shape, self.info.vocab_size],
                dtype=object,
            ),
            classes=np.array(self.classes),
        )

    @classmethod
    def load(cls, path: str) -> TensorData:
        with np.load(path, allow_pickle=True) as f:
            kind, features, c, h, w, vocab = f["info"].tolist()
            return cls(
                f["train_inputs"],
                f["train_labels"],
                f["validation_inputs"],
                f["validation_labels"],
                InputInfo(str(kind), int(features), (int(c), int(h), int(w)), int(vocab)),
                int(f["classes"]),
                f["embedding"] if "embedding" in f.files else None,
            )


@dataclass
class LoopState:
    """Where training stands: epochs done and their metrics."""

    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    # With a sharded last layer: every rank's classes and weight elements.
    classifier_shards: list[dict[str, int]] = field(default_factory=list)


def new_model(cfg: DeepConfig, data: TensorData) -> BlockNet:
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.architecture, cfg.params, data.info, data.classes)
    model.checkpointing = cfg.params.checkpointing
    if cfg.params.sharded_classifier and cfg.params.margin == "arcface":
        from atlas_trainer.deep.sharded_head import with_normalized_features

        with_normalized_features(model)
    if data.embedding is not None:
        with torch.no_grad():
            model.stem.weight.copy_(torch.from_numpy(data.embedding))
    return model


def _optimizer(cfg: DeepConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    p = cfg.params
    if p.optimizer == "sgd":
        return torch.optim.SGD(params, lr=p.lr, momentum=0.9, weight_decay=p.weight_decay)
    return torch.optim.AdamW(params, lr=p.lr, weight_decay=p.weight_decay)


def save_checkpoint(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: LoopState,
    seed: int,
    *,
    model_state: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    buffer = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict() if model_state is None else model_state,
            "optimizer": optimizer.state_dict(),
            "epoch": state.epoch,
            "sampler": {"seed": seed, "epoch": state.epoch},
            "history": state.history,
            **(extra or {}),
        },
        buffer,
    )
    return buffer.getvalue()


def load_checkpoint(blob: bytes) -> dict[str, Any]:
    # weights_only: tensors, numbers, strings and containers only, never arbitrary objects.
    return dict(torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True))


def _evaluate(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(chunk) for chunk in torch.split(inputs, 1024)])
        loss = float(nn.functional.cross_entropy(logits, labels))
        accuracy = float((logits.argmax(dim=1) == labels).float().mean())
    model.train()
    return loss, accuracy


def train_loop(
    cfg: DeepConfig,
    data: TensorData,
    *,
    resume: bytes | None = None,
    on_epoch: Callable[[dict[str, float]], None] = lambda e: None,
    on_checkpoint: Callable[[bytes, int], None] = lambda b, e: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[BlockNet, LoopState]:
    """Train ``cfg.epochs`` epochs (from ``resume`` when given); returns the bare net (not the
    DDP wrapper) and the state. Under a process group only rank 0 calls ``on_epoch`` and
    ``on_checkpoint`` (every ``cfg.checkpoint_every`` epochs and after the last)."""
    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    model = new_model(cfg, data)
    state = LoopState()
    saved = load_checkpoint(resume) if resume is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        state = LoopState(int(saved["epoch"]), list(saved["history"]))
    head = None
    if cfg.params.sharded_classifier:
        if not distributed:
            raise RuntimeError("params.sharded_classifier needs a process group (workers >= 2)")
        from atlas_trainer.deep.sharded_head import ShardedHead

        head = ShardedHead(model, cfg, saved=saved)  # the model now outputs features
        state.classifier_shards = head.shards()
    optimizer = _optimizer(cfg, model.parameters())
    head_optimizer = _optimizer(cfg, head.layer.parameters()) if head is not None else None
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        if head_optimizer is not None:
            states = saved["sharded_classifier"]["optimizers"]
            if len(states) == world:  # a different world size restarts the shards' moments
                head_optimizer.load_state_dict(states[rank])
    net: nn.Module = nn.parallel.DistributedDataParallel(model) if distributed else model
    dataset = TensorDataset(
        torch.from_numpy(data.train_inputs), torch.from_numpy(data.train_labels)
    )
    # drop_last=False pads every rank to the same count: equal batches, as the sharded
    # layer's all-gathers need.
    sampler: DistributedSampler[Any] = DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=False
    )
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler)
    val_inputs = torch.from_numpy(data.validation_inputs)
    val_labels = torch.from_numpy(data.validation_labels)
    model.train()
    while state.epoch < cfg.epochs and not should_stop():
        started = time.perf_counter()
        sampler.set_epoch(state.epoch)
        totals = torch.zeros(2, dtype=torch.float64)  # loss sum, rows
        for inputs, labels in loader:
            if should_stop():  # a cancel: the job ends without this epoch
                return model, state
            optimizer.zero_grad(set_to_none=True)
            if head is None:
                loss = nn.functional.cross_entropy(net(inputs), labels)
            else:
                assert head_optimizer is not None
                head_optimizer.zero_grad(set_to_none=True)
                loss = head.loss(net(inputs), labels)
            loss.backward()
            optimizer.step()
            if head_optimizer is not None:
                head_optimizer.step()
            totals += torch.tensor([float(loss) * len(labels), len(labels)], dtype=torch.float64)
        if distributed:
            dist.all_reduce(totals)
        state.epoch += 1
        full = head.gather_weight() if head is not None else None
        if head is None:
            val_loss, val_accuracy = _evaluate(model, val_inputs, val_labels)
        else:
            scores = torch.zeros(2, dtype=torch.float64)
            if full is not None:  # rank 0: the served net's figures, broadcast to the others
                with head.serving(full) as served:
                    scores += torch.tensor(_evaluate(served, val_inputs, val_labels))
            dist.broadcast(scores, src=0)
            val_loss, val_accuracy = float(scores[0]), float(scores[1])
        record = {
            "epoch": float(state.epoch),
            "train_loss": float(totals[0] / max(1.0, float(totals[1]))),
            "validation_loss": val_loss,
            "validation_accuracy": val_accuracy,
            "seconds": time.perf_counter() - started,
        }
        if not all(math.isfinite(v) for v in record.values()):
            raise FloatingPointError(
                f"training diverged at epoch {state.epoch} (loss {record['train_loss']}): "
                "lower deep_learning.params.lr"
            )
        state.history.append(record)
        due = state.epoch % cfg.checkpoint_every == 0 or state.epoch == cfg.epochs
        head_states: list[Any] | None = None
        if head is not None and due:
            assert head_optimizer is not None
            head_states = [None] * world if rank == 0 else None
            dist.gather_object(head_optimizer.state_dict(), head_states, dst=0)
        if rank == 0:
            on_epoch(record)
            if due:
                blob = (
                    save_checkpoint(model, optimizer, state, cfg.seed)
                    if head is None or full is None
                    else save_checkpoint(
                        model,
                        optimizer,
                        state,
                        cfg.seed,
                        model_state=head.served_state(full),
                        extra={"sharded_classifier": {"weight": full, "optimizers": head_states}},
                    )
                )
                on_checkpoint(blob, state.epoch)
    return model, state
