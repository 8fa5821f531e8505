"""The labeling service's tables and their migrations (SQLite and PostgreSQL).

Queue invariants are kept by the database, not only by the code: ``holder_key`` is set on
every active or submitted annotation assignment to "<item>|<annotator>" and is unique, so
one person can never hold or have labelled one item twice, whatever the races.
"""

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
    UniqueConstraint,
)

from atlas_core.db import Migration, MigrationSet, idempotency_table

metadata = MetaData()

projects = Table(
    "labeling_projects",
    metadata,
    Column("project_id", String(64), primary_key=True),
    Column("name", String(256), nullable=False, unique=True),
    Column("task_type", String(32), nullable=False),
    Column("spec", Text, nullable=False),  # JSON of schema.ProjectSpec
    Column("archived", Boolean, nullable=False, default=False),
    Column("etag", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # Last label row number handed out: incrementing it locks the project row, so label rows
    # of one project commit in number order and an export cursor never skips one.
    Column("label_seq", BigInteger, nullable=False, default=0),
)

# Versioned, append-only label history: one row per decision (a relabel adds a row with the
# same event time and a later creation time). Exports stream these in `seq` order.
label_rows = Table(
    "labeling_label_rows",
    metadata,
    Column("project_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("item_id", String(64), nullable=False),
    Column("entity_key", String(256), nullable=False),
    Column("label", Text, nullable=False),  # class labels joined by "|", else ""
    Column("value", Text, nullable=False),  # JSON of values.Value
    Column("event_time", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("label_version", Integer, nullable=False),
    Column("annotators", Text, nullable=False),  # JSON list
    Column("agreement", Float, nullable=True),
    Column("source", String(16), nullable=False),  # human | review | consensus | model
    PrimaryKeyConstraint("project_id", "seq"),
    Index("ix_labeling_label_rows_item", "item_id", "label_version"),
)

# Finished exports (one per export job).
exports = Table(
    "labeling_exports",
    metadata,
    Column("export_id", String(64), primary_key=True),
    Column("project_id", String(64), nullable=False, index=True),
    Column("body", Text, nullable=False),  # JSON of the export record
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# The correction queue: one row per (item, reason), with an audited detail and a resolution.
corrections = Table(
    "labeling_corrections",
    metadata,
    Column("project_id", String(64), nullable=False),
    Column("item_id", String(64), nullable=False),
    # low_confidence | disagreement | model_human_conflict | bad_case | low_gold_accuracy
    Column("reason", String(32), nullable=False),
    Column("priority", Float, nullable=False, default=0.0),
    Column("detail", Text, nullable=False, default=""),
    # open | requeued | resolved | escalated
    Column("resolution", String(16), nullable=False, default="open"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("project_id", "item_id", "reason"),
    Index("ix_labeling_corrections_queue", "project_id", "resolution", "priority"),
)

# (project, label kind, label) pairs some annotation used: such labels never disappear.
label_usage = Table(
    "labeling_label_usage",
    metadata,
    Column("project_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("label", String(256), nullable=False),
    PrimaryKeyConstraint("project_id", "kind", "label"),
)

items = Table(
    "labeling_items",
    metadata,
    Column("item_id", String(64), primary_key=True),
    Column("project_id", String(64), nullable=False),
    # Insertion order within the project: the queue's default order and the page order.
    Column("seq", BigInteger, nullable=False),
    Column("external_id", String(256), nullable=True),
    Column("content", Text, nullable=False),  # JSON of values.ItemContent
    Column("entity_id", String(256), nullable=False, default=""),
    Column("label_time", DateTime(timezone=True), nullable=True),
    Column("metadata", Text, nullable=False, default="{}"),
    Column("status", String(16), nullable=False),
    # Assignments holding or having submitted the item (active + submitted), and submitted.
    Column("taken", Integer, nullable=False, default=0),
    Column("submitted", Integer, nullable=False, default=0),
    # Extra annotators asked for after disagreement (relabel rounds): an item needs
    # overlap + rounds annotations.
    Column("rounds", Integer, nullable=False, default=0),
    # Higher first in the queue (active learning and corrections raise it).
    Column("priority", Float, nullable=False, default=0.0),
    Column("gold_value", Text, nullable=True),  # JSON of a values.Value
    Column("final_value", Text, nullable=True),
    Column("final_source", String(16), nullable=True),
    Column("agreement", Float, nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("prediction_id", String(128), nullable=False, default=""),
    Column("model_version", String(128), nullable=False, default=""),
    Column("prediction_score", Float, nullable=True),
    # Class -> probability of the latest pre-label (active-learning queue orders).
    Column("probs", Text, nullable=True),
    # JSON of items.ServedPrediction (endpoint, row, score, reasons, detail) of bad cases:
    # their human labels go back to serving as ground truth.
    Column("served_prediction", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("project_id", "external_id", name="uq_labeling_items_external"),
    UniqueConstraint("project_id", "seq", name="uq_labeling_items_seq"),
)
# The queue's order (priority high first, then insertion order) as an index order, so the
# next open items of one status are read in order and the scan stops after `count` rows
# (a plain "priority" column made both databases sort every open item on every request).
Index(
    "ix_labeling_items_queue",
    items.c.project_id,
    items.c.status,
    items.c.priority.desc(),
    items.c.seq,
)

assignments = Table(
    "labeling_assignments",
    metadata,
    Column("assignment_id", String(64), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("item_id", String(64), nullable=False),
    Column("annotator", String(256), nullable=False),
    Column("is_review", Boolean, nullable=False, default=False),
    # active | submitted | skipped | expired | rejected
    Column("state", String(16), nullable=False),
    Column("holder_key", String(400), nullable=True, unique=True),
    Column("expire_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("request_id", String(256), nullable=True),
    Index("ix_labeling_assignments_item", "item_id", "annotator"),
    Index("ix_labeling_assignments_lease", "project_id", "state", "expire_at"),
    Index("ix_labeling_assignments_annotator", "project_id", "annotator", "state"),
)

annotations_table = Table(
    "labeling_annotations",
    metadata,
    Column("annotation_id", String(64), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("item_id", String(64), nullable=False, index=True),
    # One human annotation per assignment at most: a retried submit cannot add a second.
    Column("assignment_id", String(64), nullable=True, unique=True),
    Column("author", String(256), nullable=False),
    Column("source", String(16), nullable=False),  # human | model | consensus | review
    Column("value", Text, nullable=False),
    Column("confidence", Float, nullable=False, default=0.0),
    Column("model_version", String(128), nullable=False, default=""),
    Column("duration_ms", BigInteger, nullable=False, default=0),
    Column("gold_correct", Boolean, nullable=True),  # set on gold items only
    Column("request_id", String(256), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # The review of this annotation, if any.
    Column("review_decision", String(16), nullable=True),  # accept | reject | correct
    Column("reviewer", String(256), nullable=True),
    Column("review_value", Text, nullable=True),
    Column("review_comment", Text, nullable=True),
    Column("review_request_id", String(256), nullable=True),
    Column("reviewed_at", DateTime(timezone=True), nullable=True),
)

idempotency = idempotency_table(metadata, "labeling")

# Gold answers per annotator, kept current on every gold submit: every submit reads it (one
# key lookup) to know whether its author is below the gold bar.
annotator_gold = Table(
    "labeling_annotator_gold",
    metadata,
    Column("project_id", String(64), nullable=False),
    Column("annotator", String(256), nullable=False),
    Column("answered", Integer, nullable=False, default=0),
    Column("correct", Integer, nullable=False, default=0),
    PrimaryKeyConstraint("project_id", "annotator"),
)

# The project's current Dawid-Skene fit (priors and one confusion matrix per annotator):
# completed items are decided with it (one E-step on the item), and it is refitted every so
# many completions, not on every one.
ds_models = Table(
    "labeling_ds_models",
    metadata,
    Column("project_id", String(64), primary_key=True),
    Column("body", Text, nullable=False),  # JSON: classes, annotators, priors, confusion
    Column("fitted_at", DateTime(timezone=True), nullable=False),
    Column("answers", Integer, nullable=False),  # answers the fit saw
    Column("completions", Integer, nullable=False, default=0),  # items decided since
)

ALL = [
    projects,
    label_usage,
    items,
    assignments,
    annotations_table,
    label_rows,
    exports,
    corrections,
    idempotency,
]


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=ALL)


def _v2(conn: Connection) -> None:
    """Gold counters and stored Dawid-Skene fits; backfill the counters and close the
    correction entries earlier versions left pending on gold items (never decided) and on
    decided items (reviews and single annotators did not close them)."""
    from sqlalchemy import case, func, insert, select, update

    metadata.create_all(conn, tables=[annotator_gold, ds_models])
    a = annotations_table
    counted = select(
        a.c.project_id,
        a.c.author,
        func.count(),
        func.sum(case((a.c.gold_correct, 1), else_=0)),
    ).where(a.c.gold_correct.is_not(None) & (a.c.source == "human"))
    conn.execute(
        insert(annotator_gold).from_select(
            ["project_id", "annotator", "answered", "correct"],
            counted.group_by(a.c.project_id, a.c.author),
        )
    )
    pending = corrections.c.resolution.in_(["open", "requeued", "escalated"])
    for note, which in [
        ("gold items are never decided", items.c.gold_value.is_not(None)),
        ("its item was decided", items.c.status == "done"),
    ]:
        conn.execute(
            update(corrections)
            .where(pending & corrections.c.item_id.in_(select(items.c.item_id).where(which)))
            .values(
                resolution="resolved",
                resolved_at=func.current_timestamp(),
                detail=corrections.c.detail + f"; closed by migration 2: {note}",
            )
        )


def _v3(conn: Connection) -> None:
    """The served prediction of bad-case items. Version 1 creates today's tables, so a new
    database already has the column."""
    from sqlalchemy import inspect, text

    if "served_prediction" not in {c["name"] for c in inspect(conn).get_columns(items.name)}:
        conn.execute(text(f"ALTER TABLE {items.name} ADD COLUMN served_prediction TEXT"))


MIGRATIONS = MigrationSet(
    "labeling",
    [
        Migration(1, "projects, items, assignments, annotations, label rows", _v1),
        Migration(2, "gold counters, Dawid-Skene fits, stale correction entries closed", _v2),
        Migration(3, "served prediction (endpoint, row, reasons) of bad-case items", _v3),
    ],
)
