"""Compiled scorers of fitted estimators: a float matrix in, the estimator's scores out, with
none of the library's per-call overhead (input validation, frames, thread pools).

- scikit-learn random forests / extra trees (classifier and regressor) and LightGBM boosters
  (numeric and categorical splits, any number of leaves) go through Treelite's GTIL, a C++
  tree interpreter that reads the trees once at load time and scores a row in tens of
  microseconds (batches of ``OWN_PREDICT_ROWS`` and more go to the library's own predict,
  faster per row there);
- XGBoost gradient-boosted trees are laid out as flat arrays (:class:`Forest`);
- linear models (logistic regression, ridge, elastic net) and ATLAS's ``TorchMLP`` are a few
  NumPy matrix products.

Scores are what ``TabularModel`` averages: ``predict_proba`` columns (classifiers) or
``predict`` values (regressors). Callers verify a compiled scorer against the estimator
itself before using it; anything not covered returns None (the estimator is then called as
before).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from atlas_core.ml._forest import Forest
from atlas_core.ml._mlp import TorchMLP
from atlas_core.ml._model import MatrixScorer

log = logging.getLogger("atlas.ml.compiled")

_SKLEARN_FORESTS = {
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
}


def compile_estimator(estimator: Any, n_features: int) -> MatrixScorer | None:
    """A scorer of ``[n, n_features]`` float matrices for ``estimator``, or None when it is
    not a family compiled here (or its library is missing)."""
    try:
        if isinstance(estimator, TorchMLP):
            return _mlp(estimator, n_features)
        module = type(estimator).__module__
        name = type(estimator).__name__
        if module.startswith("xgboost"):
            forest = Forest.from_model(estimator, n_features)
            return None if forest is None else forest.scores
        if module.startswith("sklearn.ensemble") and name in _SKLEARN_FORESTS:
            return _treelite_sklearn(estimator, n_features)
        if module.startswith("lightgbm"):
            return _treelite_lightgbm(estimator, n_features)
        if module.startswith("sklearn.linear_model"):
            return _linear(estimator, n_features)
    except Exception:  # noqa: BLE001 - an estimator we cannot read is scored as before
        log.warning(
            "estimator not compiled", extra={"estimator": type(estimator).__name__}, exc_info=True
        )
    return None


# -- tree ensembles: Treelite ---------------------------------------------------------------

# From this many rows up a library's own ``predict`` (compiled traversal, its fixed per-call
# cost amortised) outruns GTIL's interpreter, whose cost grows with every row; below it GTIL
# wins by skipping that fixed cost (one row: tens of microseconds instead of milliseconds).
# scikit-learn's fixed cost (validation, joblib) is the larger one.
OWN_PREDICT_ROWS = {"sklearn": 256, "lightgbm": 64}


def _own(estimator: Any, classifier: bool, **kw: Any) -> MatrixScorer:
    if classifier:
        return lambda M: np.asarray(estimator.predict_proba(M, **kw), dtype=np.float64)
    return lambda M: np.asarray(estimator.predict(M, **kw), dtype=np.float64)


def _gtil(
    model: Any, n_outputs: int, classifier: bool, dtype: Any, own: MatrixScorer, own_from: int
) -> MatrixScorer:
    from treelite import gtil

    def scores(M: np.ndarray) -> np.ndarray:
        if len(M) >= own_from:
            return own(M)
        # one thread: requests run in parallel inference threads; GTIL's pool would fight them
        out = gtil.predict(model, np.asarray(M, dtype=dtype), nthread=1)
        out = out.reshape(len(M), -1)
        if not classifier:
            return out[:, 0]
        if out.shape[1] == 1 and n_outputs == 2:  # boosters give P(class 1) only
            p = out[:, 0]
            return np.column_stack((1.0 - p, p))
        return out

    return scores


def _treelite_sklearn(estimator: Any, n_features: int) -> MatrixScorer | None:
    import treelite

    if int(getattr(estimator, "n_features_in_", n_features)) != n_features:
        return None
    if getattr(estimator, "n_outputs_", 1) != 1:
        return None
    classifier = hasattr(estimator, "classes_")
    n_outputs = len(estimator.classes_) if classifier else 1
    # scikit-learn compares float32 features with float64 thresholds: round the input alike
    model = treelite.sklearn.import_model(estimator)
    own = _own(estimator, classifier)
    return _gtil(model, n_outputs, classifier, np.float32, own, OWN_PREDICT_ROWS["sklearn"])


def _treelite_lightgbm(estimator: Any, n_features: int) -> MatrixScorer | None:
    import lightgbm
    import treelite

    if not isinstance(estimator, lightgbm.LGBMModel):
        return None
    booster = estimator.booster_
    if booster.num_feature() != n_features:
        return None
    best = getattr(booster, "best_iteration", 0)
    if best and 0 < best < booster.current_iteration():
        # predict() stops at the booster's best iteration: compile those trees only
        booster = lightgbm.Booster(model_str=booster.model_to_string(num_iteration=best))
    classifier = isinstance(estimator, lightgbm.LGBMClassifier)
    n_outputs = len(estimator.classes_) if classifier else 1
    model = treelite.frontend.from_lightgbm(booster)
    # one thread, as GTIL: requests already run in parallel inference threads
    own = _own(estimator, classifier, num_threads=1)
    return _gtil(model, n_outputs, classifier, np.float64, own, OWN_PREDICT_ROWS["lightgbm"])


# -- matrix products: linear models and the MLP ---------------------------------------------


def _linear(estimator: Any, n_features: int) -> MatrixScorer | None:
    from sklearn import linear_model as lm

    coef = np.asarray(getattr(estimator, "coef_", None), dtype=np.float64)
    if coef.ndim == 0 or coef.shape[-1] != n_features:
        return None
    intercept = np.asarray(estimator.intercept_, dtype=np.float64)
    if isinstance(estimator, lm.LogisticRegression):
        W, b = coef.T, intercept.reshape(-1)
        if W.shape[1] == 1:

            def binary(M: np.ndarray) -> np.ndarray:
                p = 1.0 / (1.0 + np.exp(-(np.asarray(M, dtype=np.float64) @ W + b)[:, 0]))
                return np.column_stack((1.0 - p, p))

            return binary
        return lambda M: _softmax(np.asarray(M, dtype=np.float64) @ W + b)
    if isinstance(estimator, (lm.Ridge, lm.ElasticNet, lm.Lasso, lm.LinearRegression)):
        if coef.ndim != 1:
            return None
        offset = float(intercept)
        return lambda M: np.asarray(M, dtype=np.float64) @ coef + offset
    return None


def _mlp(estimator: TorchMLP, n_features: int) -> MatrixScorer | None:
    if int(estimator.n_features_in_) != n_features:
        return None
    weights = estimator.weights_
    # nn.Sequential of (Linear, ReLU, Dropout)* Linear: the state dict holds the Linear layers
    layers = sorted({int(k.split(".")[0]) for k in weights})
    linear = [
        (
            np.ascontiguousarray(weights[f"{i}.weight"].T, dtype=np.float32),
            np.asarray(weights[f"{i}.bias"], dtype=np.float32),
        )
        for i in layers
    ]
    mean = np.asarray(estimator.mean_, dtype=np.float32)
    std = np.asarray(estimator.std_, dtype=np.float32)
    regression = estimator.task == "regression"
    y_mean = float(getattr(estimator, "y_mean_", 0.0))
    y_std = float(getattr(estimator, "y_std_", 1.0))

    def scores(M: np.ndarray) -> np.ndarray:
        h = (np.asarray(M, dtype=np.float32) - mean) / std
        for k, (W, b) in enumerate(linear):
            h = h @ W + b
            if k < len(linear) - 1:
                np.maximum(h, 0.0, out=h)
        if regression:  # float32 arithmetic, as TorchMLP.predict does it
            return np.asarray(h[:, 0] * y_std + y_mean, dtype=np.float64)
        return _softmax(h.astype(np.float64))

    return scores


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
