"""The work queue: leased assignments with overlap, skips, submits, gold scoring, review.

Concurrency: every operation is one write transaction. On SQLite that transaction starts with
BEGIN IMMEDIATE, so queue operations are serialised. On PostgreSQL candidate items are taken
with ``SELECT ... FOR UPDATE SKIP LOCKED`` (concurrent annotators lock different rows instead
of waiting), the overlap counter lives on the locked item row, and the unique ``holder_key``
makes a second lease of one item to one person impossible; a transaction that loses that race
is retried. Leases are rows, so they survive a restart.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import json
import statistics
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from atlas_core.db import write_transaction
from atlas_core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from atlas_labeling import consensus, gold
from atlas_labeling.consensus import vote_key
from atlas_labeling.items import (
    AnnotationRecord,
    ItemRecord,
    ItemStore,
    annotations_of,
    row_to_annotation,
    row_to_item,
)
from atlas_labeling.labels import append_label
from atlas_labeling.projects import (
    PROJECT_JOIN_COLUMNS,
    Project,
    ProjectStore,
    aware,
    new_id,
    project_from_joined,
    project_from_row,
    utcnow,
)
from atlas_labeling.schema import check_confidence, validate_value
from atlas_labeling.tables import (
    annotations_table,
    annotator_gold,
    assignments,
    corrections,
    items,
    label_usage,
    projects,
)
from atlas_labeling.values import Value, from_json, labels_used, same_answer, to_json

OPEN = ("unlabeled", "in_progress")
REVIEW_DECISIONS = ("accept", "reject", "correct")


@dataclass
class AssignmentRecord:
    assignment_id: str
    project_id: str
    item_id: str
    annotator: str
    is_review: bool
    state: str  # active | submitted | skipped | expired | rejected
    expire_at: datetime
    created_at: datetime
    item: ItemRecord | None = None


@dataclass
class AnnotatorStats:
    annotator: str
    annotations: int = 0
    skipped: int = 0
    gold_answered: int = 0
    gold_correct: int = 0
    median_duration_ms: int = 0

    @property
    def gold_accuracy(self) -> float:
        return self.gold_correct / self.gold_answered if self.gold_answered else 0.0


def _insert_lease(
    conn: Any,
    project: Any,
    row: Any,
    person: str,
    review: bool,
    expire: datetime,
    now: datetime,
) -> AssignmentRecord:
    """Store an active lease of item ``row`` for ``person``. ``holder_key`` is unique: one
    lease per (item, annotator), and one review lease per item at a time."""
    record = AssignmentRecord(
        new_id("asg"),
        project.project_id,
        row.item_id,
        person,
        review,
        "active",
        expire,
        now,
        row_to_item(row),
    )
    conn.execute(
        _INSERT_ASSIGNMENT,
        {
            "assignment_id": record.assignment_id,
            "project_id": record.project_id,
            "item_id": record.item_id,
            "annotator": person,
            "is_review": review,
            "state": "active",
            "holder_key": f"{row.item_id}|{'review' if review else person}",
            "expire_at": expire,
            "created_at": now,
        },
    )
    return record


def _row_to_assignment(row: Any) -> AssignmentRecord:
    return AssignmentRecord(
        row.assignment_id,
        row.project_id,
        row.item_id,
        row.annotator,
        bool(row.is_review),
        row.state,
        aware(row.expire_at),  # type: ignore[arg-type]  # NOT NULL column
        aware(row.created_at),  # type: ignore[arg-type]  # NOT NULL column
    )


def _model_annotations(conn: Connection, item_ids: list[str]) -> dict[str, list[AnnotationRecord]]:
    found: dict[str, list[AnnotationRecord]] = {}
    for row in conn.execute(
        select(annotations_table)
        .where(annotations_table.c.item_id.in_(item_ids) & (annotations_table.c.source == "model"))
        .order_by(annotations_table.c.created_at, annotations_table.c.annotation_id)
    ):
        found.setdefault(row.item_id, []).append(row_to_annotation(row))
    return found


def _attach_suggestions(conn: Connection, records: list[AssignmentRecord]) -> None:
    """The model's suggestions travel with annotation assignments (no GetItem needed)."""
    wanted = [r for r in records if not r.is_review and r.item is not None]
    # Suggestions are stored only by pre-labeling, which also sets the item's model version
    # and score: an item without them has none, and costs no query.
    asked = [
        r
        for r in wanted
        if r.item is not None and (r.item.model_version or r.item.prediction_score is not None)
    ]
    suggested = _model_annotations(conn, [r.item_id for r in asked]) if asked else {}
    for record in wanted:
        assert record.item is not None
        record.item.annotations = suggested.get(record.item_id, [])


_ITEM_JOIN_COLUMNS = tuple(c.label(f"item__{c.name}") for c in items.c)


