"""Label-error flags on real data (sklearn digits) with known flipped labels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from atlas_labeling.quality.errors import (
    disagrees_with_prediction,
    find_label_issues_by_item,
    flag_label_issues,
    label_quality,
)


@pytest.fixture(scope="module")
def noisy_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true labels, given labels with 10% flipped, 5-fold out-of-sample probabilities)."""
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    flip = rng.choice(len(y), len(y) // 10, replace=False)
    given = y.copy()
    given[flip] = (y[flip] + rng.integers(1, 10, len(flip))) % 10
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probs = cross_val_predict(
        model, x, given, cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba"
    )
    return y, given, probs


def _precision_recall(mask: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    hits = int((mask & truth).sum())
    return hits / max(int(mask.sum()), 1), hits / int(truth.sum())


def test_flags_find_most_flipped_labels_and_beat_the_baseline(noisy_digits) -> None:
    y, given, probs = noisy_digits
    wrong = given != y
    flags = flag_label_issues(given, probs)
    precision, recall = _precision_recall(flags, wrong)
    assert recall >= 0.8, recall
    assert precision >= 0.6, precision
    base_p, base_r = _precision_recall(disagrees_with_prediction(given, probs), wrong)
    f1 = 2 * precision * recall / (precision + recall)
    assert f1 > 2 * base_p * base_r / (base_p + base_r)


def test_filter_by_changes_the_trade_off(noisy_digits) -> None:
    y, given, probs = noisy_digits
    default = flag_label_issues(given, probs)
    both = flag_label_issues(given, probs, filter_by="both")
    # "both" flags only what both pruning rules flag
    assert both.sum() <= default.sum()
    assert not (both & ~default).any()
    baseline = flag_label_issues(given, probs, filter_by="predicted_neq_given")
    np.testing.assert_array_equal(baseline, disagrees_with_prediction(given, probs))


def test_label_quality_ranks_flipped_labels_lower(noisy_digits) -> None:
    y, given, probs = noisy_digits
    quality = label_quality(given, probs)
    assert quality.shape == y.shape and (0 <= quality).all() and (quality <= 1).all()
    assert np.median(quality[given != y]) < 0.2 < np.median(quality[given == y])


def test_find_label_issues_by_item_names_items_worst_first() -> None:
    probs = np.array([[0.9, 0.1]] * 20 + [[0.1, 0.9]] * 20 + [[0.95, 0.05], [0.02, 0.98]])
    labels = ["cat"] * 20 + ["dog"] * 20 + ["dog", "cat"]
    items = [f"item{i}" for i in range(len(labels))]
    issues = find_label_issues_by_item(items, labels, probs, classes=["cat", "dog"])
    assert [i.item for i in issues] == ["item41", "item40"]
    assert (issues[0].given, issues[0].suggested) == ("cat", "dog")
    assert issues[0].quality == pytest.approx(0.02)
    with pytest.raises(ValueError, match="not in classes"):
        find_label_issues_by_item(["a"], ["bird"], np.array([[0.5, 0.5]]), ["cat", "dog"])
    with pytest.raises(ValueError, match="same length"):
        find_label_issues_by_item(["a", "b"], ["cat"], np.array([[0.5, 0.5]]), ["cat", "dog"])


@pytest.mark.parametrize(
    "labels, probs, match",
    [
        (np.array([0, 1]), np.array([[0.5, 0.5]]), "entries"),
        (np.array([0, 2]), np.array([[0.5, 0.5], [0.5, 0.5]]), r"\[0, 2\)"),
        (np.array([0.0, 1.0]), np.array([[0.5, 0.5], [0.5, 0.5]]), "integer"),
        (np.array([0, 1]), np.array([[0.5, 0.6], [0.5, 0.5]]), "sum to 1"),
        (np.array([0, 1]), np.array([[1.5, -0.5], [0.5, 0.5]]), r"\[0, 1\]"),
        (np.array([0]), np.array([[1.0]]), "classes"),
    ],
)
def test_bad_inputs_are_refused(labels, probs, match) -> None:
    with pytest.raises(ValueError, match=match):
        flag_label_issues(labels, probs)


def test_empty_input_flags_nothing() -> None:
    assert flag_label_issues(np.zeros(0, dtype=int), np.zeros((0, 3))).shape == (0,)
