"""Behaviour of run_automl: quality, budgets, failures, cancellation, ensemble, resume."""

from __future__ import annotations

import pickle
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from atlas_trainer.automl import ENSEMBLE_NUMBER, AutoMLRequest, run_automl
from atlas_trainer.automl import finalize as finalize_mod
from atlas_trainer.automl import space as space_mod
from atlas_trainer.convert import result_to_pb
from atlas_trainer.job_work import _result_dict
from tests.unit.trainer._automl_data import breast_cancer, hard_frame

FAST = ("lightgbm", "linear", "xgboost")


@pytest.mark.slow
def test_breast_cancer_run_beats_baseline_within_budget() -> None:
    X, y = breast_cancer()
    events: list[dict[str, Any]] = []
    t0 = time.monotonic()
    r = run_automl(AutoMLRequest(X, y, wall_budget_s=15, seed=0, on_event=events.append))
    elapsed = time.monotonic() - t0
    assert elapsed <= 15 * 1.1
    assert r.task == "binary" and r.metric == "roc_auc" and r.higher_is_better
    assert r.best_score is not None and r.best_score > r.baseline_score + 0.3
    rows = [row for row in r.leaderboard if row.state == "COMPLETE"]
    assert rows and rows[0].pipeline and rows[0].fit_time_s is not None
    assert all(row.predict_time_per_1k_s is not None for row in rows if row.number >= 0)
    proba = r.model.predict_proba(X)
    assert roc_auc_score(y, proba[:, 1]) > 0.95
    assert set(r.model.predict(X.head(20))) <= {0, 1}
    kinds = {e["type"] for e in events}
    assert {"trial_started", "trial_finished", "new_best", "search_finished"} <= kinds
    finished = next(e for e in events if e["type"] == "trial_finished")
    assert {"score", "params", "fit_time_s", "best_score", "elapsed_s", "remaining_s"} <= set(
        finished
    )


def test_trial_budget_and_leaderboard_order() -> None:
    X, y = breast_cancer()
    r = run_automl(
        AutoMLRequest(X, y, max_trials=6, families=["linear", "lightgbm"], strategy="tpe")
    )
    numbers = [row.number for row in r.leaderboard if row.number >= 0]
    assert sorted(numbers) == list(range(6))
    scores = [row.score for row in r.leaderboard if row.state == "COMPLETE"]
    assert scores == sorted(scores, reverse=True)
    assert r.folds == 5  # no wall budget: the requested folds


def test_failing_trial_is_recorded_and_study_continues(monkeypatch: pytest.MonkeyPatch) -> None:
    real = space_mod.build_estimator

    def flaky(params: dict[str, Any], *a: Any, **kw: Any) -> Any:
        if params["family"] == "linear":
            raise RuntimeError("boom: linear model exploded")
        return real(params, *a, **kw)

    monkeypatch.setattr("atlas_trainer.automl.evaluate.build_estimator", flaky)
    X, y = breast_cancer()
    r = run_automl(
        AutoMLRequest(
            X, y, max_trials=6, families=["linear", "lightgbm"], strategy="random", seed=3
        )
    )
    failed = [row for row in r.leaderboard if row.state == "FAIL"]
    assert failed and all("boom" in row.error for row in failed)
    assert r.trials_complete >= 1 and r.trials_complete + r.trials_failed + r.trials_pruned == 6
    assert r.model is not None


def test_trial_cut_before_its_first_score_counts_as_interrupted_not_failed() -> None:
    X, y = breast_cancer()
    started: list[int] = []
    r = run_automl(
        AutoMLRequest(
            X,
            y,
            max_trials=5,
            families=["lightgbm"],
            strategy="tpe",
            ensemble=False,
            on_event=lambda e: started.append(e["trial"]) if e["type"] == "trial_started" else None,
            should_stop=lambda: len(started) >= 2,  # cancel as the second trial starts
        )
    )
    assert (r.trials_complete, r.trials_failed, r.trials_interrupted) == (1, 0, 1)
    cut = next(row for row in r.leaderboard if row.number == 1)
    assert cut.state == "FAIL" and cut.error.startswith("interrupted: ")
    # The job result reports both counts.
    bundle = SimpleNamespace(uri="s3://b/m", sha256="0" * 64, size=1)
    data = SimpleNamespace(dataset=None, artifact_uri="s3://b/d.parquet")
    reported = result_to_pb(_result_dict(r, bundle, data, "job-1", 1.0))
    assert (reported.trials_failed, reported.trials_interrupted) == (0, 1)


