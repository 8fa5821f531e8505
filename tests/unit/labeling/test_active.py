"""Uncertainty ordering and k-center batches."""

from __future__ import annotations

import math

import numpy as np
import pytest

from atlas_labeling.quality.active import k_center, order, uncertainty


def test_uncertainty_values() -> None:
    p = np.array([0.5, 0.3, 0.2])
    assert uncertainty(p, "least_confidence") == pytest.approx(0.5)
    assert uncertainty(p, "margin") == pytest.approx(0.8)
    expected = -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2)) / math.log(3)
    assert uncertainty(p, "entropy") == pytest.approx(expected)
    assert uncertainty(np.array([1.0, 0.0]), "entropy") == 0.0
    assert uncertainty(np.array([0.5, 0.5]), "entropy") == pytest.approx(1.0)


@pytest.mark.parametrize(
    "probs", [np.array([0.5, 0.6]), np.array([1.0]), np.array([[0.5, 0.5]]), np.array([-0.1, 1.1])]
)
def test_uncertainty_refuses_non_distributions(probs) -> None:
    with pytest.raises(ValueError):
        uncertainty(probs, "entropy")


def test_strategies_can_disagree() -> None:
    # "flat" is spread over three classes; "torn" is split between two
    items = {"flat": np.array([0.4, 0.3, 0.3]), "torn": np.array([0.45, 0.45, 0.1])}
    assert order(items, "least_confidence") == ["flat", "torn"]
    assert order(items, "margin") == ["torn", "flat"]
    assert order(items, "entropy") == ["flat", "torn"]


def test_most_uncertain_first_ties_keep_input_order() -> None:
    items = {
        "sure": np.array([0.99, 0.01]),
        "coin1": np.array([0.5, 0.5]),
        "leaning": np.array([0.7, 0.3]),
        "coin2": np.array([0.5, 0.5]),
    }
    assert order(items, "margin") == ["coin1", "coin2", "leaning", "sure"]


def test_items_without_prediction_are_interleaved_not_starved() -> None:
    items: dict[str, np.ndarray | None] = {
        f"s{i}": np.array([0.5 + i / 100, 0.5 - i / 100]) for i in range(5)
    }
    items.update({"new1": None, "new2": None})
    assert order(items, "least_confidence") == ["s0", "new1", "s1", "new2", "s2", "s3", "s4"]
    assert order(items, "least_confidence", unscored_every=3) == [
        "s0", "s1", "new1", "s2", "s3", "new2", "s4",
    ]  # fmt: skip
    only_new = {"b": None, "a": None}
    assert order(only_new, "entropy") == ["b", "a"]
    with pytest.raises(ValueError, match="unscored_every"):
        order(items, "entropy", unscored_every=1)


def test_k_center_covers_the_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [100, 0], [0, 100], [100, 100]], dtype=float)
    # 300 points near the first centre, 5 near each of the others: random sampling of 4
    # would mostly miss the small clusters, k-center must not
    counts = [300, 5, 5, 5]
    points = np.vstack([c + rng.normal(size=(n, 2)) for c, n in zip(centres, counts)])
    owner = np.repeat(np.arange(4), counts)
    picks = k_center(points, 4, seed=1)
    assert len(picks) == len(set(picks)) == 4
    assert sorted(owner[picks].tolist()) == [0, 1, 2, 3]
    assert picks == k_center(points, 4, seed=1)


def test_k_center_starts_from_labeled_items_and_never_returns_them() -> None:
    points = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    picks = k_center(points, 2, already_selected=[0])
    assert picks[0] == 4  # farthest from the labeled point 0
    assert 0 not in picks
    assert k_center(points, 10, already_selected=[0, 1]) == [4, 2, 3]


def test_k_center_duplicates_and_limits() -> None:
    points = np.zeros((3, 2))
    assert sorted(k_center(points, 5)) == [0, 1, 2]
    assert k_center(points, 0) == []
    with pytest.raises(ValueError, match="k must"):
        k_center(points, -1)
    with pytest.raises(ValueError, match="already_selected"):
        k_center(points, 1, already_selected=[3])
    with pytest.raises(ValueError, match="finite"):
        k_center(np.array([[np.nan]]), 1)


def test_order_rejects_an_unknown_strategy_even_without_predictions() -> None:
    with pytest.raises(ValueError, match="strategy"):
        order({"a": None}, "random")  # type: ignore[arg-type]
