"""Box, span and OCR-text consensus."""

from __future__ import annotations

import pytest

from atlas_labeling.quality.consensus import (
    Box,
    Relation,
    Span,
    box_iou,
    character_error_rate,
    levenshtein,
    merge_boxes,
    merge_ocr_text,
    merge_relations,
    merge_spans,
    normalize_text,
    span_jaccard,
)


def test_box_iou_values() -> None:
    a = Box(0, 0, 10, 10)
    iou = box_iou([a], [Box(0, 0, 10, 10), Box(5, 0, 10, 10), Box(20, 20, 5, 5)])
    assert iou[0].tolist() == pytest.approx([1.0, 50 / 150, 0.0])


def test_box_rejects_zero_size_and_nan() -> None:
    with pytest.raises(ValueError, match="> 0"):
        Box(0, 0, 0, 5)
    with pytest.raises(ValueError, match="finite"):
        Box(float("nan"), 0, 1, 1)


def test_merge_boxes_mean_quorum_and_members() -> None:
    boxes = {
        "ann": [Box(10, 10, 100, 50, label="face"), Box(300, 300, 20, 20, label="face")],
        "bob": [Box(12, 8, 100, 54, label="face")],
        "cat": [Box(8, 12, 104, 46, label="face")],
    }
    merged = merge_boxes(boxes, iou_threshold=0.5, quorum=2)
    assert len(merged) == 1  # the lone box at (300, 300) lacks a quorum
    m = merged[0]
    assert m.support == 3
    assert [name for name, _ in m.members] == ["ann", "bob", "cat"]
    assert (m.box.x, m.box.y) == pytest.approx((10, 10))
    assert (m.box.width, m.box.height) == pytest.approx((101.333333, 50))
    assert m.box.label == "face"
    assert 0.8 < m.agreement < 1.0
    assert len(merge_boxes(boxes, iou_threshold=0.5, quorum=1)) == 2


def test_merge_boxes_medoid_is_a_member() -> None:
    boxes = {
        "a": [Box(0, 0, 10, 10)],
        "b": [Box(1, 0, 10, 10)],
        "c": [Box(4, 0, 10, 10)],
    }
    (m,) = merge_boxes(boxes, iou_threshold=0.4, quorum=3, how="medoid")
    assert (m.box.x, m.box.width) == (1, 10)  # b is closest to both others


def test_merge_boxes_one_box_per_annotator_per_cluster() -> None:
    # ann drew the same face twice; the duplicates must not form a cluster of their own
    boxes = {"ann": [Box(0, 0, 10, 10), Box(0, 0, 10, 10)], "bob": [Box(0, 0, 10, 10)]}
    merged = merge_boxes(boxes, iou_threshold=0.5, quorum=2)
    assert len(merged) == 1
    assert [name for name, _ in merged[0].members] == ["ann", "bob"]


def test_merge_boxes_complete_linkage_splits_a_chain() -> None:
    # a~b and b~c overlap enough, a and c do not: no cluster may hold all three
    boxes = {"a": [Box(0, 0, 10, 10)], "b": [Box(3, 0, 10, 10)], "c": [Box(6, 0, 10, 10)]}
    merged = merge_boxes(boxes, iou_threshold=0.5, quorum=1)
    assert sorted(m.support for m in merged) == [1, 2]


def test_merge_boxes_labels_must_match_unless_told_otherwise() -> None:
    boxes = {
        "a": [Box(0, 0, 10, 10, label="cat")],
        "b": [Box(0, 0, 10, 10, label="cat")],
        "c": [Box(0, 0, 10, 10, label="dog")],
    }
    assert [m.support for m in merge_boxes(boxes, 0.5, quorum=1)] == [2, 1]
    (m,) = merge_boxes(boxes, 0.5, quorum=3, match_labels=False)
    assert m.box.label == "cat"


def test_merge_boxes_merges_ocr_text() -> None:
    boxes = {
        "a": [Box(0, 0, 50, 10, text="Total: 12.50")],
        "b": [Box(0, 1, 50, 10, text="TOTAL:  12.50")],
        "c": [Box(1, 0, 50, 10, text="Total: 12.50")],
    }
    (m,) = merge_boxes(boxes, 0.5, quorum=2)
    assert m.box.text == "Total: 12.50"


