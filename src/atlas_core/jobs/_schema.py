"""Tables of the job runner and their migrations (component ``jobs``)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Connection

from atlas_core.db import Migration, MigrationSet


def _define_v1(metadata: MetaData) -> tuple[Table, Table]:
    jobs = Table(
        "jobs",
        metadata,
        Column("id", String(64), primary_key=True),
        Column("kind", String(128), nullable=False),
        Column("state", String(16), nullable=False),
        Column("spec", JSON(none_as_null=True), nullable=False),
        Column("progress", Float, nullable=False, default=0.0),
        Column("message", Text, nullable=False, default=""),
        Column("result", JSON(none_as_null=True)),
        Column("error", Text),
        Column("attempts", Integer, nullable=False, default=0),
        Column("resumable", Boolean, nullable=False, default=False),
        Column("request_id", String(255), unique=True),
        Column("owner", String(255)),
        Column("cancel_requested", Boolean, nullable=False, default=False),
        Column("checkpoint", JSON(none_as_null=True)),
        # Last event sequence number: bumping it locks the row, which orders events per job.
        Column("event_seq", Integer, nullable=False, default=0),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("started_at", DateTime(timezone=True)),
        Column("finished_at", DateTime(timezone=True)),
        Column("heartbeat_at", DateTime(timezone=True)),
        Index("ix_jobs_state_created", "state", "created_at"),
        Index("ix_jobs_owner_state", "owner", "state"),
    )
    job_events = Table(
        "job_events",
        metadata,
        Column("job_id", String(64), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        Column("seq", Integer, nullable=False),
        Column("time", DateTime(timezone=True), nullable=False),
        Column("type", String(32), nullable=False),
        Column("payload", JSON(none_as_null=True), nullable=False),
        PrimaryKeyConstraint("job_id", "seq"),
    )
    return jobs, job_events


def _create_v1(conn: Connection) -> None:
    # A private MetaData: v1 stays what it was even after the live tables below evolve.
    metadata = MetaData()
    _define_v1(metadata)
    metadata.create_all(conn)


metadata = MetaData()
# The live schema the store queries. When a migration changes it, update this definition and
# keep the older migrations' own definitions unchanged.
jobs, job_events = _define_v1(metadata)

JOBS_MIGRATIONS = MigrationSet(
    "jobs",
    [Migration(1, "jobs and job_events tables", _create_v1)],
)
