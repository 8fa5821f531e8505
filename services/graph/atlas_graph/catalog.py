"""Graphs and partitionings registered in the metadata DB.

Records are plain JSON-ready dicts (the proto shapes in snake_case); the range boundaries of
every partitioning also get their own rows (``graph_partition_ranges``) so an id lookup reads
O(P) numbers. Registration happens last, after every artifact is uploaded: a failed or
cancelled job never leaves a visible half graph or partitioning.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select

from atlas_core.db import write_transaction
from atlas_core.errors import NotFound
from atlas_graph.tables import graphs, partition_ranges, partitionings


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


class GraphCatalog:
    """Thread-safe (each call uses its own connection)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ---- graphs -----------------------------------------------------------------------------

    def add_graph(self, record: dict[str, Any]) -> dict[str, Any]:
        record = {**record, "create_time": _now().isoformat()}
        with write_transaction(self.engine) as conn:
            conn.execute(
                insert(graphs).values(
                    graph_id=record["graph_id"],
                    name=record["name"],
                    num_nodes=record["num_nodes"],
                    num_edges=record["num_edges"],
                    body=json.dumps(record),
                    created_at=_now(),
                )
            )
        return record

    def get_graph(self, graph_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            body = conn.execute(select(graphs.c.body).where(graphs.c.graph_id == graph_id)).scalar()
        if body is None:
            raise NotFound(f"graph '{graph_id}' does not exist", reason="GRAPH_NOT_FOUND")
        return json.loads(body)

    def list_graphs(
        self, name_prefix: str, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of graphs, newest first, and the total number matching."""
        query = select(graphs.c.body).order_by(graphs.c.created_at.desc(), graphs.c.graph_id.desc())
        count = select(func.count()).select_from(graphs)
        if name_prefix:
            matches = graphs.c.name.startswith(name_prefix, autoescape=True)
            query, count = query.where(matches), count.where(matches)
        with self.engine.connect() as conn:
            rows = conn.execute(query.offset(offset).limit(limit)).scalars().all()
            total = int(conn.execute(count).scalar() or 0)
        return [json.loads(r) for r in rows], total

    def delete_graph(self, graph_id: str) -> int:
        self.get_graph(graph_id)
        with write_transaction(self.engine) as conn:
            ids = (
                conn.execute(
                    select(partitionings.c.partitioning_id).where(
                        partitionings.c.graph_id == graph_id
                    )
                )
                .scalars()
                .all()
            )
            if ids:
                conn.execute(
                    delete(partition_ranges).where(partition_ranges.c.partitioning_id.in_(ids))
                )
            conn.execute(delete(partitionings).where(partitionings.c.graph_id == graph_id))
            conn.execute(delete(graphs).where(graphs.c.graph_id == graph_id))
        return len(ids)

    # ---- partitionings ------------------------------------------------------------------------

    def add_partitioning(self, record: dict[str, Any]) -> dict[str, Any]:
        record = {**record, "create_time": _now().isoformat()}
        rows = [
            {
                "partitioning_id": record["partitioning_id"],
                "kind": kind,
                "part": p,
                "start_id": b[p],
                "end_id": b[p + 1],
            }
            for kind, b in (
                ("node", record["node_boundaries"]),
                ("edge", record["edge_boundaries"]),
            )
            for p in range(len(b) - 1)
        ]
        with write_transaction(self.engine) as conn:
            conn.execute(
                insert(partitionings).values(
                    partitioning_id=record["partitioning_id"],
                    graph_id=record["graph_id"],
                    num_partitions=len(record["partitions"]),
                    body=json.dumps(record),
                    created_at=_now(),
                )
            )
            conn.execute(insert(partition_ranges), rows)
        return record

    def get_partitioning(self, graph_id: str, partitioning_id: str) -> dict[str, Any]:
        self.get_graph(graph_id)
        with self.engine.connect() as conn:
            body = conn.execute(
                select(partitionings.c.body).where(
                    (partitionings.c.partitioning_id == partitioning_id)
                    & (partitionings.c.graph_id == graph_id)
                )
            ).scalar()
        if body is None:
            raise NotFound(
                f"partitioning '{partitioning_id}' of graph '{graph_id}' does not exist",
                reason="PARTITIONING_NOT_FOUND",
            )
        return json.loads(body)

    def boundaries(self, partitioning_id: str, kind: str) -> list[int]:
        """The registered range boundaries (P+1 values) of one kind."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(partition_ranges.c.start_id, partition_ranges.c.end_id)
                .where(
                    (partition_ranges.c.partitioning_id == partitioning_id)
                    & (partition_ranges.c.kind == kind)
                )
                .order_by(partition_ranges.c.part)
            ).all()
        if not rows:
            raise NotFound(
                f"partitioning '{partitioning_id}' has no {kind} ranges",
                reason="PARTITIONING_NOT_FOUND",
            )
        return [int(rows[0][0])] + [int(r[1]) for r in rows]

    def list_partitionings(
        self, graph_id: str, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of the graph's partitionings, newest first, and their total number."""
        self.get_graph(graph_id)
        of_graph = partitionings.c.graph_id == graph_id
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(partitionings.c.body)
                    .where(of_graph)
                    .order_by(partitionings.c.created_at.desc())
                    .offset(offset)
                    .limit(limit)
                )
                .scalars()
                .all()
            )
            count = select(func.count()).select_from(partitionings).where(of_graph)
            total = int(conn.execute(count).scalar() or 0)
        return [json.loads(r) for r in rows], total

    def count_graphs(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(graphs)).scalar() or 0)
