"""Per-feature contributions (SHAP values) from a fitted model, when it can give them.

Order of preference:

1. the model's own ``contributions(X) -> (values, names) | None`` (the AutoML engine's
   duck type: pipelines and ensembles that know their final booster);
2. a scikit-learn ``Pipeline`` (or a bare estimator) whose final step is an XGBoost or
   LightGBM sklearn model: the booster's built-in TreeSHAP (``pred_contribs`` /
   ``pred_contrib``) on the pipeline's transformed features;
3. otherwise ``None``.

Raw values are returned as ``[n, k+1]`` (bias last) or, for multiclass boosters,
``[n, n_classes, k+1]``; names have length ``k`` (a trailing bias name is dropped).
Values are in the model's raw output units (log-odds for classifiers).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

Contributions = tuple[np.ndarray, list[str]]


def raw_contributions(model: Any, frame: pd.DataFrame) -> Contributions | None:
    own = getattr(model, "contributions", None)
    if callable(own):
        result = own(frame)
        if result is None:
            return None
        values, names = result
        return _tidy(np.asarray(values, dtype="float64"), list(names))
    preprocess, final = _split(model)
    if final is None:
        return None
    module = type(final).__module__
    if not (module.startswith("xgboost") or module.startswith("lightgbm")):
        return None
    features = preprocess.transform(frame) if preprocess is not None else frame
    names = _feature_names(preprocess, final, features)
    if module.startswith("xgboost"):
        values = _xgboost_contributions(final, features)
    else:
        values = _lightgbm_contributions(final, features, len(names))
    return _tidy(values, names)


def _split(model: Any) -> tuple[Any, Any]:
    steps = getattr(model, "steps", None)
    if isinstance(steps, list) and steps:
        final = steps[-1][1]
        preprocess = model[:-1] if len(steps) > 1 else None
        return preprocess, final
    return None, model


def _feature_names(preprocess: Any, final: Any, features: Any) -> list[str]:
    if isinstance(features, pd.DataFrame):
        return [str(name) for name in features.columns]
    if preprocess is not None and hasattr(preprocess, "get_feature_names_out"):
        try:
            return [str(name) for name in preprocess.get_feature_names_out()]
        except (AttributeError, ValueError, TypeError):
            pass
    names = getattr(final, "feature_names_in_", None)
    if names is not None:
        return [str(name) for name in names]
    width = features.shape[1]
    return [f"f{i}" for i in range(width)]


def _xgboost_contributions(final: Any, features: Any) -> np.ndarray:
    import xgboost  # lazy: only models that need it pay the import

    booster = final.get_booster()
    matrix = xgboost.DMatrix(features, enable_categorical=True)
    return np.asarray(booster.predict(matrix, pred_contribs=True), dtype="float64")


def _lightgbm_contributions(final: Any, features: Any, width: int) -> np.ndarray:
    values = np.asarray(final.predict(features, pred_contrib=True), dtype="float64")
    if values.ndim == 2 and values.shape[1] != width + 1:
        # Multiclass LightGBM concatenates one [k+1] block per class.
        classes = values.shape[1] // (width + 1)
        values = values.reshape(values.shape[0], classes, width + 1)
    return values


def _tidy(values: np.ndarray, names: list[str]) -> Contributions:
    width = values.shape[-1] - 1
    if len(names) == width + 1:
        names = names[:-1]  # a bias/"BIAS" name: the bias is always the last column
    if len(names) != width:
        names = [f"f{i}" for i in range(width)]
    return values, names


def select_class(values: np.ndarray, class_index: np.ndarray | int | None) -> np.ndarray:
    """``[n, k+1]`` contributions: 3-D multiclass values reduced to one class per row."""
    if values.ndim == 2:
        return values
    rows = np.arange(values.shape[0])
    index = np.zeros(values.shape[0], dtype=int) if class_index is None else class_index
    return values[rows, np.broadcast_to(np.asarray(index), rows.shape)]
