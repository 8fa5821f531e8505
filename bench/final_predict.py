"""A finished AutoML job's final model on all of the job's CPUs (what the trainer ships) vs on
one thread per booster (how the trials ran them): batch and one-row prediction of the shipped
model, and the refit of the best trial's configuration on all training rows.

    python bench/final_predict.py                       # InstEval, 120 s job, 2 CPUs (~4 min)
    python bench/final_predict.py --dataset diamonds --budget 60
    python bench/final_predict.py --quick               # 20 s job, fewer timings

Same dataset split as bench/automl.py. Prints medians and p99 per setting and the ratios;
predictions must be identical. Writes bench/results/final_predict-<date>.json and the latest
as final_predict.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results  # noqa: E402
from automl import DATASETS, split  # noqa: E402


def _tabular_models(model: Any) -> list[Any]:
    """The single-pipeline models inside an ensemble / fold bag (or the model itself)."""
    members = getattr(model, "members", None)
    return [model] if members is None else [t for m in members for t in _tabular_models(m)]


def _timed(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="InstEval", choices=sorted(DATASETS))
    ap.add_argument("--quick", action="store_true", help="20 s job, 2 batches, 50 rows")
    ap.add_argument("--budget", type=float, default=None, help="job wall budget (default 120 s)")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="batch predictions per setting")
    ap.add_argument("--rows", type=int, default=200, help="one-row predictions per setting")
    ap.add_argument("--refits", type=int, default=3, help="refits of the best trial per setting")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.rows, args.refits = min(args.repeats, 2), min(args.rows, 50), 1
    budget = args.budget or (20.0 if args.quick else 120.0)
    from atlas_trainer.automl import AutoMLRequest, run_automl
    from atlas_trainer.automl.finalize import predict_on, refit
    from atlas_trainer.automl.task import prepare_target

    task, loader = DATASETS[args.dataset]
    X, y = loader()
    Xtr, Xte, ytr, _ = split(X, y, task)
    res = run_automl(
        AutoMLRequest(Xtr, ytr, task=task, wall_budget_s=budget, n_jobs=args.cpus, seed=0)
    )
    model = res.model
    predict = model.predict if task == "regression" else model.predict_proba
    parts = _tabular_models(model)
    report: dict[str, Any] = {
        "dataset": args.dataset,
        "test_rows": len(Xte),
        "model": getattr(model, "description", type(model).__name__),
        "families": [m.family for m in parts],
        "cpus": args.cpus,
    }
    preds = {}
    for label, threads in (("one_thread", 1), ("job_cpus", args.cpus)):
        predict_on(parts, threads)  # what the trainer does to a final model's boosters
        preds[label] = predict(Xte)
        batch = _timed(lambda: predict(Xte), args.repeats)
        rows = [Xte.iloc[i : i + 1] for i in range(min(args.rows, len(Xte)))]
        one = [_timed(lambda r=r: predict(r), 1)[0] for r in rows]
        report[label] = {
            "batch_median_s": statistics.median(batch),
            "one_row_median_ms": 1e3 * statistics.median(one),
            "one_row_p99_ms": 1e3 * float(np.percentile(one, 99)),
        }
        print(
            f"{label:10s} threads={threads}: batch of {len(Xte)} median "
            f"{report[label]['batch_median_s']:.2f} s; one row median "
            f"{report[label]['one_row_median_ms']:.2f} ms, p99 "
            f"{report[label]['one_row_p99_ms']:.2f} ms",
            flush=True,
        )
    report["identical_predictions"] = bool(np.array_equal(preds["one_thread"], preds["job_cpus"]))
    report["batch_ratio"] = (
        report["job_cpus"]["batch_median_s"] / report["one_thread"]["batch_median_s"]
    )
    report["one_row_ratio"] = (
        report["job_cpus"]["one_row_median_ms"] / report["one_thread"]["one_row_median_ms"]
    )
    # The final refit of the best trial: as the engine does it (its rows, its target encoding).
    prepared = prepare_target(ytr, task)
    rows_kept = Xtr.loc[prepared.keep].reset_index(drop=True)
    best = next(r for r in res.leaderboard if r.number == res.best_trial)
    report["refit"] = {"config": best.pipeline}
    for label, threads in (("one_thread", 1), ("job_cpus", args.cpus)):
        fit = _timed(
            lambda t=threads: refit(
                best.params,
                rows_kept,
                prepared,
                seed=0,
                threads=t,
                device="cpu",
                check=lambda: None,
            ),
            args.refits,
        )
        report["refit"][f"{label}_median_s"] = statistics.median(fit)
        print(
            f"refit of the best trial, threads={threads}: median {statistics.median(fit):.2f} s",
            flush=True,
        )
    report["refit_ratio"] = (
        report["refit"]["job_cpus_median_s"] / report["refit"]["one_thread_median_s"]
    )
    print(f"{len(parts)} models ({', '.join(report['families'])}) in {report['model'][:100]}")
    print(
        f"job CPUs / one thread: batch {report['batch_ratio']:.2f}, one row "
        f"{report['one_row_ratio']:.2f}, refit {report['refit_ratio']:.2f}; identical "
        f"predictions: {report['identical_predictions']}"
    )
    print(f"wrote {write_results('final_predict', report, quick=args.quick)}")
    return 0 if report["identical_predictions"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