def _joined_item(row: Any) -> ItemRecord:
    """The item of a row selected with ``_ITEM_JOIN_COLUMNS``."""
    mapping = row._mapping
    return row_to_item(SimpleNamespace(**{c.name: mapping[f"item__{c.name}"] for c in items.c}))


def _standing_of(row: Any, annotator: str) -> gold.Standing:
    """The gold standing of a row joined (outer) to ``annotator_gold``."""
    if row.gold_answered is None:
        return gold.Standing(annotator, 0, 0)
    return gold.Standing(annotator, row.gold_answered, row.gold_correct)


# The hot path's statements, built once with bound parameters: building a statement and its
# cache key costs more Python than running it does on SQLite.


_INSERT_ASSIGNMENT = insert(assignments)
_INSERT_ANNOTATION = insert(annotations_table)
_TAKE_ITEM = (
    update(items)
    .where(items.c.item_id == bindparam("b_item_id"))
    .values(taken=items.c.taken + 1, status="in_progress")
)
_SUBMIT_ASSIGNMENT = (
    update(assignments)
    .where(assignments.c.assignment_id == bindparam("b_assignment_id"))
    .values(
        state="submitted",
        finished_at=bindparam("b_finished_at", type_=assignments.c.finished_at.type),
        request_id=bindparam("b_request_id", type_=assignments.c.request_id.type),
    )
)
_COUNT_SUBMIT = (
    update(items)
    .where(items.c.item_id == bindparam("b_item_id"))
    .values(submitted=items.c.submitted + 1)
    .returning(items.c.submitted)
)


@functools.cache
def _project_standing_query() -> Select[Any]:
    g = annotator_gold.c
    return (
        select(projects, g.answered.label("gold_answered"), g.correct.label("gold_correct"))
        .select_from(
            projects.outerjoin(
                annotator_gold,
                (g.project_id == projects.c.project_id) & (g.annotator == bindparam("annotator")),
            )
        )
        .where(projects.c.project_id == bindparam("project_id"))
    )


@functools.cache
def _queue_query(status: str, gold_only: bool, postgres: bool) -> Select[Any]:
    """The next open items of one status in queue order, that ``annotator`` never held, with
    a free slot (``overlap`` + the item's rounds) or gold; at most ``count``."""
    mine = select(assignments.c.item_id).where(
        (assignments.c.project_id == bindparam("project_id"))
        & (assignments.c.annotator == bindparam("annotator"))
        & assignments.c.holder_key.is_not(None)
    )
    query = (
        select(items)
        .where(
            (items.c.project_id == bindparam("project_id"))
            & (items.c.status == status)
            & or_(
                items.c.taken < bindparam("overlap", type_=Integer) + items.c.rounds,
                items.c.gold_value.is_not(None),
            )
            & items.c.item_id.not_in(mine)
            # Below the gold bar: only gold items, to win their way back or be paused.
            & (items.c.gold_value.is_not(None) if gold_only else true())
        )
        .order_by(items.c.priority.desc(), items.c.seq)
        .limit(bindparam("count", type_=Integer))
    )
    return query.with_for_update(skip_locked=True) if postgres else query


@functools.cache
def _submit_query(postgres: bool) -> Select[Any]:
    """The assignment with its project, its item, its annotator's gold standing and whether
    the item has an escalated correction entry."""
    a, g, c = assignments.c, annotator_gold.c, corrections.c
    escalated = exists().where(
        (c.project_id == a.project_id) & (c.item_id == a.item_id) & (c.resolution == "escalated")
    )
    query = (
        select(
            assignments,
            *PROJECT_JOIN_COLUMNS,
            *_ITEM_JOIN_COLUMNS,
            g.answered.label("gold_answered"),
            g.correct.label("gold_correct"),
            escalated.label("item_escalated"),
        )
        .select_from(
            assignments.join(projects, projects.c.project_id == a.project_id)
            .join(items, items.c.item_id == a.item_id)
            .outerjoin(
                annotator_gold,
                (g.project_id == a.project_id) & (g.annotator == a.annotator),
            )
        )
        .where(a.assignment_id == bindparam("assignment_id"))
    )
    return query.with_for_update(of=[assignments, items]) if postgres else query


