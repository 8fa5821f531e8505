"""Trainer deep learning (issue #30): recomputation, data parallel, the sharded classifier
layer and distributed boosting, in one results file.

    python bench/deep.py              # full: 20 epochs, 15 timing repeats, 100k classes
    python bench/deep.py --quick      # 4 epochs, 5 timing repeats, 20k classes
    python bench/deep.py --parts recompute,ddp     # a subset (recompute ddp sharded dask)
    python bench/deep.py --nas        # also the NAS part (bench/deep_nas.py, see NAS below)

(a) Recomputation (params.checkpointing; atlas_trainer.deep.models.segment_plan) on a deep
    MLP (16 x 1024 hidden, batch 512) and a CNN (8 conv blocks of 32 channels, 1x32x32
    images, batch 64), modes ``segments`` (sqrt(n) segments, the last one not recomputed:
    what ``checkpointing: true`` means) and ``every_block``. Memory: the peak bytes of
    activations a step keeps for backward, measured as the trainer measures them
    (atlas_trainer.deep.memory: saved-tensor hooks, the inputs the checkpoints hold, and the
    largest recomputed run while backward recomputes it). Time: per repeat (a new random batch
    each), the median of 3 steps without, with, and without again, interleaved so load drifts
    hit both; overhead = with / first-without - 1, chance level = second-without /
    first-without - 1 (the same configuration against itself), each by the torch thread's
    CPU time (headline: other tenants of a loaded host disturb it far less) and by wall
    time. Median and the 10th-90th percentile spread over the repeats. ckpt_memory_saving =
    1 - with/without and ckpt_time_overhead (median, CPU) are the deep MLP's with
    ``segments``; every net and mode is in ``recomputation``.
(b) Data parallel: the trainer's loop (atlas_trainer.deep.loop.train_loop) on sklearn digits
    (MLP, 128 hidden, batch 32 per worker, lr 0.003) in one process and in 2 processes under
    torch.distributed (gloo, DDP, DistributedSampler), one thread each, equal epochs:
    ddp_accuracy_gap = |acc_1 - acc_2| (validation), ddp_speedup_2w = training wall time of
    1 worker / 2 workers (process start excluded; 2 cores: expect <= 2).
(c) sharded_fc_memory_ratio_2w, sharded_fc_loss_diff and (d) dask_xgb_accuracy_gap: from
    bench/parallel.py's bench_sharded / bench_dask (the same code; see that script).
NAS: ``--nas`` also runs ``bench/deep_nas.py``'s comparison (nas_vs_random,
    nas_archs_evaluated; the per-seed detail under ``nas``).

Writes bench/results/deep.json (and a dated copy, see _results.py).
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
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results  # noqa: E402

PARTS = ("recompute", "ddp", "sharded", "dask")
# Step time by the CPU time of the (one) torch thread, which other tenants of a loaded host
# disturb far less than wall time; wall time is reported beside it.
CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]

    return {
        "median": statistics.median(ordered),
        "p10": q(0.1),
        "p90": q(0.9),
        "min": ordered[0],
        "max": ordered[-1],
    }


def recomputation(repeats: int) -> dict[str, Any]:
    import torch

    from atlas_trainer.deep.memory import saved_activation_bytes, step_seconds
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
        model.train()
        x, y = torch.randn(*shape), torch.randint(0, 10, (shape[0],))
        model.checkpointing = "off"
        without = saved_activation_bytes(model, x, y)
        for mode in ("segments", "every_block"):
            model.checkpointing = mode
            with_bytes = saved_activation_bytes(model, x, y)
            ratios: dict[str, list[float]] = {
                f"{kind}_{clock}": [] for kind in ("overhead", "chance") for clock in CLOCKS
            }
            for seed in range(repeats):
                torch.manual_seed(seed)
                xs, ys = torch.randn(*shape), torch.randint(0, 10, (shape[0],))
                for clock, fn in CLOCKS.items():
                    model.checkpointing = "off"
                    off_a = step_seconds(model, xs, ys, clock=fn)
                    model.checkpointing = mode
                    on = step_seconds(model, xs, ys, clock=fn)
                    model.checkpointing = "off"
                    off_b = step_seconds(model, xs, ys, clock=fn)
                    ratios[f"overhead_{clock}"].append(on / off_a - 1)
                    ratios[f"chance_{clock}"].append(off_b / off_a - 1)
            out[f"{name}/{mode}"] = {
                "bytes_with": with_bytes,
                "bytes_without": without,
                "memory_saving": 1 - with_bytes / without,
                **{key: _spread(values) for key, values in ratios.items()},
                "repeats": repeats,
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
    parser.add_argument("--parts", default=",".join(PARTS), help=f"subset of {PARTS}")
    parser.add_argument("--nas", action="store_true", help="also bench/deep_nas.py's run()")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    warnings.filterwarnings("ignore")
    repeats, epochs, classes, rows = (
        (5, 4, 20_000, 10_000) if args.quick else (15, 20, 100_000, 60_000)
    )
    result: dict[str, Any] = {"parts": parts + (["nas"] if args.nas else [])}
    if "recompute" in parts:
        memory = recomputation(repeats)
        headline = memory["mlp_16x1024/segments"]
        result |= {
            "ckpt_memory_saving": headline["memory_saving"],
            "ckpt_time_overhead": headline["overhead_cpu"]["median"],
            "ckpt_time_overhead_spread": headline["overhead_cpu"],
            "ckpt_time_overhead_chance": headline["chance_cpu"],
            "ckpt_time_overhead_wall": headline["overhead_wall"],
            "ckpt_time_overhead_wall_chance": headline["chance_wall"],
            "recomputation": memory,
        }
        print(
            f"{'net/mode':<26}{'MB w/o':>8}{'MB with':>9}{'saving':>8}  "
            "time overhead and chance (p10 / median / p90), cpu then wall"
        )
        for key, m in memory.items():
            cells = "  ".join(
                f"{kind[:4]}-{clock} {m[f'{kind}_{clock}']['p10']:+.2f}/"
                f"{m[f'{kind}_{clock}']['median']:+.2f}/{m[f'{kind}_{clock}']['p90']:+.2f}"
                for clock in CLOCKS
                for kind in ("overhead", "chance")
            )
            print(
                f"{key:<26}{m['bytes_without'] / 1e6:>8.1f}{m['bytes_with'] / 1e6:>9.1f}"
                f"{m['memory_saving']:>8.2f}  {cells}"
            )
    if "ddp" in parts:
        ddp = data_parallel(epochs)
        result |= {
            "ddp_accuracy_gap": ddp["ddp_accuracy_gap"],
            "ddp_speedup_2w": ddp["ddp_speedup_2w"],
            "data_parallel": ddp,
        }
        print(
            f"data parallel, {epochs} epochs: accuracy 1w {ddp['accuracy_1w']:.4f}, "
            f"2w {ddp['accuracy_2w']:.4f} (gap {ddp['ddp_accuracy_gap']:.4f}); train s 1w "
            f"{ddp['train_s_1w']:.1f}, 2w {ddp['train_s_2w']:.1f} (speedup "
            f"{ddp['ddp_speedup_2w']:.2f})"
        )
    if "sharded" in parts or "dask" in parts:
        import parallel  # bench/parallel.py: the sharded layer's and Dask's figures

        if "sharded" in parts:
            sharded = parallel.bench_sharded(classes)
            result |= {
                "sharded_fc_memory_ratio_2w": sharded["sharded_fc_memory_ratio_2w"],
                "sharded_fc_loss_diff": sharded["sharded_fc_loss_diff"],
                "sharded_classifier": sharded,
            }
        if "dask" in parts:
            dask = parallel.bench_dask(rows)
            result |= {"dask_xgb_accuracy_gap": dask["dask_xgb_accuracy_gap"], "dask": dask}
        for key in ("sharded_fc_memory_ratio_2w", "sharded_fc_loss_diff", "dask_xgb_accuracy_gap"):
            if key in result:
                print(f"{key:34} {result[key]:.6g}")
    if args.nas:
        import deep_nas

        nas = deep_nas.run(quick=args.quick)
        result |= {k: nas[k] for k in ("nas_vs_random", "nas_archs_evaluated")} | {"nas": nas}
    path = write_results("deep", result, quick=args.quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
