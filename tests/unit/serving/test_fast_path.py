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
from atlas_core.ml import (
    ColumnRoleFeatures,
    ColumnRoleModel,
    FoldBag,
    TabularModel,
    TabularPreprocessor,
    TorchMLP,
    WeightedEnsemble,
)
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


def _categorical_frame(X: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """X with three string columns, one per encoding (one-hot: 3 values, ordinal: 30,
    target: 80), missing values in two of them."""
    rng = np.random.default_rng(seed)
    n = len(X)
    Xc = X.iloc[:, :6].copy()
    Xc["site"] = rng.choice(["north", "south", "east"], n).astype(object)
    Xc["shop"] = np.array([f"s{i}" for i in rng.integers(0, 30, n)], dtype=object)
    Xc["city"] = np.array([f"c{i}" for i in rng.integers(0, 80, n)], dtype=object)
    Xc.loc[Xc.index[::9], "site"] = None
    Xc.loc[Xc.index[::11], "city"] = None
    return Xc


def _categorical_rows(X: pd.DataFrame) -> list[dict[str, Any]]:
    rows = X.iloc[:40].astype(object).where(X.iloc[:40].notna(), None).to_dict("records")
    rows[0]["site"] = "west"  # categories training never saw, for each encoding
    rows[1]["shop"] = "s999"
    rows[2]["city"] = "atlantis"
    rows[3].update(site=None, shop=None, city=None)  # missing everywhere
    rows[4]["mean_radius"] = None
    return rows


def _same_as_the_pipeline(served: ServableModel, rows: list[dict[str, Any]]) -> None:
    got = np.array([r.probs if r.probs is not None else r.value for r in served.predict(rows)])
    expected = served._scores_slow(pd.DataFrame(rows, columns=served.names))  # noqa: SLF001
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    one = served.predict(rows[:1])[0]  # a single row too (compiled trees switch by size)
    np.testing.assert_allclose(one.probs, expected[0], rtol=1e-6, atol=1e-7)


def test_string_inputs_take_the_compiled_path_and_agree(
    tmp_path: Path, data: Any, caplog: pytest.LogCaptureFixture
) -> None:
    X, y = data
    Xc = _categorical_frame(X)
    members = [
        _tabular(Xc, y, XGBClassifier(n_estimators=15, max_depth=3, n_jobs=1)),
        _tabular(Xc, y, RandomForestClassifier(15, random_state=0, n_jobs=1)),
        _tabular(Xc, y, LGBMClassifier(n_estimators=15, verbose=-1)),
        _tabular(Xc, y, LogisticRegression(max_iter=500), scaling="quantile"),
    ]
    encoder = members[0].preprocessor.encoder_
    assert encoder is not None
    assert (encoder.onehot_cols_, encoder.ordinal_cols_, encoder.target_cols_) == (
        ["site"],
        ["shop"],
        ["city"],
    )
    with caplog.at_level(logging.INFO, "atlas.serving.inference"):
        served = _servable(tmp_path, WeightedEnsemble(members, [0.4, 0.2, 0.2, 0.2]), Xc, y)
    assert served.fast and served.single_row_seconds is not None  # every member compiled
    assert "not compiled" not in caplog.text and "no matrix path" not in caplog.text
    rows = _categorical_rows(Xc)
    _same_as_the_pipeline(served, rows)
    assert served.predict(rows[:1])[0].unseen == ["site"]  # still flagged to the caller


def test_column_roles_and_multiclass_target_encoding_on_the_compiled_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 600
    X = pd.DataFrame(
        {
            "amount": rng.normal(size=n),
            "zone": rng.integers(0, 6, n).astype(float),  # numbers used as a category
            "level": rng.choice(["1", "2", "3", "x"], n).astype(object),  # strings as numbers
            "merchant": np.array([f"m{i}" for i in rng.integers(0, 90, n)], dtype=object),
        }
    )
    X.loc[X.index[::13], "merchant"] = None
    y = (rng.integers(0, 3, n) + (X["merchant"].fillna("m0").str[1:].astype(int) % 3)) % 3
    features = ColumnRoleFeatures({"zone": "categorical", "level": "numeric"}).fit(X)
    assert features.frequencies_ and features.cast_ == {"zone": "categorical", "level": "numeric"}
    inner = TabularModel(
        TabularPreprocessor(task="multiclass", onehot_max=4, ordinal_max=20),
        XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1),
        "multiclass",
        [0, 1, 2],
    ).fit(features.transform(X), y.to_numpy())
    assert inner.preprocessor.encoder_ is not None and inner.preprocessor.encoder_.target_cols_
    model = ColumnRoleModel(features, inner)
    store = LocalArtifactStore(tmp_path / "store")
    ref = write_bundle(
        store,
        "m/bundle.tar",
        model=model,
        task="multiclass",
        target="target",
        classes=[0, 1, 2],
        X_train=X,
        y_train=y,
        metrics={},
        lineage={},
        signer=TEST_SIGNER,
    )
    served = ServableModel(load_bundle(store, ref, trust=TEST_TRUST))
    assert served.fast and served.single_row_seconds is not None
    rows = X.iloc[:30].astype(object).where(X.iloc[:30].notna(), None).to_dict("records")
    rows[0].update(merchant="m-new", level="y")
    rows[1].update(merchant=None, level=None)
    _same_as_the_pipeline(served, rows)


