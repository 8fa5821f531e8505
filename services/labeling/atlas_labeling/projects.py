"""Projects: their settings (a typed label schema per task type), archive state, counters."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Engine, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from atlas_core.db import write_transaction
from atlas_core.errors import Aborted, AlreadyExists, InvalidArgument, NotFound
from atlas_labeling.schema import LabelDef, ProjectSpec, check_update, validate_spec
from atlas_labeling.tables import annotations_table, assignments, items, label_usage, projects


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive: they were stored in UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


@dataclass
class ProjectStats:
    items: int = 0
    unlabeled: int = 0
    in_progress: int = 0
    done: int = 0
    annotations: int = 0
    in_correction: int = 0


@dataclass
class Project:
    project_id: str
    spec: ProjectSpec
    archived: bool
    etag: str
    created_at: datetime
    stats: ProjectStats = field(default_factory=ProjectStats)


def spec_to_json(spec: ProjectSpec) -> str:
    return json.dumps(asdict(spec))


def spec_from_json(raw: str) -> ProjectSpec:
    data: dict[str, Any] = json.loads(raw)
    data["labels"] = tuple(
        LabelDef(**{**label, "allowed_pairs": tuple(label["allowed_pairs"])})
        for label in data["labels"]
    )
    return ProjectSpec(**data)


# Parsed specs by their stored JSON: every assignment round trip reads the project, and the
# spec (frozen) changes only through UpdateProject. Keyed by the text itself, so a stale entry
# can never be returned; the bound only caps memory.
_SPEC_CACHE: dict[str, ProjectSpec] = {}
_SPEC_CACHE_MAX = 256


def cached_spec(raw: str) -> ProjectSpec:
    spec = _SPEC_CACHE.get(raw)
    if spec is None:
        spec = spec_from_json(raw)
        if len(_SPEC_CACHE) >= _SPEC_CACHE_MAX:
            _SPEC_CACHE.clear()
        _SPEC_CACHE[raw] = spec
    return spec


def _row_to_project(row: Any) -> Project:
    return Project(
        row.project_id,
        cached_spec(row.spec),
        bool(row.archived),
        row.etag,
        aware(row.created_at),  # type: ignore[arg-type]
    )


def project_from_row(row: Any) -> Project:
    """The project of a row selected with the projects table's own columns."""
    return _row_to_project(row)


PROJECT_JOIN_COLUMNS = (
    projects.c.spec.label("project_spec"),
    projects.c.archived.label("project_archived"),
    projects.c.etag.label("project_etag"),
    projects.c.created_at.label("project_created_at"),
)
"""The project's columns under names that cannot clash, for a row joined to its project."""


def project_from_joined(row: Any) -> Project:
    """The project of a row selected with :data:`PROJECT_JOIN_COLUMNS` (``row.project_id``)."""
    return Project(
        row.project_id,
        cached_spec(row.project_spec),
        bool(row.project_archived),
        row.project_etag,
        aware(row.project_created_at),  # type: ignore[arg-type]
    )


