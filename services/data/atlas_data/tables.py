"""The data service's metadata tables and their migrations (SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
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

feature_groups = Table(
    "data_feature_groups",
    metadata,
    Column("name", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("spec", Text, nullable=False),  # JSON of FeatureGroupSpec
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("name", "version"),
)

offline_partitions = Table(
    "data_offline_partitions",
    metadata,
    Column("key", String(512), primary_key=True),  # object key; deterministic per flush
    Column("group_name", String(128), nullable=False, index=True),
    Column("group_version", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("row_count", BigInteger, nullable=False),
    Column("min_event_us", BigInteger, nullable=False),
    Column("max_event_us", BigInteger, nullable=False),
    Column("compacted", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

datasets = Table(
    "data_datasets",
    metadata,
    Column("dataset_id", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("name", String(256), nullable=False),
    Column("body", Text, nullable=False),  # JSON of DatasetRecord (artifacts, schema, lineage…)
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("dataset_id", "version"),
)

idempotency = idempotency_table(metadata, "data")


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[feature_groups, offline_partitions, datasets, idempotency])


MIGRATIONS = MigrationSet("data", [Migration(1, "feature groups, partitions, datasets", _v1)])
