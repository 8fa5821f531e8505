"""All SQL of the job runner. Every public method is one transaction and is thread-safe.

State changes and the event that records them commit together, so a reader that sees a
finished job also sees its terminal event. Writes that depend on what they read use
:func:`~atlas_core.db.write_transaction` (SQLite write lock taken at BEGIN) and row locks on
PostgreSQL; supervisor writes are conditional on ``owner`` and ``state`` so a runner never
overwrites a job another runner has taken over.
"""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, or_, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from atlas_core.db import write_transaction
from atlas_core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from atlas_core.jobs._models import EventType, JobEvent, JobRecord, JobState
from atlas_core.jobs._schema import job_events, jobs

MAX_PAGE_SIZE = 1000


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything is stored in UTC.
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _to_record(row: Row[Any]) -> JobRecord:
    m = row._mapping
    return JobRecord(
        id=m["id"],
        kind=m["kind"],
        state=JobState(m["state"]),
        spec=m["spec"],
        progress=m["progress"],
        message=m["message"],
        result=m["result"],
        error=m["error"],
        attempts=m["attempts"],
        resumable=bool(m["resumable"]),
        request_id=m["request_id"],
        owner=m["owner"],
        cancel_requested=bool(m["cancel_requested"]),
        checkpoint=m["checkpoint"],
        created_at=_utc(m["created_at"]),  # type: ignore[arg-type]  # NOT NULL column
        started_at=_utc(m["started_at"]),
        finished_at=_utc(m["finished_at"]),
        heartbeat_at=_utc(m["heartbeat_at"]),
    )


def _append_events(
    conn: Connection, job_id: str, events: Sequence[tuple[EventType, dict[str, Any]]], now: datetime
) -> None:
    if not events:
        return
    # The UPDATE takes the row lock, so concurrent writers of one job's events queue up here.
    conn.execute(
        update(jobs).where(jobs.c.id == job_id).values(event_seq=jobs.c.event_seq + len(events))
    )
    last = conn.execute(select(jobs.c.event_seq).where(jobs.c.id == job_id)).scalar_one()
    first = last - len(events) + 1
    conn.execute(
        job_events.insert(),
        [
            {"job_id": job_id, "seq": first + i, "time": now, "type": t.value, "payload": p}
            for i, (t, p) in enumerate(events)
        ],
    )


def _canonical(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True)