class ProjectStore:
    """Thread-safe; every write is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, spec: ProjectSpec) -> Project:
        spec = validate_spec(spec)
        now = utcnow()
        project = Project(new_id("prj"), spec, False, uuid.uuid4().hex, now)
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(
                    insert(projects).values(
                        project_id=project.project_id,
                        name=spec.name,
                        task_type=spec.task_type,
                        spec=spec_to_json(spec),
                        archived=False,
                        etag=project.etag,
                        created_at=now,
                        updated_at=now,
                        label_seq=0,
                    )
                )
        except IntegrityError:
            raise AlreadyExists(
                f"project name {spec.name!r} is taken", reason="PROJECT_EXISTS"
            ) from None
        return project

    def load(self, conn: Connection, project_id: str, *, lock: bool = False) -> Project:
        if not project_id:
            raise InvalidArgument("project_id is empty", reason="EMPTY_ID")
        query = select(projects).where(projects.c.project_id == project_id)
        if lock and conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"project {project_id!r} does not exist", reason="PROJECT_NOT_FOUND")
        return _row_to_project(row)

    def get(self, project_id: str, *, with_stats: bool = True) -> Project:
        with self.engine.connect() as conn:
            project = self.load(conn, project_id)
            if with_stats:
                project.stats = _stats(conn, project_id)
        return project

    def list(
        self, offset: int, limit: int, *, include_archived: bool = False, task_type: str = ""
    ) -> tuple[list[Project], bool]:
        query = select(projects).order_by(projects.c.created_at.desc(), projects.c.project_id)
        if not include_archived:
            query = query.where(projects.c.archived.is_(False))
        if task_type:
            query = query.where(projects.c.task_type == task_type)
        with self.engine.connect() as conn:
            rows = conn.execute(query.offset(offset).limit(limit + 1)).all()
            found = [_row_to_project(r) for r in rows[:limit]]
            for project in found:
                project.stats = _stats(conn, project.project_id)
        return found, len(rows) > limit

    def update(self, project_id: str, spec: ProjectSpec, etag: str = "") -> Project:
        spec = validate_spec(spec)
        with write_transaction(self.engine) as conn:
            old = self.load(conn, project_id, lock=True)
            if etag and etag != old.etag:
                raise Aborted(
                    f"project {project_id} changed since etag {etag}", reason="ETAG_MISMATCH"
                )
            used = {
                (r.kind, r.label)
                for r in conn.execute(
                    select(label_usage).where(label_usage.c.project_id == project_id)
                )
            }
            check_update(old.spec, spec, used)
            if spec.name != old.spec.name:
                taken = conn.execute(
                    select(projects.c.project_id).where(projects.c.name == spec.name)
                ).first()
                if taken is not None:
                    raise AlreadyExists(
                        f"project name {spec.name!r} is taken", reason="PROJECT_EXISTS"
                    )
            etag_new = uuid.uuid4().hex
            conn.execute(
                update(projects)
                .where(projects.c.project_id == project_id)
                .values(name=spec.name, spec=spec_to_json(spec), etag=etag_new, updated_at=utcnow())
            )
        return self.get(project_id)

    def archive(self, project_id: str) -> Project:
        with write_transaction(self.engine) as conn:
            self.load(conn, project_id, lock=True)
            conn.execute(
                update(projects)
                .where(projects.c.project_id == project_id)
                .values(archived=True, etag=uuid.uuid4().hex, updated_at=utcnow())
            )
            # Open leases end (an archived project takes no more work) and free their slots.
            held = (
                conn.execute(
                    select(assignments.c.item_id).where(
                        (assignments.c.project_id == project_id)
                        & (assignments.c.state == "active")
                        & ~assignments.c.is_review
                    )
                )
                .scalars()
                .all()
            )
            conn.execute(
                update(assignments)
                .where((assignments.c.project_id == project_id) & (assignments.c.state == "active"))
                .values(state="expired", holder_key=None, finished_at=utcnow())
            )
            for item_id in held:
                taken = items.c.taken - 1
                conn.execute(
                    update(items)
                    .where(items.c.item_id == item_id)
                    .values(
                        taken=taken,
                        status=case(
                            (items.c.status.not_in(["unlabeled", "in_progress"]), items.c.status),
                            ((taken > 0) | (items.c.submitted > 0), "in_progress"),
                            else_="unlabeled",
                        ),
                    )
                )
        return self.get(project_id)


def _stats(conn: Connection, project_id: str) -> ProjectStats:
    counts: dict[str, int] = dict(
        conn.execute(
            select(items.c.status, func.count())
            .where(items.c.project_id == project_id)
            .group_by(items.c.status)
        ).all()
    )
    n_annotations = conn.execute(
        select(func.count())
        .select_from(annotations_table)
        .where(
            (annotations_table.c.project_id == project_id) & (annotations_table.c.source == "human")
        )
    ).scalar_one()
    return ProjectStats(
        items=sum(counts.values()),
        unlabeled=counts.get("unlabeled", 0),
        in_progress=counts.get("in_progress", 0),
        done=counts.get("done", 0),
        annotations=n_annotations,
        in_correction=counts.get("in_correction", 0),
    )
