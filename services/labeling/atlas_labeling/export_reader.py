"""The label history read for export as Arrow batches, column by column.

Rows are read in keyset pages on ``seq`` with as few per-row Python objects as possible: on
PostgreSQL through ADBC (``adbc-driver-postgresql``, results straight into Arrow) when it is
installed, else through the SQLAlchemy connection's own driver cursor (psycopg: tuples turned
into Arrow arrays per column). On SQLite the database writes the page as JSON Lines (one
``json_object`` per row, joined into one value) that Arrow's JSON reader parses: no Python
object per row, and neither step holds the GIL, so a page is read while the previous one is
encoded. ADBC is not used for SQLite: adbc-driver-sqlite 1.13 did not see rows another
connection had committed to a WAL-mode database. Either way:

- ``value`` is passed through as stored: ``labels.append_label`` stores
  ``json.dumps(to_json(value))``, the exact text the export writes;
- ``annotators`` (a JSON list) is parsed once per distinct text in a page;
- times are converted in bulk: SQLite keeps them as SQLAlchemy's UTC text
  ``YYYY-MM-DD HH:MM:SS.ffffff``, PostgreSQL is asked for microseconds since the epoch.

Anything else than SQLite or PostgreSQL (psycopg) goes through SQLAlchemy rows, converted
to the same columns.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
from sqlalchemy import Connection, Engine, select
from sqlalchemy.engine import URL

from atlas_labeling.exporting import LABEL_SCHEMA
from atlas_labeling.tables import label_rows

# The columns in the order the queries select them (LABEL_SCHEMA's, bar the renamed time).
_COLUMNS = (
    "entity_key",
    "label",
    "value",
    "event_time",
    "created_at",
    "label_version",
    "annotators",
    "agreement",
    "source",
    "item_id",
    "seq",
)
_NAIVE_US = pa.timestamp("us")
_UTC_US = pa.timestamp("us", tz="UTC")
_ANNOTATORS = pa.list_(pa.string())


@dataclass(frozen=True)
class LabelFilter:
    """Which label rows of a project an export takes (after a cursor, in ``seq`` order)."""

    project_id: str
    sources: Sequence[str]
    min_agreement: float = 0.0
    start: datetime | None = None  # on label creation time, inclusive
    end: datetime | None = None  # exclusive


def read_batches(
    engine: Engine,
    where: LabelFilter,
    after_seq: int,
    limit: int | None,
    page: int,
    *,
    adbc: bool | None = None,
) -> Iterator[pa.RecordBatch]:
    """Label rows with ``seq > after_seq`` in ``seq`` order, at most ``limit`` of them, as
    batches of at most ``page`` rows in LABEL_SCHEMA. Each page is one short query (keyset on
    the primary key) in a transaction of its own (SQLAlchemy: a connection per page; ADBC: one
    autocommit connection per call), so no transaction stays open between pages.

    A page asks for a window of ``page`` sequence numbers (``after < seq <= after + page``), so
    the database never has more than a page to sort whatever plan it picks: with statistics
    that do not know the table's size yet (a freshly filled table), PostgreSQL sorts every
    remaining row for an open-ended ``ORDER BY seq LIMIT n``. An empty window (a gap of
    filtered-out rows, or the end) falls back to the open-ended query once.

    ``adbc``: None uses ADBC when it can, False never, True always (an error if it cannot)."""
    url = adbc_url(engine.url) if adbc is not False else None
    if adbc and url is None:
        raise RuntimeError(f"no ADBC reader for {engine.url.drivername}")
    with contextlib.ExitStack() as stack:
        adbc_conn = stack.enter_context(_adbc_connect(url)) if url is not None else None
        yield from _pages(engine, adbc_conn, where, after_seq, limit, page)


def read_ahead(batches: Iterator[pa.RecordBatch], depth: int = 2) -> Iterator[pa.RecordBatch]:
    """``batches`` read by a thread up to ``depth`` batches ahead of the consumer, so reading
    (the database driver, which releases the GIL while it steps) overlaps encoding the part
    (Parquet, which releases it too). An error in the reader is raised to the consumer; a
    consumer that stops early stops the reader."""
    ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for batch in batches:
                if not put("batch", batch):
                    return
            put("end", None)
        except BaseException as exc:  # handed to the consumer, raised there
            put("error", exc)
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    reader = threading.Thread(target=run, name="label-export-reader", daemon=True)
    reader.start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        reader.join()


def _pages(
    engine: Engine,
    adbc_conn: Any,
    where: LabelFilter,
    after_seq: int,
    limit: int | None,
    page: int,
) -> Iterator[pa.RecordBatch]:
    seq = LABEL_SCHEMA.get_field_index("seq")
    taken = 0
    while limit is None or taken < limit:
        size = page if limit is None else min(page, limit - taken)
        upto: int | None = after_seq + page
        if adbc_conn is not None:
            batch = _adbc_page(adbc_conn, where, after_seq, upto, size)
            if batch.num_rows == 0:
                upto = None
                batch = _adbc_page(adbc_conn, where, after_seq, None, size)
        else:
            with engine.connect() as conn:
                batch = read_page(conn, where, after_seq, upto, size)
                if batch.num_rows == 0:
                    upto = None
                    batch = read_page(conn, where, after_seq, None, size)
        if batch.num_rows == 0:
            return
        yield batch
        taken += batch.num_rows
        if batch.num_rows == size or upto is None:
            after_seq = batch.column(seq)[-1].as_py()
        else:
            after_seq = upto  # the whole window was read


def read_page(
    conn: Connection, where: LabelFilter, after_seq: int, upto: int | None, size: int
) -> pa.RecordBatch:
    """At most ``size`` rows with ``after_seq < seq <= upto`` (no upper bound if None)."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        return _sqlite_json_page(conn, where, after_seq, upto, size)
    if dialect == "postgresql" and conn.dialect.driver == "psycopg":
        columns = _driver_columns(conn, where, after_seq, upto, size)
    else:
        columns = _sqlalchemy_columns(conn, where, after_seq, upto, size)
    return to_batch(columns)


