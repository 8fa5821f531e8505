"""The preprocessing half of every ATLAS tabular model (a DataFrame in, a float matrix out)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_selection import SelectPercentile, VarianceThreshold, f_classif, f_regression
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import QuantileTransformer, RobustScaler, StandardScaler

from atlas_core.ml._crosses import PairwiseCrosses
from atlas_core.ml._encoding import CardinalityEncoder
from atlas_core.ml._sanitize import ColumnSanitizer

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
        return np.nan_to_num(np.hstack(parts), nan=0.0, posinf=0.0, neginf=0.0)

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
        return np.nan_to_num(Z, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        clean = self.sanitizer_.transform(X)
        parts: list[np.ndarray] = []
        if self.imputer_ is not None:
            num = self.imputer_.transform(clean[self.sanitizer_.numeric_].to_numpy(np.float64))
            parts.append(self.crosser_.transform(num))  # type: ignore[union-attr]
        if self.encoder_ is not None:
            parts.append(self.encoder_.transform(clean[self.sanitizer_.categorical_]))
        Z = self._stack(parts, len(clean))
        if self.scaler_ is not None:
            Z = self.scaler_.transform(Z)
        if self.variance_ is not None:
            Z = self.variance_.transform(Z)
        if self.selector_ is not None:
            Z = self.selector_.transform(Z)
        return np.nan_to_num(Z, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(self.feature_names_out_, dtype=object)
