"""Fitted predictors produced by the AutoML engine: one pipeline, a fold bag, an ensemble.

All share one interface (what model bundles and serving rely on):
``predict(X)``, ``predict_proba(X)`` (classification), ``predict_scores(X)`` (probabilities
[n, C] or regression values [n], the space ensembles average in), ``contributions(X)``,
``classes_`` (original labels; None for regression), ``task``, ``description``.
Everything here imports only NumPy/pandas/sklearn at module level, so a pickled model loads
with atlas_core alone (xgboost/lightgbm/torch are needed only if the model contains one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from atlas_core.ml._preprocess import TabularPreprocessor

Contributions = tuple[np.ndarray, list[str]]
MatrixScorer = Callable[[np.ndarray], np.ndarray]
# (estimator, number of its input features) -> a faster scorer of its features, or None
EstimatorCompiler = Callable[[Any, int], MatrixScorer | None]


def booster_contributions(estimator: Any, Z: np.ndarray) -> np.ndarray | None:
    """Exact TreeSHAP contributions from an XGBoost/LightGBM model's own booster.

    Returns ``[n, f + 1]`` (single output) or ``[n, C, f + 1]`` (multiclass), bias last, in
    the model's raw margin space; None if ``estimator`` is neither.
    """
    module = type(estimator).__module__
    if module.startswith("xgboost"):
        import xgboost as xgb

        out = estimator.get_booster().predict(xgb.DMatrix(Z), pred_contribs=True)
        return np.asarray(out)
    if module.startswith("lightgbm"):
        out = np.asarray(estimator.booster_.predict(Z, pred_contrib=True))
        n_f1 = Z.shape[1] + 1
        return out.reshape(len(Z), -1, n_f1) if out.shape[1] > n_f1 else out
    return None


class TabularModel:
    """A fitted ``TabularPreprocessor`` followed by one estimator.

    ``fit(X, y_codes)`` takes class codes 0..C-1 for classification; ``classes`` maps codes
    back to the original labels in ``predict``.
    """

    def __init__(
        self,
        preprocessor: TabularPreprocessor,
        estimator: Any,
        task: str,
        classes: Sequence[Any] | np.ndarray | None = None,
        family: str = "",
        description: str = "",
    ) -> None:
        self.preprocessor = preprocessor
        self.estimator = estimator
        self.task = task
        self.classes_ = None if classes is None else np.asarray(classes)
        self.family = family
        self.description = description

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> TabularModel:
        Z = self.preprocessor.fit_transform(X, y)
        self.estimator.fit(Z, y)
        return self

    def predict_scores(self, X: pd.DataFrame) -> np.ndarray:
        return self.scores_from_features(self.preprocessor.transform(X))

    def scores_from_features(self, Z: np.ndarray) -> np.ndarray:
        """Probabilities [n, C] (all classes, in code order) or regression values [n]."""
        if self.task == "regression":
            return np.asarray(self.estimator.predict(Z), dtype=np.float64).reshape(-1)
        return self._all_classes(np.asarray(self.estimator.predict_proba(Z), dtype=np.float64))

    def _all_classes(self, proba: np.ndarray) -> np.ndarray:
        n_classes = len(self.classes_) if self.classes_ is not None else proba.shape[1]
        if proba.shape[1] == n_classes:
            return proba
        # The estimator saw fewer classes than exist (tiny folds): re-embed its columns.
        full = np.zeros((len(proba), n_classes))
        seen = getattr(self.estimator, "classes_", np.arange(proba.shape[1]))
        full[:, np.asarray(seen, dtype=int)] = proba
        return full

    def matrix_scorer(
        self, columns: Sequence[str], compile_estimator: EstimatorCompiler | None = None
    ) -> MatrixScorer | None:
        """``predict_scores`` for an all-numeric float matrix whose columns are ``columns``,
        or None when the preprocessing needs a frame. ``compile_estimator`` may supply a
        faster scorer for the estimator (callers verify it against ``predict_scores``)."""
        transform = self.preprocessor.matrix_transform(columns)
        if transform is None:
            return None
        fast = (
            compile_estimator(self.estimator, len(self.feature_names_out))
            if compile_estimator is not None
            else None
        )
        if fast is None:
            return lambda M: self.scores_from_features(transform(M))
        if self.task == "regression":
            return lambda M: np.asarray(fast(transform(M)), dtype=np.float64).reshape(-1)
        return lambda M: self._all_classes(fast(transform(M)))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self.task == "regression":
            raise AttributeError("predict_proba is only defined for classification models")
        return self.predict_scores(X)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return _labels(self, self.predict_scores(X))

    @property
    def feature_names_out(self) -> list[str]:
        return list(self.preprocessor.feature_names_out_)

    def contributions(self, X: pd.DataFrame) -> Contributions | None:
        """Per-feature contributions on the transformed features, bias last, with names
        (``feature_names_out + ["__bias__"]``): ``[n, f + 1]`` for binary/regression,
        ``[n, C, f + 1]`` for multiclass; None unless the estimator is XGBoost/LightGBM."""
        out = booster_contributions(self.estimator, self.preprocessor.transform(X))
        if out is None:
            return None
        return out, self.feature_names_out + ["__bias__"]


def _labels(model: Any, scores: np.ndarray) -> np.ndarray:
    if model.task == "regression":
        return scores
    return np.asarray(model.classes_)[scores.argmax(axis=1)]


class _Averaged:
    """Shared code of predictors that average members' scores with weights."""

    members: list[Any]
    weights: np.ndarray
    task: str
    classes_: np.ndarray | None

    def predict_scores(self, X: pd.DataFrame) -> np.ndarray:
        total: np.ndarray | None = None
        for m, w in zip(self.members, self.weights):
            if w == 0:
                continue
            s = w * m.predict_scores(X)
            total = s if total is None else total + s
        assert total is not None
        return total / float(np.sum(self.weights))

    def matrix_scorer(
        self, columns: Sequence[str], compile_estimator: EstimatorCompiler | None = None
    ) -> MatrixScorer | None:
        """The weighted mean of the members' matrix scorers (see ``TabularModel``)."""
        parts = [
            (m.matrix_scorer(columns, compile_estimator), w)
            for m, w in zip(self.members, self.weights)
            if w != 0
        ]
        if not parts or any(scorer is None for scorer, _ in parts):
            return None
        total = float(np.sum(self.weights))

        def scores(M: np.ndarray) -> np.ndarray:
            return sum(w * scorer(M) for scorer, w in parts) / total

        return scores

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self.task == "regression":
            raise AttributeError("predict_proba is only defined for classification models")
        return self.predict_scores(X)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return _labels(self, self.predict_scores(X))

    def contributions(self, X: pd.DataFrame) -> Contributions | None:
        """Weighted mean of the members' booster contributions when every member has them
        over the same feature names (margins average; exact for a single member), else None."""
        outs = [m.contributions(X) for m, w in zip(self.members, self.weights) if w > 0]
        ws = [w for w in self.weights if w > 0]
        if not outs or any(o is None for o in outs):
            return None
        names = outs[0][1]
        if any(o[1] != names or o[0].shape != outs[0][0].shape for o in outs):
            return None
        total = sum(w * o[0] for w, o in zip(ws, outs))
        return np.asarray(total) / float(np.sum(ws)), names


