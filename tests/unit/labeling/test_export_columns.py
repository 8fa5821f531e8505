"""The columnar export reader gives exactly the table the row-by-row reader gave (same columns,
types, values and order) on SQLite and PostgreSQL: every value kind, relabels, model rows left
out unless asked for, filters and cursors; Parquet, JSON Lines and COCO files unchanged."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Connection, select

from atlas_core.db import write_transaction
from atlas_labeling import export_reader, exporting
from atlas_labeling.items import ItemRecord
from atlas_labeling.labels import append_label
from atlas_labeling.projects import aware
from atlas_labeling.schema import TEXT_CLASSIFICATION, LabelDef, ProjectSpec
from atlas_labeling.tables import label_rows
from atlas_labeling.values import (
    Box,
    Boxes,
    Classes,
    FacePair,
    Relation,
    Span,
    Spans,
    Value,
    from_json,
    to_json,
)

from .conftest import Harness

T0 = datetime(2026, 11, 30, 8, 15, 0, tzinfo=timezone.utc)
HUMAN = ["human", "review", "consensus"]

# ---- the row-by-row export as it was until 2026-12-07 (kept here as the reference) -----------


def old_read(
    conn: Connection,
    project_id: str,
    after_seq: int,
    limit: int,
    *,
    sources: Sequence[str],
    min_agreement: float = 0.0,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[dict[str, Any]]:
    query = select(label_rows).where(
        (label_rows.c.project_id == project_id)
        & (label_rows.c.seq > after_seq)
        & label_rows.c.source.in_(list(sources))
    )
    if min_agreement > 0:
        query = query.where(
            label_rows.c.agreement.is_(None) | (label_rows.c.agreement >= min_agreement)
        )
    if start is not None:
        query = query.where(label_rows.c.created_at >= start)
    if end is not None:
        query = query.where(label_rows.c.created_at < end)
    rows = conn.execute(query.order_by(label_rows.c.seq).limit(limit)).all()
    return [
        {
            "entity_key": r.entity_key,
            "label": r.label,
            "value": json.dumps(to_json(from_json(json.loads(r.value)))),
            "event_time": aware(r.event_time),
            "label_created_time": aware(r.created_at),
            "label_version": r.label_version,
            "annotators": json.loads(r.annotators),
            "agreement": r.agreement,
            "source": r.source,
            "item_id": r.item_id,
            "seq": r.seq,
        }
        for r in rows
    ]


def old_counts(records: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        value = from_json(json.loads(record["value"]))
        if isinstance(value, Boxes):
            labels = [b.label or "box" for b in value.boxes]
        else:
            labels = record["label"].split("|") if record["label"] else []
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
    return counts


def old_table(records: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(records, schema=exporting.LABEL_SCHEMA)


def old_jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, default=lambda v: v.isoformat()) + "\n" for r in records)


# ---- fixtures -------------------------------------------------------------------------------


def item(pid: str, n: int, **kw: Any) -> ItemRecord:
    fields: dict[str, Any] = {
        "item_id": f"itm-{n:03d}",
        "project_id": pid,
        "content": None,
        "entity_id": f"customer-{n}",
        "label_time": None,
        "metadata": {},
        "status": "done",
        "external_id": f"ext-{n}",
        "created_at": T0 + timedelta(minutes=n, microseconds=n * 37),
    }
    fields.update(kw)
    return ItemRecord(**fields)


BOXES = Boxes(
    (
        Box(10.5, 20.0, 30.25, 40.0, label="car"),
        Box(1, 2, 3, 4, rotation=12.5, label="", text="AB-12 ü", landmarks=(1.0, 2.0, 3.5, 4.5)),
    ),
    image_width=640,
    image_height=480,
)
SPANS = Spans(
    (Span("s1", 0, 5, "PER", "Ærøya"), Span("s2", 9, 14, "LOC")),
    (Relation("s1", "s2", "lives_in"),),
)


def fill(conn: Connection, pid: str) -> None:
    """Label rows of every kind: multi-label, relabels (versions), model rows, no agreement,
    odd characters, times with and without microseconds and with a non-UTC offset."""
    plus2 = timezone(timedelta(hours=2))
    rows: list[tuple[ItemRecord, Value, str, list[str], float | None, datetime]] = [
        (item(pid, 1), Classes(("pos",)), "human", ["ann-b", "ann-a"], 1.0, T0),
        (item(pid, 2), Classes(("pos", "neg")), "consensus", ["a", "b", "c"], 0.66, T0),
        (item(pid, 1), Classes(("neg",)), "review", ["rev"], None, T0 + timedelta(hours=1)),
        (item(pid, 3), Classes(("pos",)), "model", [], 0.97, T0 + timedelta(seconds=1)),
        (item(pid, 4), BOXES, "human", ["ann-a"], None, T0 + timedelta(microseconds=5)),
        (
            item(pid, 5, entity_id="", external_id="", label_time=T0 - timedelta(days=3)),
            SPANS,
            "consensus",
            ["x", "y"],
            0.5,
            T0 + timedelta(minutes=2, microseconds=999_999),
        ),
        (item(pid, 6, entity_id='quo"te\nline'), FacePair("same"), "human", ["ann-c"], 0.9, T0),
        (item(pid, 4), Boxes((), 640, 480), "review", ["rev"], 1.0, T0 + timedelta(days=1)),
        # An agreement that needs 17 digits, an entity key with an emoji and control bytes.
        (item(pid, 7), Classes(()), "human", ["ann-a"], 0.1 + 0.2, (T0 + timedelta(hours=3))),
        (
            item(pid, 8, entity_id="🙂 tab\t bell\x07 nul-free \\ end"),
            Classes(("neu",)),
            "human",
            ["ann-a", "ü"],
            0.8,
            T0.astimezone(plus2),
        ),
        (item(pid, 2), Classes(("neg",)), "consensus", ["a", "b", "c"], 1.0, T0),
    ]
    for record, value, source, annotators, agreement, now in rows:
        append_label(
            conn,
            record,
            value,
            source=source,
            annotators=annotators,
            agreement=agreement,
            now=now,
        )
    for n in range(10, 40):  # enough rows to span several pages
        append_label(
            conn,
            item(pid, n),
            Classes((["pos", "neg", "neu"][n % 3],)),
            source="human",
            annotators=[f"ann-{n % 4}"],
            agreement=None if n % 5 else 0.75,
            now=T0 + timedelta(seconds=n, microseconds=n),
        )


def project(harness: Harness) -> str:
    svc = harness.service
    spec = ProjectSpec("export", TEXT_CLASSIFICATION, (LabelDef("pos"), LabelDef("neg")))
    pid = svc.create_project(spec).project_id
    with write_transaction(svc.rt.engine) as conn:
        fill(conn, pid)
    return pid


def new_table(harness: Harness, where: export_reader.LabelFilter, after: int, page: int) -> Any:
    batches = list(export_reader.read_batches(harness.service.rt.engine, where, after, None, page))
    return pa.Table.from_batches(batches, schema=exporting.LABEL_SCHEMA)


# ---- tests ----------------------------------------------------------------------------------


@pytest.fixture(params=["adbc", "driver"])
def reads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, harness: Harness) -> str:
    """Both read paths: ADBC (PostgreSQL: results straight into Arrow), and the SQLAlchemy
    connection's driver cursor (SQLite always; PostgreSQL without the ADBC driver)."""
    original = export_reader.read_batches
    use = request.param == "adbc"
    adbc_url = export_reader.adbc_url(harness.service.rt.engine.url)
    if harness.url.startswith("postgresql"):
        assert adbc_url is not None, "adbc-driver-postgresql is a dependency"
    else:
        assert adbc_url is None  # SQLite is always read through sqlite3
        use = False

    def read_batches(*args: Any, **kw: Any) -> Any:
        kw.setdefault("adbc", use)
        return original(*args, **kw)

    monkeypatch.setattr(export_reader, "read_batches", read_batches)
    return str(request.param)


