"""Distributed HPO: trials per second of one AutoML study run by two worker processes on one
PostgreSQL study, against one worker (``distributed_hpo_speedup_2w`` of issue #31), plain
processes on this machine (no containers).

Each worker is a process calling ``run_automl`` on the same study (what a trainer's job
process does; two trainer services joining one ``automl.study_name`` run exactly this,
tests/integration/test_scale_out.py). The budget is a study-wide trial count; throughput is
trials finished / (last worker's end - first worker's start of the search). Every run also
checks the study: no trial number twice, no configuration twice, the budget exact.

    python bench/distributed_hpo.py            # 2 repeats of 1 and 2 workers
    python bench/distributed_hpo.py --quick    # 1 repeat, fewer trials

Needs PostgreSQL (ATLAS_TEST_POSTGRES_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/
test); each run uses a fresh schema, dropped afterwards. On a 2-core host two workers share
the same cores: report the figure with the cores and the load average.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _worker(url: str, study: str, trials: int, name: str, out: mp.Queue) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    from sklearn.datasets import load_breast_cancer

    from atlas_trainer.automl import AutoMLRequest, run_automl

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    started = time.time()
    r = run_automl(
        AutoMLRequest(
            X,
            y,
            max_trials=trials,
            storage=url,
            study_name=study,
            seed=0,  # one seed for both: the joiner's own seed must keep them apart
            families=["linear", "lightgbm"],
            ensemble=False,
            worker=name,
        )
    )
    out.put({"worker": name, "start": started, "end": time.time(), "ran": r.trials_run_here})


def _schema_url(base: str) -> tuple[str, str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"atlas_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), schema


def _drop(base: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _check(url: str, study: str, trials: int) -> None:
    import optuna

    got = optuna.load_study(study_name=study, storage=url).trials
    numbers = [t.number for t in got]
    configs = [json.dumps(t.user_attrs.get("config"), sort_keys=True) for t in got]
    assert len(got) == trials, f"budget: {len(got)} trials, asked {trials}"
    assert len(set(numbers)) == len(numbers), "a trial number twice"
    assert len(set(configs)) == len(configs), "a configuration twice"


def run(base: str, workers: int, trials: int) -> dict[str, Any]:
    url, schema = _schema_url(base)
    try:
        ctx = mp.get_context("spawn")
        out: mp.Queue = ctx.Queue()
        study = f"bench-{uuid.uuid4().hex[:8]}"
        procs = [
            ctx.Process(target=_worker, args=(url, study, trials, f"w{i}", out))
            for i in range(workers)
        ]
        for p in procs:
            p.start()
        runs = [out.get(timeout=900) for _ in procs]
        for p in procs:
            p.join(60)
            assert p.exitcode == 0, f"worker exited {p.exitcode}"
        _check(url, study, trials)
        span = max(r["end"] for r in runs) - min(r["start"] for r in runs)
        return {
            "workers": workers,
            "trials": trials,
            "seconds": round(span, 2),
            "trials_per_s": round(trials / span, 3),
            "trials_by_worker": {r["worker"]: len(r["ran"]) for r in runs},
        }
    finally:
        _drop(base, schema)


def measure(base: str, trials: int, repeats: int) -> dict[str, Any]:
    """Median trials/s of 1 and 2 workers on one study, ``repeats`` times each (interleaved);
    every run's study is checked (budget exact, no duplicate trial or configuration)."""
    load_before = os.getloadavg()
    rows = []
    for _ in range(repeats):
        for workers in (1, 2):
            row = run(base, workers, trials)
            print(json.dumps(row))
            rows.append(row)
    one = statistics.median(r["trials_per_s"] for r in rows if r["workers"] == 1)
    two = statistics.median(r["trials_per_s"] for r in rows if r["workers"] == 2)
    return {
        "distributed_hpo_speedup_2w": round(two / one, 3),
        "trials_per_s_1w": one,
        "trials_per_s_2w": two,
        "cores": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "no_duplicate_trials": True,  # asserted on every run's study
        "runs": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=0)
    args = parser.parse_args()
    trials = args.trials or (10 if args.quick else 20)
    repeats = args.repeats or (1 if args.quick else 2)
    base = os.environ.get("ATLAS_TEST_POSTGRES_URL", DEFAULT_URL)
    result = measure(base, trials, repeats)
    one, two = result["trials_per_s_1w"], result["trials_per_s_2w"]
    print(f"{'workers':>8} {'trials/s (median)':>18}")
    print(f"{1:>8} {one:>18.3f}\n{2:>8} {two:>18.3f}")
    print(f"speed-up 2 workers / 1: {two / one:.2f} on {os.cpu_count()} cores")
    print(f"-> {write_results('distributed_hpo', result, quick=args.quick)}")


if __name__ == "__main__":
    main()
