"""The queue hands out open items by priority (high first), then insertion order, whatever
their status (unlabeled or already in progress for another annotator), on SQLite and
PostgreSQL; the database reads them in index order instead of sorting every open item."""

from __future__ import annotations

from sqlalchemy import text, update

from atlas_labeling.items import NewItem
from atlas_labeling.schema import TEXT_CLASSIFICATION, LabelDef, ProjectSpec
from atlas_labeling.tables import items
from atlas_labeling.values import ItemContent

from .conftest import Harness


def test_queue_order_spans_statuses_by_priority_then_insertion(harness: Harness) -> None:
    svc = harness.service
    spec = ProjectSpec("order", TEXT_CLASSIFICATION, (LabelDef("a"),), overlap=2)
    pid = svc.create_project(spec).project_id
    ids, _ = svc.add_items(pid, [NewItem(ItemContent(text=f"t{i}")) for i in range(6)])
    (first,) = svc.request_assignments(pid, "ann", 1)
    assert first.item_id == ids[0]  # now in progress, one slot of two left
    engine = svc.rt.engine
    with engine.begin() as conn:
        conn.execute(update(items).where(items.c.item_id == ids[4]).values(priority=2.0))
        conn.execute(update(items).where(items.c.item_id == ids[2]).values(priority=1.0))
    got = [a.item_id for a in svc.request_assignments(pid, "bob", 4)]
    # priority 2, priority 1, then the in-progress item 0 before the unlabeled item 1
    assert got == [ids[4], ids[2], ids[0], ids[1]]
    got = [a.item_id for a in svc.request_assignments(pid, "cyd", 3)]
    assert got == [ids[4], ids[2], ids[1]]  # item 0 has its two holders


def test_queue_index_orders_priority_descending(harness: Harness) -> None:
    engine = harness.service.rt.engine
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            sql = conn.execute(
                text("SELECT sql FROM sqlite_master WHERE name = 'ix_labeling_items_queue'")
            ).scalar_one()
        else:
            sql = conn.execute(
                # This test's schema only: concurrent runs have the same index in theirs.
                text(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_labeling_items_queue'"
                    " AND schemaname = current_schema()"
                )
            ).scalar_one()
    assert "priority DESC" in sql
