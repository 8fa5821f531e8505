"""The per-row latency budget of AutoML: trials measured above it stay out of the final
model, the ensemble sheds its lightest members to fit, the leaderboard shows the cost."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier

from atlas_core.ml import TabularModel, TabularPreprocessor
from atlas_trainer.automl import AutoMLRequest, engine, run_automl
from atlas_trainer.automl.latency import measure, row_latency_s, within_budget


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X.iloc[:, :10], y


def test_within_budget_drops_the_lightest_members_first() -> None:
    cost = {1: 3.0, 2: 1.0, 3: 1.0}.__getitem__
    assert within_budget({1: 0.5, 2: 0.3, 3: 0.2}, cost, 10.0) == {1: 0.5, 2: 0.3, 3: 0.2}
    kept = within_budget({1: 0.5, 2: 0.3, 3: 0.2}, cost, 4.0)
    assert kept == pytest.approx({1: 0.5 / 0.8, 2: 0.3 / 0.8})
    assert within_budget({1: 1.0}, cost, 2.0) == {}


def test_row_latency_of_a_compiled_model_is_measured(data: Any) -> None:
    X, y = data
    model = TabularModel(
        TabularPreprocessor(task="binary"),
        RandomForestClassifier(20, n_jobs=1),
        "binary",
        [0, 1],
    ).fit(X, y.to_numpy())
    seconds = row_latency_s(model, X)
    assert 0 < seconds < 0.5


def test_a_model_of_string_columns_is_measured_on_the_compiled_path(
    data: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = data
    site = np.resize(np.array(["north", "south", "east"], dtype=object), len(X))
    site[::7] = None
    Xc = X.assign(site=site)
    model = TabularModel(
        TabularPreprocessor(task="binary"), RandomForestClassifier(20, n_jobs=1), "binary", [0, 1]
    ).fit(Xc, y.to_numpy())

    def frame_path(frame: Any) -> Any:
        raise AssertionError("measured through a frame, not serving's matrix path")

    monkeypatch.setattr(model, "predict_scores", frame_path)
    assert 0 < row_latency_s(model, Xc) < 0.5


def test_measuring_stops_at_its_deadline(data: Any) -> None:
    X, y = data
    model = TabularModel(
        TabularPreprocessor(task="binary"), RandomForestClassifier(5, n_jobs=1), "binary", [0, 1]
    ).fit(X, y.to_numpy())
    kept = {3: [model], 7: [model]}
    assert set(measure(kept, X, [7, 3, 9], None)) == {3, 7}
    assert measure(kept, X, [7, 3], time.monotonic() - 1.0) == {}


def _families(model: Any) -> set[str]:
    members = getattr(model, "members", None)
    if members is None:
        return {model.family}
    return set().union(*(_families(m) for m in members))


def _cost(model: Any, fake: dict[str, float]) -> float:
    members = getattr(model, "members", None)
    if members is None:
        return fake[model.family]
    return sum(_cost(m, fake) for m, w in zip(members, model.weights, strict=True) if w > 0)


def test_trials_over_the_budget_stay_out_of_the_final_model(
    data: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = data
    # forests "cost" 5 ms a row, linear models 0.1 ms: a 1 ms budget admits linear only
    fake = {"random_forest": 5e-3, "linear": 1e-4}
    monkeypatch.setattr(
        engine,
        "measure",
        lambda fold_models, X, order, deadline: {
            n: fake[f[0].family] for n, f in fold_models.items()
        },
    )
    request: dict[str, Any] = dict(
        task="binary",
        max_trials=6,
        strategy="random",
        families=["random_forest", "linear"],
        folds=3,
        seed=0,
        fixed_params={"rf.n_estimators": 10},
    )
    free = run_automl(AutoMLRequest(X, y, **request))
    assert "random_forest" in {r.family for r in free.leaderboard if r.state == "COMPLETE"}
    bounded = run_automl(AutoMLRequest(X, y, max_row_latency_ms=1.0, **request))
    assert _families(bounded.model) == {"linear"}
    assert any("left out of the final model" in w for w in bounded.warnings)
    measured = [r for r in bounded.leaderboard if r.row_latency_s is not None]
    assert measured and all(r.row_latency_s in (5e-3, 1e-4) or r.number < 0 for r in measured)
    ensemble = [r for r in bounded.leaderboard if r.number < 0]
    assert all(r.row_latency_s is not None and r.row_latency_s <= 1e-3 for r in ensemble)


def test_an_ensemble_sheds_members_until_it_fits(
    data: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = data
    # every trial fits 1 ms alone; several together do not
    fake = {"random_forest": 6e-4, "linear": 4e-4}
    monkeypatch.setattr(
        engine,
        "measure",
        lambda fold_models, X, order, deadline: {
            n: fake[f[0].family] for n, f in fold_models.items()
        },
    )
    result = run_automl(
        AutoMLRequest(
            X,
            y,
            task="binary",
            max_trials=8,
            strategy="random",
            families=["random_forest", "linear"],
            folds=3,
            seed=1,
            fixed_params={"rf.n_estimators": 10},
            max_row_latency_ms=1.0,
        )
    )
    assert _cost(result.model, fake) <= 1e-3 + 1e-12
    for row in result.leaderboard:
        if row.number < 0:
            assert row.row_latency_s == pytest.approx(_cost(result.ensemble_model, fake))


@pytest.mark.slow
def test_trials_below_the_batch_throughput_floor_stay_out(
    data: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = data
    # seconds per row of a batch: forests 1,000 rows/s, linear models a million
    fake = {"random_forest": 1e-3, "linear": 1e-6}
    monkeypatch.setattr(
        engine,
        "measure_batch",
        lambda fold_models, X, order, deadline: {
            n: fake[f[0].family] for n, f in fold_models.items()
        },
    )
    result = run_automl(
        AutoMLRequest(
            X,
            y,
            task="binary",
            max_trials=6,
            strategy="random",
            families=["random_forest", "linear"],
            folds=3,
            seed=0,
            fixed_params={"rf.n_estimators": 10},
            min_batch_rows_per_s=10_000,
        )
    )
    assert "random_forest" in {r.family for r in result.leaderboard if r.state == "COMPLETE"}
    assert _families(result.model) == {"linear"}
    assert any("10000 rows/s in batches" in w for w in result.warnings)
    for row in result.leaderboard:
        if row.state == "COMPLETE" and row.number >= 0:
            assert row.batch_rows_per_s == pytest.approx(1.0 / fake[row.family])
            assert row.row_latency_s is not None and row.row_latency_s > 0
    for version in result.versions.values():
        assert _families(version.model) == {"linear"}


@pytest.mark.slow
def test_the_refit_full_version_keeps_the_members_that_were_refit(
    data: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.metrics import roc_auc_score

    from atlas_core.ml import FoldBag, WeightedEnsemble
    from atlas_trainer.automl.finalize import FinalModels

    X, y = data
    request = dict(
        task="binary",
        max_trials=6,
        strategy="random",
        families=["random_forest", "linear"],
        folds=3,
        seed=0,
        fixed_params={"rf.n_estimators": 10},
    )
    full = run_automl(AutoMLRequest(X, y, **request))
    assert isinstance(full.model, WeightedEnsemble)
    bagged, refit = full.versions["fold_bag"], full.versions["refit_full"]
    assert all(isinstance(m, FoldBag) for m in bagged.model.members)
    assert not any(isinstance(m, FoldBag) for m in refit.model.members)
    assert refit.score == bagged.score == full.ensemble_score
    assert bagged.models == 3 * refit.models
    # only the heaviest member could be refit (as when the budget runs out): the refit-full
    # version is that member alone, estimated by its own out-of-fold predictions
    heaviest = max(full.ensemble_weights, key=full.ensemble_weights.__getitem__)
    refitted = FinalModels.refitted
    monkeypatch.setattr(
        FinalModels, "refitted", lambda self, n: refitted(self, n) if n == heaviest else None
    )
    partial = run_automl(AutoMLRequest(X, y, **request))
    version = partial.versions["refit_full"]
    assert version.models == 1 and not isinstance(version.model, WeightedEnsemble)
    y_oof = y.to_numpy()[partial.oof_index]
    assert version.score == pytest.approx(roc_auc_score(y_oof, partial.oof[heaviest][:, 1]))
    assert partial.versions["fold_bag"].score == partial.ensemble_score
