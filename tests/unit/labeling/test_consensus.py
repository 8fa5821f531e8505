"""Consensus, disagreement rounds with an audited correction queue, gold-accuracy flags and
project agreement, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from atlas_core.errors import FailedPrecondition
from atlas_labeling.items import NewItem
from atlas_labeling.schema import (
    OBJECT_BOXES,
    OCR,
    TEXT_CLASSIFICATION,
    TEXT_SPANS,
    LabelDef,
    ProjectSpec,
)
from atlas_labeling.service import LabelingService
from atlas_labeling.tables import label_rows
from atlas_labeling.values import Box, Boxes, Classes, ItemContent, Span, Spans
from tests.support.images import png_bytes

from .conftest import Harness

LABELS = (LabelDef("pos"), LabelDef("neg"))
POS, NEG = Classes(("pos",)), Classes(("neg",))


def project(svc: LabelingService, n: int, name: str = "c", **kw: object) -> tuple[str, list[str]]:
    spec = ProjectSpec(name, TEXT_CLASSIFICATION, LABELS, **kw)  # type: ignore[arg-type]
    pid = svc.create_project(spec).project_id
    ids, _ = svc.add_items(pid, [NewItem(ItemContent(text=f"t{i}")) for i in range(n)])
    return pid, ids


def label(svc: LabelingService, pid: str, who: str, value: Classes, count: int = 1) -> list[str]:
    leased = svc.request_assignments(pid, who, count)
    statuses = []
    for a in leased:
        statuses.append(svc.submit_annotation(a.assignment_id, who, value)[1])
    return statuses


def test_majority_consensus_decides_and_appends_a_label_row(harness: Harness) -> None:
    svc = harness.service
    pid, (item,) = project(svc, 1, overlap=3)
    assert label(svc, pid, "a", POS) == ["in_progress"]
    assert label(svc, pid, "b", POS) == ["in_progress"]
    assert label(svc, pid, "c", NEG) == ["done"]
    got = svc.get_item(pid, item)
    assert got.final_value == POS and got.final_source == "consensus"
    assert got.agreement == pytest.approx(2 / 3)
    with svc.rt.engine.connect() as conn:
        (row,) = conn.execute(select(label_rows)).all()
    assert (
        row.source == "consensus" and row.label == "pos" and row.agreement == pytest.approx(2 / 3)
    )
    assert sorted(__import__("json").loads(row.annotators)) == ["a", "b", "c"]
    assert svc.correction_queue(pid, [], 0, 10)[0] == []


def test_disagreement_goes_to_a_different_annotator_up_to_the_cap(harness: Harness) -> None:
    svc = harness.service
    pid, (item,) = project(svc, 1, overlap=2, consensus_threshold=0.75, max_relabel_rounds=2)
    label(svc, pid, "a", POS)
    assert label(svc, pid, "b", NEG) == ["in_progress"]  # 1-1: one more annotator
    (entry,), _ = svc.correction_queue(pid, [], 0, 10)
    assert entry.reasons == ["disagreement"] and entry.resolutions == ["requeued"]
    assert "round 0" in entry.details[0] and "'neg': 1" in entry.details[0]
    assert entry.item.rounds == 1
    assert label(svc, pid, "a", POS) == [] and label(svc, pid, "b", POS) == []  # not again
    assert label(svc, pid, "c", POS) == ["in_progress"]  # 2-1 is still below 0.75
    assert label(svc, pid, "d", POS) == ["done"]  # 3-1 reaches it
    got = svc.get_item(pid, item)
    assert got.final_value == POS and got.rounds == 2
    (entry,), _ = svc.correction_queue(pid, [], 0, 10, include_resolved=True)
    assert entry.resolutions == ["resolved"]
    assert svc.correction_queue(pid, [], 0, 10)[0] == []


def test_disagreement_past_the_cap_goes_to_review(harness: Harness) -> None:
    svc = harness.service
    pid, (item,) = project(svc, 1, overlap=2, consensus_threshold=0.9, max_relabel_rounds=1)
    label(svc, pid, "a", POS)
    label(svc, pid, "b", NEG)
    assert label(svc, pid, "c", NEG) == ["in_review"]
    (entry,), _ = svc.correction_queue(pid, ["disagreement"], 0, 10, include_resolved=True)
    assert entry.resolutions == ["escalated"] and "cap 1 reached" in entry.details[0]
    assert svc.get_item(pid, item).final_value is None  # never flipped automatically
    (review,) = svc.request_assignments(pid, "rev", 1, review=True)
    annotation = svc.get_item(pid, item).annotations[1]
    _, status = svc.submit_review(annotation.annotation_id, "rev", "accept")
    assert status == "done"


def test_low_gold_accuracy_requeues_the_annotators_items(harness: Harness) -> None:
    svc = harness.service
    pid, ids = project(svc, 2)
    gold, _ = svc.add_items(
        pid, [NewItem(ItemContent(text=f"g{i}"), gold_value=POS) for i in range(3)]
    )
    # The sloppy annotator labels the two normal items first, then fails every gold item.
    assert label(svc, pid, "sloppy", NEG, 2) == ["done", "done"]
    for _ in gold:
        label(svc, pid, "sloppy", NEG)
    stats = svc.annotator_stats(pid, "sloppy")[0]
    assert (stats.gold_answered, stats.gold_correct) == (3, 0)
    entries, _ = svc.correction_queue(pid, ["low_gold_accuracy"], 0, 10)
    assert sorted(e.item.item_id for e in entries) == sorted(ids)
    assert all("0 of 3 gold" in e.details[0] and e.resolutions == ["requeued"] for e in entries)
    assert all(svc.get_item(pid, i).status == "in_progress" for i in ids)
    # Someone else labels them; their vote joins the sloppy one (nothing was flipped).
    leased = svc.request_assignments(pid, "careful", 10)
    assert {a.item_id for a in leased} >= set(ids)
    # A careful annotator answering gold items right raises no flag.
    for a in leased:
        svc.submit_annotation(a.assignment_id, "careful", POS)
    assert {
        e.item.item_id for e in svc.correction_queue(pid, ["low_gold_accuracy"], 0, 10)[0]
    } <= set(ids)


def test_agreement_of_a_classification_project(harness: Harness) -> None:
    svc = harness.service
    pid, ids = project(svc, 4, overlap=2)
    with pytest.raises(FailedPrecondition):
        svc.agreement(pid)
    for who in ("a", "b"):
        for value in (POS, NEG, POS, NEG):
            label(svc, pid, who, value)
    perfect = svc.agreement(pid)
    assert perfect.items_compared == 4
    assert perfect.kappa == pytest.approx(1.0)
    assert perfect.krippendorff_alpha == pytest.approx(1.0)
    assert perfect.per_label == {"neg": 1.0, "pos": 1.0}
    assert [a.accuracy for a in perfect.annotators] == [1.0, 1.0]
    pid2, _ = project(svc, 4, "c2", overlap=2)
    for value in (POS, NEG, POS, NEG):
        label(svc, pid2, "a", value)
    for value in (POS, NEG, NEG, NEG):
        label(svc, pid2, "b", value)
    mixed = svc.agreement(pid2)
    assert mixed.items_compared == 4
    assert -1.0 <= mixed.kappa < 1.0 and mixed.krippendorff_alpha < 1.0
    assert mixed.per_label["pos"] == pytest.approx(2 / 3)
    assert mixed.per_label["neg"] == pytest.approx(4 / 5)


def test_agreement_of_spans_and_boxes(harness: Harness) -> None:
    svc = harness.service
    spans = svc.create_project(
        ProjectSpec("s", TEXT_SPANS, (LabelDef("PER", "entity"),), overlap=2)
    ).project_id
    svc.add_items(spans, [NewItem(ItemContent(text="Ann met Bob"))])
    for who, found in (("a", ((0, 3), (8, 11))), ("b", ((0, 3),))):
        (x,) = svc.request_assignments(spans, who, 1)
        value = Spans(tuple(Span(f"s{n}", s, e, "PER") for n, (s, e) in enumerate(found)))
        svc.submit_annotation(x.assignment_id, who, value)
    assert svc.agreement(spans).span_f1 == pytest.approx(2 / 3)
    # Two of the three spans drawn agree (quorum 2 of 2): the shared one is the label.
    (span_item,) = svc.list_items(spans, [], 0, 1)[0]
    assert span_item.status == "done" and span_item.final_source == "consensus"
    assert span_item.final_value == Spans((Span("s0", 0, 3, "PER"),))
    assert span_item.agreement == pytest.approx(2 / 3)
    harness.artifacts.put_bytes("img/x.png", png_bytes(100, 100))
    boxes = svc.create_project(
        ProjectSpec("b", OBJECT_BOXES, (LabelDef("car"),), overlap=2)
    ).project_id
    svc.add_items(boxes, [NewItem(ItemContent(image_uri="img/x.png"))])
    for who, x0 in (("a", 0), ("b", 5)):
        (x,) = svc.request_assignments(boxes, who, 1)
        svc.submit_annotation(x.assignment_id, who, Boxes((Box(x0, 0, 10, 10, label="car"),)))
    assert svc.agreement(boxes).box_iou == pytest.approx(50 / 150)
    # IoU 1/3 < 0.5: no object two annotators agree on, so a third annotator is asked.
    (box_item,) = svc.list_items(boxes, [], 0, 1)[0]
    assert box_item.status == "in_progress" and box_item.rounds == 1
    assert svc.correction_queue(boxes, ["disagreement"], 0, 10)[0]


def test_ocr_boxes_and_texts_merge_across_annotators(harness: Harness) -> None:
    svc = harness.service
    harness.artifacts.put_bytes("img/sign.png", png_bytes(200, 100))
    pid = svc.create_project(ProjectSpec("ocr", OCR, (), overlap=3)).project_id
    (item,), _ = svc.add_items(pid, [NewItem(ItemContent(image_uri="img/sign.png"))])
    drawn = {
        "a": Box(10, 10, 50, 20, text="HELLO"),
        "b": Box(12, 10, 50, 20, text="hello"),
        "c": Box(11, 13, 50, 20, text="HELL0"),
    }
    for who, box in drawn.items():
        (x,) = svc.request_assignments(pid, who, 1)
        svc.submit_annotation(x.assignment_id, who, Boxes((box,)))
    got = svc.get_item(pid, item)
    assert got.status == "done" and got.agreement == pytest.approx(1.0)
    assert isinstance(got.final_value, Boxes)
    (merged,) = got.final_value.boxes
    assert (merged.x, merged.y) == (pytest.approx(11), pytest.approx(11))
    assert merged.text.lower() == "hello"
    assert (got.final_value.image_width, got.final_value.image_height) == (200, 100)
