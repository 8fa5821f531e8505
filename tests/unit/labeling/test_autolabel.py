"""The auto-labeling threshold (Ground Truth style)."""

from __future__ import annotations

import numpy as np
import pytest

from atlas_labeling.quality.autolabel import threshold_for_accuracy


def test_lowest_threshold_reaching_the_target() -> None:
    # scores 1.00, 0.99, ..., 0.01; the model is wrong on every item scoring below 0.5
    scores = np.arange(100, 0, -1) / 100
    correct = scores >= 0.5
    # items >= 0.48: 51 right of 53 (0.962); >= 0.47: 51 of 54 (0.944)
    assert threshold_for_accuracy(scores, correct, target=0.95, min_count=10) == 0.48
    assert threshold_for_accuracy(scores, correct, target=1.0, min_count=10) == 0.5
    # accuracy over everything is 0.51: any target up to that opens all items
    assert threshold_for_accuracy(scores, correct, target=0.5, min_count=10) == 0.01


def test_order_of_input_does_not_matter() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random(500)
    correct = rng.random(500) < scores  # higher score, more often right
    perm = rng.permutation(500)
    a = threshold_for_accuracy(scores, correct, target=0.9)
    assert a is not None
    assert a == threshold_for_accuracy(scores[perm], correct[perm], target=0.9)
    above = scores >= a
    assert correct[above].mean() >= 0.9 and above.sum() >= 30


def test_min_count_and_unreachable_targets_give_none() -> None:
    scores = np.array([0.99, 0.98, 0.5, 0.4])
    correct = np.array([True, True, False, False])
    assert threshold_for_accuracy(scores, correct, target=0.95, min_count=3) is None
    assert threshold_for_accuracy(scores, correct, target=0.95, min_count=2) == 0.98
    assert threshold_for_accuracy(np.zeros(0), np.zeros(0, dtype=bool), target=0.9) is None
    assert threshold_for_accuracy(np.full(50, 0.9), np.zeros(50, dtype=bool), 0.9) is None


def test_tied_scores_are_in_or_out_together() -> None:
    scores = np.array([0.9, 0.8, 0.8, 0.8, 0.1])
    correct = np.array([True, True, False, True, False])
    # >= 0.8 holds 3 of 4 right; stopping inside the tie would claim 2 of 2
    assert threshold_for_accuracy(scores, correct, target=1.0, min_count=2) is None
    assert threshold_for_accuracy(scores, correct, target=0.75, min_count=2) == 0.8


def test_confidence_bound_is_stricter() -> None:
    scores = np.linspace(1, 0, 200)
    correct = np.ones(200, dtype=bool)
    correct[::12] = False
    correct[:40] = True  # the top 40 all right, then one in 12 wrong: 187 of 200 overall
    point = threshold_for_accuracy(scores, correct, target=0.92)
    bounded = threshold_for_accuracy(scores, correct, target=0.92, confidence=0.95)
    assert point == 0.0  # observed accuracy never drops below 0.935
    # 187/200 has a 95% Wilson lower bound near 0.905: the bound closes the bottom
    assert bounded is not None and bounded > 0.5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"target": 0.0}, "target"),
        ({"target": 0.9, "min_count": 0}, "min_count"),
        ({"target": 0.9, "confidence": 1.0}, "confidence"),
    ],
)
def test_argument_errors(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        threshold_for_accuracy(np.array([0.5]), np.array([True]), **kwargs)


def test_shape_and_value_errors() -> None:
    with pytest.raises(ValueError, match="same length"):
        threshold_for_accuracy(np.array([0.5, 0.6]), np.array([True]), 0.9)
    with pytest.raises(ValueError, match="finite"):
        threshold_for_accuracy(np.array([np.nan]), np.array([True]), 0.9)
