"""Majority vote and Dawid–Skene on hand-made and simulated annotations."""

from __future__ import annotations

import numpy as np
import pytest

from atlas_labeling.quality.consensus import (
    consensus_by_count,
    dawid_skene,
    fit_dawid_skene,
    majority_vote,
    multilabel_vote,
)


def simulate(seed: int, n_items: int = 600, n_classes: int = 4, overlap: int = 3):
    """Five honest annotators of accuracy 0.6-0.9 and one who answers (truth + 1) mod K."""
    rng = np.random.default_rng(seed)
    accuracy = {"a": 0.6, "b": 0.7, "c": 0.75, "d": 0.8, "e": 0.9, "adv": None}
    names = list(accuracy)
    truth = rng.integers(n_classes, size=n_items)
    triples = []
    for i in range(n_items):
        for j in rng.choice(len(names), overlap, replace=False):
            t, acc = int(truth[i]), accuracy[names[j]]
            if acc is None:
                label = (t + 1) % n_classes
            elif rng.random() < acc:
                label = t
            else:
                label = (t + int(rng.integers(1, n_classes))) % n_classes
            triples.append((f"item{i}", names[j], f"class{label}"))
    return {f"item{i}": f"class{t}" for i, t in enumerate(truth)}, triples


def accuracy(result: dict[str, tuple], truth: dict[str, str]) -> float:
    return float(np.mean([result[item][0] == label for item, label in truth.items()]))


def test_majority_vote_winner_and_confidence() -> None:
    out = majority_vote({"x": [("a", "cat"), ("b", "cat"), ("c", "dog")], "y": [("a", "dog")]})
    assert out["x"] == ("cat", pytest.approx(2 / 3))
    assert out["y"] == ("dog", 1.0)


def test_majority_vote_tie_goes_to_smallest_label_whatever_the_order() -> None:
    one = majority_vote({"x": [("a", "zebra"), ("b", "ant")]})
    other = majority_vote({"x": [("b", "ant"), ("a", "zebra")]})
    assert one == other == {"x": ("ant", 0.5)}


def test_majority_vote_counts_an_annotators_last_answer_only() -> None:
    out = majority_vote({"x": [("a", "cat"), ("a", "cat"), ("a", "dog"), ("b", "dog")]})
    assert out["x"] == ("dog", 1.0)


def test_majority_vote_weights_and_empty_items() -> None:
    votes = {"x": [("expert", "cat"), ("n1", "dog"), ("n2", "dog")], "empty": []}
    out = majority_vote(votes, weights={"expert": 3.0})
    assert out == {"x": ("cat", pytest.approx(0.6))}
    with pytest.raises(ValueError, match="negative"):
        majority_vote(votes, weights={"n1": -1})


def test_dawid_skene_beats_majority_with_an_adversary() -> None:
    truth, triples = simulate(seed=3)
    by_item: dict[str, list[tuple[str, str]]] = {}
    for item, annotator, label in triples:
        by_item.setdefault(item, []).append((annotator, label))
    majority = accuracy(majority_vote(by_item), truth)
    ds = accuracy(dawid_skene(triples), truth)
    assert ds > majority + 0.05, (ds, majority)
    assert ds > 0.85


def test_dawid_skene_learns_each_annotators_confusion() -> None:
    truth, triples = simulate(seed=5, n_items=1500)
    fitted = fit_dawid_skene(triples)
    assert fitted.converged
    assert fitted.classes == ("class0", "class1", "class2", "class3")
    est = fitted.annotator_accuracy()
    for name, acc in {"a": 0.6, "b": 0.7, "c": 0.75, "d": 0.8, "e": 0.9}.items():
        assert est[name] == pytest.approx(acc, abs=0.06), name
    adversary = fitted.confusion["adv"]
    np.testing.assert_allclose(adversary.sum(axis=1), 1.0)
    # true class k is answered k+1 (mod 4): the mass sits one column to the right
    assert all(adversary[k, (k + 1) % 4] > 0.9 for k in range(4))
    assert est["adv"] < 0.05
    assert fitted.posteriors.shape == (len(truth), 4)
    np.testing.assert_allclose(fitted.posteriors.sum(axis=1), 1.0)


def test_dawid_skene_unanimous_items_are_confident() -> None:
    triples = [(f"i{i}", a, "yes" if i % 2 else "no") for i in range(20) for a in "abc"]
    out = dawid_skene(triples)
    assert all(out[f"i{i}"][0] == ("yes" if i % 2 else "no") for i in range(20))
    assert min(conf for _, conf in out.values()) > 0.99


def test_dawid_skene_schema_classes_and_errors() -> None:
    fitted = fit_dawid_skene([("i", "a", "x"), ("i", "b", "x")], classes=["y", "x", "z"])
    assert fitted.classes == ("x", "y", "z")
    assert fitted.consensus()["i"][0] == "x"
    with pytest.raises(ValueError, match="not in classes"):
        fit_dawid_skene([("i", "a", "w")], classes=["x"])
    with pytest.raises(ValueError, match="no annotations"):
        fit_dawid_skene([])
    with pytest.raises(ValueError, match="max_iter"):
        fit_dawid_skene([("i", "a", "x")], max_iter=0)


def test_consensus_by_count_uses_dawid_skene_only_from_three_answers() -> None:
    truth, triples = simulate(seed=1)
    triples = triples + [("lonely", "a", "class2")]
    out = consensus_by_count(triples, min_annotations=3)
    assert out["lonely"] == ("class2", 1.0, "majority")
    assert {method for item, (_, _, method) in out.items() if item != "lonely"} == {"dawid_skene"}


def test_multilabel_vote_keeps_labels_chosen_by_most() -> None:
    answers = {
        "x": [("a", {"sports", "politics"}), ("b", {"sports"}), ("c", {"sports", "economy"})],
        "none": [("a", set()), ("b", set()), ("c", {"sports"})],
        "tie": [("a", {"sports"}), ("b", set())],
    }
    out = multilabel_vote(answers)
    assert out["x"] == (
        frozenset({"sports"}),
        {"economy": pytest.approx(1 / 3), "politics": pytest.approx(1 / 3), "sports": 1.0},
    )
    assert out["none"][0] == frozenset()
    assert out["tie"][0] == frozenset()  # half is not a majority
    assert multilabel_vote(answers, threshold=0.3)["x"][0] == {"sports", "politics", "economy"}
    with pytest.raises(ValueError, match="threshold"):
        multilabel_vote(answers, threshold=1.0)
