"""The float-matrix fast path of ServableModel for ATLAS's own models (preprocessing +
estimator, fold bags, ensembles): the same answers as the bundle's predictor, with compiled
trees where every tree model compiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from xgboost import XGBClassifier, XGBRegressor

from atlas_core.bundles import load_bundle, write_bundle
from atlas_core.ml import FoldBag, TabularModel, TabularPreprocessor, WeightedEnsemble
from atlas_core.storage import LocalArtifactStore
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
    tmp_path: Path, model: Any, X: pd.DataFrame, y: np.ndarray, task: str = "binary"
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
    return ServableModel(load_bundle(store, ref, trust=TEST_TRUST))


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


def test_ensembles_and_fold_bags_use_the_matrix_path(tmp_path: Path, data: Any) -> None:
    X, y = data
    xgb = _tabular(X, y, XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1))
    linear = _tabular(X, y, LogisticRegression(max_iter=500), scaling="standard")
    bag = FoldBag([xgb, _tabular(X, y, XGBClassifier(n_estimators=10, n_jobs=1))])
    for model, compiled in ((WeightedEnsemble([bag, linear], [0.6, 0.4]), False), (bag, True)):
        served = _servable(tmp_path / str(compiled), model, X, y)
        assert served.fast and (served.single_row_seconds is not None) is compiled
        rows = _rows(X)
        got = [max(r.value, 1 - r.value) for r in served.predict(rows)]
        assert np.allclose(got, _expected(served, rows).max(axis=1), rtol=1e-5, atol=1e-6)


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
