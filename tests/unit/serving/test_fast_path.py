"""The float-matrix fast path of ServableModel for ATLAS's own models (preprocessing +
estimator, fold bags, ensembles) and bare ones: the same answers as the bundle's predictor,
compiled where every estimator compiles, the estimator itself (logged) where one does not."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from xgboost import XGBClassifier, XGBRegressor

from atlas_core.bundles import load_bundle, write_bundle
from atlas_core.ml import FoldBag, TabularModel, TabularPreprocessor, TorchMLP, WeightedEnsemble
from atlas_core.storage import LocalArtifactStore
from atlas_serving.dataplane import inference
from atlas_serving.dataplane.inference import ServableModel
from tests.support.signing import TEST_SIGNER, TEST_TRUST


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :12].copy()
    X.columns = [c.replace(" ", "_") for c in X.columns]
    X.iloc[::7, 3] = np.nan  # missing values: imputation and indicators take part
    return X, y.to_numpy()


def _tabular(
    X: pd.DataFrame, y: np.ndarray, estimator: Any, task: str = "binary", **pre: Any
) -> TabularModel:
    classes = None if task == "regression" else [0, 1]
    return TabularModel(TabularPreprocessor(task=task, **pre), estimator, task, classes).fit(X, y)


def _servable(
    tmp_path: Path,
    model: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    task: str = "binary",
    compile_all: bool = True,
) -> ServableModel:
    store = LocalArtifactStore(tmp_path / "store")
    ref = write_bundle(
        store,
        "m/bundle.tar",
        model=model,
        task=task,
        target="target",
        classes=None if task == "regression" else [0, 1],
        X_train=X,
        y_train=pd.Series(y),
        metrics={},
        lineage={},
        signer=TEST_SIGNER,
    )
    return ServableModel(load_bundle(store, ref, trust=TEST_TRUST), compile_all=compile_all)


def _rows(X: pd.DataFrame) -> list[dict[str, Any]]:
    rows = X.iloc[:40].astype(object).where(X.iloc[:40].notna(), None).to_dict("records")
    rows[1]["mean_texture"] = None
    rows[2]["mean_radius"] = float("inf")
    return rows


def _expected(served: ServableModel, rows: list[dict[str, Any]]) -> np.ndarray:
    frame = pd.DataFrame(rows, columns=served.names).astype(float)
    return served._scores_slow(frame)  # noqa: SLF001 - the reference path


@pytest.mark.parametrize(
    "pre",
    [
        {"scaling": "standard", "crosses": 4},
        {"scaling": "robust", "selection": "f_test", "selection_percentile": 60.0},
    ],
)
def test_an_atlas_xgboost_pipeline_is_compiled_and_agrees(
    tmp_path: Path, data: Any, pre: dict[str, Any]
) -> None:
    X, y = data
    model = _tabular(X, y, XGBClassifier(n_estimators=30, max_depth=3, n_jobs=1), **pre)
    served = _servable(tmp_path, model, X, y)
    assert served.fast and served.single_row_seconds is not None  # compiled trees
    rows = _rows(X)
    got = np.array([r.scores["1"] if r.label == "1" else 1 - r.value for r in served.predict(rows)])
    assert np.allclose(got, _expected(served, rows)[:, 1], rtol=1e-5, atol=1e-6)


def _agrees(served: ServableModel, X: pd.DataFrame) -> None:
    rows = _rows(X)
    got = [max(r.value, 1 - r.value) for r in served.predict(rows)]
    assert np.allclose(got, _expected(served, rows).max(axis=1), rtol=1e-5, atol=1e-6)


def test_an_ensemble_of_every_family_is_compiled_and_agrees(
    tmp_path: Path, data: Any, caplog: pytest.LogCaptureFixture
) -> None:
    X, y = data
    folds = [
        _tabular(X[i::2], y[i::2], RandomForestClassifier(20, random_state=i, n_jobs=1))
        for i in range(2)
    ]
    members = [
        FoldBag(folds),
        _tabular(X, y, ExtraTreesClassifier(20, min_samples_leaf=2, n_jobs=1)),
        _tabular(X, y, LGBMClassifier(n_estimators=20, num_leaves=63, verbose=-1)),
        _tabular(X, y, XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1)),
        _tabular(X, y, LogisticRegression(max_iter=500), scaling="quantile"),
        _tabular(X, y, TorchMLP(task="binary", hidden=(8,), epochs=2), scaling="standard"),
    ]
    model = WeightedEnsemble(members, [0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
    with caplog.at_level(logging.INFO, "atlas.serving.inference"):
        served = _servable(tmp_path, model, X, y)
    assert served.fast and served.single_row_seconds is not None  # every member compiled
    assert "not compiled" not in caplog.text
    _agrees(served, X)


def test_a_member_that_does_not_compile_falls_back_with_a_log_line(
    tmp_path: Path, data: Any, caplog: pytest.LogCaptureFixture
) -> None:
    X, y = data
    xgb = _tabular(X, y, XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1))
    other = _tabular(X, y, GradientBoostingClassifier(n_estimators=10))
    with caplog.at_level(logging.INFO, "atlas.serving.inference"):
        served = _servable(tmp_path, WeightedEnsemble([xgb, other], [0.6, 0.4]), X, y)
    assert served.fast and served.single_row_seconds is None  # matrix path, not all compiled
    assert "not compiled" in caplog.text and "GradientBoostingClassifier" in str(
        [getattr(r, "estimators", "") for r in caplog.records]
    )
    _agrees(served, X)


def test_a_compiled_scorer_that_disagrees_is_not_used(
    tmp_path: Path, data: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    X, y = data
    model = _tabular(X, y, RandomForestClassifier(10, n_jobs=1))
    monkeypatch.setattr(
        inference, "compile_estimator", lambda est, width: lambda Z: np.full((len(Z), 2), 0.5)
    )
    with caplog.at_level(logging.WARNING, "atlas.serving.inference"):
        served = _servable(tmp_path, model, X, y)
    assert served.fast and served.single_row_seconds is None
    assert "disagrees" in caplog.text
    _agrees(served, X)


def test_compile_models_off_compiles_xgboost_only(tmp_path: Path, data: Any) -> None:
    X, y = data
    xgb = _tabular(X, y, XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1))
    linear = _tabular(X, y, LogisticRegression(max_iter=500), scaling="standard")
    for model, compiled in ((WeightedEnsemble([xgb, linear], [0.6, 0.4]), False), (xgb, True)):
        served = _servable(tmp_path / str(compiled), model, X, y, compile_all=False)
        assert served.fast and (served.single_row_seconds is not None) is compiled
        _agrees(served, X)


def test_a_bare_lightgbm_with_categorical_splits(tmp_path: Path, data: Any) -> None:
    X, y = data
    Xc = X.assign(code=(np.arange(len(X)) * 7) % 23)
    target = (y + (Xc["code"].to_numpy() % 4 == 0)) % 2
    model = LGBMClassifier(n_estimators=30, num_leaves=31, min_child_samples=3, verbose=-1)
    model.fit(Xc, target, categorical_feature=["code"])
    served = _servable(tmp_path, model, Xc, target)
    assert served.fast and served.single_row_seconds is not None
    _agrees(served, Xc)


def test_regression_pipeline(tmp_path: Path, data: Any) -> None:
    X, _ = data
    y = X["mean_perimeter"].to_numpy() / 100
    Xr = X.drop(columns=["mean_perimeter"])
    model = _tabular(Xr, y, XGBRegressor(n_estimators=20, n_jobs=1), task="regression")
    served = _servable(tmp_path, model, Xr, y, task="regression")
    assert served.fast and served.single_row_seconds is not None
    rows = _rows(Xr)
    got = [r.value for r in served.predict(rows)]
    assert np.allclose(got, _expected(served, rows), rtol=1e-5, atol=1e-5)


def test_a_categorical_input_keeps_the_frame_path(tmp_path: Path, data: Any) -> None:
    X, y = data
    Xc = X.assign(site=np.where(np.arange(len(X)) % 2, "north", "south"))
    model = _tabular(Xc, y, XGBClassifier(n_estimators=10, n_jobs=1))
    served = _servable(tmp_path, model, Xc, y)
    assert not served.fast and served.single_row_seconds is None
    row = dict(_rows(X)[0], site="north")
    assert served.predict([row])[0].label in {"0", "1"}
