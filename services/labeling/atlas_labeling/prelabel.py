"""Pre-labels: a model's answers stored as suggestions (source "model"), one per item and
model version, so a re-run or a resumed job stores nothing twice. Suggestions never enter
the label history: only a human decision does."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from atlas_core.errors import InvalidArgument
from atlas_labeling.items import ItemRecord
from atlas_labeling.schema import ProjectSpec, check_confidence, validate_value
from atlas_labeling.tables import annotations_table, corrections, items
from atlas_labeling.values import Classes, FacePair, Value, from_json, to_json


@dataclass(frozen=True)
class Suggestion:
    item: ItemRecord
    label: str
    score: float
    model_version: str  # "<model name>:<version>"
    probs: dict[str, float] | None = None  # class -> probability, in project labels


def suggestion_id(item_id: str, model_version: str) -> str:
    return "pre-" + hashlib.sha256(f"{item_id}|{model_version}".encode()).hexdigest()[:24]


def to_value(spec: ProjectSpec, label: str) -> Value:
    if spec.task_type == "face_pair":
        return FacePair(label.lower())
    return Classes((label,))


def store(
    conn: Connection,
    spec: ProjectSpec,
    batch: Sequence[Suggestion],
    threshold: float,
    now: datetime,
) -> tuple[int, int, int]:
    """Validate and store suggestions; returns (stored, low confidence, errors)."""
    stored = low = errors = 0
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    for s in batch:
        try:
            check_confidence(s.score, "prediction score")
            value = validate_value(spec, s.item.content, to_value(spec, s.label), "prediction")
        except InvalidArgument:
            errors += 1  # an answer outside the schema or a score outside [0, 1]: not stored
            continue
        conn.execute(
            dialect.insert(annotations_table)
            .values(
                annotation_id=suggestion_id(s.item.item_id, s.model_version),
                project_id=s.item.project_id,
                item_id=s.item.item_id,
                assignment_id=None,
                author=s.model_version,
                source="model",
                value=json.dumps(to_json(value)),
                confidence=s.score,
                model_version=s.model_version,
                duration_ms=0,
                created_at=now,
            )
            .on_conflict_do_nothing()
        )
        conn.execute(
            update(items)
            .where(items.c.item_id == s.item.item_id)
            .values(
                model_version=s.model_version,
                prediction_score=s.score,
                probs=json.dumps(s.probs) if s.probs else None,
            )
        )
        stored += 1
        # Gold items keep their suggestion (an item without one would stand out as gold)
        # but never enter the correction queue: they are never decided, so an entry on one
        # would stay open forever.
        if s.score < threshold and s.item.gold_value is None:
            low += 1
            conn.execute(
                dialect.insert(corrections)
                .values(
                    project_id=s.item.project_id,
                    item_id=s.item.item_id,
                    reason="low_confidence",
                    priority=1.0 - s.score,
                    detail=f"pre-label {s.label!r} by {s.model_version} scored {s.score:.3f} "
                    f"< {threshold:.3f}",
                    resolution="open",
                    created_at=now,
                )
                .on_conflict_do_nothing()
            )
    return stored, low, errors


@dataclass(frozen=True)
class SuggestionStats:
    model_version: str
    suggestions: int
    answered: int
    accepted: int

    @property
    def edited(self) -> int:
        return self.answered - self.accepted

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.answered if self.answered else 0.0


def suggestion_stats(conn: Connection, project_id: str) -> list[SuggestionStats]:
    """Per model version: suggestions, items a person annotated since, and how many of those
    first human answers kept the suggestion."""
    from atlas_labeling.consensus import vote_key

    a = annotations_table
    suggested = conn.execute(
        select(a.c.item_id, a.c.model_version, a.c.value, a.c.created_at).where(
            (a.c.project_id == project_id) & (a.c.source == "model")
        )
    ).all()
    humans: dict[str, list[tuple[datetime, str]]] = {}
    for item_id, raw, created in conn.execute(
        select(a.c.item_id, a.c.value, a.c.created_at)
        .where((a.c.project_id == project_id) & (a.c.source == "human"))
        .order_by(a.c.created_at)
    ):
        humans.setdefault(item_id, []).append((created, raw))
    totals: dict[str, list[int]] = {}
    for item_id, version, raw, created in suggested:
        entry = totals.setdefault(version, [0, 0, 0])
        entry[0] += 1
        later = [v for t, v in humans.get(item_id, []) if t >= created]
        if later:
            entry[1] += 1
            same = vote_key(from_json(json.loads(later[0]))) == vote_key(from_json(json.loads(raw)))
            entry[2] += int(same)
    return [SuggestionStats(v, *totals[v]) for v in sorted(totals)]
