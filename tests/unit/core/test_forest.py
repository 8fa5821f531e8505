"""The compiled XGBoost forest reproduces the model's own answers, or is not used."""

from __future__ import annotations

import numpy as np
import pytest

from atlas_core.ml._forest import Forest

xgboost = pytest.importorskip("xgboost")


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, 8))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = (np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) ** 2 > 0.5).astype(int)
    return X, y


def _probe(X: np.ndarray) -> np.ndarray:
    rows = X[:64].copy()
    rows[0] = np.nan  # every feature missing: default directions all the way
    return rows


def test_binary_classifier_matches_predict_proba() -> None:
    X, y = _data()
    model = xgboost.XGBClassifier(n_estimators=30, max_depth=5, n_jobs=1).fit(X, y)
    forest = Forest.from_model(model, X.shape[1])
    assert forest is not None
    rows = _probe(X)
    np.testing.assert_allclose(forest.scores(rows), model.predict_proba(rows), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        forest.scores(rows[5:6]), model.predict_proba(rows[5:6]), rtol=1e-5, atol=1e-6
    )


def test_multiclass_and_regression_match() -> None:
    X, y = _data(1)
    y3 = (np.nan_to_num(X[:, 2]) > 0).astype(int) + y
    clf = xgboost.XGBClassifier(n_estimators=15, max_depth=3, n_jobs=1).fit(X, y3)
    reg = xgboost.XGBRegressor(n_estimators=20, max_depth=4, n_jobs=1).fit(
        X, np.nan_to_num(X[:, 3]) * 2
    )
    rows = _probe(X)
    for model, expected in ((clf, clf.predict_proba(rows)), (reg, reg.predict(rows))):
        forest = Forest.from_model(model, X.shape[1])
        assert forest is not None
        np.testing.assert_allclose(forest.scores(rows), expected, rtol=1e-5, atol=1e-5)


def test_early_stopping_uses_the_best_iteration() -> None:
    X, y = _data(2)
    model = xgboost.XGBClassifier(
        n_estimators=200, max_depth=3, n_jobs=1, early_stopping_rounds=3, eval_metric="logloss"
    )
    model.fit(X[:300], y[:300], eval_set=[(X[300:], y[300:])], verbose=False)
    forest = Forest.from_model(model, X.shape[1])
    assert forest is not None
    rows = _probe(X)
    np.testing.assert_allclose(forest.scores(rows), model.predict_proba(rows), rtol=1e-5, atol=1e-6)


def test_unsupported_models_are_not_compiled() -> None:
    X, y = _data()
    model = xgboost.XGBClassifier(n_estimators=5, n_jobs=1).fit(X, y)

    class Wrapper:  # anything but an XGBoost estimator keeps calling the model itself
        def predict_proba(self, rows: object) -> object:
            return model.predict_proba(rows)

    assert Forest.from_model(Wrapper(), X.shape[1]) is None
    assert Forest.from_model(model, X.shape[1] + 1) is None
    custom_missing = xgboost.XGBClassifier(n_estimators=5, n_jobs=1, missing=0.0).fit(X, y)
    assert Forest.from_model(custom_missing, X.shape[1]) is None
    linear = xgboost.XGBClassifier(n_estimators=5, booster="gblinear", n_jobs=1).fit(
        np.nan_to_num(X), y
    )
    assert Forest.from_model(linear, X.shape[1]) is None
