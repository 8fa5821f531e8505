"""Occlusion contributions against a background, and the background serving draws from a
bundle's training statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atlas_core.bundles import background_from_stats, background_rows, occlusion_contributions

WEIGHTS = np.array([2.0, -3.0, 0.5])


def _linear(frame: pd.DataFrame) -> np.ndarray:
    return frame.to_numpy(dtype="float64") @ WEIGHTS


def test_a_linear_model_gets_its_weight_times_the_distance_to_the_background_mean() -> None:
    rng = np.random.default_rng(0)
    rows = pd.DataFrame(rng.normal(size=(4, 3)), columns=["a", "b", "c"])
    reference = pd.DataFrame(rng.exponential(size=(16, 3)), columns=["a", "b", "c"])
    own, values, base = occlusion_contributions(_linear, rows, reference, None)
    expected = WEIGHTS * (rows.to_numpy() - reference.to_numpy().mean(axis=0))
    np.testing.assert_allclose(values, expected, atol=1e-12)
    np.testing.assert_allclose(own, _linear(rows))
    np.testing.assert_allclose(base, _linear(reference).mean())
    # additive model: contributions sum to the prediction minus the background's mean
    np.testing.assert_allclose(values.sum(axis=1), own - base, atol=1e-12)


def test_classifiers_explain_the_chosen_class_per_row() -> None:
    def proba(frame: pd.DataFrame) -> np.ndarray:
        p = 1 / (1 + np.exp(-frame["x"].to_numpy(dtype="float64")))
        return np.column_stack([1 - p, p])

    rows = pd.DataFrame({"x": [3.0, -3.0]})
    reference = pd.DataFrame({"x": [0.0, 0.0]})
    own, values, base = occlusion_contributions(proba, rows, reference, np.array([1, 0]))
    np.testing.assert_allclose(own, [proba(rows)[0, 1], proba(rows)[1, 0]])
    np.testing.assert_allclose(base, [0.5, 0.5])
    assert values[0, 0] > 0.4 and values[1, 0] > 0.4  # each row's value raised its own class


STATS = {
    "age": {"kind": "numeric", "sample": list(np.linspace(0.0, 100.0, 101)), "mean": 50.0},
    "city": {"kind": "categorical", "frequencies": {"a": 0.75, "b": 0.25, "__other__": 0.0}},
    "when": {"kind": "datetime", "sample": [0.0, 86_400.0]},
    "new": {},
}


def test_the_background_follows_each_training_marginal() -> None:
    frame = background_from_stats(STATS, ["age", "city", "when", "new"], size=16)
    assert list(frame.columns) == ["age", "city", "when", "new"]
    ages = np.sort(frame["age"].to_numpy())
    np.testing.assert_allclose(ages, (np.arange(16) + 0.5) / 16 * 100)
    assert frame["city"].value_counts().to_dict() == {"a": 12, "b": 4}
    assert all(pd.Timestamp(v) <= pd.Timestamp("1970-01-02") for v in frame["when"])
    assert frame["new"].isna().all()
    # columns are shuffled independently, yet the draw is reproducible
    assert not frame["age"].is_monotonic_increasing
    pd.testing.assert_frame_equal(frame, background_from_stats(STATS, list(frame.columns)))


@pytest.mark.parametrize(("n_rows", "n_columns", "expected"), [(1, 30, 16), (1000, 30, 6)])
def test_large_calls_use_a_smaller_background(n_rows: int, n_columns: int, expected: int) -> None:
    assert background_rows(n_rows, n_columns) == expected