def test_merge_boxes_argument_errors() -> None:
    with pytest.raises(ValueError, match="iou_threshold"):
        merge_boxes({}, 0.0, 1)
    with pytest.raises(ValueError, match="quorum"):
        merge_boxes({}, 0.5, 0)
    with pytest.raises(ValueError, match="how"):
        merge_boxes({}, 0.5, 1, how="max")  # type: ignore[arg-type]
    assert merge_boxes({"a": []}, 0.5, 1) == []


def test_normalize_text() -> None:
    assert normalize_text("  Ｆｕｌｌ\u00a0WIDTH\n\ttext ") == "full width text"
    assert normalize_text("Straße") == "strasse"


def test_levenshtein_and_cer() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("naïve", "naive") == 1
    assert character_error_rate("sitting", "kitten") == pytest.approx(3 / 6)
    assert character_error_rate("", "") == 0.0
    assert character_error_rate("a", "") == 1.0


def test_merge_ocr_text_majority_of_normalised_strings() -> None:
    texts = ["hello  World", "HELLO WORLD", "Hello World", "hallo world"]
    # three of four agree once normalised; their spellings tie, so the first one wins
    assert merge_ocr_text(texts) == "hello World"
    assert merge_ocr_text(["Abc", "abc", "ABC", "xyz"]) == "Abc"  # tie of spellings -> first
    assert merge_ocr_text(["B 1", "b  1", "b 1", "zz"]) == "b 1"


def test_merge_ocr_text_medoid_without_majority() -> None:
    # no majority: "invoice 1234" is within one edit of both others
    assert merge_ocr_text(["invoice 1234", "invoice 1284", "lnvoice 1234"]) == "invoice 1234"
    # two against two: the medoid decides and is one of the texts
    assert merge_ocr_text(["abcd", "abcd", "abce", "abce"]) == "abcd"
    with pytest.raises(ValueError):
        merge_ocr_text([])


def test_span_jaccard() -> None:
    sim = span_jaccard([Span(0, 10, "PER")], [Span(0, 10, "PER"), Span(5, 15, "PER")])
    assert sim[0].tolist() == pytest.approx([1.0, 5 / 15])
    with pytest.raises(ValueError):
        Span(5, 5, "PER")


def test_merge_spans_medoid_and_quorum() -> None:
    spans = {
        "a": [Span(0, 11, "PER"), Span(20, 26, "ORG")],
        "b": [Span(0, 11, "PER"), Span(40, 45, "LOC")],
        "c": [Span(0, 12, "PER"), Span(20, 26, "LOC")],
    }
    merged = merge_spans(spans, jaccard_threshold=0.5, quorum=2)
    assert len(merged) == 1
    (m,) = merged
    assert m.span == Span(0, 11, "PER")
    assert m.support == 3
    assert [name for name, _ in m.members] == ["a", "b", "c"]
    # with quorum 1, ORG and LOC over the same characters stay apart
    labels = [(s.span.start, s.span.label) for s in merge_spans(spans, 0.5, quorum=1)]
    assert labels == [(0, "PER"), (20, "LOC"), (20, "ORG"), (40, "LOC")]


def test_merge_relations_between_merged_spans() -> None:
    alice, bob = Span(0, 5, "PER"), Span(15, 20, "ORG")
    spans = {
        "a": [alice, bob],
        "b": [Span(0, 5, "PER"), Span(15, 21, "ORG")],
        "c": [Span(0, 5, "PER"), Span(30, 35, "ORG")],
    }
    merged = merge_spans(spans, jaccard_threshold=0.5, quorum=2)
    assert [m.span for m in merged] == [alice, bob]
    relations = {
        "a": [Relation(alice, bob, "works_for")],
        "b": [Relation(Span(0, 5, "PER"), Span(15, 21, "ORG"), "works_for")],
        # c's ORG span did not survive merging: the relation has no tail and is dropped
        "c": [Relation(Span(0, 5, "PER"), Span(30, 35, "ORG"), "works_for")],
    }
    (rel,) = merge_relations(merged, relations, quorum=2)
    assert (rel.head, rel.tail, rel.label, rel.support) == (0, 1, "works_for", 2)
    assert rel.annotators == ("a", "b")
    assert merge_relations(merged, relations, quorum=3) == []
