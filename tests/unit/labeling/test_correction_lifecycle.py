"""Correction entries close when their item is decided on every path (consensus, review,
single annotator), gold items never enter the queue, and an annotator below the gold bar is
flagged on every later submission and paused; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import update

from atlas_core.db import write_transaction
from atlas_core.errors import FailedPrecondition
from atlas_labeling import prelabel
from atlas_labeling.items import NewItem
from atlas_labeling.schema import TEXT_CLASSIFICATION, LabelDef, ProjectSpec
from atlas_labeling.service import LabelingService
from atlas_labeling.tables import items
from atlas_labeling.values import Classes, ItemContent

from .conftest import Harness

LABELS = (LabelDef("pos"), LabelDef("neg"))
POS, NEG = Classes(("pos",)), Classes(("neg",))


def project(svc: LabelingService, n: int, **kw: object) -> tuple[str, list[str]]:
    spec = ProjectSpec("lc", TEXT_CLASSIFICATION, LABELS, **kw)  # type: ignore[arg-type]
    pid = svc.create_project(spec).project_id
    if not n:
        return pid, []
    ids, _ = svc.add_items(pid, [NewItem(ItemContent(text=f"t{i}")) for i in range(n)])
    return pid, ids


def answer(svc: LabelingService, pid: str, who: str, value: Classes) -> str:
    (a,) = svc.request_assignments(pid, who, 1)
    return svc.submit_annotation(a.assignment_id, who, value)[1]


def suggest(svc: LabelingService, pid: str, item_id: str, score: float) -> None:
    project = svc.get_project(pid)
    with write_transaction(svc.rt.engine) as conn:
        record = svc.rt.items.load(conn, pid, item_id)
        s = prelabel.Suggestion(record, "pos", score, "m:1")
        prelabel.store(conn, project.spec, [s], 0.5, datetime.now(timezone.utc))


def entries(svc: LabelingService, pid: str) -> dict[str, tuple[list[str], list[str]]]:
    found, _ = svc.correction_queue(pid, [], 0, 100, include_resolved=True)
    return {e.item.item_id: (e.resolutions, e.details) for e in found}


@pytest.mark.parametrize("decision", ["accept", "correct"])
def test_a_review_decision_resolves_the_items_entries(harness: Harness, decision: str) -> None:
    svc = harness.service
    pid, (item,) = project(svc, 1, overlap=2, review_fraction=1.0)
    suggest(svc, pid, item, 0.2)  # a low-confidence entry, open
    assert answer(svc, pid, "a", POS) == "in_progress"
    assert answer(svc, pid, "b", NEG) == "in_review"  # complete: review_fraction sends it on
    assert entries(svc, pid)[item][0] == ["open"]
    svc.request_assignments(pid, "rev", 1, review=True)
    target = next(a for a in svc.get_item(pid, item).annotations if a.author == "b")
    correction = POS if decision == "correct" else None
    _, status = svc.submit_review(target.annotation_id, "rev", decision, correction)
    assert status == "done"
    resolutions, details = entries(svc, pid)[item]
    assert resolutions == ["resolved"]
    verb = "corrected" if decision == "correct" else "accepted"
    assert all(f"by review: rev {verb} b's label" in d for d in details)
    assert svc.correction_queue(pid, [], 0, 10)[0] == []


def test_a_single_annotator_decision_resolves_the_items_entries(harness: Harness) -> None:
    svc = harness.service
    pid, (item,) = project(svc, 1, overlap=1)
    suggest(svc, pid, item, 0.1)
    assert answer(svc, pid, "a", NEG) == "done"
    resolutions, details = entries(svc, pid)[item]
    assert resolutions == ["resolved"] and "by a's label" in details[0]


def test_gold_items_never_enter_the_queue_from_pre_labeling(harness: Harness) -> None:
    svc = harness.service
    pid, (regular,) = project(svc, 1)
    (golden,), _ = svc.add_items(pid, [NewItem(ItemContent(text="g"), gold_value=POS)])
    suggest(svc, pid, golden, 0.1)
    suggest(svc, pid, regular, 0.1)
    assert list(entries(svc, pid)) == [regular]
    # The suggestion is still stored: a gold item without one would stand out.
    assert svc.get_item(pid, golden).model_version == "m:1"


def test_below_the_gold_bar_flags_every_later_submission_and_pauses(harness: Harness) -> None:
    svc = harness.service
    pid, _ = project(svc, 0, overlap=1, max_relabel_rounds=2)
    gold_ids, _ = svc.add_items(
        pid, [NewItem(ItemContent(text=f"g{i}"), gold_value=POS) for i in range(3)]
    )
    regular, _ = svc.add_items(pid, [NewItem(ItemContent(text=f"t{i}")) for i in range(2)])
    leased = {a.item_id: a for a in svc.request_assignments(pid, "sloppy", 10)}
    assert set(leased) == set(gold_ids) | set(regular)
    for g in gold_ids:  # fails every gold item first
        svc.submit_annotation(leased[g].assignment_id, "sloppy", NEG)
    # Then labels the regular items it still holds: each is flagged, never decided alone.
    for r in regular:
        _, status = svc.submit_annotation(leased[r].assignment_id, "sloppy", NEG)
        assert status == "in_progress"
    found = entries(svc, pid)
    assert set(found) == set(regular)
    for r in regular:
        resolutions, details = found[r]
        assert resolutions == ["requeued"] and "0 of 3 gold" in details[0]
        assert "while below the bar" in details[0]
    with pytest.raises(FailedPrecondition) as info:
        svc.request_assignments(pid, "sloppy", 1)
    assert info.value.reason == "ANNOTATOR_PAUSED" and "0 of 3 gold" in info.value.message
    # Others decide them (the flagged vote still counts: 1-1 needs one more); entries close.
    for who in ("careful", "careful2"):
        for a in svc.request_assignments(pid, who, 10):
            svc.submit_annotation(a.assignment_id, who, POS)
    assert all(svc.get_item(pid, r).final_value == POS for r in regular)
    assert svc.correction_queue(pid, [], 0, 10)[0] == []
    # At the relabel cap a flagged submission goes to review instead.
    (extra,), _ = svc.add_items(pid, [NewItem(ItemContent(text="late"))])
    svc.rt.queue.min_gold_accuracy = 0.0  # lift the pause to lease one more
    (late,) = svc.request_assignments(pid, "sloppy", 1)
    svc.rt.queue.min_gold_accuracy = 0.7
    with write_transaction(svc.rt.engine) as conn:
        conn.execute(update(items).where(items.c.item_id == extra).values(rounds=2))
    svc.submit_annotation(late.assignment_id, "sloppy", NEG)
    assert entries(svc, pid)[extra][0] == ["escalated"]
    assert [answer(svc, pid, who, POS) for who in ("careful", "careful2")] == [
        "in_progress",
        "in_review",  # all three answers in: a reviewer decides, not the votes
    ]


def test_below_the_bar_only_gold_items_until_none_is_left(harness: Harness) -> None:
    svc = harness.service
    pid, _ = project(svc, 0, overlap=1)
    gold_ids, _ = svc.add_items(
        pid, [NewItem(ItemContent(text=f"g{i}"), gold_value=POS) for i in range(5)]
    )
    regular, _ = svc.add_items(pid, [NewItem(ItemContent(text=f"t{i}")) for i in range(3)])
    for a in svc.request_assignments(pid, "sloppy", 3):  # the first three gold items
        svc.submit_annotation(a.assignment_id, "sloppy", NEG)
    # Below the bar: the rest of the gold items only (a chance to show it was bad luck)...
    leased = svc.request_assignments(pid, "sloppy", 10)
    assert sorted(a.item_id for a in leased) == sorted(gold_ids[3:])
    for a in leased:
        svc.submit_annotation(a.assignment_id, "sloppy", NEG)
    # ...then paused; a careful annotator still gets the regular items.
    with pytest.raises(FailedPrecondition):
        svc.request_assignments(pid, "sloppy", 10)
    assert set(regular) <= {a.item_id for a in svc.request_assignments(pid, "careful", 10)}


def test_a_few_unlucky_gold_answers_do_not_pause(harness: Harness) -> None:
    svc = harness.service
    pid, _ = project(svc, 0, overlap=1)
    svc.add_items(pid, [NewItem(ItemContent(text=f"g{i}"), gold_value=POS) for i in range(4)])
    (regular,), _ = svc.add_items(pid, [NewItem(ItemContent(text="t"))])
    answers = [POS, NEG, POS, NEG]  # 2 of 4: below 70 %, but not beyond reasonable doubt
    for a, value in zip(svc.request_assignments(pid, "unlucky", 4), answers):
        svc.submit_annotation(a.assignment_id, "unlucky", value)
    (a,) = svc.request_assignments(pid, "unlucky", 1)
    assert a.item_id == regular
    assert svc.correction_queue(pid, [], 0, 10)[0] == []