@pytest.mark.slow
def test_cancellation_stops_within_five_seconds_and_keeps_best() -> None:
    X, y = breast_cancer()
    state: dict[str, float] = {}

    def on_event(e: dict[str, Any]) -> None:
        if e["type"] == "trial_finished" and "at" not in state:
            state["at"] = time.monotonic()

    def should_stop() -> bool:
        return "at" in state

    r = run_automl(
        AutoMLRequest(
            X,
            y,
            wall_budget_s=120,
            seed=0,
            on_event=on_event,
            should_stop=should_stop,
            families=["mlp", "xgboost", "lightgbm"],
        )
    )
    assert time.monotonic() - state["at"] < 5.0
    assert r.stop_reason == "cancelled"
    assert r.trials_complete >= 1 and r.best_model is not None
    assert r.model.predict(X.head(3)).shape == (3,)


def test_ensemble_scores_at_least_best_single() -> None:
    X, y = breast_cancer()
    r = run_automl(
        AutoMLRequest(X, y, max_trials=8, families=list(FAST), strategy="random", seed=1)
    )
    assert r.ensemble_model is not None and r.ensemble_score is not None
    assert r.ensemble_score >= r.best_score - 1e-12
    entry = next(row for row in r.leaderboard if row.number == ENSEMBLE_NUMBER)
    assert abs(sum(entry.ensemble_weights.values()) - 1) < 1e-9
    assert r.ensemble_model.predict_proba(X.head(4)).shape == (4, 2)


def test_resume_continues_the_study(tmp_path: Path) -> None:
    X, y = breast_cancer()
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = run_automl(
        AutoMLRequest(X, y, max_trials=3, storage=url, study_name="job-1", families=list(FAST))
    )
    assert first.trials_complete + first.trials_pruned + first.trials_failed == 3
    second = run_automl(
        AutoMLRequest(X, y, max_trials=6, storage=url, study_name="job-1", families=list(FAST))
    )
    assert sorted(r.number for r in second.leaderboard if r.number >= 0) == list(range(6))
    assert second.trials_run_here and min(second.trials_run_here) >= 3
    assert second.best_score is not None and second.best_score >= first.best_score


@pytest.mark.parametrize("task_kind", ["hard_binary", "tiny_regression", "tiny_classification"])
def test_hard_inputs_never_crash(task_kind: str) -> None:
    if task_kind == "hard_binary":
        X, y = hard_frame(300)
    else:
        rng = np.random.default_rng(0)
        X = pd.DataFrame({"a": rng.normal(size=20), "b": rng.normal(size=20)})
        X.loc[3, "a"] = np.inf
        y = pd.Series(X["b"] * 3 + rng.normal(size=20), name="t")
        if task_kind == "tiny_classification":
            y = pd.Series(np.where(X["b"] > 0, "p", "n"), name="t")
    r = run_automl(AutoMLRequest(X, y, max_trials=4, families=list(FAST), strategy="random"))
    assert r.model is not None
    assert r.model.predict(X.head(5)).shape == (5,)
    if task_kind == "hard_binary":
        assert r.dropped_columns == {
            "customer_id": "id_like",
            "uuid": "id_like",
            "constant": "constant",
            "all_nan": "all_missing",
        }
        assert any("single example" in w for w in r.warnings)
        assert r.classes == ["no", "yes"]
    elif task_kind == "tiny_regression":
        assert any("4-fold" in w for w in r.warnings)


