"""Context for ``automl.py``'s Hyperband-TPE ratio: plain TPE against plain TPE.

    python bench/automl_tpe_floor.py                       # 4 small datasets, 3 runs each (~21 min)
    python bench/automl_tpe_floor.py --datasets CPS1988 TV16 diamonds nassCDS InstEval \
        --out bench/results/automl_tpe_floor_large.json  # the 20k+-row five (~27 min)
    python bench/automl_tpe_floor.py --datasets wine --runs 4

Runs plain TPE ``--runs`` times per dataset on the same 75/25 split and the same CV folds
(split seed 0), differing only in the search seed, and computes ``automl.py``'s measure for
every ordered pair of runs (A, B): the time B takes to reach A's final validation score over
the time A took (never reached = the whole budget). Two equally good searches give the ratio
that chance alone gives; a search that is twice as fast would have to beat it by 2x.
Writes bench/results/automl_tpe_floor.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import warnings
from pathlib import Path

from automl import DATASETS, QUICK, ROOT, _time_to_reach, split, time_ratio

warnings.filterwarnings("ignore")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="*", default=list(QUICK))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--budget", type=float, default=120.0)
    ap.add_argument("--out", default=str(ROOT / "bench/results/automl_tpe_floor.json"))
    args = ap.parse_args()

    from atlas_trainer.automl import AutoMLRequest, engine, run_automl

    # The search seed also seeds the CV folds; pin the folds so that scores compare.
    make_splits = engine.make_splits
    engine.make_splits = lambda prepared, **kw: make_splits(prepared, **{**kw, "seed": 0})

    rows = {}
    for name in args.datasets:
        task, load = DATASETS[name]
        X, y = load()
        Xtr, _, ytr, _ = split(X, y, task)
        runs = []
        for seed in range(10, 10 + args.runs):
            events: list[dict] = []
            res = run_automl(
                AutoMLRequest(
                    Xtr,
                    ytr,
                    task=task,
                    wall_budget_s=args.budget,
                    n_jobs=2,
                    seed=seed,
                    strategy="tpe",
                    on_event=events.append,
                    ensemble=False,
                )
            )
            runs.append((events, res.best_score, res.higher_is_better))
        ratios = []
        for a, b in itertools.permutations(range(len(runs)), 2):
            events_a, target, higher = runs[a]
            t_a = _time_to_reach(events_a, target, higher)
            t_b = _time_to_reach(runs[b][0], target, higher)
            ratio = time_ratio(t_b, t_a, args.budget)
            if ratio is not None:
                ratios.append(ratio)
        rows[name] = {
            "ratios": ratios,
            "median": statistics.median(ratios),
            "within_half": sum(r <= 0.5 for r in ratios),
        }
        print(
            f"  {name:14s} TPE vs TPE: median {rows[name]['median']:.2f}, "
            f"{rows[name]['within_half']}/{len(ratios)} pairs <= 1/2, "
            f"per pair {[round(r, 2) for r in ratios]}",
            flush=True,
        )
    pooled = [r for row in rows.values() for r in row["ratios"]]
    summary = {
        "median_over_datasets": statistics.median(row["median"] for row in rows.values()),
        "pooled_median": statistics.median(pooled),
        "pairs_within_half": f"{sum(r <= 0.5 for r in pooled)}/{len(pooled)}",
    }
    print(
        f"TPE vs TPE: median over datasets {summary['median_over_datasets']:.2f}, pooled "
        f"{summary['pooled_median']:.2f}, pairs <= 1/2: {summary['pairs_within_half']}"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"datasets": rows, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