class FoldBag(_Averaged):
    """The k models fitted during cross-validation, averaged: a final model that needs no
    refit (used when the budget leaves no time to refit on all data, or on cancellation)."""

    def __init__(self, members: Sequence[TabularModel], description: str = "") -> None:
        self.members = list(members)
        self.weights = np.ones(len(self.members))
        first = self.members[0]
        self.task = first.task
        self.classes_ = first.classes_
        self.family = first.family
        self.description = description or f"fold-bag[{len(self.members)}]({first.description})"


class WeightedEnsemble(_Averaged):
    """Greedy-ensemble predictor: fitted members with non-negative weights (sum > 0);
    ``member_ids`` names each member (AutoML trial numbers)."""

    def __init__(
        self,
        members: Sequence[Any],
        weights: Sequence[float],
        member_ids: Sequence[int] = (),
    ) -> None:
        if len(members) != len(weights) or not members or float(np.sum(weights)) <= 0:
            raise ValueError("an ensemble needs members with positive total weight")
        self.members = list(members)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.member_ids = list(member_ids)
        first = self.members[0]
        self.task = first.task
        self.classes_ = first.classes_
        self.family = "ensemble"
        parts = [f"{w:.2f}*{m.description}" for m, w in zip(self.members, self.weights)]
        self.description = "ensemble(" + " + ".join(parts) + ")"
