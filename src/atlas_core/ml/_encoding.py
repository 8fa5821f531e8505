"""Categorical encoding chosen per column by cardinality.

Low cardinality -> one-hot (exact, few columns); mid -> ordinal codes (trees split them fine);
high -> target encoding, fitted with sklearn's cross-fitting ``TargetEncoder`` so a row's own
label never leaks into its encoding during training (CV-safe).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, TargetEncoder

from atlas_core.ml._sanitize import category_strings, sanitized_strings

BATCH_ROWS = 64  # from this many rows a column's values are looked up in pandas at once

# (column position in ``columns_``, category -> row of ``table``, table): the last row of a
# table is what the fitted encoder gives a category it never saw
_Lookup = tuple[int, dict[str, int], np.ndarray]


class CardinalityEncoder(TransformerMixin, BaseEstimator):
    """Encode string columns: one-hot if ``n_unique <= onehot_max``, ordinal if
    ``<= ordinal_max``, else target encoding (needs ``y``; ``target_type`` is sklearn's:
    ``binary``, ``multiclass`` or ``continuous``). Unknown categories at transform time
    map to all-zero one-hot, ordinal -1, or the target prior. Output: float64 array,
    names in ``feature_names_out_``.
    """

    def __init__(
        self, onehot_max: int = 10, ordinal_max: int = 50, target_type: str = "auto"
    ) -> None:
        self.onehot_max = onehot_max
        self.ordinal_max = ordinal_max
        self.target_type = target_type

    def _plan(self, X: pd.DataFrame) -> None:
        self.columns_ = list(X.columns)
        self.onehot_cols_: list[str] = []
        self.ordinal_cols_: list[str] = []
        self.target_cols_: list[str] = []
        for c in self.columns_:
            k = X[c].nunique()
            if k <= self.onehot_max:
                self.onehot_cols_.append(c)
            elif k <= self.ordinal_max:
                self.ordinal_cols_.append(c)
            else:
                self.target_cols_.append(c)

    def _fit_transform(self, X: pd.DataFrame, y: object, *, transform: bool) -> np.ndarray | None:
        self._plan(X)
        parts: list[np.ndarray] = []
        names: list[str] = []
        self.onehot_ = self.ordinal_ = self.target_ = None
        if self.onehot_cols_:
            self.onehot_ = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
            parts.append(self.onehot_.fit_transform(X[self.onehot_cols_]))
            names += list(self.onehot_.get_feature_names_out(self.onehot_cols_))
        if self.ordinal_cols_:
            self.ordinal_ = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
            parts.append(self.ordinal_.fit_transform(X[self.ordinal_cols_]))
            names += self.ordinal_cols_
        if self.target_cols_:
            if y is None:
                raise ValueError("target encoding of high-cardinality columns needs y")
            self.target_ = TargetEncoder(target_type=self.target_type)
            # fit_transform cross-fits: training rows get out-of-fold encodings.
            parts.append(self.target_.fit_transform(X[self.target_cols_], np.asarray(y)))
            names += [f"te:{n}" for n in self.target_.get_feature_names_out(self.target_cols_)]
        self.feature_names_out_ = names
        if not transform:
            return None
        return np.hstack(parts) if parts else np.empty((len(X), 0))

    def fit(self, X: pd.DataFrame, y: object = None) -> CardinalityEncoder:
        self._fit_transform(X, y, transform=False)
        return self

    def fit_transform(self, X: pd.DataFrame, y: object = None, **_: object) -> np.ndarray:
        out = self._fit_transform(X, y, transform=True)
        assert out is not None
        return out

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        parts: list[np.ndarray] = []
        if self.onehot_ is not None:
            parts.append(self.onehot_.transform(X[self.onehot_cols_]))
        if self.ordinal_ is not None:
            parts.append(self.ordinal_.transform(X[self.ordinal_cols_]))
        if self.target_ is not None:
            parts.append(self.target_.transform(X[self.target_cols_]))
        return np.hstack(parts) if parts else np.empty((len(X), 0))

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(self.feature_names_out_, dtype=object)

    # -- the matrix path (serving's fast path) ------------------------------------------

    def matrix_transform(self) -> Callable[[np.ndarray], np.ndarray]:
        """``transform`` for an object matrix of the raw values of ``columns_`` (any value,
        None for missing; sanitized as :class:`ColumnSanitizer` does): one dict lookup per
        value into a table built from the fitted encoders, so it gives exactly their output
        without their per-call validation (milliseconds for a one-row request)."""
        lookups = [*self._onehot_lookups(), *self._ordinal_lookups(), *self._target_lookups()]
        # batches: one hash lookup per column in pandas (the sanitizer's own cast to str)
        indexes = [pd.Index(list(known)) for _, known, _ in lookups]

        def transform(M: np.ndarray) -> np.ndarray:
            blocks = []
            for (j, known, table), index in zip(lookups, indexes, strict=True):
                unseen = len(table) - 1
                if len(M) < BATCH_ROWS:
                    codes = [known.get(v, unseen) for v in category_strings(M[:, j])]
                    blocks.append(table[codes])
                    continue
                found = index.get_indexer(sanitized_strings(M[:, j]))
                blocks.append(table[np.where(found < 0, unseen, found)])
            return np.hstack(blocks) if blocks else np.empty((len(M), 0))

        return transform

    def _lookup(self, column: str, categories: np.ndarray, table: np.ndarray) -> _Lookup:
        known = {str(c): i for i, c in enumerate(categories)}
        return self.columns_.index(column), known, table

    def _onehot_lookups(self) -> list[_Lookup]:
        if self.onehot_ is None:
            return []
        # handle_unknown="ignore": an unseen category is all zeros
        return [
            self._lookup(c, cats, np.vstack([np.eye(len(cats)), np.zeros((1, len(cats)))]))
            for c, cats in zip(self.onehot_cols_, self.onehot_.categories_, strict=True)
        ]

    def _ordinal_lookups(self) -> list[_Lookup]:
        if self.ordinal_ is None:
            return []
        unknown = float(self.ordinal_.unknown_value)
        return [
            self._lookup(
                c, cats, np.append(np.arange(len(cats), dtype=np.float64), unknown)[:, None]
            )
            for c, cats in zip(self.ordinal_cols_, self.ordinal_.categories_, strict=True)
        ]

    def _target_lookups(self) -> list[_Lookup]:
        enc = self.target_
        if enc is None:
            return []
        # encodings_ holds one array per (column, class) for multiclass targets, in that
        # order; an unseen category gets the target mean (of its class)
        means = np.atleast_1d(np.asarray(enc.target_mean_, dtype=np.float64))
        per_column = len(means) if enc.target_type_ == "multiclass" else 1
        out = []
        for i, (c, cats) in enumerate(zip(self.target_cols_, enc.categories_, strict=True)):
            columns = [
                np.append(
                    np.asarray(enc.encodings_[i * per_column + k], dtype=np.float64), means[k]
                )
                for k in range(per_column)
            ]
            out.append(self._lookup(c, cats, np.column_stack(columns)))
        return out
