"""Do column roles help? ATLAS with them against ATLAS as it was before them, on the suite's
tables with real column types (bench/automl.py's ``flights`` and ``trump_tweets``).

    python bench/automl_roles.py --before /path/to/checkout-before-roles   # 60 s each
    python bench/automl_roles.py --before DIR --budget 30 --datasets trump_tweets

The "before" system is the same AutoML engine imported from another checkout (a git worktree
of the commit before column roles): there an ISO timestamp string is a high-cardinality
category or an id, and free text is dropped as id-like. Both run in their own process on the
same split (bench/automl.py: 75/25, seed 0, 2 CPUs), one after the other, and are scored on
the test part (ROC AUC for flights, log loss for trump_tweets). Writes
bench/results/automl_roles.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _results import write_results  # noqa: E402

SERVICE_PATHS = ("src", "services/trainer")


def _child(dataset: str, budget: float) -> dict[str, Any]:
    """One ATLAS run on ``dataset`` with whatever atlas_trainer is on the path."""
    import numpy as np
    from automl import DATASETS, METRIC, split, test_score

    import atlas_trainer
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
        )
    )
    pred = result.model.predict_proba(Xte)
    classes = sorted(ytr.unique(), key=lambda v: (str(type(v)), v))
    score = test_score(METRIC[task], np.asarray(yte), pred, classes)
    roles = getattr(result, "column_roles", [])
    return {
        "score": score,
        "metric": METRIC[task],
        "seconds": round(time.monotonic() - started, 1),
        "trials_complete": result.trials_complete,
        "dropped_columns": result.dropped_columns,
        "roles": {r.column: r.role for r in roles},
        "source": str(Path(atlas_trainer.__file__).resolve().parents[3]),
    }


def _run(root: Path, dataset: str, budget: float) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(root / p) for p in SERVICE_PATHS))
    out = subprocess.run(
        [sys.executable, __file__, "--child", dataset, "--budget", str(budget)],
        env=env,
        capture_output=True,
        text=True,
        timeout=budget * 3 + 300,
    )
    if out.returncode != 0:
        return {"score": None, "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", type=Path, help="checkout of ATLAS before column roles")
    ap.add_argument("--budget", type=float, default=60.0)
    ap.add_argument("--datasets", nargs="*", default=["flights", "trump_tweets"])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.budget), default=str))
        return 0
    if args.before is None or not (args.before / "services/trainer/atlas_trainer").is_dir():
        ap.error("--before: give a checkout of ATLAS (with services/trainer)")
    rows = []
    for dataset in args.datasets:
        row: dict[str, Any] = {"dataset": dataset}
        for system, root in (("roles", ROOT), ("before", args.before.resolve())):
            row[system] = _run(root, dataset, args.budget)
            print(f"{dataset:14s} {system:7s} {row[system].get('score')}", flush=True)
        rows.append(row)
    better = []
    for row in rows:
        a, b = row["roles"].get("score"), row["before"].get("score")
        if a is not None and b is not None:
            higher = row["roles"]["metric"] == "roc_auc"
            row["roles_better"] = a > b if higher else a < b
            better.append(row["roles_better"])
    before_sha = subprocess.run(
        ["git", "-C", str(args.before), "rev-parse", "--short=10", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    path = write_results(
        "automl_roles",
        {
            "budget_s": args.budget,
            "before_commit": before_sha,
            "datasets": rows,
            "roles_better_frac": sum(better) / len(better) if better else None,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
