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


def test_joining_a_study_of_another_metric_or_dataset_is_refused(tmp_path) -> None:
    from atlas_core.errors import InvalidArgument
    from atlas_trainer.automl import AutoMLRequest, run_automl
    from tests.unit.trainer._automl_data import breast_cancer

    X, y = breast_cancer()
    url = f"sqlite:///{tmp_path / 'optuna.db'}"

    def run(**kw):
        base = dict(max_trials=1, storage=url, study_name="s", families=["linear"])
        return run_automl(AutoMLRequest(X, y, ensemble=False, **{**base, **kw}))

    run(metric="roc_auc", dataset_key="bc@1")
    for other in ({"metric": "log_loss", "dataset_key": "bc@1"}, {"dataset_key": "bc@2"}):
        with pytest.raises(InvalidArgument) as refused:
            run(**{"metric": "roc_auc", **other})
        assert refused.value.reason == "STUDY_MISMATCH"
    joined = run(metric="roc_auc", dataset_key="bc@1", max_trials=2, worker="w2")
    assert joined.trials_run_here == [1]
    trial = optuna.load_study(study_name="s", storage=url).trials[1]
    assert trial.user_attrs["worker"] == "w2"


@pytest.mark.postgres
def test_study_lock_is_held_across_processes_on_postgresql(
    postgres_schema_url: str,  # noqa: F811
) -> None:
    from sqlalchemy import create_engine, text

    from atlas_trainer.automl.study_lock import StudyLock, advisory_key

    study = optuna.create_study(study_name="locked", storage=postgres_schema_url)
    lock = StudyLock(study)  # Optuna wraps the RDB storage in a cache: the lock sees through
    assert lock.across_processes
    other = create_engine(postgres_schema_url)  # another session, as another process has
    try:
        with other.connect() as conn:
            try_lock = text("SELECT pg_try_advisory_lock(:k)")
            unlock = text("SELECT pg_advisory_unlock(:k)")
            key = {"k": advisory_key("locked")}
            with lock.hold():
                assert conn.execute(try_lock, key).scalar_one() is False
            assert conn.execute(try_lock, key).scalar_one() is True
            conn.execute(unlock, key)
    finally:
        other.dispose()
