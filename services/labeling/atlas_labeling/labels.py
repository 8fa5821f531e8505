"""The label history: every decided label is appended as a new versioned row, never updated,
so a point-in-time join as of T sees the label known at T."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, func, insert, select, update

from atlas_labeling.items import ItemRecord
from atlas_labeling.projects import aware
from atlas_labeling.tables import label_rows, projects
from atlas_labeling.values import Classes, FacePair, Value, from_json, to_json


def label_text(value: Value) -> str:
    """The flat label of a row: class labels joined by "|", the face-pair decision, or ""
    (spans and boxes live in the JSON ``value`` column)."""
    if isinstance(value, Classes):
        return "|".join(value.labels)
    if isinstance(value, FacePair):
        return value.decision
    return ""


# Built once (bound parameters): the submit path appends a row for every decided item.
_NEXT_SEQ = (
    update(projects)
    .where(projects.c.project_id == bindparam("b_project_id"))
    .values(label_seq=projects.c.label_seq + 1)
    .returning(projects.c.label_seq)
)
# The item's next version is computed by the insert itself (one statement, not two).
_INSERT_ROW = insert(label_rows).values(
    label_version=select(func.coalesce(func.max(label_rows.c.label_version), 0) + 1)
    .where(label_rows.c.item_id == bindparam("b_item_id"))
    .scalar_subquery()
)


def append_label(
    conn: Connection,
    item: ItemRecord,
    value: Value,
    *,
    source: str,
    annotators: Sequence[str],
    agreement: float | None,
    now: datetime,
) -> int:
    """Append the item's next label version; returns the row's number in the project."""
    seq = conn.execute(_NEXT_SEQ, {"b_project_id": item.project_id}).scalar_one()
    conn.execute(
        _INSERT_ROW,
        {
            "project_id": item.project_id,
            "seq": seq,
            "item_id": item.item_id,
            "b_item_id": item.item_id,
            "entity_key": item.entity_id or item.external_id or item.item_id,
            "label": label_text(value),
            "value": json.dumps(to_json(value)),
            # When the labelled fact held: the item's label time, else when it was added.
            "event_time": item.label_time or item.created_at,
            "created_at": now,
            "annotators": json.dumps(sorted(set(annotators))),
            "agreement": agreement,
            "source": source,
        },
    )
    return int(seq)


@dataclass(frozen=True)
class LabelRow:
    """One label row as domain objects (the export reads columns instead: export_reader)."""

    seq: int
    item_id: str
    entity_key: str
    label: str
    value: Value
    event_time: datetime
    created_at: datetime
    label_version: int
    annotators: list[str]
    agreement: float | None
    source: str


def read_rows(
    conn: Connection,
    project_id: str,
    after_seq: int,
    limit: int,
    *,
    sources: Sequence[str],
    min_agreement: float = 0.0,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[LabelRow]:
    query = select(label_rows).where(
        (label_rows.c.project_id == project_id)
        & (label_rows.c.seq > after_seq)
        & label_rows.c.source.in_(list(sources))
    )
    if min_agreement > 0:
        query = query.where(
            label_rows.c.agreement.is_(None) | (label_rows.c.agreement >= min_agreement)
        )
    if start is not None:
        query = query.where(label_rows.c.created_at >= start)
    if end is not None:
        query = query.where(label_rows.c.created_at < end)
    rows = conn.execute(query.order_by(label_rows.c.seq).limit(limit)).all()
    return [
        LabelRow(
            r.seq,
            r.item_id,
            r.entity_key,
            r.label,
            from_json(json.loads(r.value)),
            aware(r.event_time),  # type: ignore[arg-type]
            aware(r.created_at),  # type: ignore[arg-type]
            r.label_version,
            json.loads(r.annotators),
            r.agreement,
            r.source,
        )
        for r in rows
    ]


def max_seq(conn: Connection, project_id: str) -> int:
    return int(
        conn.execute(
            select(func.coalesce(func.max(label_rows.c.seq), 0)).where(
                label_rows.c.project_id == project_id
            )
        ).scalar_one()
    )
