"""Context for ``automl.py``'s Hyperband-TPE ratio: plain TPE against plain TPE.

    python bench/automl_tpe_floor.py                       # 4 small datasets, 3 runs each (~21 min)
    python bench/automl_tpe_floor.py --datasets CPS1988 TV16 diamonds nassCDS InstEval \
        --name automl_tpe_floor_large                      # the 20k+-row five (~27 min)
    python bench/automl_tpe_floor.py --datasets wine --runs 4

Runs plain TPE ``--runs`` times per dataset on the same 75/25 split and the same CV folds
(split seed 0), differing only in the search seed, and computes ``automl.py``'s measure for
every ordered pair of runs (A, B): the time B takes to reach A's final validation score over
the time A took (never reached = the whole budget). Two equally good searches give the ratio
that chance alone gives; a search that is twice as fast would have to beat it by 2x.

Also records what one full evaluation costs per dataset and, with the rule of ``_ratios.py``
(>= 1 s), the chance level on the costly datasets only (``tpe_self_ratio_costly``), the figure
``automl.py``'s ``bohb_time_ratio_costly`` is read against.

Writes bench/results/<name>-<date>.json and the latest as <name>.json (default name
automl_tpe_floor).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _ratios import costly_summary, full_evaluation_s, self_ratios  # noqa: E402
from _results import write_results  # noqa: E402
from automl import DATASETS, QUICK, pinned_folds, split  # noqa: E402

warnings.filterwarnings("ignore")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="*", default=list(QUICK))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--budget", type=float, default=120.0)
    ap.add_argument("--name", default="automl_tpe_floor", help="result name (bench/results/)")
    args = ap.parse_args()

    from atlas_trainer.automl import AutoMLRequest, run_automl

    rows = {}
    for name in args.datasets:
        task, load = DATASETS[name]
        X, y = load()
        Xtr, _, ytr, _ = split(X, y, task)
        runs = []
        # The search seed also seeds the CV folds; pin the folds so that scores compare.
        with pinned_folds(0):
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
        ratios = self_ratios(runs, args.budget)
        rows[name] = {
            "ratios": ratios,
            "median": statistics.median(ratios) if ratios else None,
            "within_half": sum(r <= 0.5 for r in ratios),
            "full_evaluation_s": full_evaluation_s(*(ev for ev, _, _ in runs)),
        }
        print(
            f"  {name:14s} TPE vs TPE: median {rows[name]['median']}, "
            f"{rows[name]['within_half']}/{len(ratios)} pairs <= 1/2, "
            f"per pair {[round(r, 2) for r in ratios]}; "
            f"full evaluation {rows[name]['full_evaluation_s']} s",
            flush=True,
        )
    pooled = [r for row in rows.values() for r in row["ratios"]]
    medians = [row["median"] for row in rows.values() if row["median"] is not None]
    summary = {
        "median_over_datasets": statistics.median(medians) if medians else None,
        "pooled_median": statistics.median(pooled) if pooled else None,
        "pairs_within_half": f"{sum(r <= 0.5 for r in pooled)}/{len(pooled)}",
        **costly_summary(
            {},
            {name: row["median"] for name, row in rows.items()},
            {name: row["full_evaluation_s"] for name, row in rows.items()},
        ),
    }
    summary.pop("bohb_time_ratio_costly")  # no Hyperband run here
    print(
        f"TPE vs TPE: median over datasets {summary['median_over_datasets']}, pooled "
        f"{summary['pooled_median']}, pairs <= 1/2: {summary['pairs_within_half']}; on the "
        f"costly datasets {summary['costly_datasets']}: {summary['tpe_self_ratio_costly']}"
    )
    out = write_results(args.name, {"budget_s": args.budget, "datasets": rows, "summary": summary})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
