"""Small datasets shared by the AutoML engine tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer


def breast_cancer() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, y


def hard_frame(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """ID-like, constant, all-NaN, high-cardinality, NaN/inf columns and a singleton class."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    cat_hi = rng.integers(0, 120, size=n)
    X = pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "uuid": [f"u{i:06d}" for i in range(n)],
            "constant": 7.0,
            "all_nan": np.nan,
            "x": x,
            "x_inf": np.where(rng.random(n) < 0.1, np.inf, x + rng.normal(size=n)),
            "x_nan": np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n)),
            "city": [f"c{v}" for v in cat_hi],
            "color": rng.choice(["red", "green", "blue", None], size=n),
        }
    )
    y = np.where(x + (cat_hi % 7) / 3 > 1, "yes", "no").astype(object)
    y[0] = "singleton"
    return X, pd.Series(y, name="label")
