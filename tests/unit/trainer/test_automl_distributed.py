"""Two worker processes share one study through Optuna's RDB storage on PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp

import optuna
import pytest

from tests.support.db import postgres_schema_url  # noqa: F401 - fixture


def _worker(url: str, seed: int, queue: mp.Queue) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    from atlas_trainer.automl import AutoMLRequest, run_automl
    from tests.unit.trainer._automl_data import breast_cancer

    X, y = breast_cancer()
    r = run_automl(
        AutoMLRequest(
            X,
            y,
            max_trials=8,
            storage=url,
            study_name="shared",
            seed=seed,
            families=["linear", "lightgbm"],
            strategy="tpe",
            ensemble=False,
        )
    )
    queue.put(r.trials_run_here)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_share_one_study(postgres_schema_url: str) -> None:  # noqa: F811
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(postgres_schema_url, s, queue)) for s in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0
    runs = [queue.get(timeout=5) for _ in procs]
    assert all(runs), f"both workers must run trials: {runs}"
    study = optuna.load_study(study_name="shared", storage=postgres_schema_url)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))  # no duplicate trial numbers
    complete = [t.number for t in study.trials if t.state.name == "COMPLETE"]
    assert sorted(complete) == sorted(runs[0] + runs[1])  # total = sum of the workers' trials
    assert len(numbers) == 8  # study-wide budget, checked under the study lock
