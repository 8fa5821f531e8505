"""A tiny versioned migration scheme (the part of Alembic the platform needs).

Each component (``jobs``, ``registry``, ...) owns a :class:`MigrationSet`: numbered upgrade
steps that run in order, once, inside one transaction, and are recorded in the table
``atlas_schema_versions``. Two processes migrating the same database at once serialize on a
lock (a PostgreSQL advisory lock; SQLite's single writer lock via ``BEGIN IMMEDIATE``), so the
second one finds the work done. A database that is newer than the code is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    func,
    select,
    text,
)
from sqlalchemy.engine import Connection

from atlas_core.db._engine import check_connection, mask_url, write_transaction
from atlas_core.errors import FailedPrecondition, InvalidArgument

_metadata = MetaData()

schema_versions = Table(
    "atlas_schema_versions",
    _metadata,
    Column("component", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("description", String(255), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("component", "version"),
)


@dataclass(frozen=True)
class Migration:
    """One schema step. ``upgrade`` runs inside the migration transaction; it must not commit.

    Once released, a migration never changes: later schema changes are new migrations, so
    define tables inside ``upgrade`` as they were at that version.
    """

    version: int
    description: str
    upgrade: Callable[[Connection], None]


@dataclass(frozen=True)
class MigrationSet:
    """The ordered migrations of one component. Versions are positive and unique."""

    component: str
    migrations: Sequence[Migration] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.migrations, key=lambda m: m.version))
        versions = [m.version for m in ordered]
        if any(v < 1 for v in versions) or len(set(versions)) != len(versions):
            raise InvalidArgument(
                f"migration set {self.component!r} needs unique positive versions, got {versions}"
            )
        object.__setattr__(self, "migrations", ordered)

    @property
    def latest(self) -> int:
        """The newest version this code knows (0 when the set is empty)."""
        return self.migrations[-1].version if self.migrations else 0


@dataclass(frozen=True)
class AppliedMigration:
    component: str
    version: int
    description: str


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        # Transaction-scoped, released at commit/rollback; keyed by schema so separate schemas
        # (one per test, one per tenant) do not wait for each other.
        key = "hashtext('atlas_schema_versions:' || current_schema())"
        conn.execute(text(f"SELECT pg_advisory_xact_lock({key})"))
    # SQLite: write_transaction already began with BEGIN IMMEDIATE, the database-wide write lock.


def _current(conn: Connection, component: str) -> int:
    stmt = select(func.max(schema_versions.c.version)).where(
        schema_versions.c.component == component
    )
    return conn.execute(stmt).scalar() or 0


def current_versions(engine: Engine) -> dict[str, int]:
    """Component -> applied version, read from ``atlas_schema_versions`` ({} when absent)."""
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, schema_versions.name):
            return {}
        rows = conn.execute(
            select(schema_versions.c.component, func.max(schema_versions.c.version)).group_by(
                schema_versions.c.component
            )
        )
        return {component: version for component, version in rows}


def apply_migrations(engine: Engine, *sets: MigrationSet) -> list[AppliedMigration]:
    """Bring every component in ``sets`` to its latest version; returns what was applied now.

    Idempotent and safe to run from several processes at once. All pending steps of all sets
    run in one transaction: if one fails, none is recorded (both backends have transactional
    DDL).

    Raises:
        Unavailable: the database cannot be reached.
        FailedPrecondition: the database holds a newer version of a component than this code
            knows (reason ``SCHEMA_TOO_NEW``); nothing is changed.
        InvalidArgument: the same component is passed twice.
    """
    components = [s.component for s in sets]
    if len(set(components)) != len(components):
        raise InvalidArgument(f"migration sets name a component twice: {components}")
    check_connection(engine)
    applied: list[AppliedMigration] = []
    with write_transaction(engine) as conn:
        _lock(conn)
        _metadata.create_all(conn, checkfirst=True)
        current = {s.component: _current(conn, s.component) for s in sets}
        for migration_set in sets:
            have = current[migration_set.component]
            if have > migration_set.latest:
                raise FailedPrecondition(
                    f"database {mask_url(engine.url)} has schema version {have} of component "
                    f"{migration_set.component!r}, but this code knows only up to "
                    f"{migration_set.latest}: upgrade ATLAS before using this database",
                    reason="SCHEMA_TOO_NEW",
                    metadata={"component": migration_set.component, "db_version": str(have)},
                )
        for migration_set in sets:
            for migration in migration_set.migrations:
                if migration.version <= current[migration_set.component]:
                    continue
                migration.upgrade(conn)
                conn.execute(
                    schema_versions.insert().values(
                        component=migration_set.component,
                        version=migration.version,
                        description=migration.description,
                        applied_at=datetime.now(timezone.utc),
                    )
                )
                applied.append(
                    AppliedMigration(
                        migration_set.component, migration.version, migration.description
                    )
                )
    return applied
