"""Point-in-time matching out of core: memory bounded by a budget, not by the history's size.

The samples and one feature group's history are streamed batch by batch into ``N`` spill
files each (Arrow IPC, on local disk), by the same entity hash as the Dask shards
(:func:`atlas_data.matching_dask.shard_ids`), so a bucket holds every record of its entities.
The history is read twice: first its key columns only (entity, event and ingestion times, a
row number), joined bucket by bucket to find the records some sample matches; then every
needed column, spilling only those records (most of a long history is never an as-of match:
its spill and read-back are saved). Each bucket is then joined on its own
with :func:`point_in_time_join` and its feature columns written back to disk with each
sample's row number; a last pass streams the samples again, in order, and attaches each
chunk's feature columns gathered from the buckets' outputs (each already in row order),
writing the output in sample order. A sample's match depends only on its own entity's
history, and the history keeps its order within a bucket (ties: last write wins), so the
output equals the in-memory join row for row, as-of and as-known-at. Keeping only the
matched records changes no match: a sample's record is the latest of those it may use (by
event time, ingestion time, then row), and any kept record later than it would have been
its match in the whole history too; a sample whose latest record was too old for the TTL
finds only older ones.

``N`` comes from the budget and the input sizes (row counts times the bytes a row takes in
the join, see :func:`join_bytes`); after spilling, each bucket's own need is checked against
the budget, so a bucket too big for it (one entity with a huge history, or a budget below one
partition's need) fails ``MATCH_MEMORY_BUDGET`` with the size needed, before any join runs.
The budget bounds the join's working set; the process itself (Python, pyarrow) comes on top.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from atlas_core.errors import FailedPrecondition, InvalidArgument
from atlas_data.matching import (
    JoinColumns,
    comparable_keys,
    matched_history_rows,
    point_in_time_join,
    timestamps_to_micros,
)
from atlas_data.matching_dask import shard_ids

# Bytes of index work per row inside the join (codes, sort keys, orders, ranks: ~8 int64s).
_INDEX_BYTES_PER_ROW = 64
# A variable-width value (strings) is counted at this many bytes before it is measured.
_VARIABLE_WIDTH_BYTES = 32
# Spill files open at once (two per bucket); more buckets need a bigger budget.
MAX_BUCKETS = 512
_ROW = "_atlas_row"
_HISTORY_ROW = "_atlas_history_row"
_MATCHED = "_atlas_matched"


@dataclass(frozen=True)
class ArrowFiles:
    """A table on local disk (Parquet or Arrow IPC files, in order) read batch by batch."""

    paths: tuple[Path, ...]

    def schema(self) -> pa.Schema:
        return _schema(self.paths[0])

    def num_rows(self) -> int:
        total = 0
        for path in self.paths:
            if _is_ipc(path):
                with ipc.open_file(pa.memory_map(str(path))) as reader:
                    total += sum(
                        reader.get_batch(i).num_rows for i in range(reader.num_record_batches)
                    )
            else:
                total += pq.ParquetFile(path).metadata.num_rows
        return total

    def batches(self, columns: list[str] | None, rows: int) -> Iterator[pa.RecordBatch]:
        """Batches of at most ``rows`` rows, in file and row order."""
        for path in self.paths:
            if _is_ipc(path):
                with ipc.open_file(pa.memory_map(str(path))) as reader:
                    for i in range(reader.num_record_batches):
                        batch = reader.get_batch(i)
                        if columns is not None:
                            batch = batch.select(columns)
                        for start in range(0, batch.num_rows, rows):
                            yield batch.slice(start, rows)
            else:
                yield from parquet_batches(path, rows, columns)


def parquet_batches(
    path: Path | str, rows: int, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """A Parquet file's rows as batches of at most ``rows``, one row group read at a time
    (``read_row_group`` holds ~1.7x a row group; ``iter_batches`` reads ahead, ~4-8x). The
    next group is read in a thread while the caller works on this one's batches: decoding
    releases the GIL, so reading and the caller's work overlap."""
    file = pq.ParquetFile(path)
    groups = file.num_row_groups
    with ThreadPoolExecutor(1) as reader:

        def read(group: int) -> Future[pa.Table] | None:
            return (
                reader.submit(file.read_row_group, group, columns=columns)
                if group < groups
                else None
            )

        ahead = read(0)
        for group in range(groups):
            assert ahead is not None
            table = ahead.result()
            ahead = read(group + 1)
            for batch in table.to_batches():
                for start in range(0, batch.num_rows, rows):
                    yield batch.slice(start, rows)
            del table


