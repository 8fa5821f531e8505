"""Does more budget buy accuracy with stacking? ATLAS at a small and a large wall budget with
stacking ON (and, for attribution, OFF at the large budget), on the suite's datasets
(bench/automl.py: fixed 75/25 split, seed 0, 2 CPUs, test ROC AUC / log loss / RMSE).

    python bench/automl_stack.py                                   # 30 s vs 120 s, 3 datasets
    python bench/automl_stack.py --budgets 60 300 --datasets TV16 nassCDS flights trump_tweets
    python bench/automl_stack.py --no-off                          # skip the OFF runs

Each run is its own process (one after the other). ``gain_frac``: the share of datasets on
which ATLAS at the large budget (stacking ON) beats itself at the small one on the test part
(the issue's ``gain_300_vs_60_frac`` when the budgets are 60 and 300). Writes
bench/results/<name>.json (default automl_stack).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _results import write_results  # noqa: E402

DEFAULT_DATASETS = ("trump_tweets", "TV16", "diabetes")


def _child(dataset: str, budget: float, stacking: str) -> dict[str, Any]:
    import numpy as np
    from automl import DATASETS, HIGHER, METRIC, split, test_score

    from atlas_trainer.automl import AutoMLRequest, run_automl

    task, load = DATASETS[dataset]
    X, y = load()
    Xtr, Xte, ytr, yte = split(X, y, task)
    started = time.monotonic()
    result = run_automl(
        AutoMLRequest(
            Xtr.reset_index(drop=True),
            ytr.reset_index(drop=True),
            task=task,
            wall_budget_s=budget,
            n_jobs=2,
            seed=0,
            stacking=stacking,
        )
    )
    seconds = time.monotonic() - started
    model = result.model
    pred = model.predict(Xte) if task == "regression" else model.predict_proba(Xte)
    classes = sorted(ytr.unique(), key=lambda v: (str(type(v)), v))
    metric = METRIC[task]
    stacked = [r for r in result.leaderboard if r.stack_level == 2]
    return {
        "score": test_score(metric, np.asarray(yte), pred, classes),
        "metric": metric,
        "higher_is_better": HIGHER[metric],
        "validation_score": (
            result.ensemble_score if model is result.ensemble_model else result.best_score
        ),
        "seconds": round(seconds, 1),
        "trials_complete": result.trials_complete,
        "validation": result.validation,
        "stacking": result.stacking,
        "final_layers": result.stack_levels,
        "layer2_models": len(stacked),
        "score_curve": [
            {
                "elapsed_s": round(p.elapsed_s, 1),
                "score": p.score,
                "series": p.series,
                "stack_level": p.stack_level,
            }
            for p in result.score_curve
        ],
    }


def _run(dataset: str, budget: float, stacking: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", dataset, str(budget), stacking],
        capture_output=True,
        text=True,
        timeout=budget * 3 + 600,
    )
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in __import__("os").getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", nargs=2, type=float, default=(30.0, 120.0))
    ap.add_argument("--datasets", nargs="*", default=list(DEFAULT_DATASETS))
    ap.add_argument("--no-off", action="store_true", help="skip stacking OFF at the large budget")
    ap.add_argument("--name", default="automl_stack")
    ap.add_argument("--child", nargs=3, metavar=("DATASET", "BUDGET", "STACKING"))
    args = ap.parse_args()
    if args.child:
        dataset, budget, stacking = args.child
        print(json.dumps(_child(dataset, float(budget), stacking)))
        return 0
    small, large = args.budgets
    rows: list[dict[str, Any]] = []
    loads = [_load()]
    for dataset in args.datasets:
        runs = [(small, "on"), (large, "on")] + ([] if args.no_off else [(large, "off")])
        for budget, stacking in runs:
            got = _run(dataset, budget, stacking)
            loads.append(_load())
            rows.append({"dataset": dataset, "budget": budget, "stacking_mode": stacking, **got})
            shown = {k: v for k, v in got.items() if k != "score_curve"}
            print(f"{dataset:14s} {budget:5.0f}s stacking {stacking:3s} {shown}", flush=True)
    summary = summarise(rows, small, large)
    print(json.dumps(summary, indent=2))
    write_results(
        args.name,
        {
            "command": "python bench/automl_stack.py " + " ".join(sys.argv[1:]),
            "budgets": [small, large],
            "datasets": args.datasets,
            "load_average_1_5_15": loads,
            "rows": rows,
            **summary,
        },
    )
    return 0


def summarise(rows: list[dict[str, Any]], small: float, large: float) -> dict[str, Any]:
    def score(dataset: str, budget: float, mode: str) -> dict[str, Any] | None:
        for r in rows:
            if (r["dataset"], r["budget"], r["stacking_mode"]) == (dataset, budget, mode):
                return r if "score" in r else None
        return None

    gains, vs_off = {}, {}
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        a, b, off = (
            score(dataset, small, "on"),
            score(dataset, large, "on"),
            score(dataset, large, "off"),
        )
        if a and b:
            sign = 1 if b["higher_is_better"] else -1
            gains[dataset] = sign * (b["score"] - a["score"])
        if b and off:
            sign = 1 if b["higher_is_better"] else -1
            vs_off[dataset] = sign * (b["score"] - off["score"])
    tag = f"{large:.0f}_vs_{small:.0f}"
    return {
        f"gain_{tag}": gains,  # > 0: the large budget scored better on the test part
        f"gain_{tag}_frac": (sum(g > 0 for g in gains.values()) / len(gains)) if gains else None,
        f"stack_on_vs_off_{large:.0f}": vs_off,  # > 0: stacking ON beat OFF at that budget
        "n_datasets": len(gains),
    }


if __name__ == "__main__":
    raise SystemExit(main())
