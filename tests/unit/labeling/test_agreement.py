"""Agreement statistics against published worked examples, and the triple builders."""

from __future__ import annotations

import math

import numpy as np
import pytest

from atlas_labeling.quality.agreement import (
    Level,
    annotator_agreement,
    cohen_kappa,
    fleiss_counts,
    fleiss_kappa,
    krippendorff_alpha,
    pairwise_agreement,
    project_agreement,
    reliability_matrix,
)

nan = np.nan

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: observers A-D
# (rows) x units 1-12 (columns), "." (missing) as NaN.
KRIPPENDORFF_2011 = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ]
)

# Fleiss' kappa example (Wikipedia, "Fleiss' kappa"): 10 subjects x 5 categories, 14 raters.
FLEISS_EXAMPLE = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)


@pytest.mark.parametrize(
    "level, expected",
    [("nominal", 0.743), ("interval", 0.849), ("ordinal", 0.815), ("ratio", 0.797)],
)
def test_krippendorff_2011_example(level: Level, expected: float) -> None:
    # units x coders: the paper's table transposed
    assert round(krippendorff_alpha(KRIPPENDORFF_2011.T, level), 3) == expected


def test_krippendorff_three_coder_example() -> None:
    # Krippendorff's Content Analysis example quoted on Wikipedia (coders A-C, 15 units)
    data = np.array(
        [
            [nan, nan, nan, nan, nan, 3, 4, 1, 2, 1, 1, 3, 3, nan, 3],
            [1, nan, 2, 1, 3, 3, 4, 3, nan, nan, nan, nan, nan, nan, nan],
            [nan, nan, 2, 1, 3, 4, 4, nan, 2, 1, 1, 3, 3, nan, 4],
        ]
    )
    assert krippendorff_alpha(data.T, "nominal") == pytest.approx(0.691358, abs=1e-6)


def test_krippendorff_edge_cases() -> None:
    perfect = np.array([[1, 1, 1], [2, 2, nan], [3, 3, 3]], dtype=float)
    assert krippendorff_alpha(perfect, "nominal") == 1.0
    assert math.isnan(krippendorff_alpha(np.array([[1.0, 1.0], [1.0, 1.0]]), "nominal"))
    assert math.isnan(krippendorff_alpha(np.array([[1.0, nan], [nan, 2.0]]), "nominal"))
    # systematic disagreement goes below zero
    assert krippendorff_alpha(np.array([[1.0, 2.0], [2.0, 1.0]]), "nominal") < 0
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha(perfect, "cosine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2-D"):
        krippendorff_alpha(np.array([1.0, 2.0]), "nominal")


def test_fleiss_kappa_wikipedia_example() -> None:
    assert round(fleiss_kappa(FLEISS_EXAMPLE), 3) == 0.210
    assert fleiss_kappa(FLEISS_EXAMPLE) == pytest.approx(0.20993, abs=1e-5)


def test_fleiss_kappa_edge_cases() -> None:
    assert fleiss_kappa(np.array([[3, 0], [0, 3]])) == 1.0
    assert math.isnan(fleiss_kappa(np.array([[3, 0], [3, 0]])))
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa(np.array([[3, 0], [1, 1]]))
    with pytest.raises(ValueError, match="at least 2"):
        fleiss_kappa(np.array([[1, 0], [0, 1]]))


def test_cohen_kappa_textbook_and_edges() -> None:
    # 50 proposals: both yes 20, yes/no 5, no/yes 10, both no 15 -> po 0.7, pe 0.5, kappa 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(["x", "y"], ["y", "x"]) == pytest.approx(-1.0)
    assert math.isnan(cohen_kappa(["x", "x"], ["x", "x"]))
    with pytest.raises(ValueError, match="length"):
        cohen_kappa(["x"], ["x", "y"])


def _triples_from_matrix(matrix: np.ndarray) -> list[tuple[str, str, str]]:
    """Coders x units matrix -> (unit, coder, label) triples, NaN skipped."""
    out = []
    for c, row in enumerate(matrix):
        for u, value in enumerate(row):
            if not np.isnan(value):
                out.append((f"unit{u:02d}", "ABCD"[c], str(int(value))))
    return out


def test_reliability_matrix_from_triples_reproduces_the_golden_values() -> None:
    triples = _triples_from_matrix(KRIPPENDORFF_2011)
    nominal = reliability_matrix(triples)
    assert nominal.coders == ("A", "B", "C", "D")
    assert nominal.categories == ("1", "2", "3", "4", "5")
    assert round(krippendorff_alpha(nominal.matrix, "nominal"), 3) == 0.743
    numeric = reliability_matrix(triples, numeric=True)
    assert round(krippendorff_alpha(numeric.matrix, "interval"), 3) == 0.849
    with pytest.raises(ValueError, match="not a number"):
        reliability_matrix([("u", "A", "cat")], numeric=True)


def test_fleiss_counts_from_triples() -> None:
    triples = []
    for s, row in enumerate(FLEISS_EXAMPLE):
        rater = 0
        for k, count in enumerate(row):
            for _ in range(count):
                triples.append((f"s{s}", f"r{rater}", f"cat{k}"))
                rater += 1
    triples.append(("odd", "r0", "cat0"))  # one answer only: not comparable, dropped
    counts, items, categories = fleiss_counts(triples)
    assert len(items) == 10 and "odd" not in items
    assert categories == ("cat0", "cat1", "cat2", "cat3", "cat4")
    assert round(fleiss_kappa(counts), 3) == 0.210


def test_pairwise_and_per_annotator_agreement() -> None:
    triples = [
        ("i1", "a", "x"), ("i1", "b", "x"), ("i1", "c", "y"),
        ("i2", "a", "y"), ("i2", "b", "y"), ("i2", "c", "x"),
        ("i3", "a", "x"), ("i3", "b", "x"), ("i3", "c", "y"),
        ("i4", "a", "y"), ("i4", "b", "y"),
    ]  # fmt: skip
    pairs = pairwise_agreement(triples)
    assert pairs[("a", "b")].n_items == 4
    assert pairs[("a", "b")].kappa == pytest.approx(1.0)
    assert pairs[("a", "c")].percent_agreement == 0.0
    # po = 0, pe = 2/3 * 1/3 + 1/3 * 2/3 = 4/9 -> kappa = -(4/9) / (5/9)
    assert pairs[("a", "c")].kappa == pytest.approx(-0.8)
    consensus = {"i1": "x", "i2": "y", "i3": "x", "i4": "y"}
    per = annotator_agreement(triples, consensus)
    assert per["a"].consensus_accuracy == 1.0 and per["a"].n_items == 4
    assert per["c"].consensus_accuracy == 0.0 and per["c"].consensus_kappa == pytest.approx(-0.8)
    # a: kappa 1 with b, -0.8 with c
    assert per["a"].mean_pairwise_kappa == pytest.approx(0.1)


def test_project_agreement_summary() -> None:
    triples = _triples_from_matrix(KRIPPENDORFF_2011)
    summary = project_agreement(triples)
    assert summary.n_items == 12
    assert summary.n_annotations == int((~np.isnan(KRIPPENDORFF_2011)).sum())
    assert summary.n_multiply_labeled == 11  # unit 12 has B's answer only
    assert round(summary.krippendorff_alpha, 3) == 0.743
    assert summary.fleiss_items == 8  # units 2-9, coded by all four
    assert -1 <= summary.fleiss_kappa <= 1
    assert 0 < summary.percent_agreement < 1
    assert round(project_agreement(triples, level="interval").krippendorff_alpha, 3) == 0.849
