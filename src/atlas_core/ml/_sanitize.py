"""First step of every ATLAS tabular model: make raw columns safe to learn from.

Drops columns that cannot generalise (constant, all-missing, ID-like), records why, turns
datetimes and booleans into numbers and ±inf into NaN. It runs inside the fitted model, so
serving feeds the same raw columns the trainer saw and the same columns get dropped.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

MISSING_CATEGORY = "__missing__"  # a categorical value that is missing, once sanitized
_ID_NAME = re.compile(r"(^|[_\W])(id|uuid|guid|key|rownames?|index)$", re.IGNORECASE)


def is_categorical(series: pd.Series) -> bool:
    """True for string/object/category columns (booleans and numbers are numeric)."""
    return bool(
        isinstance(series.dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(series.dtype)
        or pd.api.types.is_string_dtype(series.dtype)
    )


class ColumnSanitizer(TransformerMixin, BaseEstimator):
    """Select usable columns and normalise their types.

    After ``fit``: ``dropped_`` maps each dropped column to a reason (``constant``,
    ``all_missing``, ``id_like``), ``numeric_`` and ``categorical_`` list the kept columns.
    ``transform`` returns a DataFrame with numeric columns as float64 (inf -> NaN) and
    categorical columns as Python strings (missing -> ``"__missing__"``); a column seen in
    ``fit`` but absent at ``transform`` is filled with missing values (serving may omit
    optional features) and extra columns are ignored.

    ID-like: a string column whose values are (almost) all distinct, or an integer column
    that is all distinct and either monotonic or named like an id. Checked only with at
    least ``min_rows_for_id`` rows, because in tiny data every column looks unique.
    """

    def __init__(self, id_unique_ratio: float = 0.95, min_rows_for_id: int = 50) -> None:
        self.id_unique_ratio = id_unique_ratio
        self.min_rows_for_id = min_rows_for_id

    def _reason_to_drop(self, name: str, s: pd.Series) -> str | None:
        if s.isna().all():
            return "all_missing"
        values = s.replace([np.inf, -np.inf], np.nan) if not is_categorical(s) else s
        n_unique = values.nunique(dropna=True)
        if n_unique <= 1:
            return "constant"
        n = int(s.notna().sum())
        if n < self.min_rows_for_id:
            return None
        ratio = n_unique / max(n, 1)
        if is_categorical(s) and ratio >= self.id_unique_ratio:
            return "id_like"
        if pd.api.types.is_integer_dtype(s.dtype) and ratio >= 0.999:
            if _ID_NAME.search(str(name)) or s.is_monotonic_increasing or s.is_monotonic_decreasing:
                return "id_like"
        if _ID_NAME.search(str(name)) and ratio >= self.id_unique_ratio:
            return "id_like"
        return None

    def fit(self, X: pd.DataFrame, y: object = None) -> ColumnSanitizer:
        if not isinstance(X, pd.DataFrame):
            X = pd.DataFrame(X)
        self.feature_names_in_ = [str(c) for c in X.columns]
        X = X.set_axis(self.feature_names_in_, axis=1)
        self.dropped_: dict[str, str] = {}
        self.numeric_: list[str] = []
        self.categorical_: list[str] = []
        self.datetime_: list[str] = []
        for name in self.feature_names_in_:
            s = X[name]
            reason = self._reason_to_drop(name, s)
            if reason is not None:
                self.dropped_[name] = reason
            elif pd.api.types.is_datetime64_any_dtype(s.dtype):
                self.datetime_.append(name)
                self.numeric_.append(name)
            elif is_categorical(s):
                self.categorical_.append(name)
            else:
                self.numeric_.append(name)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            X = pd.DataFrame(X, columns=self.feature_names_in_)
        X = X.set_axis([str(c) for c in X.columns], axis=1)
        out: dict[str, pd.Series] = {}
        # Fast path (one block conversion, no per-column pandas calls): plain numeric columns.
        present = set(X.columns) if X.columns.is_unique else set()
        fast = [
            n
            for n in self.numeric_
            if n in present
            and n not in self.datetime_
            and pd.api.types.is_numeric_dtype(X[n].dtype)
        ]
        if fast:
            block = X[fast].to_numpy(dtype=np.float64, na_value=np.nan)
            block[~np.isfinite(block)] = np.nan
            for j, name in enumerate(fast):
                out[name] = pd.Series(block[:, j], index=X.index, name=name)
        done = set(fast)
        for name in self.numeric_:
            if name in done:
                continue
            if name not in X.columns:
                out[name] = pd.Series(np.nan, index=X.index, dtype="float64")
                continue
            s = X[name]
            if name in self.datetime_:
                s = pd.to_datetime(s, errors="coerce")
                s = (s - pd.Timestamp("1970-01-01")).dt.total_seconds()
            s = pd.to_numeric(s, errors="coerce").astype("float64")
            out[name] = s.replace([np.inf, -np.inf], np.nan)
        for name in self.categorical_:
            if name not in X.columns:
                out[name] = pd.Series(MISSING_CATEGORY, index=X.index, dtype=object)
                continue
            s = X[name].astype(object)
            out[name] = s.where(s.notna(), MISSING_CATEGORY).astype(str)
        order = [*self.numeric_, *self.categorical_]
        return pd.DataFrame({name: out[name] for name in order}, index=X.index)


# -- the matrix path (serving's fast path): a row's raw values in an object matrix ---------


def category_strings(values: np.ndarray) -> list[str]:
    """A categorical column's raw values as ``transform`` makes them (missing ->
    ``"__missing__"``, anything else ``str``)."""
    return [
        MISSING_CATEGORY if v is None or (isinstance(v, float) and v != v) else str(v)
        for v in values.tolist()
    ]


def sanitized_strings(values: np.ndarray) -> pd.Series:
    """:func:`category_strings` vectorised (for batches): ``transform``'s own cast."""
    s = pd.Series(values, dtype=object)
    return s.where(s.notna(), MISSING_CATEGORY).astype(str)


def as_floats(block: np.ndarray) -> np.ndarray:
    """Numeric columns of a matrix as float64 (None -> NaN in an object matrix)."""
    if block.dtype != object:
        return np.asarray(block, dtype=np.float64)
    return np.where(pd.isna(block), np.nan, block).astype(np.float64)
