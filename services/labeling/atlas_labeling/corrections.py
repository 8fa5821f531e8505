"""The correction queue: items flagged for another look, one row per (item, reason) with an
audited detail; listed most urgent first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine, func, select

from atlas_labeling.items import ItemRecord, ItemStore, annotations_of, row_to_item
from atlas_labeling.projects import ProjectStore
from atlas_labeling.tables import corrections, items

REASONS = (
    "low_confidence",
    "disagreement",
    "model_human_conflict",
    "bad_case",
    "low_gold_accuracy",
)
OPEN_RESOLUTIONS = ("open", "requeued")


@dataclass
class CorrectionEntry:
    item: ItemRecord
    reasons: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    resolutions: list[str] = field(default_factory=list)
    priority: float = 0.0


class CorrectionQueue:
    def __init__(self, engine: Engine, projects: ProjectStore, items_store: ItemStore) -> None:
        self.engine = engine
        self.projects = projects
        self.items = items_store

    def list(
        self,
        project_id: str,
        reasons: Sequence[str],
        offset: int,
        limit: int,
        *,
        include_resolved: bool = False,
    ) -> tuple[list[CorrectionEntry], bool]:
        """Entries grouped per item (open and requeued ones unless ``include_resolved``),
        highest priority first."""
        c = corrections
        where = c.c.project_id == project_id
        if not include_resolved:
            where = where & c.c.resolution.in_(OPEN_RESOLUTIONS)
        if reasons:
            where = where & c.c.reason.in_(list(reasons))
        with self.engine.connect() as conn:
            self.projects.load(conn, project_id)
            ranked = conn.execute(
                select(c.c.item_id, func.max(c.c.priority).label("priority"))
                .where(where)
                .group_by(c.c.item_id)
                .order_by(func.max(c.c.priority).desc(), c.c.item_id)
                .offset(offset)
                .limit(limit + 1)
            ).all()
            page = ranked[:limit]
            ids = [r.item_id for r in page]
            rows = {
                r.item_id: row_to_item(r)
                for r in conn.execute(select(items).where(items.c.item_id.in_(ids)))
            }
            by_item = annotations_of(conn, ids) if ids else {}
            found: dict[str, CorrectionEntry] = {}
            for r in page:
                record = rows[r.item_id]
                record.annotations = by_item[r.item_id]
                found[r.item_id] = CorrectionEntry(record, priority=r.priority)
            for row in conn.execute(
                select(c.c.item_id, c.c.reason, c.c.detail, c.c.resolution)
                .where(where & c.c.item_id.in_(ids))
                .order_by(c.c.item_id, c.c.reason)
            ):
                found[row.item_id].reasons.append(row.reason)
                found[row.item_id].details.append(row.detail)
                found[row.item_id].resolutions.append(row.resolution)
        return [found[i] for i in ids], len(ranked) > limit