def _text_frame(X: pd.DataFrame) -> pd.DataFrame:
    words = np.array(["red", "blue", "green", "fast", "slow", "big", "small", "Old", "new!"])
    rng = np.random.default_rng(0)
    Xt = X.iloc[:, :4].assign(
        note=[" ".join(rng.choice(words, 6)) + f" n{i % 50}" for i in range(len(X))]
    )
    Xt.loc[Xt.index[::15], "note"] = None
    return Xt


def test_a_free_text_input_is_compiled_and_agrees(tmp_path: Path, data: Any) -> None:
    X, y = data
    Xt = _text_frame(X)
    features = ColumnRoleFeatures().fit(Xt)
    assert features.text_ and not features.date_formats_
    inner = _tabular(features.transform(Xt), y, XGBClassifier(n_estimators=15, n_jobs=1))
    served = _servable(tmp_path, ColumnRoleModel(features, inner), Xt, y)
    assert served.fast and served.scoring == "compiled"
    rows = Xt.iloc[:40].astype(object).where(Xt.iloc[:40].notna(), None).to_dict("records")
    rows[0]["note"] = "never seen words, Only 3 of them... 42"
    rows[1]["note"] = ""
    _same_as_the_pipeline(served, rows)


def _date_frame(X: pd.DataFrame) -> pd.DataFrame:
    days = pd.date_range("2024-01-01", periods=len(X), freq="6h")
    Xd = X.iloc[:, :4].assign(seen=days.strftime("%Y-%m-%d %H:%M:%S"))
    Xd.loc[Xd.index[::13], "seen"] = None
    return Xd


def test_a_date_input_is_compiled_and_agrees(tmp_path: Path, data: Any) -> None:
    X, y = data
    Xd = _date_frame(X)
    features = ColumnRoleFeatures().fit(Xd)
    assert features.date_formats_
    inner = _tabular(features.transform(Xd), y, XGBClassifier(n_estimators=15, n_jobs=1))
    served = _servable(tmp_path, ColumnRoleModel(features, inner), Xd, y)
    assert served.fast and served.scoring == "compiled"
    rows = Xd.iloc[:40].astype(object).where(Xd.iloc[:40].notna(), None).to_dict("records")
    rows[0]["seen"] = "2031-07-04 23:59:00"  # after training: a value it never saw
    rows[1]["seen"] = "not a date"  # missing, as on the frame path
    rows[2]["seen"] = "2024-02-29T12:00:00+02:00"
    _same_as_the_pipeline(served, rows)


class _FrameOnly:
    """A model that scores frames only (no ``matrix_scorer``)."""

    def __init__(self, model: TabularModel) -> None:
        self.model = model
        self.task, self.classes_, self.description = model.task, model.classes_, "frame-only"

    def predict_scores(self, X: pd.DataFrame) -> np.ndarray:
        return self.model.predict_scores(X)


def test_a_model_without_a_matrix_path_keeps_the_frame_path_with_a_log_line(
    tmp_path: Path, data: Any, caplog: pytest.LogCaptureFixture
) -> None:
    X, y = data
    Xd = _date_frame(X)
    features = ColumnRoleFeatures().fit(Xd)
    inner = _tabular(features.transform(Xd), y, XGBClassifier(n_estimators=10, n_jobs=1))
    with caplog.at_level(logging.INFO, "atlas.serving.inference"):
        served = _servable(tmp_path, ColumnRoleModel(features, _FrameOnly(inner)), Xd, y)
    assert not served.fast and served.scoring == "frame" and "no matrix path" in caplog.text
    row = Xd.iloc[0].to_dict()
    assert served.predict([row])[0].label in {"0", "1"}
