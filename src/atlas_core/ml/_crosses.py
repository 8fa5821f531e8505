"""Pairwise products of the numeric features most related to the target."""

from __future__ import annotations

import itertools
import math

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


def _abs_corr(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    Xc = X - X.mean(axis=0)
    yc = y - y.mean()
    denom = np.sqrt((Xc**2).sum(axis=0) * (yc**2).sum()) + 1e-12
    return np.abs(Xc.T @ yc) / denom


class PairwiseCrosses(TransformerMixin, BaseEstimator):
    """Append up to ``top_k`` products ``x_i * x_j`` of imputed numeric columns.

    Candidates are pairs among the few columns most correlated with ``y`` (|Pearson|; the
    class code for classification), ranked by the product's own correlation, so the cost
    stays O(k) columns however wide the data. ``transform`` returns the input with the
    products appended; ``top_k == 0`` is a no-op.
    """

    def __init__(self, top_k: int = 0) -> None:
        self.top_k = top_k

    def fit(self, X: np.ndarray, y: object = None) -> PairwiseCrosses:
        X = np.asarray(X, dtype=np.float64)
        self.pairs_: list[tuple[int, int]] = []
        if self.top_k <= 0 or X.shape[1] < 2 or y is None:
            return self
        yv = np.asarray(y, dtype=np.float64)
        m = min(X.shape[1], max(2, math.ceil((1 + math.sqrt(1 + 8 * self.top_k)) / 2) + 1))
        top = np.argsort(-np.nan_to_num(_abs_corr(X, yv)))[:m]
        pairs = list(itertools.combinations(sorted(int(i) for i in top), 2))
        prods = np.stack([X[:, i] * X[:, j] for i, j in pairs], axis=1)
        order = np.argsort(-np.nan_to_num(_abs_corr(prods, yv)))[: self.top_k]
        self.pairs_ = [pairs[int(i)] for i in order]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if not self.pairs_:
            return X
        # one product of two column selections, not one per pair: a served row pays for
        # numpy calls, not arithmetic
        left, right = np.array(self.pairs_, dtype=np.intp).T
        return np.hstack([X, X[:, left] * X[:, right]])

    def names(self, input_names: list[str]) -> list[str]:
        """Output column names given the input's."""
        return list(input_names) + [f"{input_names[i]}*{input_names[j]}" for i, j in self.pairs_]
