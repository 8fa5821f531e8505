"""Migration 2 on a database of the first schema: gold counters backfilled, and the
correction entries earlier versions left pending on gold items and decided items closed."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import insert, select

from atlas_core.config import DatabaseSettings
from atlas_core.db import MigrationSet, apply_migrations, create_engine_from_settings
from atlas_labeling.tables import (
    MIGRATIONS,
    annotations_table,
    annotator_gold,
    corrections,
    items,
    projects,
)
from tests.support.db import db_url  # noqa: F401


def test_migration_2_backfills_and_closes_stale_entries(db_url: str, tmp_path: Path) -> None:  # noqa: F811
    engine = create_engine_from_settings(DatabaseSettings(url=db_url))
    first = MigrationSet("labeling", MIGRATIONS.migrations[:1])
    apply_migrations(engine, first)
    now = datetime(2026, 12, 7, tzinfo=timezone.utc)
    with engine.begin() as conn:
        conn.execute(
            insert(projects).values(
                project_id="prj-m",
                name="m",
                task_type="text_classification",
                spec="{}",
                archived=False,
                etag="e",
                created_at=now,
                updated_at=now,
                label_seq=0,
            )
        )
        for n, (status, gold) in enumerate(
            [("done", None), ("unlabeled", '{"classes": ["pos"]}'), ("in_progress", None)]
        ):
            conn.execute(
                insert(items).values(
                    item_id=f"itm-{n}",
                    project_id="prj-m",
                    seq=n,
                    content="{}",
                    status=status,
                    gold_value=gold,
                    created_at=now,
                )
            )
            conn.execute(
                insert(corrections).values(
                    project_id="prj-m",
                    item_id=f"itm-{n}",
                    reason="low_confidence",
                    priority=0.5,
                    detail="pre-label scored 0.2",
                    resolution="open",
                    created_at=now,
                )
            )
        for n, right in enumerate([True, False, False]):
            conn.execute(
                insert(annotations_table).values(
                    annotation_id=f"ann-{n}",
                    project_id="prj-m",
                    item_id="itm-1",
                    author="ann",
                    source="human",
                    value=json.dumps({"classes": ["pos"]}),
                    gold_correct=right,
                    created_at=now,
                )
            )
    apply_migrations(engine, MIGRATIONS)
    with engine.connect() as conn:
        found = {r.item_id: (r.resolution, r.detail) for r in conn.execute(select(corrections))}
        counters = conn.execute(select(annotator_gold)).one()
    assert found["itm-0"][0] == "resolved" and "its item was decided" in found["itm-0"][1]
    assert found["itm-1"][0] == "resolved" and "gold items are never decided" in found["itm-1"][1]
    assert found["itm-2"] == ("open", "pre-label scored 0.2")
    assert (counters.annotator, counters.answered, counters.correct) == ("ann", 3, 1)
    engine.dispose()
