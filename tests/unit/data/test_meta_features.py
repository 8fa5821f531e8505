"""Meta-features and label distributions on tables with known answers."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from atlas_core.errors import InvalidArgument
from atlas_data.meta_features import compute_meta_features, detect_task, label_distribution


def _classification_table(n: int = 600, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    signal = y + rng.normal(0, 0.3, n)
    symmetric = np.concatenate([np.linspace(-1, 1, n // 2), -np.linspace(-1, 1, n // 2)])
    vectors = rng.normal(size=(n, 4)).astype(np.float32)
    return pa.table(
        {
            "signal": signal,
            "symmetric": symmetric,
            "city": pa.array(rng.choice(["a", "b", "c"], n)),
            "vec": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 4),
            "label": pa.array(y),
        }
    )


def test_known_values_on_a_balanced_binary_table():
    mf = compute_meta_features(_classification_table(), "label")
    assert (mf.rows, mf.columns, mf.numeric_columns, mf.categorical_columns) == (600, 4, 3, 1)
    assert mf.task == "classification" and mf.classes == 2
    assert mf.class_entropy == pytest.approx(1.0)  # bits
    assert mf.class_imbalance_ratio == pytest.approx(1.0)
    assert mf.missing_ratio == 0.0
    assert mf.log_rows_per_column == pytest.approx(math.log(600 / 4))
    assert mf.target_column == "label"
    names = {lm.name for lm in mf.landmarkers}
    assert names == {"decision_stump", "naive_bayes", "1nn", "linear"}
    for lm in mf.landmarkers:
        assert lm.metric == "accuracy" and 0.0 <= lm.score <= 1.0
    # The signal column separates the classes: a stump does far better than chance.
    assert next(lm.score for lm in mf.landmarkers if lm.name == "decision_stump") > 0.85
    assert mf.extra["vector_columns"] == 1.0


def test_skew_of_symmetric_column_is_zero_and_skewed_column_positive():
    n = 1000
    sym = compute_meta_features(pa.table({"x": np.linspace(-1, 1, n)}), None)
    assert sym.skew_mean == pytest.approx(0.0, abs=1e-9)
    assert sym.kurtosis_mean == pytest.approx(-1.2, abs=0.01)  # uniform: excess kurtosis -1.2
    skewed = compute_meta_features(pa.table({"x": np.exp(np.linspace(0, 5, n))}), None)
    assert skewed.skew_min > 1.0
    assert sym.task == "none" and sym.landmarkers == [] and sym.classes == 0


def test_missing_ratio_counts_nulls_and_nans():
    table = pa.table(
        {
            "a": pa.array([1.0, None, float("nan"), 4.0]),
            "b": pa.array(["x", None, "y", "z"]),
            "y": pa.array([1, 2, 3, 4]),
        }
    )
    mf = compute_meta_features(table, "y")
    assert mf.missing_ratio == pytest.approx(3 / 8)


def test_regression_target_gets_r2_landmarkers_and_no_classes():
    rng = np.random.default_rng(1)
    x = rng.normal(size=500)
    table = pa.table({"x": x, "y": 3 * x + rng.normal(0, 0.1, 500)})
    mf = compute_meta_features(table, "y")
    assert mf.task == "regression" and mf.classes == 0 and mf.class_entropy == 0.0
    assert {lm.name for lm in mf.landmarkers} == {"decision_stump", "1nn", "linear"}
    assert next(lm.score for lm in mf.landmarkers if lm.name == "linear") > 0.95
    assert all(lm.metric == "r2" for lm in mf.landmarkers)


def test_task_detection_rule():
    assert detect_task(pa.array(["a", "b"])) == "classification"
    assert detect_task(pa.array([True, False])) == "classification"
    assert detect_task(pa.array([0.0, 1.0, 1.0])) == "classification"
    assert detect_task(pa.array(np.arange(100))) == "regression"


def test_unknown_target_and_empty_table():
    with pytest.raises(InvalidArgument, match="'nope'"):
        compute_meta_features(pa.table({"x": [1]}), "nope")
    empty = compute_meta_features(
        pa.table({"x": pa.array([], pa.float64()), "y": pa.array([], pa.int64())}), "y"
    )
    assert empty.rows == 0 and empty.missing_ratio == 0.0 and empty.landmarkers == []


def test_label_distribution_categorical_and_numeric():
    dist = label_distribution(pa.table({"y": ["b", "a", "b", None]}), "y")
    assert dist.counts == [("b", 2), ("a", 1)] and dist.missing == 1
    numeric = label_distribution(pa.table({"y": pa.array(np.arange(100.0))}), "y")
    assert numeric.counts == []
    assert (numeric.mean, numeric.min, numeric.max) == (49.5, 0.0, 99.0)
    assert numeric.stddev == pytest.approx(np.std(np.arange(100.0), ddof=1))
    binary = label_distribution(pa.table({"y": [0, 1, 1]}), "y")
    assert binary.counts == [("1", 2), ("0", 1)] and binary.mean == pytest.approx(2 / 3)
    with pytest.raises(InvalidArgument):
        label_distribution(pa.table({"y": [1]}), "z")
