"""One page of a SELECT plus the total the whole query matches (``PageResponse.total_size``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, Select, func, select


def fetch_page(
    conn: Connection, query: Select[Any], offset: int, limit: int
) -> tuple[Sequence[Row[Any]], int]:
    """Rows ``offset``..``offset + limit`` of ``query`` (already ordered) and its row count.

    Both statements run on ``conn``, so inside one transaction they agree with each other.
    """
    total = conn.execute(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = conn.execute(query.offset(offset).limit(limit)).all()
    return rows, int(total.scalar() or 0)