def test_models_unpickle_with_atlas_core_only(tmp_path: Path) -> None:
    X, y = hard_frame(200)
    r = run_automl(
        AutoMLRequest(
            X, y, max_trials=5, families=["xgboost", "lightgbm", "mlp"], strategy="random"
        )
    )
    models = {"best": r.best_model, "model": r.model}
    path = tmp_path / "models.pkl"
    path.write_bytes(pickle.dumps(models))
    X.head(10).to_pickle(tmp_path / "X.pkl")
    expected = {k: m.predict(X.head(10)).tolist() for k, m in models.items()}
    code = f"""
import pickle, sys, pandas as pd
sys.modules['atlas_trainer'] = None  # importing the trainer must fail
models = pickle.load(open({str(path)!r}, 'rb'))
X = pd.read_pickle({str(tmp_path / "X.pkl")!r})
print(repr({{k: m.predict(X).tolist() for k, m in models.items()}}))
c = models['best'].contributions(X)
print(None if c is None else (c[0].shape, len(c[1])))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert eval(lines[0]) == expected  # noqa: S307 - our own repr
    if r.best_model.family in ("xgboost", "lightgbm"):
        shape, n_names = eval(lines[1])  # noqa: S307
        assert shape[0] == 10 and shape[-1] == n_names


def test_default_strategy_tries_the_portfolio_first_and_prunes_cheaply() -> None:
    X, y = breast_cancer()
    r = run_automl(AutoMLRequest(X, y, max_trials=5, families=list(FAST), seed=0))
    rows = sorted((row for row in r.leaderboard if row.number >= 0), key=lambda row: row.number)
    assert [row.number for row in rows] == list(range(5))  # nothing left WAITING
    assert all(row.origin == "portfolio" for row in rows)
    assert all(row.state == "COMPLETE" for row in rows)  # curated configs are not pruned
    assert rows[0].family == "linear"
    plain = run_automl(
        AutoMLRequest(X, y, max_trials=3, families=list(FAST), strategy="tpe", seed=0)
    )
    assert all(row.origin == "tpe" for row in plain.leaderboard if row.number >= 0)


def test_small_wall_budget_uses_fewer_folds() -> None:
    from atlas_trainer.automl.engine import auto_folds

    assert auto_folds(5, 20, 2) == 3
    assert auto_folds(5, None, 2) == 5
    assert auto_folds(5, 3600, 4) == 5


def test_auto_validation_by_data_size_and_budget() -> None:
    from atlas_trainer.automl.engine import TINY_WORK, auto_validation

    # a few hundred rows: the requested folds even at a small budget (cheap, less noisy)
    assert auto_validation(5, 20, 2, rows=400, cols=10, classes=2) == ("auto", 5)
    assert 400 * 10 * 3 <= TINY_WORK < 400 * 10 * 20  # multiclass work counts the classes
    assert auto_validation(5, 20, 2, rows=400, cols=10, classes=20) == ("auto", 3)
    assert auto_validation(5, 20, 2, rows=20_000, cols=10, classes=2) == ("auto", 3)
    assert auto_validation(5, None, 2, rows=20_000, cols=10, classes=2) == ("auto", 5)
    # so much work per worker-second of budget that one split is all the search can afford
    assert auto_validation(5, 20, 2, rows=1_000_000, cols=50, classes=2) == ("holdout", 5)


def test_default_strategy_prunes_poor_trials_at_low_rungs() -> None:
    rng = np.random.default_rng(0)
    n, cols = 1_300, 40
    X = pd.DataFrame(rng.normal(size=(n, cols)), columns=[f"f{i}" for i in range(cols)])
    y = pd.Series((X["f0"] + X["f1"] * X["f2"] + rng.normal(size=n) > 0).astype(int))
    rounds = {"xgb.n_estimators": 30, "lgb.n_estimators": 30}  # keeps the test fast
    opts = dict(max_trials=25, families=["xgboost", "lightgbm"], fixed_params=rounds, seed=0)
    default = run_automl(AutoMLRequest(X, y, **opts))
    assert default.trials_pruned > 0 and default.trials_complete >= 4  # the portfolio completes
    plain = run_automl(AutoMLRequest(X, y, strategy="tpe", **opts))
    assert plain.trials_pruned == 0 and plain.trials_complete == 25


def test_final_models_fit_and_predict_on_all_of_the_jobs_cpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fitted_on: list[int] = []  # threads of each refit's estimator when it was built

    def spy(*args: Any, threads: int = 1, **kwargs: Any) -> Any:
        fitted_on.append(threads)
        return space_mod.build_estimator(*args, threads=threads, **kwargs)

    monkeypatch.setattr(finalize_mod, "build_estimator", spy)
    X, y = breast_cancer()
    kw: dict[str, Any] = dict(families=["lightgbm"], n_jobs=2, ensemble=False, seed=0)
    refit = run_automl(AutoMLRequest(X, y, max_trials=2, **kw))
    assert refit.best_model_kind == "refit"
    assert fitted_on == [2]  # trials fit on one thread each; the refit on both CPUs
    assert refit.best_model.estimator.n_jobs == 2
    finished: list[dict[str, Any]] = []
    cancelled = run_automl(
        AutoMLRequest(
            X,
            y,
            max_trials=50,
            on_event=lambda e: finished.append(e) if e["type"] == "trial_finished" else None,
            should_stop=lambda: bool(finished),
            **kw,
        )
    )
    # Cancelled: no refit, the best trial's own fold models (fit on one thread each).
    assert cancelled.best_model_kind == "fold_bag"
    assert [m.estimator.n_jobs for m in cancelled.best_model.members] == [2] * len(
        cancelled.best_model.members
    )
    # A forest refits on both CPUs but predicts on one (joblib's per-call cost).
    fitted_on.clear()
    forest = run_automl(AutoMLRequest(X, y, max_trials=1, **{**kw, "families": ["extra_trees"]}))
    assert forest.best_model_kind == "refit" and fitted_on == [2]
    assert forest.best_model.estimator.n_jobs == 1