def _is_ipc(path: Path) -> bool:
    return path.suffix == ".arrow"


def _schema(path: Path) -> pa.Schema:
    if _is_ipc(path):
        with ipc.open_file(pa.memory_map(str(path))) as reader:
            return reader.schema
    return pq.read_schema(path)


def row_bytes(schema: pa.Schema) -> int:
    """Bytes one row of ``schema`` takes in memory (variable-width values estimated)."""
    total = 0
    for field in schema:
        typ = field.type
        if pa.types.is_fixed_size_list(typ):
            width = typ.list_size * max(1, typ.value_type.bit_width // 8)
        else:
            try:
                width = max(1, typ.bit_width // 8)
            except ValueError:
                width = _VARIABLE_WIDTH_BYTES
        total += width + 1  # + validity
    return total


def join_bytes(history_bytes: int, history_rows: int, samples: int, out_row: int) -> int:
    """Memory the in-memory join of one bucket needs: its history (read, then gathered from),
    the index work per history row and sample, and the joined feature columns."""
    return (
        2 * history_bytes
        + _INDEX_BYTES_PER_ROW * history_rows
        + samples * (out_row + _INDEX_BYTES_PER_ROW + 16)
    )


def _gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB" if n >= 1024**3 else f"{n / 1024**2:.1f} MiB"


@dataclass(frozen=True)
class OutOfCoreResult:
    """The joined table (an Arrow IPC file, samples' columns then the features), the match
    mask over every input sample (before ``drop_unless`` filtered rows), and how many of the
    history's rows were read and how many some sample matched (the only ones spilled)."""

    path: Path
    rows: int
    buckets: int
    matched: np.ndarray
    history_rows: int = 0
    history_matched: int = 0


class _Spill:
    """Append-only IPC files, one per bucket, opened on first write."""

    def __init__(self, directory: Path, stem: str, buckets: int) -> None:
        self._dir, self._stem = directory, stem
        self._writers: dict[int, ipc.RecordBatchFileWriter] = {}
        self.rows = np.zeros(buckets, dtype=np.int64)
        self.bytes = np.zeros(buckets, dtype=np.int64)

    def path(self, bucket: int) -> Path:
        return self._dir / f"{self._stem}-{bucket}.arrow"

    def write(self, bucket: int, batch: pa.RecordBatch) -> None:
        writer = self._writers.get(bucket)
        if writer is None:
            writer = ipc.new_file(str(self.path(bucket)), batch.schema)
            self._writers[bucket] = writer
        writer.write_batch(batch)
        self.rows[bucket] += batch.num_rows
        self.bytes[bucket] += batch.nbytes

    def read(self, bucket: int, schema: pa.Schema) -> pa.Table:
        if bucket not in self._writers:
            return schema.empty_table()
        with ipc.open_file(pa.memory_map(str(self.path(bucket)))) as reader:
            return reader.read_all()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()


def _sample_micros(column: pa.Array, name: str, offset: int) -> np.ndarray:
    """The batch's sample times in microseconds; a bad value is named by its row number in
    the whole sample set, as the in-memory join names it."""
    try:
        micros, _ = timestamps_to_micros(column, what="sample timestamp column", name=name)
    except InvalidArgument as exc:
        if "row" not in exc.metadata:
            raise
        row = int(exc.metadata["row"])
        raise InvalidArgument(
            exc.message.replace(f": row {row} ", f": row {row + offset} ", 1),
            reason=exc.reason,
            metadata={**exc.metadata, "row": str(row + offset)},
        ) from None
    return micros


def _split(batch: pa.RecordBatch, bucket_of: np.ndarray, spill: _Spill) -> None:
    order = np.argsort(bucket_of, kind="stable")  # keeps each bucket's rows in input order
    sorted_ids = bucket_of[order]
    bounds = np.flatnonzero(np.diff(sorted_ids)) + 1
    for rows in np.split(order, bounds):
        if len(rows):
            spill.write(int(bucket_of[rows[0]]), batch.take(pa.array(rows)))


def out_of_core_join(
    samples: ArrowFiles,
    *,
    history: Callable[[list[str]], Iterable[pa.RecordBatch]],
    history_schema: pa.Schema,
    history_rows: int,
    columns: JoinColumns,
    budget_bytes: int,
    workdir: Path,
    output: Path,
    drop_unless: np.ndarray | None = None,
    label: str = "",
    on_progress: Callable[[int, int], None] = lambda done, total: None,
    should_stop: Callable[[], None] = lambda: None,
) -> OutOfCoreResult:
    """:func:`point_in_time_join` of ``samples`` with a streamed ``history`` in bounded memory
    (see the module docstring); writes the joined table to ``output`` (Arrow IPC).

    ``history(columns)`` yields the history's rows with those columns; it is called twice
    and must yield the same rows in the same order each time.

    ``history_rows`` sizes the buckets (an estimate is fine: each bucket is measured before
    it is joined). With ``drop_unless`` (one bool per sample), only rows where it or this
    join's match is true are written. ``workdir`` holds the spill files (the caller removes it).

    Raises:
        InvalidArgument, NotFound: as :func:`point_in_time_join`.
        FailedPrecondition: ``MATCH_MEMORY_BUDGET``, the budget is below one bucket's need
            (the message gives the size needed).
    """
    join = columns.kwargs()
    entity_column, timestamp_column = columns.entity_column, columns.timestamp_column
    history_entity_column = columns.history_entity_column
    sample_schema = samples.schema()
    # The checks that need no rows, on empty tables: the same errors as the in-memory join.
    empty = point_in_time_join(
        sample_schema.empty_table(), history=history_schema.empty_table(), **join
    )
    feature_schema = pa.schema([f for f in empty.table.schema if f.name not in sample_schema.names])
    key_columns = [history_entity_column, columns.event_time_column]
    if "_ingestion_time" in history_schema.names:
        key_columns.append("_ingestion_time")
    needed = key_columns + [
        name
        for name in history_schema.names
        if name not in key_columns and columns.column_prefix + name in feature_schema.names
    ]
    n_samples = samples.num_rows()
    out_row = row_bytes(feature_schema)
    h_row = row_bytes(pa.schema([history_schema.field(n) for n in needed]))
    total = join_bytes(h_row * history_rows, history_rows, n_samples, out_row)
    buckets = max(1, math.ceil(1.5 * total / budget_bytes))
    if buckets > MAX_BUCKETS:
        need = math.ceil(1.5 * total / MAX_BUCKETS)
        raise FailedPrecondition(
            f"matching {label or 'the feature group'} out of core needs a memory budget of at "
            f"least {_gib(need)} ({need} bytes) for {history_rows:,} history rows and "
            f"{n_samples:,} samples in at most {MAX_BUCKETS} buckets; the budget is "
            f"{_gib(budget_bytes)}: raise matching.memory_budget_bytes",
            reason="MATCH_MEMORY_BUDGET",
            metadata={"needed_bytes": str(need), "budget_bytes": str(budget_bytes)},
        )
    batch_rows = max(1024, budget_bytes // (8 * max(h_row, row_bytes(sample_schema))))

    s_key_type = sample_schema.field(entity_column).type
    h_key_type = history_schema.field(history_entity_column).type

    def split_history(batch: pa.RecordBatch, spill: _Spill) -> None:
        _, keys = comparable_keys(
            pa.chunked_array([], type=s_key_type),
            pa.chunked_array([batch.column(history_entity_column)]),
            sample_name=entity_column,
        )
        _split(batch, shard_ids(keys, buckets), spill)

    s_spill = _Spill(workdir, "samples", buckets)
    k_spill = _Spill(workdir, "keys", buckets)
    try:
        offset = 0
        for batch in samples.batches([entity_column, timestamp_column], batch_rows):
            should_stop()
            s_time = _sample_micros(batch.column(timestamp_column), timestamp_column, offset)
            keys, _ = comparable_keys(
                pa.chunked_array([batch.column(entity_column)]),
                pa.chunked_array([], type=h_key_type),
                sample_name=entity_column,
            )
            rows = np.arange(offset, offset + batch.num_rows, dtype=np.int64)
            offset += batch.num_rows
            spine = pa.record_batch(
                [pa.array(rows), batch.column(entity_column), pa.array(s_time)],
                names=[_ROW, entity_column, timestamp_column],
            )
            _split(spine, shard_ids(keys, buckets), s_spill)
        seen = 0
        for batch in history(key_columns):
            should_stop()
            batch = batch.select(key_columns)
            numbers = pa.array(np.arange(seen, seen + batch.num_rows, dtype=np.int64))
            seen += batch.num_rows
            split_history(batch.append_column(_HISTORY_ROW, numbers), k_spill)
    finally:
        s_spill.close()
        k_spill.close()

    spine_schema = pa.schema(
        [pa.field(_ROW, pa.int64()), sample_schema.field(entity_column)]
        + [pa.field(timestamp_column, pa.int64())]
    )
    todo = [b for b in range(buckets) if s_spill.rows[b]]
    steps = 2 * len(todo)
    key_schema = pa.schema(
        [history_schema.field(n) for n in key_columns] + [pa.field(_HISTORY_ROW, pa.int64())]
    )
    _check_buckets(
        _needs(k_spill.bytes, k_spill.rows, s_spill.rows, 8),
        k_spill.rows,
        s_spill.rows,
        budget_bytes,
        label,
    )
    # The history rows some sample matches: the only ones the join below needs.
    used = np.zeros(seen, dtype=bool)
    kept = np.zeros(buckets, dtype=np.int64)
    for done, b in enumerate(todo):
        should_stop()
        spine = s_spill.read(b, spine_schema)
        hist = k_spill.read(b, key_schema)
        found = matched_history_rows(
            spine,
            entity_column=entity_column,
            s_time=spine.column(timestamp_column).to_numpy(),
            history=hist,
            history_entity_column=history_entity_column,
            event_time_column=columns.event_time_column,
            ingestion_time_column="_ingestion_time",
            ttl_seconds=columns.ttl_seconds,
            as_known_at=columns.as_known_at,
        )
        numbers = np.unique(hist.column(_HISTORY_ROW).to_numpy()[found[found >= 0]])
        used[numbers] = True
        kept[b] = len(numbers)
        del spine, hist, found, numbers
        if k_spill.path(b).exists():
            k_spill.path(b).unlink()
        on_progress(done + 1, steps)
    # The data join's need from the records it will hold, before the history is read again.
    _check_buckets(
        _needs(kept * h_row, kept, s_spill.rows, out_row), kept, s_spill.rows, budget_bytes, label
    )
    h_spill = _Spill(workdir, "history", buckets)
    try:
        lo = 0
        for batch in history(needed):
            should_stop()
            hi = lo + batch.num_rows
            if hi > seen:
                _changed(seen, hi)
            keep = used[lo:hi]
            lo = hi
            if keep.any():
                split_history(batch.select(needed).filter(pa.array(keep)), h_spill)
        if lo != seen:
            _changed(seen, lo)
    finally:
        h_spill.close()
    _check_buckets(
        _needs(h_spill.bytes, h_spill.rows, s_spill.rows, out_row),
        h_spill.rows,
        s_spill.rows,
        budget_bytes,
        label,
    )

    o_spill = _Spill(workdir, "joined", buckets)
    # Rows per output batch of a bucket: the merge holds one batch of every bucket at once.
    out_batch = max(1024, budget_bytes // (4 * buckets * (out_row + 16)))
    try:
        for done, b in enumerate(todo, start=len(todo)):
            should_stop()
            spine = s_spill.read(b, spine_schema)
            hist = h_spill.read(b, history_schema.empty_table().select(needed).schema)
            result = point_in_time_join(spine.drop_columns([_ROW]), history=hist, **join)
            del hist
            joined = result.table.drop_columns([entity_column, timestamp_column])
            joined = joined.append_column(_ROW, spine.column(_ROW)).append_column(
                _MATCHED, pa.array(result.matched)
            )
            for piece in joined.to_batches(max_chunksize=out_batch):
                o_spill.write(b, piece)
            del spine, result, joined
            s_spill.path(b).unlink()
            if h_spill.path(b).exists():
                h_spill.path(b).unlink()
            on_progress(done + 1, steps)
    finally:
        o_spill.close()

    out_schema = pa.schema(list(sample_schema) + list(feature_schema))
    matched = np.zeros(n_samples, dtype=bool)
    cursors = [_Cursor(o_spill.path(b)) for b in todo]
    written = 0
    chunk_rows = max(1024, budget_bytes // (4 * (row_bytes(sample_schema) + out_row)))
    with ipc.new_file(str(output), out_schema) as writer:
        lo = 0
        for batch in samples.batches(None, chunk_rows):
            should_stop()
            hi = lo + batch.num_rows
            part = pa.Table.from_batches([p for c in cursors for p in c.take_below(hi)])
            part = part.take(pa.array(np.argsort(part.column(_ROW).to_numpy())))
            hit = part.column(_MATCHED).to_numpy(zero_copy_only=False)
            matched[lo:hi] = hit
            arrays = list(batch.columns) + [
                part.column(f.name).combine_chunks() for f in feature_schema
            ]
            out = pa.RecordBatch.from_arrays(arrays, schema=out_schema)
            if drop_unless is not None:
                out = out.filter(pa.array(drop_unless[lo:hi] | hit))
            writer.write_batch(out)
            written += out.num_rows
            lo = hi
    for c in cursors:
        c.close()
    return OutOfCoreResult(output, written, buckets, matched, seen, int(used.sum()))


def _changed(first: int, second: int) -> None:
    raise RuntimeError(
        f"the history changed between the two passes: {first:,} rows, then {second:,}"
        f"{' or more' if second > first else ''}"
    )


def _needs(
    h_bytes: np.ndarray, h_rows: np.ndarray, samples: np.ndarray, out_row: int
) -> np.ndarray:
    return np.array(
        [
            join_bytes(int(b), int(h), int(s), out_row)
            for b, h, s in zip(h_bytes, h_rows, samples, strict=True)
        ],
        dtype=np.int64,
    )


def _check_buckets(
    needs: np.ndarray, h_rows: np.ndarray, samples: np.ndarray, budget_bytes: int, label: str
) -> None:
    """Refuse a bucket whose join needs more than the budget, before it is read."""
    worst = int(np.argmax(needs))
    if needs[worst] > budget_bytes:
        raise FailedPrecondition(
            f"bucket {worst}/{len(needs)} of {label or 'the feature group'} needs "
            f"{_gib(needs[worst])} ({needs[worst]} bytes) to join ({h_rows[worst]:,} "
            f"history rows, {samples[worst]:,} samples), more than the memory budget of "
            f"{_gib(budget_bytes)}: raise matching.memory_budget_bytes to at least "
            f"{needs[worst]} (one entity's history cannot be split)",
            reason="MATCH_MEMORY_BUDGET",
            metadata={"needed_bytes": str(needs[worst]), "budget_bytes": str(budget_bytes)},
        )


class _Cursor:
    """Reads one bucket's joined output (in row order) up to a row number at a time."""

    def __init__(self, path: Path) -> None:
        self._source = pa.memory_map(str(path))
        self._reader = ipc.open_file(self._source)
        self._next = 0
        self._pending: pa.RecordBatch | None = None

    def take_below(self, hi: int) -> list[pa.RecordBatch]:
        taken: list[pa.RecordBatch] = []
        while True:
            if self._pending is None:
                if self._next >= self._reader.num_record_batches:
                    break
                self._pending = self._reader.get_batch(self._next)
                self._next += 1
            rows = self._pending.column(_ROW).to_numpy()
            cut = int(np.searchsorted(rows, hi))
            if cut:
                taken.append(self._pending.slice(0, cut))
            if cut < len(rows):
                self._pending = self._pending.slice(cut)
                break
            self._pending = None
        return taken

    def close(self) -> None:
        self._source.close()
