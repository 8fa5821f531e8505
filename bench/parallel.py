"""Model-parallel classifier layer and distributed boosting: memory and agreement figures.

    python bench/parallel.py            # 100,000 classes; 60,000 rows for boosting
    python bench/parallel.py --quick    # 20,000 classes; 10,000 rows

* ``sharded_fc_memory_ratio_2w``: per-worker memory of the class-sharded classifier layer
  (``atlas_trainer.parallel.sharded_classifier``) on 2 gloo ranks -- the bytes of the tensors
  the layer holds for one step: weight shard, its gradient and the logits of its classes for
  the gathered batch -- over the same for the unsharded layer in one process;
  ``sharded_fc_loss_diff``: |sharded loss - unsharded loss| (float32, ArcFace loss).
* ``dask_xgb_accuracy_gap``: test accuracy of XGBoost trained on a 2-worker Dask LocalCluster
  (``atlas_trainer.parallel.dask_boosting``) vs one process, same data and rounds; the same
  for LightGBM (``dask_lgb_accuracy_gap``), with both fit times.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results  # noqa: E402

IN_FEATURES, ROWS_PER_RANK, MARGIN, SCALE = 128, 64, 0.5, 32.0


def _problem(classes: int, world: int) -> tuple[Any, Any, Any]:
    import torch

    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(classes, IN_FEATURES, generator=gen)
    features = torch.randn(world * ROWS_PER_RANK, IN_FEATURES, generator=gen)
    labels = torch.randint(0, classes, (world * ROWS_PER_RANK,), generator=gen)
    return weight, features, labels


def _layer_bytes(layer: Any, rows: int) -> int:
    shard = layer.weight
    logits = rows * shard.shape[0] * shard.element_size()
    return 2 * shard.numel() * shard.element_size() + logits  # weight + gradient + logits


def _sharded_worker(rank: int, world: int, classes: int, rendezvous: str, out: str) -> None:
    import torch.distributed as dist

    from atlas_trainer.parallel.sharded_classifier import ShardedClassifier

    dist.init_process_group(
        "gloo",
        init_method=rendezvous,
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=300),
    )
    try:
        weight, features, labels = _problem(classes, world)
        layer = ShardedClassifier(IN_FEATURES, classes, loss="arcface", margin=MARGIN, scale=SCALE)
        layer.load_full_weight(weight)
        del weight  # the bench generates the full matrix once to compare; training never does
        mine = slice(rank * ROWS_PER_RANK, (rank + 1) * ROWS_PER_RANK)
        t0 = time.perf_counter()
        loss = layer(features[mine], labels[mine])
        loss.backward()
        step_s = time.perf_counter() - t0
        result = {
            "loss": float(loss),
            "bytes": _layer_bytes(layer, world * ROWS_PER_RANK),
            "step_s": step_s,
        }
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def bench_sharded(classes: int) -> dict[str, Any]:
    import torch
    import torch.multiprocessing as mp
    import torch.nn.functional as F

    world = 2
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(
            _sharded_worker,
            args=(world, classes, f"file://{tmp}/rendezvous", tmp),
            nprocs=world,
            start_method="spawn",
        )
        ranks = [json.loads((Path(tmp) / f"rank{r}.json").read_text()) for r in range(world)]
    weight, features, labels = _problem(classes, world)
    weight.requires_grad_(True)
    t0 = time.perf_counter()
    cos = F.normalize(features, dim=1) @ F.normalize(weight, dim=1).T
    theta = torch.acos(cos.gather(1, labels[:, None]).clamp(-1 + 1e-7, 1 - 1e-7))
    logits = SCALE * cos.scatter(1, labels[:, None], torch.cos(theta + MARGIN))
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    full_step_s = time.perf_counter() - t0
    full_bytes = 2 * weight.numel() * weight.element_size() + logits.numel() * 4
    per_worker = max(r["bytes"] for r in ranks)
    return {
        "classes": classes,
        "in_features": IN_FEATURES,
        "batch": world * ROWS_PER_RANK,
        "sharded_fc_memory_ratio_2w": per_worker / full_bytes,
        "sharded_fc_loss_diff": max(abs(r["loss"] - float(loss)) for r in ranks),
        "sharded_fc_loss": ranks[0]["loss"],
        "unsharded_fc_loss": float(loss),
        "sharded_fc_worker_bytes": per_worker,
        "unsharded_fc_bytes": full_bytes,
        "sharded_step_s": max(r["step_s"] for r in ranks),
        "unsharded_step_s": full_step_s,
    }


def bench_dask(rows: int) -> dict[str, Any]:
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    from atlas_trainer.config import DaskSettings
    from atlas_trainer.parallel.dask_boosting import DaskBoosting

    X, y = make_classification(rows, 20, n_informative=10, random_state=0, flip_y=0.05)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0)
    rounds = 100
    makers = {
        "xgb": ("xgboost", lambda: xgb.XGBClassifier(max_depth=6, tree_method="hist", n_jobs=1)),
        "lgb": ("lightgbm", lambda: lgb.LGBMClassifier(num_leaves=63, n_jobs=1, verbose=-1)),
    }
    out: dict[str, Any] = {"rows": rows, "rounds": rounds}
    with DaskBoosting(DaskSettings(engine="always", local_workers=2)) as cluster:
        for key, (family, make) in makers.items():
            t0 = time.perf_counter()
            local = make().set_params(n_estimators=rounds).fit(Xtr, ytr)
            local_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            distributed = cluster.grow(make(), family, Xtr, ytr, 0, rounds)
            dask_s = time.perf_counter() - t0
            acc_local = float((local.predict(Xte) == yte).mean())
            acc_dask = float((distributed.predict(Xte) == yte).mean())
            out[f"dask_{key}_accuracy_gap"] = abs(acc_local - acc_dask)
            out[f"{key}_accuracy_single"] = acc_local
            out[f"{key}_accuracy_dask_2w"] = acc_dask
            out[f"{key}_fit_single_s"] = local_s
            out[f"{key}_fit_dask_2w_s"] = dask_s
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    sharded = bench_sharded(20_000 if args.quick else 100_000)
    dask = bench_dask(10_000 if args.quick else 60_000)
    payload = {**sharded, **dask}
    print(f"{'figure':34} value")
    for key, value in payload.items():
        print(f"{key:34} {value:.6g}" if isinstance(value, float) else f"{key:34} {value}")
    path = write_results("parallel", payload, quick=args.quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
