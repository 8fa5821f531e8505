"""Items: what is labelled (inline text, or images in the object store with their pixel
size), with their annotations, status and final label."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select

from atlas_core.db import write_transaction
from atlas_core.errors import FailedPrecondition, InvalidArgument, NotFound
from atlas_core.storage import ArtifactStore
from atlas_labeling.image_size import UnknownImageFormat, image_size
from atlas_labeling.projects import ProjectStore, aware, new_id, utcnow
from atlas_labeling.schema import CONTENT_KIND, ProjectSpec, validate_value
from atlas_labeling.tables import annotations_table, corrections, items
from atlas_labeling.values import ItemContent, Value, from_json, to_json

STATUSES = (
    "unlabeled",
    "in_progress",
    "annotated",
    "in_review",
    "done",
    "in_correction",
    "skipped",
)


BAD_CASE_REASONS = (
    "low_confidence",
    "high_drift",
    "shadow_disagreement",
    "wrong_by_ground_truth",
)


@dataclass(frozen=True)
class ServedPrediction:
    """The served prediction a bad-case item was made from, and why it was selected."""

    endpoint_name: str
    prediction_id: str
    row: int = 0
    model_version: str = ""
    score: float | None = None
    reasons: tuple[str, ...] = ()
    detail: str = ""

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "reasons": list(self.reasons)})

    @staticmethod
    def from_json(raw: str) -> ServedPrediction:
        data = json.loads(raw)
        return ServedPrediction(**{**data, "reasons": tuple(data.get("reasons", ()))})


@dataclass(frozen=True)
class NewItem:
    content: ItemContent
    entity_id: str = ""
    label_time: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    external_id: str = ""
    gold_value: Value | None = None
    prediction_id: str = ""
    model_version: str = ""
    prediction_score: float | None = None
    served: ServedPrediction | None = None


@dataclass
class AnnotationRecord:
    annotation_id: str
    item_id: str
    author: str
    source: str  # human | model | consensus | review
    value: Value
    confidence: float
    model_version: str
    duration_ms: int
    created_at: datetime
    assignment_id: str | None = None
    gold_correct: bool | None = None
    review_decision: str | None = None
    reviewer: str | None = None
    review_value: Value | None = None
    review_comment: str = ""
    reviewed_at: datetime | None = None


@dataclass
class ItemRecord:
    item_id: str
    project_id: str
    content: ItemContent
    entity_id: str
    label_time: datetime | None
    metadata: dict[str, Any]
    status: str
    external_id: str
    created_at: datetime
    gold_value: Value | None = None
    final_value: Value | None = None
    final_source: str | None = None
    agreement: float | None = None
    prediction_id: str = ""
    model_version: str = ""
    prediction_score: float | None = None
    served: ServedPrediction | None = None
    rounds: int = 0
    annotations: list[AnnotationRecord] = field(default_factory=list)

    @property
    def gold(self) -> bool:
        return self.gold_value is not None


def content_to_json(content: ItemContent) -> str:
    return json.dumps(asdict(content))


def row_to_item(row: Any) -> ItemRecord:
    return ItemRecord(
        item_id=row.item_id,
        project_id=row.project_id,
        content=ItemContent(**json.loads(row.content)),
        entity_id=row.entity_id,
        label_time=aware(row.label_time),
        metadata=json.loads(row.metadata),
        status=row.status,
        external_id=row.external_id or "",
        created_at=aware(row.created_at),  # type: ignore[arg-type]
        gold_value=from_json(json.loads(row.gold_value)) if row.gold_value else None,
        final_value=from_json(json.loads(row.final_value)) if row.final_value else None,
        final_source=row.final_source,
        agreement=row.agreement,
        prediction_id=row.prediction_id,
        model_version=row.model_version,
        prediction_score=row.prediction_score,
        served=ServedPrediction.from_json(row.served_prediction) if row.served_prediction else None,
        rounds=row.rounds,
    )


def row_to_annotation(row: Any) -> AnnotationRecord:
    return AnnotationRecord(
        annotation_id=row.annotation_id,
        item_id=row.item_id,
        author=row.author,
        source=row.source,
        value=from_json(json.loads(row.value)),
        confidence=row.confidence,
        model_version=row.model_version,
        duration_ms=row.duration_ms,
        created_at=aware(row.created_at),  # type: ignore[arg-type]
        assignment_id=row.assignment_id,
        gold_correct=row.gold_correct,
        review_decision=row.review_decision,
        reviewer=row.reviewer,
        review_value=from_json(json.loads(row.review_value)) if row.review_value else None,
        review_comment=row.review_comment or "",
        reviewed_at=aware(row.reviewed_at),
    )


class ItemStore:
    """Thread-safe. Images are checked in the object store before anything is written."""

    def __init__(
        self,
        engine: Engine,
        projects: ProjectStore,
        artifacts: ArtifactStore,
        *,
        max_items: int = 1000,
        image_header_bytes: int = 512 * 1024,
    ) -> None:
        self.engine = engine
        self.projects = projects
        self.artifacts = artifacts
        self.max_items = max_items
        self.image_header_bytes = image_header_bytes

    # ---- adding -------------------------------------------------------------------------

    def add(self, project_id: str, new: Sequence[NewItem]) -> tuple[list[str], int]:
        """Add items; returns (ids in request order, "" for skipped duplicates; skipped).

        Items whose external id is already in the project (or earlier in ``new``) are
        skipped, so re-running an import adds nothing twice.
        """
        if not new:
            raise InvalidArgument("items is empty", reason="NO_ITEMS")
        if len(new) > self.max_items:
            raise InvalidArgument(
                f"items: {len(new)} exceed the limit of {self.max_items} per request",
                reason="TOO_MANY_ITEMS",
            )
        project = self.projects.get(project_id, with_stats=False)
        if project.archived:
            raise FailedPrecondition(f"project {project_id} is archived", reason="ARCHIVED")
        prepared = [self._prepare(project.spec, i, item) for i, item in enumerate(new)]
        with write_transaction(self.engine) as conn:
            locked = self.projects.load(conn, project_id, lock=True)  # serialises seq (PG)
            added = self._insert(conn, project_id, prepared)
            if locked.spec.queue_order != "fifo":
                # New items join the active-learning order instead of waiting behind it.
                from atlas_labeling.ordering import refresh_order

                refresh_order(conn, locked)
            return added

    def _prepare(self, spec: ProjectSpec, index: int, item: NewItem) -> NewItem:
        where = f"items[{index}]"
        content = item.content
        want = CONTENT_KIND[spec.task_type]
        if want == "text":
            if content.text is None or content.image_uri:
                raise InvalidArgument(
                    f"{where}.content: task type {spec.task_type} needs text", reason="BAD_CONTENT"
                )
            if not content.text.strip():
                raise InvalidArgument(f"{where}.content.text is empty", reason="BAD_CONTENT")
        elif want == "image":
            if not content.image_uri or content.text is not None or content.second_image_uri:
                raise InvalidArgument(
                    f"{where}.content: task type {spec.task_type} needs one image",
                    reason="BAD_CONTENT",
                )
            width, height = self._image_size(content.image_uri, f"{where}.content.image")
            content = ItemContent(
                image_uri=content.image_uri, image_width=width, image_height=height
            )
        else:
            if not content.image_uri or not content.second_image_uri:
                raise InvalidArgument(
                    f"{where}.content: face-pair items need image_pair.first and .second",
                    reason="BAD_CONTENT",
                )
            width, height = self._image_size(content.image_uri, f"{where}.content.image_pair")
            self._image_size(content.second_image_uri, f"{where}.content.image_pair.second")
            content = ItemContent(
                image_uri=content.image_uri,
                second_image_uri=content.second_image_uri,
                image_width=width,
                image_height=height,
            )
        gold = item.gold_value
        if gold is not None:
            gold = validate_value(spec, content, gold, f"{where}.gold_value")
        if item.prediction_score is not None and not 0.0 <= item.prediction_score <= 1.0:
            raise InvalidArgument(
                f"{where}.prediction_score {item.prediction_score} is outside [0, 1]",
                reason="OUT_OF_RANGE",
            )
        served = item.served
        if served is None:
            return replace(item, content=content, metadata=dict(item.metadata), gold_value=gold)
        _check_served(served, f"{where}.served_prediction")
        score = served.score
        return replace(
            item,
            content=content,
            metadata=dict(item.metadata),
            gold_value=gold,
            prediction_id=served.prediction_id,
            model_version=served.model_version,
            # A probability orders the correction queue; a regression value does not.
            prediction_score=score if score is not None and 0.0 <= score <= 1.0 else None,
        )

    def _image_size(self, uri: str, where: str) -> tuple[int, int]:
        key = self.artifacts.key_for_uri(uri)
        try:
            self.artifacts.stat(key)
        except NotFound:
            raise NotFound(
                f"{where}: artifact {uri} does not exist", reason="ARTIFACT_NOT_FOUND"
            ) from None
        head = b""
        with self.artifacts.open_stream(key, verify=False) as stream:
            for chunk in stream:
                head += chunk
                if len(head) >= self.image_header_bytes:
                    break
        try:
            width, height = image_size(head)
        except UnknownImageFormat as exc:
            raise InvalidArgument(f"{where}: {exc}", reason="BAD_IMAGE") from None
        if width <= 0 or height <= 0:
            raise InvalidArgument(f"{where}: the image has no pixels", reason="BAD_IMAGE")
        return width, height

    def _insert(
        self, conn: Connection, project_id: str, prepared: list[NewItem]
    ) -> tuple[list[str], int]:
        wanted = {p.external_id for p in prepared if p.external_id}
        existing: set[str] = set()
        if wanted:
            for chunk in _chunks(sorted(wanted), 500):
                existing |= set(
                    conn.execute(
                        select(items.c.external_id).where(
                            (items.c.project_id == project_id) & items.c.external_id.in_(chunk)
                        )
                    ).scalars()
                )
        seq = conn.execute(
            select(func.coalesce(func.max(items.c.seq), 0)).where(items.c.project_id == project_id)
        ).scalar_one()
        ids: list[str] = []
        rows: list[dict[str, Any]] = []
        now = utcnow()
        for item in prepared:
            if item.external_id and item.external_id in existing:
                ids.append("")
                continue
            if item.external_id:
                existing.add(item.external_id)
            seq += 1
            item_id = new_id("itm")
            ids.append(item_id)
            rows.append(
                {
                    "item_id": item_id,
                    "project_id": project_id,
                    "seq": seq,
                    "external_id": item.external_id or None,
                    "content": content_to_json(item.content),
                    "entity_id": item.entity_id,
                    "label_time": item.label_time,
                    "metadata": json.dumps(item.metadata),
                    "status": "unlabeled",
                    "taken": 0,
                    "submitted": 0,
                    "rounds": 0,
                    "priority": 0.0,
                    "gold_value": json.dumps(to_json(item.gold_value))
                    if item.gold_value is not None
                    else None,
                    "prediction_id": item.prediction_id,
                    "model_version": item.model_version,
                    "prediction_score": item.prediction_score,
                    "served_prediction": item.served.to_json() if item.served else None,
                    "created_at": now,
                }
            )
        if rows:
            conn.execute(insert(items), rows)
            _queue_bad_cases(conn, project_id, rows, now)
        return ids, len(prepared) - len(rows)

    # ---- reading ------------------------------------------------------------------------

    def load(self, conn: Connection, project_id: str, item_id: str) -> ItemRecord:
        if not item_id:
            raise InvalidArgument("item_id is empty", reason="EMPTY_ID")
        query = select(items).where(items.c.item_id == item_id)
        if project_id:
            query = query.where(items.c.project_id == project_id)
        row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"item {item_id!r} does not exist", reason="ITEM_NOT_FOUND")
        return row_to_item(row)

    def get(self, project_id: str, item_id: str) -> ItemRecord:
        with self.engine.connect() as conn:
            if project_id:
                self.projects.load(conn, project_id)
            item = self.load(conn, project_id, item_id)
            item.annotations = annotations_of(conn, [item.item_id])[item.item_id]
        return item

    def list(
        self,
        project_id: str,
        statuses: Sequence[str],
        offset: int,
        limit: int,
        *,
        with_annotations: bool = True,
    ) -> tuple[list[ItemRecord], bool]:
        with self.engine.connect() as conn:
            self.projects.load(conn, project_id)
            query = select(items).where(items.c.project_id == project_id)
            if statuses:
                query = query.where(items.c.status.in_(list(statuses)))
            rows = conn.execute(query.order_by(items.c.seq).offset(offset).limit(limit + 1)).all()
            found = [row_to_item(r) for r in rows[:limit]]
            if with_annotations and found:
                by_item = annotations_of(conn, [i.item_id for i in found])
                for item in found:
                    item.annotations = by_item[item.item_id]
        return found, len(rows) > limit


def annotations_of(conn: Connection, item_ids: list[str]) -> dict[str, list[AnnotationRecord]]:
    found: dict[str, list[AnnotationRecord]] = {i: [] for i in item_ids}
    for chunk in _chunks(item_ids, 500):
        rows = conn.execute(
            select(annotations_table)
            .where(annotations_table.c.item_id.in_(chunk))
            .order_by(annotations_table.c.created_at, annotations_table.c.annotation_id)
        )
        for row in rows:
            found[row.item_id].append(row_to_annotation(row))
    return found


def _chunks(values: list[str], size: int) -> list[list[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def _check_served(served: ServedPrediction, where: str) -> None:
    if not served.endpoint_name or not served.prediction_id:
        raise InvalidArgument(
            f"{where}: endpoint_name and prediction_id are required", reason="BAD_SERVED_PREDICTION"
        )
    if served.row < 0:
        raise InvalidArgument(
            f"{where}.row {served.row} is negative", reason="BAD_SERVED_PREDICTION"
        )
    unknown = [r for r in served.reasons if r not in BAD_CASE_REASONS]
    if unknown:
        raise InvalidArgument(
            f"{where}.reasons: {unknown} are not bad-case reasons", reason="BAD_SERVED_PREDICTION"
        )


def _queue_bad_cases(
    conn: Connection, project_id: str, rows: list[dict[str, Any]], now: datetime
) -> None:
    """A BAD_CASE correction entry per new item made from a served prediction, the least
    confident first, its detail naming the prediction and why it was selected."""
    entries = []
    for row in rows:
        if not row["served_prediction"]:
            continue
        served = ServedPrediction.from_json(row["served_prediction"])
        why = f" ({', '.join(served.reasons)})" if served.reasons else ""
        detail = f"; {served.detail}" if served.detail else ""
        entries.append(
            {
                "project_id": project_id,
                "item_id": row["item_id"],
                "reason": "bad_case",
                "priority": 1.0 - (row["prediction_score"] or 0.0),
                "detail": f"serving prediction {served.prediction_id}:{served.row} of "
                f"{served.model_version or served.endpoint_name} scored {served.score}{why}"
                f"{detail}",
                "resolution": "open",
                "created_at": now,
            }
        )
    if entries:
        conn.execute(insert(corrections), entries)
