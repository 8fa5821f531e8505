"""The graph service's metadata tables and their migrations (SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from atlas_core.db import Migration, MigrationSet, idempotency_table

metadata = MetaData()

graphs = Table(
    "graph_graphs",
    metadata,
    Column("graph_id", String(64), primary_key=True),
    Column("name", String(256), nullable=False, index=True),
    Column("num_nodes", BigInteger, nullable=False),
    Column("num_edges", BigInteger, nullable=False),
    Column("body", Text, nullable=False),  # JSON of GraphRecord
    Column("created_at", DateTime(timezone=True), nullable=False),
)

partitionings = Table(
    "graph_partitionings",
    metadata,
    Column("partitioning_id", String(64), primary_key=True),
    Column("graph_id", String(64), nullable=False, index=True),
    Column("num_partitions", Integer, nullable=False),
    Column("body", Text, nullable=False),  # JSON of PartitioningRecord
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Range boundaries, one row per partition and kind: what an id lookup needs (O(P) rows).
partition_ranges = Table(
    "graph_partition_ranges",
    metadata,
    Column("partitioning_id", String(64), nullable=False),
    Column("kind", String(8), nullable=False),  # node | edge
    Column("part", Integer, nullable=False),
    Column("start_id", BigInteger, nullable=False),
    Column("end_id", BigInteger, nullable=False),
    PrimaryKeyConstraint("partitioning_id", "kind", "part"),
)

idempotency = idempotency_table(metadata, "graph")


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[graphs, partitionings, partition_ranges, idempotency])


MIGRATIONS = MigrationSet("graph", [Migration(1, "graphs, partitionings, ranges", _v1)])