# ---- ADBC -----------------------------------------------------------------------------------


def adbc_url(url: URL) -> str | None:
    """The libpq URL ADBC connects to, or None (not PostgreSQL, or no ADBC driver)."""
    if url.get_backend_name() == "postgresql" and _installed("adbc_driver_postgresql"):
        return url.set(drivername="postgresql").render_as_string(hide_password=False)
    return None


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@contextlib.contextmanager
def _adbc_connect(url: str) -> Iterator[Any]:
    import adbc_driver_postgresql.dbapi as pg

    conn = pg.connect(url, autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


def _adbc_page(
    conn: Any, where: LabelFilter, after_seq: int, upto: int | None, size: int
) -> pa.RecordBatch:
    params: list[Any] = [where.project_id, after_seq, *where.sources]

    def mark() -> str:
        return f"${len(params)}"

    sources = ", ".join(f"${i + 3}" for i in range(len(where.sources)))
    sql = (
        "SELECT entity_key, label, value, event_time, created_at, label_version, annotators,"
        f" agreement, source, item_id, seq FROM {label_rows.name}"
        f" WHERE project_id = $1 AND seq > $2 AND source IN ({sources})"
    )
    if upto is not None:
        params.append(upto)
        sql += f" AND seq <= {mark()}"
    if where.min_agreement > 0:
        params.append(where.min_agreement)
        sql += f" AND (agreement IS NULL OR agreement >= {mark()})"
    for bound, op in ((where.start, ">="), (where.end, "<")):
        if bound is not None:
            params.append(bound)
            sql += f" AND created_at {op} {mark()}"
    params.append(size)
    sql += f" ORDER BY seq LIMIT {mark()}"
    cursor = conn.cursor()
    try:
        cursor.execute(sql, params)
        table = cursor.fetch_arrow_table()
    finally:
        cursor.close()
    if table.num_rows == 0:
        return pa.RecordBatch.from_pylist([], schema=LABEL_SCHEMA)
    table = table.combine_chunks()
    return to_batch([table.column(i).chunk(0) for i in range(table.num_columns)])


# ---- the SQLAlchemy connection's driver ------------------------------------------------------


def _where_sql(
    conn: Connection, where: LabelFilter, after_seq: int, upto: int | None, mark: str
) -> tuple[str, list[Any]]:
    """The page's WHERE clause (driver placeholders ``mark``) and its parameters."""
    # Bind times the way SQLAlchemy stores them (SQLite: its text form), so comparisons match.
    bind = label_rows.c.created_at.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    params: list[Any] = [where.project_id, after_seq, *where.sources]
    sql = (
        f" WHERE project_id = {mark} AND seq > {mark}"
        f" AND source IN ({', '.join(mark for _ in where.sources)})"
    )
    if upto is not None:
        sql += f" AND seq <= {mark}"
        params.append(upto)
    if where.min_agreement > 0:
        sql += f" AND (agreement IS NULL OR agreement >= {mark})"
        params.append(where.min_agreement)
    for bound, op in ((where.start, ">="), (where.end, "<")):
        if bound is not None:
            sql += f" AND created_at {op} {mark}"
            params.append(bind(bound) if bind is not None else bound)
    return sql, params


# One JSON object per row. ``annotators`` is already a JSON list; ``agreement`` goes as text
# with 17 significant digits (SQLite's JSON numbers keep 15, which does not round-trip).
_SQLITE_ROW_JSON = (
    "json_object('entity_key', entity_key, 'label', label, 'value', value,"
    " 'event_time', event_time, 'created_at', created_at, 'label_version', label_version,"
    " 'annotators', json(annotators),"
    " 'agreement', CASE WHEN agreement IS NULL THEN NULL ELSE printf('%!.17g', agreement) END,"
    " 'source', source, 'item_id', item_id, 'seq', seq)"
)
_SQLITE_JSON_SCHEMA = pa.schema(
    [
        ("entity_key", pa.string()),
        ("label", pa.string()),
        ("value", pa.string()),
        ("event_time", pa.string()),
        ("created_at", pa.string()),
        ("label_version", pa.int32()),
        ("annotators", _ANNOTATORS),
        ("agreement", pa.string()),
        ("source", pa.string()),
        ("item_id", pa.string()),
        ("seq", pa.int64()),
    ]
)
_JSON_BLOCK = 1 << 20


def _sqlite_json_page(
    conn: Connection, where: LabelFilter, after_seq: int, upto: int | None, size: int
) -> pa.RecordBatch:
    clause, params = _where_sql(conn, where, after_seq, upto, "?")
    sql = (
        "SELECT CAST(group_concat(row_json, char(10)) AS BLOB) FROM"
        f" (SELECT {_SQLITE_ROW_JSON} AS row_json FROM {label_rows.name}{clause}"
        " ORDER BY seq LIMIT ?)"
    )
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, [*params, size])
        (lines,) = cursor.fetchone() or (None,)
    finally:
        cursor.close()
    if not lines:
        return pa.RecordBatch.from_pylist([], schema=LABEL_SCHEMA)
    table = _parse_json_lines(bytes(lines))
    seq = table.column("seq")
    n = len(seq)
    if n > 1 and not pc.all(pc.greater(seq.slice(1), seq.slice(0, n - 1))).as_py():
        # group_concat keeps the subquery's order in practice; SQLite does not promise it.
        table = table.take(pc.sort_indices(seq))
    return to_batch([column.combine_chunks() for column in table.columns])


