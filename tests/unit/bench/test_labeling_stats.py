"""Latency summaries and the double-assignment count of bench/labeling.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench._labeling_stats import (
    client_double_assignments,
    double_assignments,
    percentile,
    summarize_ms,
)


def test_percentile_matches_numpy_linear_interpolation() -> None:
    rng = np.random.default_rng(0)
    values = list(rng.exponential(5.0, size=997))
    for q in (0, 1, 50, 90, 99, 99.9, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert percentile([3.0, 1.0], 50) == 2.0  # unsorted input, interpolated
    assert math.isnan(percentile([], 99))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_is_in_milliseconds() -> None:
    s = summarize_ms([0.001, 0.002, 0.003, 0.010])
    assert s["n"] == 4
    assert s["p50_ms"] == pytest.approx(2.5)
    assert s["max_ms"] == pytest.approx(10.0)
    assert s["mean_ms"] == pytest.approx(4.0)


def test_no_double_assignment_when_overlap_is_respected() -> None:
    rows = [
        ("i1", "a", "submitted"),
        ("i1", "b", "active"),
        ("i2", "a", "submitted"),
        # Released holds do not count: an expired lease then a fresh one to someone else.
        ("i2", "b", "expired"),
        ("i2", "c", "submitted"),
        ("i3", "a", "skipped"),
        ("i3", "a", "submitted"),
    ]
    assert double_assignments(rows, overlap=2) == {
        "same_annotator": 0,
        "beyond_overlap": 0,
        "total": 0,
    }


def test_item_held_twice_by_one_annotator_or_beyond_overlap_is_counted() -> None:
    rows = [
        ("i1", "a", "submitted"),
        ("i1", "a", "active"),  # twice by one person
        ("i2", "a", "submitted"),
        ("i2", "b", "submitted"),
        ("i2", "c", "active"),  # a third holder with overlap 2
        ("i3", "a", "submitted"),
        ("i3", "a", "submitted"),
        ("i3", "b", "submitted"),
        ("i3", "c", "submitted"),  # one duplicate and one beyond overlap
    ]
    assert double_assignments(rows, overlap=2) == {
        "same_annotator": 2,
        "beyond_overlap": 2,
        "total": 4,
    }
    assert double_assignments(rows[:2], overlap=1)["total"] == 1


def test_client_side_count_treats_every_grant_as_held() -> None:
    assert client_double_assignments([("i1", "a"), ("i1", "b")], overlap=2)["total"] == 0
    assert client_double_assignments([("i1", "a"), ("i1", "a")], overlap=2)["total"] == 1
    assert client_double_assignments([("i1", "a"), ("i1", "b")], overlap=1)["total"] == 1


def test_relabel_rounds_allow_one_more_annotator_each() -> None:
    rows = [("i1", a, "submitted") for a in ("a", "b", "c")] + [("i2", "a", "submitted")]
    assert double_assignments(rows, overlap=2)["beyond_overlap"] == 1
    assert double_assignments(rows, overlap=2, rounds={"i1": 1})["total"] == 0
    assert client_double_assignments([("i1", "a"), ("i1", "a")], 1, {"i1": 1})["total"] == 1
