"""The serving service's metadata tables and their migrations (SQLite and PostgreSQL).

Endpoint and deployment state live here so that every serving replica converges to it by
polling; messages are stored as canonical proto JSON (``body`` columns)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from atlas_core.db import Migration, MigrationSet, idempotency_table

metadata = MetaData()

models = Table(
    "serving_models",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

model_versions = Table(
    "serving_model_versions",
    metadata,
    Column("model_name", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("body", Text, nullable=False),  # ModelVersion proto JSON (aliases: own table)
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("model_name", "version"),
)

aliases = Table(
    "serving_aliases",
    metadata,
    Column("model_name", String(128), nullable=False),
    Column("alias", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    PrimaryKeyConstraint("model_name", "alias"),
)

endpoints = Table(
    "serving_endpoints",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("spec", Text, nullable=False),  # EndpointSpec proto JSON (resolved versions)
    Column("state", String(32), nullable=False),
    Column("traffic", Text, nullable=False),  # {"variant": percent} of live traffic
    Column("active_deployment_id", String(64), nullable=False, default=""),
    Column("last_deployment_id", String(64), nullable=False, default=""),
    Column("etag", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

deployments = Table(
    "serving_deployments",
    metadata,
    Column("deployment_id", String(64), primary_key=True),
    Column("endpoint_name", String(128), nullable=False, index=True),
    Column("state", String(32), nullable=False),
    Column("body", Text, nullable=False),  # Deployment proto JSON
    Column("driver", Text, nullable=False),  # driver state JSON (step start times, ...)
    Column("owner", String(128), nullable=False, default=""),
    Column("heartbeat_us", BigInteger, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

variant_stats = Table(
    "serving_variant_stats",
    metadata,
    Column("replica_id", String(128), nullable=False),
    Column("endpoint_name", String(128), nullable=False),
    Column("variant", String(128), nullable=False),
    Column("buckets", Text, nullable=False),  # JSON: per-second counters of the last minutes
    Column("updated_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("replica_id", "endpoint_name", "variant"),
)

capture_files = Table(
    "serving_capture_files",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("endpoint_name", String(128), nullable=False, index=True),
    Column("variant", String(128), nullable=False),
    Column("uri", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("row_count", BigInteger, nullable=False),
    Column("start_us", BigInteger, nullable=False),
    Column("end_us", BigInteger, nullable=False),
)

alerts = Table(
    "serving_alerts",
    metadata,
    Column("alert_id", String(64), primary_key=True),
    Column("endpoint_name", String(128), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("body", Text, nullable=False),  # Alert proto JSON
    Column("acknowledged", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

idempotency = idempotency_table(metadata, "serving")

_V1_TABLES = list(metadata.sorted_tables)

# The prediction index: one row per (prediction, row, variant) of an endpoint whose quality
# config is enabled, written in batches off the request path (dataplane/prediction_log.py);
# shadow answers share the live prediction's id, which pairs them on the same request.
predictions = Table(
    "serving_predictions",
    metadata,
    Column("prediction_id", String(64), nullable=False),
    Column("row", Integer, nullable=False),
    Column("variant", String(128), nullable=False),
    Column("endpoint_name", String(128), nullable=False),
    Column("model_name", String(128), nullable=False),
    Column("model_version", Integer, nullable=False),
    Column("shadow", Boolean, nullable=False),
    Column("entity_key", String(256), nullable=True),
    Column("time_us", BigInteger, nullable=False),
    Column("label", Text, nullable=False),
    Column("value", Float, nullable=False),
    Column("probs", Text, nullable=False),  # JSON list in the model's class order ("" none)
    PrimaryKeyConstraint("prediction_id", "row", "variant"),
    Index("ix_serving_predictions_endpoint_time", "endpoint_name", "time_us"),
    Index("ix_serving_predictions_entity", "endpoint_name", "entity_key", "time_us"),
)

# The latest true outcome of a prediction (latest wins; ``version`` counts replacements);
# ``request_ids``: the request ids that set it, so a retry is recognised.
ground_truth = Table(
    "serving_ground_truth",
    metadata,
    Column("prediction_id", String(64), nullable=False),
    Column("row", Integer, nullable=False),
    Column("endpoint_name", String(128), nullable=False),
    Column("outcome", Text, nullable=False),  # the label as text (classes are text)
    Column("value", Float, nullable=True),  # the number (regression)
    Column("version", Integer, nullable=False),
    Column("request_ids", Text, nullable=False),  # JSON list, most recent last
    Column("event_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("prediction_id", "row"),
)


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=_V1_TABLES)


def _v2(conn: Connection) -> None:
    metadata.create_all(conn, tables=[predictions, ground_truth])


# Lineage counts and lists a model version's predictions; without this index it scans them.
predictions_by_model = Index(
    "ix_serving_predictions_model",
    predictions.c.model_name,
    predictions.c.model_version,
    predictions.c.time_us,
)


def _v3(conn: Connection) -> None:
    predictions_by_model.create(conn, checkfirst=True)


MIGRATIONS = MigrationSet(
    "serving",
    [
        Migration(1, "registry, endpoints, deployments", _v1),
        Migration(2, "prediction index and ground truth", _v2),
        Migration(3, "prediction index by model version (lineage)", _v3),
    ],
)