class JobStore:
    """Persistence of jobs and job events on one engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # ---- API side -------------------------------------------------------------------------

    def submit(
        self, kind: str, spec: dict[str, Any], *, request_id: str | None, resumable: bool
    ) -> str:
        """Insert a QUEUED job, or return the job an earlier call with ``request_id`` created.

        Raises:
            AlreadyExists: ``request_id`` was used for a job of another kind or spec.
        """
        try:
            with write_transaction(self._engine) as conn:
                if request_id is not None:
                    existing = self._by_request_id(conn, request_id)
                    if existing is not None:
                        return self._same_job(existing, kind, spec)
                job_id = uuid.uuid4().hex
                now = utcnow()
                conn.execute(
                    jobs.insert().values(
                        id=job_id,
                        kind=kind,
                        state=JobState.QUEUED.value,
                        spec=spec,
                        progress=0.0,
                        message="queued",
                        attempts=0,
                        resumable=resumable,
                        request_id=request_id,
                        cancel_requested=False,
                        event_seq=0,
                        created_at=now,
                    )
                )
                payload = {"kind": kind, "resumable": resumable, "request_id": request_id}
                _append_events(conn, job_id, [(EventType.SUBMITTED, payload)], now)
                return job_id
        except IntegrityError:
            # A concurrent submit with the same request_id won the insert (PostgreSQL).
            if request_id is None:
                raise
            with self._engine.connect() as conn:
                existing = self._by_request_id(conn, request_id)
            if existing is None:
                raise
            return self._same_job(existing, kind, spec)

    @staticmethod
    def _by_request_id(conn: Connection, request_id: str) -> Any:
        stmt = select(jobs.c.id, jobs.c.kind, jobs.c.spec).where(jobs.c.request_id == request_id)
        return conn.execute(stmt).first()

    @staticmethod
    def _same_job(existing: Row[Any], kind: str, spec: dict[str, Any]) -> str:
        if existing.kind != kind or _canonical(existing.spec) != _canonical(spec):
            raise AlreadyExists(
                f"request_id was already used for job {existing.id} with a different "
                "kind or spec; use a new request_id for a new job",
                reason="REQUEST_ID_REUSED",
                metadata={"job_id": existing.id},
            )
        return str(existing.id)

    def get(self, job_id: str) -> JobRecord:
        with self._engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        if row is None:
            raise NotFound(f"job {job_id!r} does not exist", reason="JOB_NOT_FOUND")
        return _to_record(row)

    def list(
        self, *, kind: str | None, state: JobState | None, limit: int, offset: int
    ) -> builtins.list[JobRecord]:
        if not 1 <= limit <= MAX_PAGE_SIZE or offset < 0:
            raise InvalidArgument(f"limit must be 1..{MAX_PAGE_SIZE} and offset >= 0")
        stmt = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id)
        stmt = stmt.limit(limit).offset(offset)
        if kind is not None:
            stmt = stmt.where(jobs.c.kind == kind)
        if state is not None:
            stmt = stmt.where(jobs.c.state == JobState(state).value)
        with self._engine.connect() as conn:
            return [_to_record(row) for row in conn.execute(stmt)]

    def events(self, job_id: str, after_seq: int = 0) -> builtins.list[JobEvent]:
        stmt = (
            select(job_events)
            .where(job_events.c.job_id == job_id, job_events.c.seq > after_seq)
            .order_by(job_events.c.seq)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            self.get(job_id)  # NotFound for an unknown job, [] for a quiet one
        return [
            # r.time is a NOT NULL column, so _utc never returns None here
            JobEvent(r.job_id, r.seq, _utc(r.time), EventType(r.type), r.payload)  # type: ignore[arg-type]
            for r in rows
        ]

    def request_cancel(self, job_id: str) -> JobRecord:
        """QUEUED -> CANCELLED at once; RUNNING -> cancel_requested (the supervisor acts).

        Raises:
            NotFound: no such job.
            FailedPrecondition: the job already finished (reason ``JOB_FINISHED``).
        """
        now = utcnow()
        with write_transaction(self._engine) as conn:
            row = conn.execute(
                select(jobs.c.state, jobs.c.cancel_requested)
                .where(jobs.c.id == job_id)
                .with_for_update()
            ).first()
            if row is None:
                raise NotFound(f"job {job_id!r} does not exist", reason="JOB_NOT_FOUND")
            state = JobState(row.state)
            if state is JobState.QUEUED:
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id)
                    .values(
                        state=JobState.CANCELLED.value,
                        finished_at=now,
                        message="cancelled before it started",
                        cancel_requested=True,
                    )
                )
                _append_events(conn, job_id, [(EventType.CANCELLED, {"while": "queued"})], now)
            elif state is JobState.RUNNING:
                if not row.cancel_requested:
                    conn.execute(
                        update(jobs).where(jobs.c.id == job_id).values(cancel_requested=True)
                    )
                    _append_events(conn, job_id, [(EventType.CANCEL_REQUESTED, {})], now)
            else:
                raise FailedPrecondition(
                    f"job {job_id} already finished ({state.value}); nothing to cancel",
                    reason="JOB_FINISHED",
                    metadata={"state": state.value},
                )
        return self.get(job_id)

    # ---- supervisor side ------------------------------------------------------------------

    def claim(self, kinds: Iterable[str], owner: str, limit: int) -> builtins.list[JobRecord]:
        """Move up to ``limit`` oldest QUEUED jobs of ``kinds`` to RUNNING under ``owner``."""
        kinds = list(kinds)
        if limit <= 0 or not kinds:
            return []
        now = utcnow()
        claimed: builtins.list[str] = []
        with write_transaction(self._engine) as conn:
            rows = conn.execute(
                select(jobs.c.id, jobs.c.attempts)
                .where(jobs.c.state == JobState.QUEUED.value, jobs.c.kind.in_(kinds))
                .order_by(jobs.c.created_at, jobs.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                attempt = row.attempts + 1
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id == row.id)
                    .values(
                        state=JobState.RUNNING.value,
                        owner=owner,
                        attempts=attempt,
                        started_at=now,
                        heartbeat_at=now,
                        finished_at=None,
                        message="running",
                    )
                )
                payload = {"attempt": attempt, "runner": owner}
                _append_events(conn, row.id, [(EventType.STARTED, payload)], now)
                claimed.append(row.id)
        return [self.get(job_id) for job_id in claimed]

    def record(
        self, job_id: str, owner: str, updates: Sequence[tuple[EventType, dict[str, Any]]]
    ) -> bool:
        """Persist progress/checkpoint messages of a running job; False if no longer ours."""
        now = utcnow()
        values: dict[str, Any] = {"heartbeat_at": now}
        for event_type, payload in updates:
            if event_type is EventType.PROGRESS:
                if payload.get("progress") is not None:
                    values["progress"] = payload["progress"]
                values["message"] = payload.get("message", "")
            elif event_type is EventType.CHECKPOINT:
                values["checkpoint"] = payload
        with write_transaction(self._engine) as conn:
            mine = conn.execute(
                update(jobs)
                .where(
                    jobs.c.id == job_id,
                    jobs.c.owner == owner,
                    jobs.c.state == JobState.RUNNING.value,
                )
                .values(**values)
            ).rowcount
            if mine:
                _append_events(conn, job_id, updates, now)
        return bool(mine)

    def finish(
        self,
        job_id: str,
        owner: str,
        state: JobState,
        *,
        message: str,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> bool:
        """RUNNING -> a terminal ``state`` with its event; False if the job is no longer ours."""
        now = utcnow()
        values: dict[str, Any] = {
            "state": state.value,
            "finished_at": now,
            "message": message,
            "result": result,
            "error": error,
        }
        if state is JobState.SUCCEEDED:
            values["progress"] = 1.0
        event = {
            JobState.SUCCEEDED: EventType.SUCCEEDED,
            JobState.FAILED: EventType.FAILED,
            JobState.CANCELLED: EventType.CANCELLED,
        }[state]
        with write_transaction(self._engine) as conn:
            mine = conn.execute(
                update(jobs)
                .where(
                    jobs.c.id == job_id,
                    jobs.c.owner == owner,
                    jobs.c.state == JobState.RUNNING.value,
                )
                .values(**values)
            ).rowcount
            if mine:
                body = {"message": message, **(payload or {})}
                if error:
                    body["error"] = error
                _append_events(conn, job_id, [(event, body)], now)
        return bool(mine)

    def heartbeat(self, owner: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.owner == owner, jobs.c.state == JobState.RUNNING.value)
                .values(heartbeat_at=utcnow())
            )

    def cancel_requested_ids(self, owner: str) -> set[str]:
        stmt = select(jobs.c.id).where(
            jobs.c.owner == owner,
            jobs.c.state == JobState.RUNNING.value,
            jobs.c.cancel_requested.is_(True),
        )
        with self._engine.connect() as conn:
            return set(conn.execute(stmt).scalars())

    def interrupt(
        self,
        *,
        reason: str,
        owner: str | None = None,
        stale_before: datetime | None = None,
        job_ids: Sequence[str] | None = None,
    ) -> dict[str, JobState]:
        """Resolve RUNNING jobs whose runner is gone: owned by ``owner`` or with a heartbeat
        older than ``stale_before`` (optionally only ``job_ids``). Each gets an INTERRUPTED
        event, then goes back to QUEUED if resumable or to FAILED with ``reason``.

        Returns:
            job id -> the state it was moved to.
        """
        who = []
        if owner is not None:
            who.append(jobs.c.owner == owner)
        if stale_before is not None:
            who += [jobs.c.heartbeat_at < stale_before, jobs.c.heartbeat_at.is_(None)]
        if not who:
            return {}
        stmt = select(
            jobs.c.id, jobs.c.resumable, jobs.c.owner, jobs.c.attempts, jobs.c.cancel_requested
        ).where(jobs.c.state == JobState.RUNNING.value, or_(*who))
        if job_ids is not None:
            stmt = stmt.where(jobs.c.id.in_(list(job_ids)))
        now = utcnow()
        moved: dict[str, JobState] = {}
        with write_transaction(self._engine) as conn:
            for row in conn.execute(stmt.with_for_update(skip_locked=True)).all():
                moved[row.id] = self._interrupt_row(conn, row, reason, now)
        return moved

    @staticmethod
    def _interrupt_row(conn: Connection, row: Any, reason: str, now: datetime) -> JobState:
        interrupted = (
            EventType.INTERRUPTED,
            {"reason": reason, "runner": row.owner, "attempt": row.attempts},
        )
        where = jobs.c.id == row.id
        if row.cancel_requested:
            # Someone asked to stop it before its runner vanished: honour that, do not resume.
            message = f"{reason}; cancelled as requested"
            conn.execute(
                update(jobs)
                .where(where)
                .values(
                    state=JobState.CANCELLED.value,
                    finished_at=now,
                    message=message,
                )
            )
            cancelled = (EventType.CANCELLED, {"message": message})
            _append_events(conn, row.id, [interrupted, cancelled], now)
            return JobState.CANCELLED
        if row.resumable:
            conn.execute(
                update(jobs)
                .where(where)
                .values(
                    state=JobState.QUEUED.value,
                    owner=None,
                    heartbeat_at=None,
                    message=f"{reason}; re-queued to resume from its last checkpoint",
                )
            )
            requeued = (EventType.REQUEUED, {"next_attempt": row.attempts + 1})
            _append_events(conn, row.id, [interrupted, requeued], now)
            return JobState.QUEUED
        conn.execute(
            update(jobs)
            .where(where)
            .values(
                state=JobState.FAILED.value,
                finished_at=now,
                message=reason,
                error=reason,
            )
        )
        failed = (EventType.FAILED, {"message": reason, "error": reason})
        _append_events(conn, row.id, [interrupted, failed], now)
        return JobState.FAILED