def test_columnar_reader_matches_the_row_reader(harness: Harness, reads: str) -> None:
    pid = project(harness)
    engine = harness.service.rt.engine
    cases: list[tuple[dict[str, Any], int]] = [
        ({"sources": HUMAN}, 0),
        ({"sources": [*HUMAN, "model"]}, 0),
        ({"sources": HUMAN}, 5),
        ({"sources": HUMAN, "min_agreement": 0.7}, 0),
        (
            {
                "sources": HUMAN,
                "start": T0 + timedelta(microseconds=5),
                "end": T0 + timedelta(hours=1),
            },
            0,
        ),
    ]
    for kw, after in cases:
        with engine.connect() as conn:
            records = old_read(conn, pid, after, 10_000, **kw)
        expected = old_table(records)
        assert expected.num_rows > 3, kw
        for page in (1, 4, 10_000):
            got = new_table(harness, export_reader.LabelFilter(pid, **kw), after, page)
            assert got.schema == expected.schema
            assert got.equals(expected), (kw, after, page)
            assert got.to_pylist() == expected.to_pylist()
        counts: dict[str, int] = {}
        for batch in export_reader.read_batches(
            engine, export_reader.LabelFilter(pid, **kw), after, None, 4
        ):
            export_reader.count_labels(batch, counts)
        assert list(counts.items()) == list(old_counts(records).items()), kw
    with engine.connect() as conn:
        everything = old_read(conn, pid, 0, 10_000, sources=[*HUMAN, "model"])
    # Model rows only on request; relabels are new versions of the same item.
    assert "model" not in old_table(old_read_all(harness, pid)).column("source").to_pylist()
    versions = [(r["item_id"], r["label_version"]) for r in everything]
    assert ("itm-001", 2) in versions and ("itm-002", 2) in versions and ("itm-004", 2) in versions


def old_read_all(harness: Harness, pid: str) -> list[dict[str, Any]]:
    with harness.service.rt.engine.connect() as conn:
        return old_read(conn, pid, 0, 10_000, sources=HUMAN)


