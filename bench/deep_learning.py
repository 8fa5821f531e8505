"""Trainer deep-learning jobs: recomputation's memory/time trade and data-parallel training.

    python bench/deep_learning.py            # full: 20 epochs, 5 memory repeats
    python bench/deep_learning.py --quick    # 4 epochs, 2 memory repeats

(a) Recomputation (params.checkpointing, torch.utils.checkpoint around every block) on a deep
    MLP (16 x 1024 hidden, batch 512) and a CNN (8 conv blocks of 32 channels, 1x32x32
    images, batch 64): activations held for backward, measured as the trainer measures them
    (atlas_trainer.deep.memory: saved-tensor hooks plus the inputs the checkpoints hold), and
    the median step time, with and without. ckpt_memory_saving = 1 - with/without;
    ckpt_time_overhead = with/without - 1 (the worse of the two nets).
(b) Data parallel: the trainer's loop (atlas_trainer.deep.loop.train_loop) on sklearn digits
    (MLP, 128 hidden, batch 32 per worker, lr 0.003) in one process and in 2 processes under
    torch.distributed (gloo, DDP, DistributedSampler), one thread each, equal epochs:
    validation accuracy of each, ddp_accuracy_gap = |acc_1 - acc_2|, ddp_speedup_2w = training
    wall time of 1 worker / 2 workers (process start excluded; 2 cores: expect <= 2).

Writes bench/results/deep_learning.json (and a dated copy, see _results.py).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results  # noqa: E402


def recomputation(repeats: int) -> dict[str, Any]:
    import torch

    from atlas_trainer.deep.memory import measure
    from atlas_trainer.deep.models import InputInfo, build_model
    from atlas_trainer.deep.params import DeepParams

    torch.set_num_threads(1)
    nets = {
        "mlp_16x1024": (
            "mlp",
            InputInfo("tabular", features=256),
            DeepParams(hidden=[1024] * 16),
            (512, 256),
        ),
        "cnn_8x32": (
            "cnn",
            InputInfo("image", image_shape=(1, 32, 32)),
            DeepParams(channels=[32] * 8),
            (64, 1, 32, 32),
        ),
    }
    out: dict[str, Any] = {}
    for name, (arch, info, params, shape) in nets.items():
        torch.manual_seed(0)
        model = build_model(arch, params, info, classes=10)
        x, y = torch.randn(*shape), torch.randint(0, 10, (shape[0],))
        runs = [measure(model, x, y) for _ in range(repeats)]
        mem_with, mem_without = runs[0].with_checkpointing, runs[0].without_checkpointing
        t_with = statistics.median(r.step_seconds_with for r in runs)
        t_without = statistics.median(r.step_seconds_without for r in runs)
        out[name] = {
            "bytes_with": mem_with,
            "bytes_without": mem_without,
            "memory_saving": 1 - mem_with / mem_without,
            "step_s_with": t_with,
            "step_s_without": t_without,
            "time_overhead": t_with / t_without - 1,
        }
    return out


def _config(epochs: int) -> Any:
    from google.protobuf import struct_pb2

    from atlas.trainer.v1 import trainer_service_pb2 as pb
    from atlas_trainer.deep.params import deep_config

    params = struct_pb2.Struct()
    params.update({"hidden": [128], "lr": 0.003})
    return deep_config(
        pb.TrainingJobSpec(
            target_column="target",
            deep_learning=pb.DeepLearningSpec(
                architecture="mlp", epochs=epochs, batch_size=32, params=params
            ),
        )
    )


def _tensors(cfg: Any) -> Any:
    from sklearn.datasets import load_digits

    from atlas_trainer.deep.inputs import prepare
    from atlas_trainer.deep.job import tensor_data

    frame = load_digits(as_frame=True).frame
    prepared = prepare(
        frame.drop(columns="target"), frame["target"], cfg, target="target", max_classes=10
    )
    return tensor_data(prepared)


def _rank(rank: int, world: int, port: int, epochs: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    from atlas_trainer.deep.loop import train_loop

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    cfg = _config(epochs)
    data = _tensors(cfg)
    dist.barrier()
    started = time.perf_counter()
    _, state = train_loop(cfg, data)
    seconds = time.perf_counter() - started
    if rank == 0:
        Path(out).write_text(json.dumps({"seconds": seconds, "history": state.history}))
    dist.destroy_process_group()


def data_parallel(epochs: int) -> dict[str, Any]:
    import torch
    import torch.multiprocessing as mp

    from atlas_trainer.deep.loop import train_loop

    torch.set_num_threads(1)
    cfg = _config(epochs)
    data = _tensors(cfg)
    started = time.perf_counter()
    _, state = train_loop(cfg, data)
    single_s = time.perf_counter() - started
    single_acc = state.history[-1]["validation_accuracy"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "rank0.json")
        mp.spawn(_rank, args=(2, port, epochs, out), nprocs=2, join=True)
        two = json.loads(Path(out).read_text())
    two_acc = two["history"][-1]["validation_accuracy"]
    return {
        "epochs": epochs,
        "accuracy_1w": single_acc,
        "accuracy_2w": two_acc,
        "ddp_accuracy_gap": abs(single_acc - two_acc),
        "train_s_1w": single_s,
        "train_s_2w": two["seconds"],
        "ddp_speedup_2w": single_s / two["seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats, epochs = (2, 4) if args.quick else (5, 20)
    memory = recomputation(repeats)
    ddp = data_parallel(epochs)
    result = {
        "ckpt_memory_saving": min(m["memory_saving"] for m in memory.values()),
        "ckpt_time_overhead": max(m["time_overhead"] for m in memory.values()),
        "ddp_accuracy_gap": ddp["ddp_accuracy_gap"],
        "ddp_speedup_2w": ddp["ddp_speedup_2w"],
        "recomputation": memory,
        "data_parallel": ddp,
    }
    print(
        f"{'net':<14}{'MB without':>12}{'MB with':>10}{'saving':>9}{'step s w/o':>12}"
        f"{'step s with':>13}{'overhead':>10}"
    )
    for name, m in memory.items():
        print(
            f"{name:<14}{m['bytes_without'] / 1e6:>12.2f}{m['bytes_with'] / 1e6:>10.2f}"
            f"{m['memory_saving']:>9.2f}{m['step_s_without']:>12.4f}{m['step_s_with']:>13.4f}"
            f"{m['time_overhead']:>10.2f}"
        )
    print(
        f"data parallel, {epochs} epochs: accuracy 1w {ddp['accuracy_1w']:.4f}, "
        f"2w {ddp['accuracy_2w']:.4f} (gap {ddp['ddp_accuracy_gap']:.4f}); train s 1w "
        f"{ddp['train_s_1w']:.1f}, 2w {ddp['train_s_2w']:.1f} (speedup "
        f"{ddp['ddp_speedup_2w']:.2f})"
    )
    path = write_results("deep_learning", result, quick=args.quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
