"""Compiled scorers reproduce every family's own predictions (missing values and LightGBM's
categorical splits included), and decline what they do not cover."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import ElasticNet, LogisticRegression, Ridge

from atlas_core.ml import TorchMLP, compile_estimator


def _data(seed: int = 0, missing: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, 6))
    X[:, 5] = rng.integers(0, 40, size=400)  # a code column (categorical for LightGBM)
    if missing:
        X[rng.random(X.shape) < 0.08] = np.nan
    signal = np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) ** 2 + (np.nan_to_num(X[:, 5]) % 3)
    binary = (signal > np.median(signal)).astype(int)
    three = np.digitize(signal, np.quantile(signal, [1 / 3, 2 / 3]))
    return X, binary, three


def _same(estimator: Any, X: np.ndarray, regression: bool = False) -> None:
    scorer = compile_estimator(estimator, X.shape[1])
    assert scorer is not None
    expected = estimator.predict(X) if regression else estimator.predict_proba(X)
    for rows in (slice(None), slice(3, 4), slice(0, 40)):  # large batch, one row, small batch
        np.testing.assert_allclose(scorer(X[rows]), expected[rows], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [RandomForestClassifier, ExtraTreesClassifier])
@pytest.mark.parametrize("target", ["binary", "multiclass"])
def test_sklearn_forest_classifiers_with_missing_values(cls: Any, target: str) -> None:
    X, binary, three = _data()
    y = binary if target == "binary" else three
    _same(cls(n_estimators=25, min_samples_leaf=2, random_state=0, n_jobs=1).fit(X, y), X)


@pytest.mark.parametrize("cls", [RandomForestRegressor, ExtraTreesRegressor])
def test_sklearn_forest_regressors(cls: Any) -> None:
    X, _, _ = _data(1)
    y = np.nan_to_num(X[:, 0]) * 3 + np.nan_to_num(X[:, 2])
    _same(cls(n_estimators=25, random_state=0, n_jobs=1).fit(X, y), X, regression=True)


@pytest.mark.parametrize("target", ["binary", "multiclass", "regression"])
def test_lightgbm_many_leaves_and_categorical_splits(target: str) -> None:
    X, binary, three = _data(2)
    kw = {"n_estimators": 40, "num_leaves": 255, "min_child_samples": 3, "verbose": -1}
    if target == "regression":
        model: Any = lgb.LGBMRegressor(**kw).fit(X, np.nan_to_num(X[:, 5]), categorical_feature=[5])
    else:
        y = binary if target == "binary" else three
        model = lgb.LGBMClassifier(**kw).fit(X, y, categorical_feature=[5])
    dump = model.booster_.dump_model()["tree_info"]
    assert any("||" in str(t) or "==" in str(t) for t in dump)  # categorical splits exist
    _same(model, X, regression=target == "regression")


@pytest.mark.parametrize("target", ["binary", "multiclass"])
def test_a_lightgbm_stopping_at_its_best_iteration_compiles_those_trees(target: str) -> None:
    X, binary, three = _data(6)
    y = binary if target == "binary" else three
    model = lgb.LGBMClassifier(n_estimators=40, verbose=-1).fit(X, y)
    full = model.predict_proba(X)
    # a booster kept whole past its best iteration (keep_training_booster): predict stops there
    model.booster_.best_iteration = model._best_iteration = 10
    assert model.booster_.best_iteration < model.booster_.current_iteration()
    assert not np.allclose(model.predict_proba(X), full)
    _same(model, X)


def test_linear_models() -> None:
    X, binary, three = _data(3, missing=False)
    _same(LogisticRegression(max_iter=500).fit(X, binary), X)
    _same(LogisticRegression(max_iter=500).fit(X, three), X)
    _same(Ridge(alpha=0.5).fit(X, X[:, 0]), X, regression=True)
    _same(ElasticNet(alpha=0.01).fit(X, X[:, 1]), X, regression=True)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_the_mlp(task: str) -> None:
    X, binary, three = _data(4, missing=False)
    y = {"binary": binary, "multiclass": three, "regression": X[:, 0] * 100}[task]
    mlp = TorchMLP(task=task, hidden=(16, 8), epochs=3, batch_size=64, device="cpu").fit(X, y)
    _same(mlp, X, regression=task == "regression")


def test_uncovered_estimators_are_declined() -> None:
    X, binary, _ = _data(5, missing=False)
    model = GradientBoostingClassifier(n_estimators=5).fit(X, binary)
    assert compile_estimator(model, X.shape[1]) is None
    forest = RandomForestClassifier(n_estimators=3, n_jobs=1).fit(X, binary)
    assert compile_estimator(forest, X.shape[1] + 1) is None  # not the model's width