def test_limit_and_cursor_pages_neither_lose_nor_repeat_rows(harness: Harness, reads: str) -> None:
    pid = project(harness)
    engine = harness.service.rt.engine
    where = export_reader.LabelFilter(pid, HUMAN)
    seen: list[int] = []
    after = 0
    while True:
        batches = list(export_reader.read_batches(engine, where, after, 7, 3))
        if not batches:
            break
        part = pa.Table.from_batches(batches)
        assert part.num_rows <= 7
        seen += part.column("seq").to_pylist()
        after = seen[-1]
    assert seen == [r["seq"] for r in old_read_all(harness, pid)]
    assert len(seen) == len(set(seen))


def test_parquet_and_jsonl_parts_unchanged(harness: Harness, tmp_path: Path, reads: str) -> None:
    pid = project(harness)
    records = old_read_all(harness, pid)
    where = export_reader.LabelFilter(pid, HUMAN)
    engine = harness.service.rt.engine
    parquet = tmp_path / "part.parquet"
    rows, last = exporting.write_part_file(
        parquet, "parquet", export_reader.read_batches(engine, where, 0, None, 4)
    )
    assert (rows, last) == (len(records), records[-1]["seq"])
    assert pq.read_table(parquet).equals(old_table(records))
    jsonl = tmp_path / "part.jsonl"
    exporting.write_part_file(jsonl, "jsonl", export_reader.read_batches(engine, where, 0, None, 4))
    assert jsonl.read_text(encoding="utf-8") == old_jsonl(records)
    first = json.loads(jsonl.read_text(encoding="utf-8").splitlines()[0])
    assert first["event_time"] == "2026-11-30T08:16:00.000037+00:00"  # item 1: T0 + 1 min 37 µs


def test_coco_document_unchanged(harness: Harness, tmp_path: Path, reads: str) -> None:
    pid = project(harness)
    engine = harness.service.rt.engine
    store = harness.artifacts
    where = export_reader.LabelFilter(pid, HUMAN)
    ref, boxes, last = exporting.write_coco(
        store,
        "coco.json",
        export_reader.read_batches(engine, where, 0, None, 4),
        lambda item_id: f"s3://bucket/{item_id}.png",
        ["car", "bus"],
        tmp_path,
    )
    document = json.loads(store.get_bytes(store.key_for_uri(ref.uri)))
    # itm-004's latest label (version 2) holds no box: its image is listed with no annotation.
    assert document == {
        "images": [
            {
                "id": 3,
                "file_name": "s3://bucket/itm-004.png",
                "width": 640,
                "height": 480,
                "atlas_item_id": "itm-004",
                "atlas_entity_key": "customer-4",
            }
        ],
        "annotations": [],
        "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "bus"}],
    }
    assert boxes == 0 and last == old_read_all(harness, pid)[-1]["seq"]
    with write_transaction(engine) as conn:
        append_label(
            conn, item(pid, 4), BOXES, source="human", annotators=["a"], agreement=1.0, now=T0
        )
    ref, boxes, _ = exporting.write_coco(
        store,
        "coco2.json",
        export_reader.read_batches(engine, where, 0, None, 4),
        lambda item_id: f"s3://bucket/{item_id}.png",
        ["car", "bus"],
        tmp_path,
    )
    document = json.loads(io.BytesIO(store.get_bytes(store.key_for_uri(ref.uri))).read())
    assert boxes == 2
    assert document["images"] == [
        {
            "id": 3,
            "file_name": "s3://bucket/itm-004.png",
            "width": 640,
            "height": 480,
            "atlas_item_id": "itm-004",
            "atlas_entity_key": "customer-4",
        }
    ]
    assert document["annotations"] == [
        {
            "id": 1,
            "image_id": 3,
            "category_id": 1,
            "bbox": [10.5, 20.0, 30.25, 40.0],
            "area": 30.25 * 40.0,
            "iscrowd": 0,
        },
        {
            "id": 2,
            "image_id": 3,
            "category_id": 1,
            "bbox": [1, 2, 3, 4],
            "area": 12,
            "iscrowd": 0,
            "rotation": 12.5,
            "attributes": {"text": "AB-12 ü"},
            "landmarks": [1.0, 2.0, 3.5, 4.5],
        },
    ]


def test_read_ahead_keeps_order_raises_errors_and_stops_early() -> None:
    batches = [pa.record_batch({"n": [i]}) for i in range(10)]
    assert list(export_reader.read_ahead(iter(batches))) == batches

    def failing() -> Any:
        yield batches[0]
        raise ValueError("driver failed")

    got = []
    try:
        for batch in export_reader.read_ahead(failing()):
            got.append(batch)
    except ValueError as exc:
        assert str(exc) == "driver failed"
    else:
        raise AssertionError("the reader's error must reach the consumer")
    assert got == batches[:1]

    closed = []

    def endless() -> Any:
        try:
            while True:
                yield batches[0]
        finally:
            closed.append(True)

    ahead = export_reader.read_ahead(endless())
    assert next(ahead) == batches[0]
    ahead.close()  # the consumer stops: the reader thread ends and closes its source
    assert closed == [True]
