"""Active-learning queue orders from pre-label probabilities, the correction-queue preference,
and confidence-threshold auto-labeling, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import select

from atlas_core.db import write_transaction
from atlas_labeling import autolabel, prelabel
from atlas_labeling.consensus import flag
from atlas_labeling.items import NewItem
from atlas_labeling.labels import read_rows
from atlas_labeling.ordering import refresh_order
from atlas_labeling.schema import TEXT_CLASSIFICATION, LabelDef, ProjectSpec
from atlas_labeling.service import LabelingService
from atlas_labeling.tables import label_rows
from atlas_labeling.values import Classes, ItemContent

from .conftest import Harness

LABELS = (LabelDef("pos"), LabelDef("neg"))
POS = Classes(("pos",))


def project(svc: LabelingService, n: int, **kw: object) -> tuple[str, list[str]]:
    spec = ProjectSpec("al", TEXT_CLASSIFICATION, LABELS, **kw)  # type: ignore[arg-type]
    pid = svc.create_project(spec).project_id
    ids, _ = svc.add_items(pid, [NewItem(ItemContent(text=f"t{i}")) for i in range(n)])
    return pid, ids


def suggest(svc: LabelingService, pid: str, scored: dict[str, tuple[str, float]]) -> None:
    with write_transaction(svc.rt.engine) as conn:
        project = svc.rt.projects.load(conn, pid)
        batch = []
        for item_id, (label, p) in scored.items():
            item = svc.rt.items.load(conn, pid, item_id)
            other = "neg" if label == "pos" else "pos"
            batch.append(prelabel.Suggestion(item, label, p, "m:1", {label: p, other: 1 - p}))
        prelabel.store(conn, project.spec, batch, 0.0, svc.rt.queue.clock())
        refresh_order(conn, project)


def test_least_confidence_order_without_starving_unscored_items(harness: Harness) -> None:
    svc = harness.service
    pid, ids = project(svc, 6, queue_order="least_confidence")
    # ids[0], ids[1] get no prediction; the others are more or less certain.
    suggest(
        svc,
        pid,
        {ids[2]: ("pos", 0.99), ids[3]: ("pos", 0.55), ids[4]: ("neg", 0.8), ids[5]: ("pos", 0.6)},
    )
    leased = svc.request_assignments(pid, "ann", 6)
    order = [a.item_id for a in leased]
    scored = [i for i in order if i in ids[2:]]
    assert scored == [ids[3], ids[5], ids[4], ids[2]]  # least confident first
    # Unscored items alternate with scored ones instead of waiting behind all of them.
    assert order.index(ids[0]) <= 1 and order.index(ids[1]) <= 3


def test_fifo_and_changing_the_order(harness: Harness) -> None:
    svc = harness.service
    pid, ids = project(svc, 3, overlap=2)
    suggest(svc, pid, {ids[0]: ("pos", 0.99), ids[2]: ("pos", 0.51)})
    assert [a.item_id for a in svc.request_assignments(pid, "a", 3)] == ids
    margin = ProjectSpec("al", TEXT_CLASSIFICATION, LABELS, overlap=2, queue_order="margin")
    svc.update_project(pid, margin)
    assert [a.item_id for a in svc.request_assignments(pid, "b", 3)][0] == ids[2]


def test_prefer_the_correction_queue(harness: Harness) -> None:
    svc = harness.service
    pid, ids = project(svc, 3)
    with write_transaction(svc.rt.engine) as conn:
        item = svc.rt.items.load(conn, pid, ids[2])
        flag(conn, item, "bad_case", 0.9, "test", svc.rt.queue.clock())
    (first,) = svc.request_assignments(pid, "a", 1, prefer_corrections=True)
    assert first.item_id == ids[2]
    (plain,) = svc.request_assignments(pid, "b", 1)
    assert plain.item_id == ids[0]


def test_auto_labeling_above_the_threshold_only(harness: Harness) -> None:
    svc = harness.service
    pid, ids = project(svc, 65)
    judged, rest = ids[:50], ids[50:]
    # 40 confident right suggestions, 10 unsure wrong ones, on items humans labelled "pos".
    suggest(svc, pid, {i: ("pos", 0.9) for i in judged[:40]})
    suggest(svc, pid, {i: ("neg", 0.6) for i in judged[40:]})
    for a in svc.request_assignments(pid, "ann", 50):
        svc.submit_annotation(a.assignment_id, "ann", POS)
    suggest(svc, pid, {i: ("neg", 0.95) for i in rest[:10]})
    suggest(svc, pid, {i: ("pos", 0.7) for i in rest[10:]})
    with write_transaction(svc.rt.engine) as conn:
        project_ = svc.rt.projects.load(conn, pid)
        threshold, n = autolabel.auto_label(conn, project_, "m:1", 0.95, svc.rt.queue.clock())
    assert threshold is not None and 0.6 < threshold <= 0.9
    assert n == 10
    labelled = svc.get_item(pid, rest[0])
    assert labelled.status == "done" and labelled.final_source == "model"
    assert labelled.final_value == Classes(("neg",))
    assert svc.get_item(pid, rest[10]).status == "unlabeled"  # below it: people label it
    with svc.rt.engine.connect() as conn:
        sources = conn.execute(select(label_rows.c.source)).scalars().all()
        assert sources.count("model") == 10
        # Model labels are exported only on request.
        humans = read_rows(conn, pid, 0, 1000, sources=["human", "review", "consensus"])
        assert len(humans) == 50 and all(r.source == "human" for r in humans)


def test_acceptance_and_edit_rates_per_model_version(harness: Harness) -> None:
    svc = harness.service
    pid, ids = project(svc, 4)
    suggest(svc, pid, {ids[0]: ("pos", 0.9), ids[1]: ("pos", 0.8), ids[2]: ("neg", 0.7)})
    answers = {ids[0]: POS, ids[1]: Classes(("neg",)), ids[2]: Classes(("neg",)), ids[3]: POS}
    for a in svc.request_assignments(pid, "ann", 4):
        svc.submit_annotation(a.assignment_id, "ann", answers[a.item_id])
    (stats,) = svc.suggestion_stats(pid)
    assert (stats.model_version, stats.suggestions, stats.answered) == ("m:1", 3, 3)
    assert (stats.accepted, stats.edited) == (2, 1)
    assert stats.acceptance_rate == 2 / 3


def test_diversity_order_over_embeddings(harness: Harness) -> None:
    svc = harness.service
    pid = svc.create_project(
        ProjectSpec("div", TEXT_CLASSIFICATION, LABELS, queue_order="diversity")
    ).project_id
    points = {"a0": [0, 0], "a1": [0.1, 0], "b0": [10, 10], "b1": [10, 10.1]}
    new = [NewItem(ItemContent(text=k), metadata={"embedding": v}) for k, v in points.items()]
    new.append(NewItem(ItemContent(text="plain")))  # no embedding: must not starve
    ids, _ = svc.add_items(pid, new)
    names = dict(zip(ids, [*points, "plain"]))
    order = [names[a.item_id] for a in svc.request_assignments(pid, "ann", 5)]
    assert order[1] == "plain"  # alternates with the embedded items
    embedded = [n for n in order if n != "plain"]
    assert embedded[0][0] != embedded[1][0]  # the second pick is the other cluster