def _parse_json_lines(data: bytes) -> pa.Table:
    """JSON Lines in _SQLITE_JSON_SCHEMA; blocks of 1 MB are parsed in parallel, and a row
    longer than a block is parsed with the whole page as one block."""
    parse = pa_json.ParseOptions(
        explicit_schema=_SQLITE_JSON_SCHEMA, unexpected_field_behavior="error"
    )
    try:
        return pa_json.read_json(
            pa.BufferReader(data),
            read_options=pa_json.ReadOptions(block_size=_JSON_BLOCK),
            parse_options=parse,
        )
    except pa.ArrowInvalid:
        if len(data) < _JSON_BLOCK:
            raise
        return pa_json.read_json(
            pa.BufferReader(data),
            read_options=pa_json.ReadOptions(block_size=len(data) + 1),
            parse_options=parse,
        )


def _driver_columns(
    conn: Connection, where: LabelFilter, after_seq: int, upto: int | None, size: int
) -> list[Sequence[Any]]:
    postgres = conn.dialect.name == "postgresql"
    mark = "%s" if postgres else "?"
    if postgres:
        # Microseconds since the epoch: exact (extract returns numeric) and no datetime objects.
        times = ", ".join(
            f"(extract(epoch from {c}) * 1000000)::bigint" for c in ("event_time", "created_at")
        )
    else:
        times = "event_time, created_at"
    filters, params = _where_sql(conn, where, after_seq, upto, mark)
    sql = (
        "SELECT entity_key, label, value, "
        + times
        + ", label_version, annotators, agreement, source, item_id, seq"
        f" FROM {label_rows.name}" + filters
    )
    sql += f" ORDER BY seq LIMIT {mark}"
    params.append(size)
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    if not rows:
        return [() for _ in _COLUMNS]
    return list(zip(*rows))