def goes_to_review(item_id: str, fraction: float) -> bool:
    """A stable pseudo-random draw per item: the same item always gets the same answer."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(item_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


class AssignmentQueue:
    """Thread-safe and multi-process safe (the database arbitrates)."""

    def __init__(
        self,
        engine: Engine,
        projects: ProjectStore,
        items_store: ItemStore,
        *,
        max_count: int = 100,
        max_retries: int = 5,
        min_gold_answers: int = 3,
        min_gold_accuracy: float = 0.7,
        ds_refit_every: int = 500,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.min_gold_answers = min_gold_answers
        self.min_gold_accuracy = min_gold_accuracy
        self.ds_refit_every = ds_refit_every
        self.engine = engine
        self.projects = projects
        self.items = items_store
        self.max_count = max_count
        self.max_retries = max_retries
        self.clock = clock
        # When each project's lapsed leases were last returned to the queue (clock time).
        self._expired_at: dict[str, datetime] = {}
        # (project, kind, label) known to be in label_usage (committed): not inserted again.
        self._used: set[tuple[str, str, str]] = set()
        self._local = threading.local()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """``write_transaction``, plus what this queue learns from it once it committed."""
        pending: list[tuple[str, str, str]] = []
        self._local.used = pending
        with write_transaction(self.engine) as conn:
            yield conn
        self._used.update(pending)

    def _pg(self, conn: Connection) -> bool:
        return conn.dialect.name == "postgresql"

    # ---- handing out work ---------------------------------------------------------------

    def request(
        self,
        project_id: str,
        annotator: str,
        count: int,
        *,
        review: bool = False,
        prefer_corrections: bool = False,
    ) -> list[AssignmentRecord]:
        if not annotator:
            raise InvalidArgument("annotator is empty", reason="EMPTY_ANNOTATOR")
        if not 1 <= count <= self.max_count:
            raise InvalidArgument(f"count must be in 1..{self.max_count}", reason="BAD_COUNT")
        for attempt in range(self.max_retries):
            try:
                with self._write() as conn:
                    project, who = self._project_and_standing(conn, project_id, annotator)
                    if project.archived:
                        raise FailedPrecondition(
                            f"project {project_id} is archived", reason="ARCHIVED"
                        )
                    now = self.clock()
                    if self._expiry_due(project, now):
                        self._expire(conn, project_id, now)
                    if review:
                        return self._assign_reviews(conn, project, annotator, count, now)
                    return self._assign(
                        conn, project, annotator, count, now, prefer_corrections, who
                    )
            except IntegrityError:
                # Another transaction leased the same item to this annotator first
                # (PostgreSQL only; SQLite serialises): try again with fresh candidates.
                if attempt == self.max_retries - 1:
                    raise
        return []

    def _project_and_standing(
        self, conn: Connection, project_id: str, annotator: str
    ) -> tuple[Project, gold.Standing]:
        """The project and the annotator's gold standing in it, in one statement."""
        if not project_id:
            raise InvalidArgument("project_id is empty", reason="EMPTY_ID")
        row = conn.execute(
            _project_standing_query(), {"project_id": project_id, "annotator": annotator}
        ).first()
        if row is None:
            raise NotFound(f"project {project_id!r} does not exist", reason="PROJECT_NOT_FOUND")
        return project_from_row(row), _standing_of(row, annotator)

    def _expiry_due(self, project: Project, now: datetime) -> bool:
        """Whether to look for lapsed leases now: at most every quarter of the lease (and at
        most every second) per project and process, so a lapsed lease is back in the queue
        that soon after it lapsed, and most requests skip the query."""
        every = timedelta(seconds=min(1.0, project.spec.assignment_ttl_s / 4))
        last = self._expired_at.get(project.project_id)
        if last is not None and timedelta(0) <= now - last < every:
            return False
        self._expired_at[project.project_id] = now
        return True

    def _assign(
        self,
        conn: Connection,
        project: Project,
        annotator: str,
        count: int,
        now: datetime,
        prefer_corrections: bool = False,
        who: gold.Standing | None = None,
    ) -> list[AssignmentRecord]:
        if who is None:
            who = gold.standing(conn, project.project_id, annotator)
        probation = who.low(self.min_gold_answers, self.min_gold_accuracy)
        leased = self._lease(conn, project, annotator, count, now, prefer_corrections, probation)
        if probation and not leased:
            raise FailedPrecondition(
                f"annotator {annotator} is paused in project {project.project_id}: "
                f"{who.correct} of {who.answered} gold items answered right "
                f"({who.accuracy:.0%}, the bar is {self.min_gold_accuracy:.0%}); "
                "they get no more items to label here (reviews are still open to them)",
                reason="ANNOTATOR_PAUSED",
            )
        return leased

    def _lease(
        self,
        conn: Connection,
        project: Project,
        annotator: str,
        count: int,
        now: datetime,
        prefer_corrections: bool,
        gold_only: bool,
    ) -> list[AssignmentRecord]:
        mine = select(assignments.c.item_id).where(
            (assignments.c.project_id == project.project_id)
            & (assignments.c.annotator == annotator)
            & assignments.c.holder_key.is_not(None)
        )

        def open_items(status_in: tuple[str, ...]) -> Any:
            return (
                select(items)
                .where(
                    (items.c.project_id == project.project_id)
                    & items.c.status.in_(status_in)
                    & or_(
                        items.c.taken < project.spec.overlap + items.c.rounds,
                        items.c.gold_value.is_not(None),
                    )
                    & items.c.item_id.not_in(mine)
                    # Below the gold bar: only gold items, to win their way back or be paused.
                    & (items.c.gold_value.is_not(None) if gold_only else true())
                )
                .limit(count)
            )

        if prefer_corrections:
            flagged = select(corrections.c.item_id).where(
                (corrections.c.project_id == project.project_id)
                & corrections.c.resolution.in_(["open", "requeued"])
            )
            query = open_items(tuple(OPEN)).order_by(
                case((items.c.item_id.in_(flagged), 1), else_=0).desc(),
                items.c.priority.desc(),
                items.c.seq,
            )
            if self._pg(conn):
                query = query.with_for_update(skip_locked=True)
            rows = list(conn.execute(query).all())
        else:
            # One ordered, limited query per open status, merged here: each one walks
            # ix_labeling_items_queue in queue order and stops after `count` rows, where
            # `status IN (...)` made SQLite and PostgreSQL sort every open item of the project.
            rows = []
            params = {
                "project_id": project.project_id,
                "annotator": annotator,
                "overlap": project.spec.overlap,
                "count": count,
            }
            for status in OPEN:
                query = _queue_query(status, gold_only, self._pg(conn))
                rows.extend(conn.execute(query, params).all())
            rows = sorted(rows, key=lambda r: (-r.priority, r.seq))[:count]
        expire = now + timedelta(seconds=project.spec.assignment_ttl_s)
        leased = []
        for row in rows:
            record = _insert_lease(conn, project, row, annotator, False, expire, now)
            conn.execute(_TAKE_ITEM, {"b_item_id": row.item_id})
            assert record.item is not None
            record.item.status = "in_progress"
            leased.append(record)
        _attach_suggestions(conn, leased)
        return leased

    def _assign_reviews(
        self, conn: Connection, project: Project, reviewer: str, count: int, now: datetime
    ) -> list[AssignmentRecord]:
        involved = select(assignments.c.item_id).where(
            (assignments.c.project_id == project.project_id) & (assignments.c.annotator == reviewer)
        )
        under_review = select(assignments.c.item_id).where(
            (assignments.c.project_id == project.project_id)
            & assignments.c.is_review
            & (assignments.c.state == "active")
        )
        query = (
            select(items)
            .where(
                (items.c.project_id == project.project_id)
                & (items.c.status == "in_review")
                & items.c.item_id.not_in(involved)
                & items.c.item_id.not_in(under_review)
            )
            .order_by(items.c.priority.desc(), items.c.seq)
            .limit(count)
        )
        if self._pg(conn):
            query = query.with_for_update(skip_locked=True)
        expire = now + timedelta(seconds=project.spec.assignment_ttl_s)
        leased = []
        for row in conn.execute(query).all():
            record = _insert_lease(conn, project, row, reviewer, True, expire, now)
            leased.append(record)
        if leased:
            by_item = annotations_of(conn, [r.item_id for r in leased])
            for record in leased:
                assert record.item is not None
                record.item.annotations = [
                    a for a in by_item[record.item_id] if a.review_decision is None
                ]
        return leased

    def _expire(self, conn: Connection, project_id: str, now: datetime) -> int:
        """Return the items of every lapsed lease of the project to the queue."""
        query = select(
            assignments.c.assignment_id, assignments.c.item_id, assignments.c.is_review
        ).where(
            (assignments.c.project_id == project_id)
            & (assignments.c.state == "active")
            & (assignments.c.expire_at <= now)
        )
        if self._pg(conn):
            query = query.with_for_update(skip_locked=True)
        lapsed = conn.execute(query).all()
        for row in lapsed:
            conn.execute(
                update(assignments)
                .where(assignments.c.assignment_id == row.assignment_id)
                .values(state="expired", holder_key=None, finished_at=now)
            )
            if not row.is_review:
                self._release_slot(conn, row.item_id)
        return len(lapsed)

    def _release_slot(self, conn: Connection, item_id: str, *, unsubmit: bool = False) -> None:
        taken = items.c.taken - 1
        submitted = items.c.submitted - (1 if unsubmit else 0)
        conn.execute(
            update(items)
            .where(items.c.item_id == item_id)
            .values(
                taken=taken,
                submitted=submitted,
                status=case(
                    (items.c.status.not_in(OPEN), items.c.status),
                    ((taken > 0) | (submitted > 0), "in_progress"),
                    else_="unlabeled",
                ),
            )
        )

    def get_many(self, assignment_ids: list[str]) -> list[AssignmentRecord]:
        """Assignments by id, in the given order, with their items (state as stored)."""
        if not assignment_ids:
            return []
        with self.engine.connect() as conn:
            rows = {
                r.assignment_id: _row_to_assignment(r)
                for r in conn.execute(
                    select(assignments).where(assignments.c.assignment_id.in_(assignment_ids))
                )
            }
            found = [rows[i] for i in assignment_ids if i in rows]
            for record in found:
                record.item = self.items.load(conn, record.project_id, record.item_id)
            _attach_suggestions(conn, found)
        return found

    def expire_leases(self, project_id: str) -> int:
        with write_transaction(self.engine) as conn:
            return self._expire(conn, project_id, self.clock())

    # ---- leases -------------------------------------------------------------------------

    def _load_assignment(
        self, conn: Connection, assignment_id: str, *, with_project: bool = False
    ) -> Any:
        """The assignment's row (locked on PostgreSQL); ``with_project`` adds its project's
        :data:`PROJECT_JOIN_COLUMNS` in the same statement."""
        if not assignment_id:
            raise InvalidArgument("assignment_id is empty", reason="EMPTY_ID")
        query = select(assignments).where(assignments.c.assignment_id == assignment_id)
        if with_project:
            query = query.add_columns(*PROJECT_JOIN_COLUMNS).join(
                projects, projects.c.project_id == assignments.c.project_id
            )
        if self._pg(conn):
            query = query.with_for_update(of=assignments)
        row = conn.execute(query).first()
        if row is None:
            raise NotFound(
                f"assignment {assignment_id!r} does not exist", reason="ASSIGNMENT_NOT_FOUND"
            )
        return row

    def _check_holder(self, row: Any, annotator: str, now: datetime) -> None:
        if row.annotator != annotator:
            raise PermissionDenied(
                f"assignment {row.assignment_id} belongs to another annotator",
                reason="NOT_ASSIGNEE",
            )
        state = row.state
        if state == "active" and aware(row.expire_at) <= now:  # type: ignore[operator]  # NOT NULL
            state = "expired"
        if state == "expired":
            raise FailedPrecondition(
                f"the lease of assignment {row.assignment_id} expired; request a new assignment",
                reason="LEASE_EXPIRED",
            )
        if state != "active":
            raise FailedPrecondition(
                f"assignment {row.assignment_id} is {state}",
                reason="ASSIGNMENT_CLOSED",
            )

    def renew(self, assignment_id: str, annotator: str) -> AssignmentRecord:
        with write_transaction(self.engine) as conn:
            row = self._load_assignment(conn, assignment_id)
            now = self.clock()
            self._check_holder(row, annotator, now)
            project = self.projects.load(conn, row.project_id)
            if project.archived:
                raise FailedPrecondition(
                    f"project {project.project_id} is archived", reason="ARCHIVED"
                )
            expire = now + timedelta(seconds=project.spec.assignment_ttl_s)
            conn.execute(
                update(assignments)
                .where(assignments.c.assignment_id == assignment_id)
                .values(expire_at=expire)
            )
            record = _row_to_assignment(row)
            record.expire_at = expire
            record.item = self.items.load(conn, record.project_id, record.item_id)
            _attach_suggestions(conn, [record])
        return record

    # ---- submit and skip ----------------------------------------------------------------

    def submit(
        self,
        assignment_id: str,
        annotator: str,
        value: Value | None,
        *,
        skip: bool = False,
        confidence: float = 0.0,
        duration_ms: int = 0,
        request_id: str = "",
    ) -> tuple[AnnotationRecord | None, str]:
        """Store an annotation (or a skip); returns it and the item's status after."""
        if not annotator:
            raise InvalidArgument("annotator is empty", reason="EMPTY_ANNOTATOR")
        check_confidence(confidence)
        if duration_ms < 0:
            raise InvalidArgument("duration_ms is negative", reason="OUT_OF_RANGE")
        if skip and value is not None:
            raise InvalidArgument("give value or skip, not both", reason="VALUE_AND_SKIP")
        with self._write() as conn:
            row = self._load_for_submit(conn, assignment_id)
            if row.annotator != annotator:
                self._check_holder(row, annotator, self.clock())
            if row.is_review:
                raise FailedPrecondition(
                    "a review assignment is answered with SubmitReview", reason="REVIEW_ASSIGNMENT"
                )
            replay = self._replay(conn, row, request_id, skip)
            if replay is not None:
                return replay
            now = self.clock()
            self._check_holder(row, annotator, now)
            project = project_from_joined(row)
            item = _joined_item(row)
            if skip:
                return None, self._skip(conn, project, row, item, now, request_id)
            value = validate_value(project.spec, item.content, value)
            return self._store(
                conn,
                project,
                row,
                item,
                value,
                confidence,
                duration_ms,
                request_id,
                now,
                who=_standing_of(row, row.annotator),
                escalated=bool(row.item_escalated),
            )

    def _load_for_submit(self, conn: Connection, assignment_id: str) -> Any:
        """The assignment with its project, its item, its annotator's gold standing and
        whether the item has an escalated correction entry, in one statement (the assignment
        and the item locked on PostgreSQL)."""
        if not assignment_id:
            raise InvalidArgument("assignment_id is empty", reason="EMPTY_ID")
        query = _submit_query(self._pg(conn))
        row = conn.execute(query, {"assignment_id": assignment_id}).first()
        if row is None:
            raise NotFound(
                f"assignment {assignment_id!r} does not exist", reason="ASSIGNMENT_NOT_FOUND"
            )
        return row

    def _replay(
        self, conn: Connection, row: Any, request_id: str, skip: bool
    ) -> tuple[AnnotationRecord | None, str] | None:
        """The first result again when a submit is retried with the same request_id."""
        state = row.state
        if state not in ("submitted", "skipped", "rejected"):
            return None
        same = bool(request_id) and row.request_id == request_id
        if not same:
            raise FailedPrecondition(
                f"assignment {row.assignment_id} was already {state}",
                reason="ALREADY_SUBMITTED",
            )
        status = conn.execute(
            select(items.c.status).where(items.c.item_id == row.item_id)
        ).scalar_one()
        if state == "skipped":
            return None, status
        ann = conn.execute(
            select(annotations_table).where(annotations_table.c.assignment_id == row.assignment_id)
        ).first()
        return (row_to_annotation(ann) if ann is not None else None), status

    def _lock_item(self, conn: Connection, item_id: str) -> ItemRecord:
        query = select(items).where(items.c.item_id == item_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        return row_to_item(conn.execute(query).one())

    def _skip(
        self,
        conn: Connection,
        project: Project,
        row: Any,
        item: ItemRecord,
        now: datetime,
        request_id: str,
    ) -> str:
        policy = project.spec.skip_policy
        keep_holder = policy != "requeue_for_me"
        conn.execute(
            update(assignments)
            .where(assignments.c.assignment_id == row.assignment_id)
            .values(
                state="skipped",
                finished_at=now,
                request_id=request_id or None,
                **({} if keep_holder else {"holder_key": None}),
            )
        )
        self._release_slot(conn, item.item_id)
        if policy == "ignore" and item.status in OPEN:
            conn.execute(
                update(items).where(items.c.item_id == item.item_id).values(status="skipped")
            )
        return conn.execute(
            select(items.c.status).where(items.c.item_id == item.item_id)
        ).scalar_one()

    def _store(
        self,
        conn: Connection,
        project: Project,
        row: Any,
        item: ItemRecord,
        value: Value,
        confidence: float,
        duration_ms: int,
        request_id: str,
        now: datetime,
        *,
        who: gold.Standing | None = None,
        escalated: bool | None = None,
    ) -> tuple[AnnotationRecord, str]:
        gold_correct = same_answer(value, item.gold_value) if item.gold_value else None
        record = AnnotationRecord(
            new_id("ann"),
            item.item_id,
            row.annotator,
            "human",
            value,
            confidence,
            "",
            duration_ms,
            now,
            row.assignment_id,
            gold_correct,
        )
        conn.execute(
            _INSERT_ANNOTATION,
            {
                "annotation_id": record.annotation_id,
                "project_id": project.project_id,
                "item_id": item.item_id,
                "assignment_id": record.assignment_id,
                "author": record.author,
                "source": "human",
                "value": json.dumps(to_json(value)),
                "confidence": confidence,
                "model_version": "",
                "duration_ms": duration_ms,
                "gold_correct": gold_correct,
                "request_id": request_id or None,
                "created_at": now,
            },
        )
        conn.execute(
            _SUBMIT_ASSIGNMENT,
            {
                "b_assignment_id": record.assignment_id,
                "b_finished_at": now,
                "b_request_id": request_id or None,
            },
        )
        self._mark_used(conn, project.project_id, value)
        submitted = conn.execute(_COUNT_SUBMIT, {"b_item_id": item.item_id}).scalar_one()
        status = item.status
        rounds = item.rounds
        known_escalated = escalated
        escalated = False
        if gold_correct is not None:
            who = gold.record_answer(conn, project.project_id, record.author, gold_correct)
            gold.check_annotator(
                conn,
                project,
                who,
                now,
                min_answers=self.min_gold_answers,
                min_accuracy=self.min_gold_accuracy,
            )
        elif status in OPEN:
            if who is None:
                who = gold.standing(conn, project.project_id, record.author)
            if who.low(self.min_gold_answers, self.min_gold_accuracy):
                outcome = gold.flag_submission(
                    conn, project, item, who, now, min_accuracy=self.min_gold_accuracy
                )
                rounds += outcome == "requeued"
                escalated = outcome == "escalated"
        needed = project.spec.overlap + rounds
        if item.gold_value is None and submitted >= needed and status in OPEN:
            if escalated:
                status = self._to_review(conn, item.item_id)
            else:
                status = self._complete(
                    conn, project, item, value, record.author, now, known_escalated
                )
        return record, status

    def _complete(
        self,
        conn: Connection,
        project: Project,
        item: ItemRecord,
        value: Value,
        author: str,
        now: datetime,
        escalated: bool | None = None,
    ) -> str:
        """Enough annotations: to review, straight to done (one annotator), or to consensus.
        ``escalated``: whether the item has an escalated entry, when the caller knows."""
        spec = project.spec
        values: dict[str, object] = {}
        if (
            spec.consensus == "review"
            or goes_to_review(item.item_id, spec.review_fraction)
            or (
                escalated
                if escalated is not None
                else self._escalated(conn, project.project_id, item.item_id)
            )
        ):
            values["status"] = "in_review"
        elif spec.overlap + item.rounds == 1:
            values.update(
                status="done",
                final_value=json.dumps(to_json(value)),
                final_source="human",
                decided_at=now,
            )
            append_label(
                conn, item, value, source="human", annotators=[author], agreement=None, now=now
            )
            consensus.resolve(conn, item, now, f"{author}'s label (single annotator)")
        else:
            return consensus.settle(conn, project, item, now, refit_every=self.ds_refit_every)
        conn.execute(update(items).where(items.c.item_id == item.item_id).values(**values))
        return str(values["status"])

    def _escalated(self, conn: Connection, project_id: str, item_id: str) -> bool:
        """An entry of the item was escalated: a reviewer decides it, not the votes."""
        return (
            conn.execute(
                select(corrections.c.reason).where(
                    (corrections.c.project_id == project_id)
                    & (corrections.c.item_id == item_id)
                    & (corrections.c.resolution == "escalated")
                )
            ).first()
            is not None
        )

    def _to_review(self, conn: Connection, item_id: str) -> str:
        conn.execute(update(items).where(items.c.item_id == item_id).values(status="in_review"))
        return "in_review"

    def _mark_used(self, conn: Connection, project_id: str, value: Value) -> None:
        used = labels_used(value)
        if not used:
            return
        keys = [(project_id, k, n) for k, n in sorted(used)]
        if all(key in self._used for key in keys):
            return  # stored by a committed transaction: rows of label_usage are never removed
        rows = [{"project_id": p, "kind": k, "label": n} for p, k, n in keys]
        dialect = postgresql if self._pg(conn) else sqlite
        conn.execute(dialect.insert(label_usage).values(rows).on_conflict_do_nothing())
        pending = getattr(self._local, "used", None)
        if pending is not None:
            pending.extend(keys)

    # ---- review -------------------------------------------------------------------------

    def review(
        self,
        annotation_id: str,
        reviewer: str,
        decision: str,
        correction: Value | None = None,
        comment: str = "",
        request_id: str = "",
    ) -> tuple[AnnotationRecord, str]:
        if not annotation_id:
            raise InvalidArgument("annotation_id is empty", reason="EMPTY_ID")
        if not reviewer:
            raise InvalidArgument("reviewer is empty", reason="EMPTY_ANNOTATOR")
        if decision not in REVIEW_DECISIONS:
            raise InvalidArgument(
                "decision must be ACCEPT, REJECT or CORRECT", reason="MISSING_DECISION"
            )
        if decision == "correct" and correction is None:
            raise InvalidArgument("correction is unset (CORRECT needs it)", reason="MISSING_VALUE")
        if decision != "correct" and correction is not None:
            raise InvalidArgument("correction is only for CORRECT", reason="UNEXPECTED_VALUE")
        with self._write() as conn:
            query = select(annotations_table).where(
                annotations_table.c.annotation_id == annotation_id
            )
            if self._pg(conn):
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None:
                raise NotFound(
                    f"annotation {annotation_id!r} does not exist", reason="ANNOTATION_NOT_FOUND"
                )
            if row.review_decision is not None:
                if request_id and row.review_request_id == request_id:
                    status = conn.execute(
                        select(items.c.status).where(items.c.item_id == row.item_id)
                    ).scalar_one()
                    return row_to_annotation(row), status
                raise FailedPrecondition(
                    f"annotation {annotation_id} was already reviewed", reason="ALREADY_REVIEWED"
                )
            if row.source != "human":
                raise FailedPrecondition(
                    f"annotation {annotation_id} is a {row.source} annotation; only human "
                    "annotations are reviewed",
                    reason="NOT_REVIEWABLE",
                )
            if row.author == reviewer:
                raise FailedPrecondition(
                    "a reviewer cannot review their own annotation", reason="SELF_REVIEW"
                )
            project = self.projects.load(conn, row.project_id)
            item = self._lock_item(conn, row.item_id)
            now = self.clock()
            if correction is not None:
                correction = validate_value(project.spec, item.content, correction, "correction")
                self._mark_used(conn, project.project_id, correction)
            conn.execute(
                update(annotations_table)
                .where(annotations_table.c.annotation_id == annotation_id)
                .values(
                    review_decision=decision,
                    reviewer=reviewer,
                    review_value=json.dumps(to_json(correction)) if correction else None,
                    review_comment=comment,
                    review_request_id=request_id or None,
                    reviewed_at=now,
                )
            )
            status = self._apply_review(conn, item, row, reviewer, decision, correction, now)
            conn.execute(
                update(assignments)
                .where(
                    (assignments.c.item_id == item.item_id)
                    & (assignments.c.annotator == reviewer)
                    & assignments.c.is_review
                    & (assignments.c.state == "active")
                )
                .values(state="submitted", holder_key=None, finished_at=now)
            )
            updated = conn.execute(
                select(annotations_table).where(annotations_table.c.annotation_id == annotation_id)
            ).one()
        return row_to_annotation(updated), status

    def _apply_review(
        self,
        conn: Connection,
        item: ItemRecord,
        row: Any,
        reviewer: str,
        decision: str,
        correction: Value | None,
        now: datetime,
    ) -> str:
        if decision == "reject":
            # Back to the queue for someone else: the rejected annotator keeps the holder
            # key, so they never get the item again.
            conn.execute(
                update(assignments)
                .where(assignments.c.assignment_id == row.assignment_id)
                .values(state="rejected")
            )
            conn.execute(
                update(items)
                .where(items.c.item_id == item.item_id)
                .values(status="in_progress", final_value=None, final_source=None, decided_at=None)
            )
            self._release_slot(conn, item.item_id, unsubmit=True)
            return conn.execute(
                select(items.c.status).where(items.c.item_id == item.item_id)
            ).scalar_one()
        if decision == "correct":
            assert correction is not None
            final, source, people = correction, "review", [reviewer]
            by = f"review: {reviewer} corrected {row.author}'s label to {vote_key(final)!r}"
        else:
            final = from_json(json.loads(row.value))
            source, people = "human", [row.author, reviewer]
            by = f"review: {reviewer} accepted {row.author}'s label {vote_key(final)!r}"
        consensus.resolve(conn, item, now, by)
        append_label(conn, item, final, source=source, annotators=people, agreement=None, now=now)
        conn.execute(
            update(items)
            .where(items.c.item_id == item.item_id)
            .values(
                status="done",
                final_value=json.dumps(to_json(final)),
                final_source=source,
                decided_at=now,
            )
        )
        return "done"

    # ---- listing and stats --------------------------------------------------------------

    def list(
        self,
        project_id: str,
        annotator: str,
        include_submitted: bool,
        offset: int,
        limit: int,
    ) -> tuple[builtins.list[AssignmentRecord], bool]:
        now = self.clock()
        with self.engine.connect() as conn:
            self.projects.load(conn, project_id)
            query = select(assignments).where(assignments.c.project_id == project_id)
            if annotator:
                query = query.where(assignments.c.annotator == annotator)
            if not include_submitted:
                query = query.where(
                    (assignments.c.state == "active") & (assignments.c.expire_at > now)
                )
            rows = conn.execute(
                query.order_by(assignments.c.created_at, assignments.c.assignment_id)
                .offset(offset)
                .limit(limit + 1)
            ).all()
            found = [_row_to_assignment(r) for r in rows[:limit]]
            for record in found:
                if record.state == "active" and record.expire_at <= now:
                    record.state = "expired"
                record.item = self.items.load(conn, project_id, record.item_id)
            _attach_suggestions(conn, found)
        return found, len(rows) > limit

    def annotator_stats(
        self, project_id: str, annotator: str = ""
    ) -> builtins.list[AnnotatorStats]:
        with self.engine.connect() as conn:
            self.projects.load(conn, project_id)
            query = select(
                annotations_table.c.author,
                annotations_table.c.duration_ms,
                annotations_table.c.gold_correct,
            ).where(
                (annotations_table.c.project_id == project_id)
                & (annotations_table.c.source == "human")
            )
            skips = select(assignments.c.annotator, func.count()).where(
                and_(
                    assignments.c.project_id == project_id,
                    assignments.c.state == "skipped",
                    ~assignments.c.is_review,
                )
            )
            if annotator:
                query = query.where(annotations_table.c.author == annotator)
                skips = skips.where(assignments.c.annotator == annotator)
            rows = conn.execute(query).all()
            skipped: dict[str, int] = dict(
                conn.execute(skips.group_by(assignments.c.annotator)).all()
            )
        stats: dict[str, AnnotatorStats] = {}
        durations: dict[str, list[int]] = {}
        for author, duration, is_correct in rows:
            entry = stats.setdefault(author, AnnotatorStats(author))
            entry.annotations += 1
            durations.setdefault(author, []).append(duration)
            if is_correct is not None:
                entry.gold_answered += 1
                entry.gold_correct += int(bool(is_correct))
        for who, n in skipped.items():
            stats.setdefault(who, AnnotatorStats(who)).skipped = n
        for who, values in durations.items():
            stats[who].median_duration_ms = int(statistics.median(values))
        return [stats[k] for k in sorted(stats)]
