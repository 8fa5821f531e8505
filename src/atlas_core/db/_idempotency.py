"""Idempotent mutating RPCs: the first result of (operation, request_id) is stored and a
retry gets it back instead of doing the work twice."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.exc import IntegrityError

from atlas_core.db._engine import write_transaction


def idempotency_table(metadata: MetaData, prefix: str) -> Table:
    """The table of one service (``<prefix>_idempotency``), to create in its migrations."""
    return Table(
        f"{prefix}_idempotency",
        metadata,
        Column("request_id", String(256), nullable=False),
        Column("operation", String(64), nullable=False),
        Column("result", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("request_id", "operation", name=f"uq_{prefix}_idempotency"),
    )


class IdempotencyStore:
    """Thread-safe; an empty request_id means "not idempotent" (nothing stored)."""

    def __init__(self, engine: Engine, table: Table) -> None:
        self._engine = engine
        self._table = table

    def recall(self, operation: str, request_id: str) -> dict[str, Any] | None:
        if not request_id:
            return None
        t = self._table
        with self._engine.connect() as conn:
            raw = conn.execute(
                select(t.c.result).where(
                    (t.c.request_id == request_id) & (t.c.operation == operation)
                )
            ).scalar()
        return json.loads(raw) if raw is not None else None

    def remember(self, operation: str, request_id: str, result: dict[str, Any]) -> None:
        if not request_id:
            return
        try:
            with write_transaction(self._engine) as conn:
                conn.execute(
                    self._table.insert().values(
                        request_id=request_id,
                        operation=operation,
                        result=json.dumps(result),
                        created_at=datetime.now(timezone.utc),
                    )
                )
        except IntegrityError:
            pass  # a concurrent retry stored the same operation first