def _sqlalchemy_columns(
    conn: Connection, where: LabelFilter, after_seq: int, upto: int | None, size: int
) -> list[Sequence[Any]]:
    c = label_rows.c
    query = select(*(getattr(c, name) for name in _COLUMNS)).where(
        (c.project_id == where.project_id) & (c.seq > after_seq) & c.source.in_(list(where.sources))
    )
    if upto is not None:
        query = query.where(c.seq <= upto)
    if where.min_agreement > 0:
        query = query.where(c.agreement.is_(None) | (c.agreement >= where.min_agreement))
    if where.start is not None:
        query = query.where(c.created_at >= where.start)
    if where.end is not None:
        query = query.where(c.created_at < where.end)
    rows = conn.execute(query.order_by(c.seq).limit(size)).all()
    if not rows:
        return [() for _ in _COLUMNS]
    return list(zip(*rows))


def to_batch(columns: Sequence[Sequence[Any] | pa.Array]) -> pa.RecordBatch:
    """One batch in LABEL_SCHEMA from the selected columns (in ``_COLUMNS`` order), Python
    sequences or Arrow arrays."""
    by_name = dict(zip(_COLUMNS, columns))
    arrays = [
        _array(by_name["entity_key"], pa.string()),
        _array(by_name["label"], pa.string()),
        _array(by_name["value"], pa.string()),
        _timestamps(by_name["event_time"]),
        _timestamps(by_name["created_at"]),
        _array(by_name["label_version"], pa.int32()),
        _annotators(by_name["annotators"]),
        _array(by_name["agreement"], pa.float64()),
        _array(by_name["source"], pa.string()),
        _array(by_name["item_id"], pa.string()),
        _array(by_name["seq"], pa.int64()),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=LABEL_SCHEMA)


def _array(values: Sequence[Any] | pa.Array, kind: pa.DataType) -> pa.Array:
    if isinstance(values, pa.Array):
        return values.cast(kind)
    return pa.array(values, kind)


def _timestamps(values: Sequence[Any] | pa.Array) -> pa.Array:
    if isinstance(values, pa.Array):
        if pa.types.is_timestamp(values.type):
            return values.cast(_UTC_US)
        return values.cast(pa.string()).cast(_NAIVE_US).cast(_UTC_US)
    first = next((v for v in values if v is not None), None)
    if isinstance(first, str):
        # Stored as UTC wall time without an offset (what projects.aware assumes on read).
        return pa.array(values, pa.string()).cast(_NAIVE_US).cast(_UTC_US)
    if isinstance(first, int):
        return pa.array(values, pa.int64()).cast(_UTC_US)
    if isinstance(first, datetime) and first.tzinfo is None:
        return pa.array(values, _NAIVE_US).cast(_UTC_US)
    return pa.array(values, _UTC_US)


def _annotators(values: Sequence[Any] | pa.Array) -> pa.Array:
    """The JSON lists parsed once per distinct text (a page repeats few annotator sets)."""
    if isinstance(values, pa.Array) and pa.types.is_list(values.type):
        return values.cast(_ANNOTATORS)  # parsed already (SQLite's JSON lines)
    encoded = _array(values, pa.string()).dictionary_encode()
    parsed = pa.array([json.loads(t) for t in encoded.dictionary.to_pylist()], _ANNOTATORS)
    return parsed.take(encoded.indices)


def count_labels(batch: pa.RecordBatch, counts: dict[str, int]) -> None:
    """Add a batch's label counts to ``counts``: each box's label ("box" if it has none) for
    box values, else the "|"-separated class labels of the flat ``label`` column."""
    values = batch.column(LABEL_SCHEMA.get_field_index("value"))
    labels = batch.column(LABEL_SCHEMA.get_field_index("label"))
    boxes = pc.starts_with(values, '{"kind": "boxes"')
    if pc.any(boxes).as_py():
        # Row by row, in order, so the counts keep their first-seen order.
        for is_box, value, label in zip(boxes.to_pylist(), values.to_pylist(), labels.to_pylist()):
            if is_box:
                names = [b.get("label") or "box" for b in json.loads(value)["boxes"]]
            else:
                names = label.split("|") if label else []
            for name in names:
                counts[name] = counts.get(name, 0) + 1
        return
    present = labels.filter(pc.not_equal(labels, ""))
    if len(present) == 0:
        return
    flat = pc.list_flatten(pc.split_pattern(present, "|"))
    tally = pc.value_counts(flat)
    for name, n in zip(tally.field("values").to_pylist(), tally.field("counts").to_pylist()):
        counts[name] = counts.get(name, 0) + n
