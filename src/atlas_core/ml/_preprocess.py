"""The preprocessing half of every ATLAS tabular model (a DataFrame in, a float matrix out)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import ndtri
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_selection import SelectPercentile, VarianceThreshold, f_classif, f_regression
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import QuantileTransformer, RobustScaler, StandardScaler

from atlas_core.ml._crosses import PairwiseCrosses
from atlas_core.ml._encoding import CardinalityEncoder
from atlas_core.ml._sanitize import ColumnSanitizer, as_floats

_SCALERS = {
    "standard": lambda seed: StandardScaler(),
    "robust": lambda seed: RobustScaler(),
    "quantile": lambda seed: QuantileTransformer(
        n_quantiles=100, output_distribution="normal", random_state=seed, subsample=100_000
    ),
}
_TARGET_TYPES = {"binary": "binary", "multiclass": "multiclass", "regression": "continuous"}


class TabularPreprocessor(TransformerMixin, BaseEstimator):
    """sanitize -> impute numerics (+ missing indicators) -> numeric crosses -> encode
    categoricals by cardinality -> scale -> drop zero-variance -> optional univariate
    selection (keep ``selection_percentile`` % by F-test).

    ``task`` is ``binary``, ``multiclass`` or ``regression`` (``y`` given as class codes for
    classification). Call ``fit_transform`` on training data (target encoding cross-fits
    there) and ``transform`` on new data. Output: float32 ``[n, len(feature_names_out_)]``,
    never NaN/inf. ``dropped_columns_`` says which raw columns were dropped and why.
    """

    def __init__(
        self,
        task: str = "binary",
        imputation: str = "median",
        missing_indicators: bool = True,
        onehot_max: int = 10,
        ordinal_max: int = 50,
        scaling: str = "none",
        crosses: int = 0,
        selection: str = "none",
        selection_percentile: float = 50.0,
        seed: int = 0,
    ) -> None:
        self.task = task
        self.imputation = imputation
        self.missing_indicators = missing_indicators
        self.onehot_max = onehot_max
        self.ordinal_max = ordinal_max
        self.scaling = scaling
        self.crosses = crosses
        self.selection = selection
        self.selection_percentile = selection_percentile
        self.seed = seed

    @property
    def dropped_columns_(self) -> dict[str, str]:
        return dict(self.sanitizer_.dropped_)

    def fit(self, X: pd.DataFrame, y: object = None) -> TabularPreprocessor:
        self.fit_transform(X, y)
        return self

    def fit_transform(self, X: pd.DataFrame, y: object = None, **_: object) -> np.ndarray:
        self.sanitizer_ = ColumnSanitizer()
        clean = self.sanitizer_.fit_transform(X)
        yv = None if y is None else np.asarray(y)
        num_cols, cat_cols = self.sanitizer_.numeric_, self.sanitizer_.categorical_
        parts: list[np.ndarray] = []
        names: list[str] = []
        self.imputer_ = self.crosser_ = self.encoder_ = None
        if num_cols:
            self.imputer_ = SimpleImputer(
                strategy=self.imputation,
                add_indicator=self.missing_indicators,
                keep_empty_features=True,
            )
            num = self.imputer_.fit_transform(clean[num_cols].to_numpy(np.float64))
            num_names = [str(n) for n in self.imputer_.get_feature_names_out(num_cols)]
            self.crosser_ = PairwiseCrosses(self.crosses)
            num = self.crosser_.fit_transform(num, yv)
            parts.append(num)
            names += self.crosser_.names(num_names)
        if cat_cols:
            self.encoder_ = CardinalityEncoder(
                self.onehot_max, self.ordinal_max, _TARGET_TYPES.get(self.task, "auto")
            )
            parts.append(self.encoder_.fit_transform(clean[cat_cols], yv))
            names += list(self.encoder_.feature_names_out_)
        return self._fit_tail(self._stack(parts, len(clean)), names, yv)

    @staticmethod
    def _stack(parts: list[np.ndarray], n: int) -> np.ndarray:
        if not parts:
            return np.zeros((n, 1))  # nothing usable: models fall back to the prior
        return _zero_nonfinite(parts[0] if len(parts) == 1 else np.hstack(parts))

    def _fit_tail(self, Z: np.ndarray, names: list[str], y: np.ndarray | None) -> np.ndarray:
        if Z.shape[1] == 1 and not names:
            names = ["__none__"]
        self.scaler_ = _SCALERS[self.scaling](self.seed) if self.scaling in _SCALERS else None
        if self.scaler_ is not None:
            Z = self.scaler_.fit_transform(Z)
        self.variance_ = None
        if Z.shape[1] > 1:
            self.variance_ = VarianceThreshold(0.0)
            try:
                Z2 = self.variance_.fit_transform(Z)
                names = [n for n, k in zip(names, self.variance_.get_support()) if k]
                Z = Z2
            except ValueError:  # every column constant: keep them, the model copes
                self.variance_ = None
        self.selector_ = None
        if self.selection == "f_test" and y is not None and Z.shape[1] > 2:
            score = f_regression if self.task == "regression" else f_classif
            self.selector_ = SelectPercentile(score, percentile=self.selection_percentile)
            Z = self.selector_.fit_transform(Z, y)
            names = [n for n, k in zip(names, self.selector_.get_support()) if k]
        self.feature_names_out_ = names
        return _zero_nonfinite(Z).astype(np.float32)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        clean = self.sanitizer_.transform(X)
        parts: list[np.ndarray] = []
        if self.imputer_ is not None:
            num = self.imputer_.transform(clean[self.sanitizer_.numeric_].to_numpy(np.float64))
            parts.append(self.crosser_.transform(num))  # type: ignore[union-attr]  # set with imputer_
        if self.encoder_ is not None:
            parts.append(self.encoder_.transform(clean[self.sanitizer_.categorical_]))
        return self._transform_tail(self._stack(parts, len(clean)))

    def matrix_transform(self, columns: Sequence[str]) -> Callable[[np.ndarray], np.ndarray] | None:
        """``transform`` for a matrix whose columns are ``columns`` (serving's fast path: no
        DataFrame): float64, or object when categorical columns hold their raw values (None
        for missing; numeric columns floats there too). None when a kept column is a datetime
        or not in ``columns``. Gives the same output as ``transform`` on the equivalent frame."""
        sanitizer = self.sanitizer_
        position = {str(c): i for i, c in enumerate(columns)}
        kept = [*sanitizer.numeric_, *sanitizer.categorical_]
        if sanitizer.datetime_ or any(n not in position for n in kept):
            return None
        take = np.array([position[n] for n in sanitizer.numeric_], dtype=np.intp)
        take_cat = np.array([position[n] for n in sanitizer.categorical_], dtype=np.intp)
        impute = _impute_fn(self.imputer_) if self.imputer_ is not None else None
        encode = self.encoder_.matrix_transform() if self.encoder_ is not None else None
        crosser = self.crosser_
        cross = crosser.transform if crosser is not None and crosser.pairs_ else None
        tail = [
            _fitted_fn(step)
            for step in (self.scaler_, self.variance_, self.selector_)
            if step is not None
        ]

        def transform(M: np.ndarray) -> np.ndarray:
            parts: list[np.ndarray] = []
            if impute is not None:  # fancy indexing copies; NaN and +-inf are missing
                num = impute(as_floats(M[:, take]))
                parts.append(num if cross is None else cross(num))
            if encode is not None:
                parts.append(encode(M[:, take_cat]))
            Z = self._stack(parts, len(M))
            for step in tail:
                Z = step(Z)
            return _zero_nonfinite(Z).astype(np.float32)

        return transform

    def _transform_tail(self, Z: np.ndarray) -> np.ndarray:
        if self.scaler_ is not None:
            Z = self.scaler_.transform(Z)
        if self.variance_ is not None:
            Z = self.variance_.transform(Z)
        if self.selector_ is not None:
            Z = self.selector_.transform(Z)
        return _zero_nonfinite(Z).astype(np.float32)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(self.feature_names_out_, dtype=object)


# Fitted steps as plain NumPy for the matrix path: sklearn's per-call input validation costs
# more than the arithmetic of a one-row request. Anything else keeps sklearn's own transform.


def _zero_nonfinite(Z: np.ndarray) -> np.ndarray:
    """``np.nan_to_num(Z, nan=0, posinf=0, neginf=0)``; one sum decides for the usual
    all-finite matrix (cheaper than nan_to_num's own checks)."""
    if math.isfinite(Z.sum()):
        return Z
    return np.where(np.isfinite(Z), Z, 0.0)


def _impute_fn(imputer: SimpleImputer) -> Callable[[np.ndarray], np.ndarray]:
    """The fitted imputer for a matrix where NaN and +-inf mean missing."""
    fill = np.asarray(imputer.statistics_, dtype=np.float64)
    indicator = getattr(imputer, "indicator_", None)
    if not np.isfinite(fill).all() or (
        indicator is not None and indicator.features != "missing-only"
    ):
        return lambda num: imputer.transform(np.where(np.isfinite(num), num, np.nan))
    flagged = None if indicator is None else np.asarray(indicator.features_, dtype=np.intp)

    def impute(num: np.ndarray) -> np.ndarray:
        missing = ~np.isfinite(num)
        out = np.where(missing, fill, num)
        if flagged is None:
            return out
        return np.concatenate((out, missing[:, flagged]), axis=1)  # bool -> 0.0 / 1.0

    return impute


def _fitted_fn(step: object) -> Callable[[np.ndarray], np.ndarray]:
    if isinstance(step, StandardScaler):
        mean = step.mean_ if step.with_mean else 0.0
        scale = step.scale_ if step.with_std else 1.0
        return lambda Z: (Z - mean) / scale
    if isinstance(step, RobustScaler):
        center = step.center_ if step.with_centering else 0.0
        scale = step.scale_ if step.with_scaling else 1.0
        return lambda Z: (Z - center) / scale
    if isinstance(step, QuantileTransformer) and not sparse.issparse(step.quantiles_):
        return _quantile_fn(step)
    if isinstance(step, (VarianceThreshold, SelectPercentile)):
        keep = np.flatnonzero(step.get_support())
        return lambda Z: Z[:, keep]
    return step.transform  # type: ignore[attr-defined]  # any fitted sklearn transformer


_QUANTILE_BOUND = 1e-7  # sklearn.preprocessing._data.BOUNDS_THRESHOLD


def _quantile_fn(step: QuantileTransformer) -> Callable[[np.ndarray], np.ndarray]:
    """``QuantileTransformer.transform`` as sklearn computes it (the mean of the forward and
    backward interpolation, the bounds, then the normal quantile): sklearn's own call costs
    milliseconds per row in validation and ``scipy.stats``. A few rows interpolate every
    column, both directions, in one ``_interp_columns``; a batch takes one ``np.interp`` pair
    per column."""
    quantiles = np.asarray(step.quantiles_, dtype=np.float64)
    refs = np.asarray(step.references_, dtype=np.float64)
    columns = [
        (np.ascontiguousarray(quantiles[:, j]), np.ascontiguousarray(-quantiles[::-1, j]))
        for j in range(quantiles.shape[1])
    ]
    back_refs = np.ascontiguousarray(-refs[::-1])
    # forward columns, then backward ones (-x on the reversed, negated points)
    both_x = np.hstack([quantiles, -quantiles[::-1]])
    both_f = np.hstack(
        [
            np.repeat(refs[:, None], quantiles.shape[1], 1),
            np.repeat(back_refs[:, None], quantiles.shape[1], 1),
        ]
    )
    width = quantiles.shape[1]
    low_x, high_x = quantiles[0], quantiles[-1]
    normal = step.output_distribution == "normal"
    clip_min = ndtri(_QUANTILE_BOUND - np.spacing(1))
    clip_max = ndtri(1 - (_QUANTILE_BOUND - np.spacing(1)))
    few_rows = max(1, _INTERP_CELLS // max(1, both_x.size))

    def transform(Z: np.ndarray) -> np.ndarray:
        Z = np.asarray(Z, dtype=np.float64)
        if len(Z) <= few_rows:
            both = _interp_columns(np.hstack([Z, -Z]), both_x, both_f)
            out = 0.5 * (both[:, :width] - both[:, width:])
        else:
            out = np.empty_like(Z)
            for j, (forward, backward) in enumerate(columns):
                x = Z[:, j]
                out[:, j] = 0.5 * (np.interp(x, forward, refs) - np.interp(-x, backward, back_refs))
        if normal:
            out[Z + _QUANTILE_BOUND > high_x] = 1.0
            out[Z - _QUANTILE_BOUND < low_x] = 0.0
            with np.errstate(divide="ignore"):
                return np.clip(ndtri(out), clip_min, clip_max)
        out[Z == high_x] = 1.0
        out[Z == low_x] = 0.0
        return out

    return transform


# Rows x points x columns compared at once by the few-rows path of _quantile_fn.
_INTERP_CELLS = 1 << 20


def _interp_columns(Z: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """``np.interp(Z[:, j], xp[:, j], fp[:, j])`` for every column j at once, with numpy's own
    arithmetic (equal bit for bit): ``xp`` and ``fp`` are [points, columns], each column of
    ``xp`` non-decreasing, ``fp`` finite (so numpy's retry of a NaN result never happens).
    NaN stays NaN; below the first point fp[0], from the last on fp[-1]."""
    n_points, width = xp.shape
    # j: the last point <= x (numpy's bracket xp[j] <= x < xp[j + 1]), -1 below the first
    j = (xp <= Z[:, None, :]).sum(axis=1) - 1
    at = np.minimum(np.maximum(j, 0), n_points - 2) * width + np.arange(width)
    x0, x1, y0, y1 = xp.take(at), xp.take(at + width), fp.take(at), fp.take(at + width)
    finite = bool(np.isfinite(Z).all())
    z = Z if finite else np.where(np.isfinite(Z), Z, x0)  # outside the bracket anyway
    step = x1 - x0  # 0 only outside the bracket (ties at an end)
    value = (y1 - y0) / np.where(step > 0, step, 1.0) * (z - x0) + y0
    value = np.where(Z == x0, y0, value)  # numpy: a point hit exactly gives its own value
    value = np.where(j < 0, fp[0], np.where(j >= n_points - 1, fp[-1], value))
    return value if finite else np.where(np.isnan(Z), Z, value)
