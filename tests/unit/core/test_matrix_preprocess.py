"""The preprocessing steps serving's fast path runs as plain NumPy give sklearn's own answers:
the quantile transform (one row and a batch, ties, both output distributions, values outside
the fitted range; the matrix is finite by then) and the numeric crosses."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.preprocessing import QuantileTransformer

from atlas_core.ml._crosses import PairwiseCrosses
from atlas_core.ml._preprocess import _interp_columns, _quantile_fn


def _columns(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.column_stack(
        [
            rng.normal(size=n),
            rng.integers(0, 4, n).astype(float),  # heavy ties: repeated quantiles
            np.full(n, 3.0),  # constant: every quantile equal
            rng.exponential(size=n) * 1e6,
            rng.integers(0, 2, n).astype(float),
        ]
    )


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_the_quantile_transform_equals_sklearns_row_by_row_and_in_a_batch(distribution: str):
    rng = np.random.default_rng(7)
    fitted = QuantileTransformer(n_quantiles=100, output_distribution=distribution, random_state=0)
    fitted.fit(_columns(rng, 400))
    fast = _quantile_fn(fitted)
    new = _columns(rng, 300)
    new[:20] *= 50  # far outside the fitted range, both sides
    new[20:40] = fitted.quantiles_[rng.integers(0, 100, 20)]  # exactly on fitted points
    want = fitted.transform(new)
    batch = fast(new)
    np.testing.assert_array_equal(batch, want)
    rows = np.vstack([fast(new[i : i + 1]) for i in range(len(new))])
    np.testing.assert_array_equal(rows, want)


def test_interpolating_every_column_at_once_equals_np_interp_bit_for_bit():
    rng = np.random.default_rng(3)
    xp = np.sort(rng.integers(0, 30, (50, 6)).astype(float), axis=0)  # ties in every column
    xp[:, 5] = 1.0  # one column a single repeated point
    fp = np.sort(rng.normal(size=(50, 6)), axis=0)
    Z = rng.uniform(-5, 35, (40, 6))
    Z[:10] = xp[rng.integers(0, 50, (10, 6)), np.arange(6)]  # on the points
    Z[10, 2], Z[11, 3], Z[12, 4] = np.nan, np.inf, -np.inf
    got = _interp_columns(Z, xp, fp)
    for j in range(Z.shape[1]):
        np.testing.assert_array_equal(got[:, j], np.interp(Z[:, j], xp[:, j], fp[:, j]))


def test_crosses_are_the_products_of_their_pairs():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(200, 8)), rng.integers(0, 2, 200)
    crosses = PairwiseCrosses(top_k=6).fit(X, y)
    out = crosses.transform(X[:3])
    expected = np.hstack([X[:3], np.column_stack([X[:3, i] * X[:3, j] for i, j in crosses.pairs_])])
    assert len(crosses.pairs_) == 6
    np.testing.assert_array_equal(out, expected)
