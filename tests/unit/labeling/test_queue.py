"""Leased assignments with overlap, skips, gold scoring and review on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from atlas_core.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from atlas_labeling.items import NewItem
from atlas_labeling.schema import TEXT_CLASSIFICATION, LabelDef, ProjectSpec
from atlas_labeling.service import LabelingService
from atlas_labeling.tables import annotations_table, assignments
from atlas_labeling.values import Classes, ItemContent

from .conftest import Harness, build_service

LABELS = (LabelDef("pos"), LabelDef("neg"))
POS, NEG = Classes(("pos",)), Classes(("neg",))


def project(svc: LabelingService, n: int, **kw: object) -> tuple[str, list[str]]:
    spec = ProjectSpec("q", TEXT_CLASSIFICATION, LABELS, assignment_ttl_s=60, **kw)  # type: ignore[arg-type]
    pid = svc.create_project(spec).project_id
    if not n:
        return pid, []
    ids, _ = svc.add_items(pid, [NewItem(ItemContent(text=f"t{i}")) for i in range(n)])
    return pid, ids


def test_overlap_distinct_annotators_never_twice(harness: Harness) -> None:
    svc = harness.service
    pid, ids = project(svc, 2, overlap=2)
    a = svc.request_assignments(pid, "ann", 5)
    assert sorted(x.item_id for x in a) == sorted(ids)
    assert svc.request_assignments(pid, "ann", 5) == []  # never the same item twice
    b = svc.request_assignments(pid, "bob", 5)
    assert len(b) == 2
    assert svc.request_assignments(pid, "cyd", 5) == []  # both items have their 2 holders
    for x in a:
        svc.submit_annotation(x.assignment_id, "ann", POS)
    assert svc.request_assignments(pid, "ann", 5) == []  # a submitted item never comes back
    _, status = svc.submit_annotation(b[0].assignment_id, "bob", POS)
    assert status == "done"  # overlap reached and both agree: consensus decided
    with pytest.raises(InvalidArgument):
        svc.request_assignments(pid, "", 1)
    with pytest.raises(InvalidArgument):
        svc.request_assignments(pid, "ann", 0)
    with pytest.raises(InvalidArgument):
        svc.request_assignments(pid, "ann", 101)
    with pytest.raises(NotFound):
        svc.request_assignments("prj-none", "ann", 1)


def test_lease_expiry_returns_the_item_and_refuses_a_late_submit(harness: Harness) -> None:
    svc, clock = harness.service, harness.clock
    pid, (item,) = project(svc, 1)
    (mine,) = svc.request_assignments(pid, "ann", 1)
    assert mine.expire_at == clock.now.replace() + (mine.expire_at - clock.now)
    clock.advance(30)
    renewed = svc.renew_lease(mine.assignment_id, "ann")
    assert (renewed.expire_at - clock.now).total_seconds() == 60
    clock.advance(59)
    assert svc.request_assignments(pid, "bob", 1) == []  # still leased thanks to the renewal
    clock.advance(2)
    (theirs,) = svc.request_assignments(pid, "bob", 1)  # expired: back in the queue
    assert theirs.item_id == item
    with pytest.raises(FailedPrecondition) as info:
        svc.submit_annotation(mine.assignment_id, "ann", POS)
    assert info.value.reason == "LEASE_EXPIRED"
    with pytest.raises(FailedPrecondition):
        svc.renew_lease(mine.assignment_id, "ann")
    with pytest.raises(PermissionDenied):
        svc.submit_annotation(theirs.assignment_id, "ann", POS)
    with pytest.raises(PermissionDenied):
        svc.renew_lease(theirs.assignment_id, "ann")
    with pytest.raises(NotFound):
        svc.submit_annotation("asg-missing", "ann", POS)
    stored, status = svc.submit_annotation(theirs.assignment_id, "bob", NEG)
    assert stored is not None and status == "done"
    item_now = svc.get_item(pid, item)
    assert item_now.final_value == NEG and item_now.final_source == "human"
    assert [a.author for a in item_now.annotations] == ["bob"]
    # The expired annotator may get the item back once it is open again; here it is done.
    assert svc.request_assignments(pid, "ann", 1) == []


def test_bad_value_stores_nothing_and_same_request_id_gives_one_annotation(
    harness: Harness,
) -> None:
    svc = harness.service
    pid, (item,) = project(svc, 1)
    (a,) = svc.request_assignments(pid, "ann", 1)
    with pytest.raises(InvalidArgument) as info:
        svc.submit_annotation(a.assignment_id, "ann", Classes(("meh",)))
    assert "value.classes.labels[0]" in info.value.message
    with pytest.raises(InvalidArgument) as info:
        svc.submit_annotation(a.assignment_id, "ann", POS, confidence=1.5)
    assert "confidence" in info.value.message
    with pytest.raises(InvalidArgument):
        svc.submit_annotation(a.assignment_id, "ann", None)
    assert svc.get_item(pid, item).annotations == []
    first, _ = svc.submit_annotation(a.assignment_id, "ann", POS, request_id="r-1")
    again, _ = svc.submit_annotation(a.assignment_id, "ann", POS, request_id="r-1")
    assert first is not None and again is not None
    assert again.annotation_id == first.annotation_id
    with pytest.raises(FailedPrecondition) as info:
        svc.submit_annotation(a.assignment_id, "ann", NEG, request_id="r-2")
    assert info.value.reason == "ALREADY_SUBMITTED"
    assert len(svc.get_item(pid, item).annotations) == 1
    # The label is now used: it may not be removed or renamed any more.
    with pytest.raises(FailedPrecondition) as info:
        svc.update_project(
            pid, ProjectSpec("q", TEXT_CLASSIFICATION, (LabelDef("neg"), LabelDef("positive")))
        )
    assert info.value.reason == "LABEL_IN_USE"
    svc.update_project(pid, ProjectSpec("q", TEXT_CLASSIFICATION, (*LABELS, LabelDef("x"))))


@pytest.mark.parametrize(
    "policy, again_for_me, status",
    [
        ("requeue_for_me", True, "unlabeled"),
        ("requeue_for_others", False, "unlabeled"),
        ("ignore", False, "skipped"),
    ],
)
def test_skip_policies(harness: Harness, policy: str, again_for_me: bool, status: str) -> None:
    svc = harness.service
    pid, (item,) = project(svc, 1, skip_policy=policy)
    (a,) = svc.request_assignments(pid, "ann", 1)
    none, after = svc.submit_annotation(a.assignment_id, "ann", None, skip=True)
    assert none is None and after == status
    assert bool(svc.request_assignments(pid, "ann", 1)) is again_for_me
    others = svc.request_assignments(pid, "bob", 1)
    assert bool(others) is (policy != "ignore" and not again_for_me)
    assert svc.annotator_stats(pid, "ann")[0].skipped == 1
    with pytest.raises(InvalidArgument):
        svc.submit_annotation(a.assignment_id, "ann", POS, skip=True)


def test_gold_items_score_annotators_and_go_to_everyone(harness: Harness) -> None:
    svc = harness.service
    pid, _ = project(svc, 0, overlap=1)
    (gold,), _ = svc.add_items(pid, [NewItem(ItemContent(text="gold"), gold_value=POS)])
    for who, answer in [("ann", POS), ("bob", NEG), ("cyd", POS)]:
        (a,) = svc.request_assignments(pid, who, 1)
        assert a.item_id == gold  # overlap 1 does not stop a gold item going to everyone
        svc.submit_annotation(a.assignment_id, who, answer, duration_ms=1000)
    stats = {s.annotator: s for s in svc.annotator_stats(pid)}
    assert (stats["ann"].gold_answered, stats["ann"].gold_correct) == (1, 1)
    assert stats["bob"].gold_accuracy == 0.0 and stats["cyd"].gold_accuracy == 1.0
    assert stats["ann"].median_duration_ms == 1000
    assert svc.request_assignments(pid, "ann", 1) == []


def test_review_accept_reject_correct(harness: Harness) -> None:
    svc = harness.service
    pid, ids = project(svc, 3, consensus="review")
    leased = svc.request_assignments(pid, "ann", 3)
    stored = {}
    for a in leased:
        ann, status = svc.submit_annotation(a.assignment_id, "ann", POS)
        assert status == "in_review" and ann is not None
        stored[a.item_id] = ann
    reviews = svc.request_assignments(pid, "rev", 5, review=True)
    assert len(reviews) == 3 and all(r.is_review for r in reviews)
    assert svc.request_assignments(pid, "ann", 5, review=True) == []  # not their own work
    assert svc.request_assignments(pid, "rev2", 5, review=True) == []  # one reviewer per item
    first, second, third = (stored[i] for i in ids)
    with pytest.raises(FailedPrecondition):
        svc.submit_review(first.annotation_id, "ann", "accept")
    with pytest.raises(InvalidArgument):
        svc.submit_review(first.annotation_id, "rev", "")
    with pytest.raises(InvalidArgument):
        svc.submit_review(first.annotation_id, "rev", "correct")
    with pytest.raises(InvalidArgument) as info:
        svc.submit_review(first.annotation_id, "rev", "correct", Classes(("bad",)))
    assert "correction.classes.labels[0]" in info.value.message
    with pytest.raises(NotFound):
        svc.submit_review("ann-missing", "rev", "accept")
    _, status = svc.submit_review(first.annotation_id, "rev", "accept", request_id="v1")
    assert status == "done" and svc.get_item(pid, ids[0]).final_value == POS
    again, _ = svc.submit_review(first.annotation_id, "rev", "accept", request_id="v1")
    assert again.review_decision == "accept"
    with pytest.raises(FailedPrecondition):
        svc.submit_review(first.annotation_id, "rev", "reject", request_id="v2")
    _, status = svc.submit_review(second.annotation_id, "rev", "correct", NEG)
    item = svc.get_item(pid, ids[1])
    assert status == "done" and item.final_value == NEG and item.final_source == "review"
    _, status = svc.submit_review(third.annotation_id, "rev", "reject", comment="sloppy")
    assert status == "unlabeled"
    # Rejected: back to the queue, for someone other than the rejected annotator.
    assert svc.request_assignments(pid, "ann", 5) == []
    (redo,) = svc.request_assignments(pid, "bob", 5)
    assert redo.item_id == ids[2]


def test_leases_survive_a_restart(harness: Harness, tmp_path: Path) -> None:
    svc, clock = harness.service, harness.clock
    pid, (item,) = project(svc, 1)
    (a,) = svc.request_assignments(pid, "ann", 1)
    svc.stop()
    restarted = build_service(harness.url, tmp_path / "store", clock)
    try:
        assert restarted.request_assignments(pid, "bob", 1) == []
        held = restarted.list_assignments(pid, "ann", False, 0, 10)[0]
        assert [x.assignment_id for x in held] == [a.assignment_id]
        stored, status = restarted.submit_annotation(a.assignment_id, "ann", POS)
        assert stored is not None and status == "done"
    finally:
        restarted.stop()


def test_request_assignments_retry_returns_the_same_leases(harness: Harness) -> None:
    svc = harness.service
    pid, _ = project(svc, 4)
    first = svc.request_assignments(pid, "ann", 2, request_id="r")
    again = svc.request_assignments(pid, "ann", 2, request_id="r")
    assert [a.assignment_id for a in again] == [a.assignment_id for a in first]
    assert len(svc.request_assignments(pid, "ann", 5)) == 2


def test_concurrent_annotators_never_double_assigned(harness: Harness) -> None:
    """Many threads (each its own connection) pull, submit, skip and let leases lapse at
    once; afterwards no item was ever held beyond its overlap or twice by one person."""
    svc, clock = harness.service, harness.clock
    overlap, n_items = 2, 40
    pid, ids = project(svc, n_items, overlap=overlap)
    annotators = [f"a{i}" for i in range(10)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(annotators) * 2)

    def work(who: str) -> None:
        try:
            barrier.wait()
            for round_ in range(6):
                leased = svc.request_assignments(pid, who, 3)
                for k, a in enumerate(leased):
                    if (round_ + k) % 5 == 4:
                        continue  # abandoned: its lease lapses later
                    svc.submit_annotation(a.assignment_id, who, POS, request_id=f"{who}-{k}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    # Two clients per annotator, racing each other for the same person.
    threads = [threading.Thread(target=work, args=(w,)) for w in annotators for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    with svc.rt.engine.connect() as conn:
        held = Counter(
            conn.execute(
                select(assignments.c.item_id).where(
                    assignments.c.state.in_(["active", "submitted"])
                )
            ).scalars()
        )
    assert max(held.values()) <= overlap  # never beyond overlap, abandoned leases included
    clock.advance(120)  # abandoned leases lapse and their items go back to the queue
    for who in annotators:
        while leased := svc.request_assignments(pid, who, 10):
            for a in leased:
                svc.submit_annotation(a.assignment_id, who, POS)
    with svc.rt.engine.connect() as conn:
        rows = conn.execute(
            select(assignments.c.item_id, assignments.c.annotator, assignments.c.state)
        ).all()
        done = conn.execute(select(annotations_table.c.item_id, annotations_table.c.author)).all()
    # Never twice to one person: at most one live (active or submitted) lease per pair.
    live = Counter((i, a) for i, a, s in rows if s in ("active", "submitted"))
    assert max(live.values()) == 1
    # Never beyond overlap: every item ends with exactly `overlap` annotations, each by a
    # different annotator.
    per_item = Counter(i for i, _ in done)
    assert set(per_item) == set(ids) and set(per_item.values()) == {overlap}
    assert len(set(done)) == len(done)
    statuses = Counter(i.status for i in svc.list_items(pid, [], 0, 1000)[0])
    assert statuses == {"done": n_items}  # everyone agreed: consensus decided each item


def test_archiving_ends_open_leases(harness: Harness) -> None:
    svc = harness.service
    pid, (item,) = project(svc, 1)
    (a,) = svc.request_assignments(pid, "ann", 1)
    svc.archive_project(pid)
    with pytest.raises(FailedPrecondition) as info:
        svc.submit_annotation(a.assignment_id, "ann", POS)
    assert info.value.reason == "LEASE_EXPIRED"
    with pytest.raises(FailedPrecondition):
        svc.request_assignments(pid, "bob", 1)
    with svc.rt.engine.connect() as conn:
        assert svc.rt.items.load(conn, pid, item).status == "unlabeled"  # its slot is free
