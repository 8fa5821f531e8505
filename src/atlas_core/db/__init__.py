"""Metadata database: engines for SQLite or PostgreSQL, transaction scopes, migrations."""

from __future__ import annotations

from atlas_core.db._engine import (
    check_connection,
    create_engine_from_settings,
    database_unavailable,
    mask_url,
    session_scope,
    write_transaction,
)
from atlas_core.db._idempotency import IdempotencyStore, idempotency_table
from atlas_core.db._migrations import (
    AppliedMigration,
    Migration,
    MigrationSet,
    apply_migrations,
    current_versions,
    schema_versions,
)
from atlas_core.db._paging import fetch_page

__all__ = [
    "AppliedMigration",
    "IdempotencyStore",
    "Migration",
    "MigrationSet",
    "apply_migrations",
    "check_connection",
    "create_engine_from_settings",
    "current_versions",
    "database_unavailable",
    "fetch_page",
    "idempotency_table",
    "mask_url",
    "schema_versions",
    "session_scope",
    "write_transaction",
]
