"""Offline store: the event-time history of every feature group as Parquet in the object store.

Ingestion appends rows to a local staging area first -- one Arrow IPC file per acknowledged
batch, fsynced before the acknowledgement -- because publishing a Parquet object per small
batch would be slow and would litter the store. A flusher turns staged files into one
Parquet partition per flush and registers it in the metadata DB; a crash at any point leaves
either the staged files (flushed again on restart, under the same deterministic key, so never
twice) or the registered partition. Readers see registered partitions plus what is staged.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError

from atlas_core.db import write_transaction
from atlas_core.errors import InvalidArgument
from atlas_core.storage import ArtifactRef, ArtifactStore
from atlas_data.parquet_safe import parquet_safe
from atlas_data.tables import offline_partitions

log = logging.getLogger("atlas.data.offline")

INGESTION_TIME_COLUMN = "_ingestion_time"


@dataclass(frozen=True)
class Partition:
    ref: ArtifactRef
    group_name: str
    group_version: int
    row_count: int
    min_event_us: int
    max_event_us: int
    compacted: bool


@dataclass(frozen=True)
class CompactionOutcome:
    input_partitions: int
    output_partitions: int
    rows: int
    duplicates_dropped: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _event_range(table: pa.Table, event_column: str) -> tuple[int, int]:
    times = table.column(event_column).cast(pa.int64())
    bounds = pc.min_max(times)
    return int(bounds["min"].as_py()), int(bounds["max"].as_py())


class OfflineStore:
    """Append-only history per feature group version. Thread- and process-safe: staging
    appends use unique file names, flushes of one group are serialised by a file lock."""

    def __init__(self, engine: Engine, artifacts: ArtifactStore, staging_dir: Path) -> None:
        self._engine = engine
        self._artifacts = artifacts
        self._staging = staging_dir
        self._staging.mkdir(parents=True, exist_ok=True)

    # -- staging ------------------------------------------------------------------------------

    def _group_dir(self, name: str, version: int) -> Path:
        return self._staging / f"{name}@{version}"

    def stage(self, name: str, version: int, table: pa.Table) -> None:
        """Durably append ``table`` (history rows) before the caller acknowledges them."""
        if table.num_rows == 0:
            return
        directory = self._group_dir(name, version)
        directory.mkdir(parents=True, exist_ok=True)
        # Names sort in arrival order; the uuid keeps concurrent writers apart.
        stem = f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}"
        tmp = directory / f".{stem}.tmp"
        with open(tmp, "wb") as handle:
            with ipc.new_file(handle, table.schema) as writer:
                writer.write_table(table)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, directory / f"{stem}.arrow")
        _fsync_dir(directory)

    def _staged_files(self, name: str, version: int) -> list[Path]:
        directory = self._group_dir(name, version)
        if not directory.exists():
            return []
        return sorted(directory.glob("*.arrow"))

    @staticmethod
    def _read_staged(paths: list[Path]) -> pa.Table | None:
        tables = []
        for path in paths:
            with ipc.open_file(pa.memory_map(str(path))) as reader:
                tables.append(reader.read_all())
        return pa.concat_tables(tables) if tables else None

    @contextmanager
    def _flush_lock(self, name: str, version: int) -> Iterator[None]:
        directory = self._group_dir(name, version)
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / ".flush.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def staged_groups(self) -> list[tuple[str, int]]:
        groups = []
        for directory in sorted(self._staging.glob("*@*")):
            name, _, version = directory.name.rpartition("@")
            if any(directory.glob("*.arrow")):
                groups.append((name, int(version)))
        return groups

    def flush(self, name: str, version: int, event_column: str) -> Partition | None:
        """Publish everything staged for the group as one Parquet partition."""
        with self._flush_lock(name, version):
            paths = self._staged_files(name, version)
            table = self._read_staged(paths)
            if table is None:
                return None
            key = f"offline/{name}/v{version}/part-{paths[0].stem}-{paths[-1].stem}.parquet"
            partition = self._publish(name, version, key, table, event_column, compacted=False)
            for path in paths:
                path.unlink(missing_ok=True)
            log.info(
                "flushed offline partition",
                extra={"feature_group": name, "rows": table.num_rows, "key": key},
            )
            return partition

    def flush_all(self, event_columns: dict[tuple[str, int], str]) -> int:
        """Flush every staged group whose event column is known; returns partitions written."""
        written = 0
        for group in self.staged_groups():
            if group in event_columns and self.flush(*group, event_columns[group]):
                written += 1
        return written

    def _publish(
        self,
        name: str,
        version: int,
        key: str,
        table: pa.Table,
        event_column: str,
        *,
        compacted: bool,
    ) -> Partition:
        ref = self._put_parquet(key, table)
        lo, hi = _event_range(table, event_column)
        partition = Partition(ref, name, version, table.num_rows, lo, hi, compacted)
        try:
            with write_transaction(self._engine) as conn:
                conn.execute(offline_partitions.insert().values(**self._row(partition)))
        except IntegrityError:
            pass  # a re-flush after a crash: same key, same rows, already registered
        return partition

    def _put_parquet(self, key: str, table: pa.Table) -> ArtifactRef:
        # Through a temp file: the store streams it in parts, so a large flush never holds
        # the Parquet bytes in memory next to the table.
        with tempfile.NamedTemporaryFile(dir=self._staging, suffix=".parquet") as tmp:
            pq.write_table(parquet_safe(table), tmp.name, compression="zstd")
            return self._artifacts.put_file(key, tmp.name)

    @staticmethod
    def _row(p: Partition) -> dict[str, object]:
        return {
            "key": p.ref.key,
            "group_name": p.group_name,
            "group_version": p.group_version,
            "sha256": p.ref.sha256,
            "size_bytes": p.ref.size,
            "row_count": p.row_count,
            "min_event_us": p.min_event_us,
            "max_event_us": p.max_event_us,
            "compacted": p.compacted,
            "created_at": datetime.now(timezone.utc),
        }

    # -- reading ------------------------------------------------------------------------------

    def partitions(
        self, name: str, *, start_us: int | None = None, end_us: int | None = None
    ) -> list[Partition]:
        """Registered partitions overlapping [start_us, end_us), oldest first."""
        t = offline_partitions
        query = select(t).where(t.c.group_name == name).order_by(t.c.min_event_us, t.c.key)
        if start_us is not None:
            query = query.where(t.c.max_event_us >= start_us)
        if end_us is not None:
            query = query.where(t.c.min_event_us < end_us)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            Partition(
                ArtifactRef(
                    uri=self._artifacts.uri(r.key), key=r.key, sha256=r.sha256, size=r.size_bytes
                ),
                r.group_name,
                r.group_version,
                r.row_count,
                r.min_event_us,
                r.max_event_us,
                r.compacted,
            )
            for r in rows
        ]

    def read_history(
        self,
        name: str,
        version: int,
        event_column: str,
        *,
        start_us: int | None = None,
        end_us: int | None = None,
        columns: list[str] | None = None,
    ) -> pa.Table | None:
        """Every history row of the group version (published and staged) in the window."""
        tables = []
        for part in self.partitions(name, start_us=start_us, end_us=end_us):
            if part.group_version != version:
                continue
            data = self._artifacts.get_bytes(part.ref)
            tables.append(pq.read_table(io.BytesIO(data), columns=columns))
        staged = self._read_staged(self._staged_files(name, version))
        if staged is not None:
            tables.append(staged.select(columns) if columns else staged)
        if not tables:
            return None
        table = pa.concat_tables(tables, promote_options="default")
        if start_us is not None or end_us is not None:
            times = table.column(event_column).cast(pa.int64())
            mask = pc.greater_equal(times, start_us if start_us is not None else -(2**62))
            if end_us is not None:
                mask = pc.and_(mask, pc.less(times, end_us))
            table = table.filter(mask)
        return table

    def history_files(self, name: str, version: int, dest: Path) -> list[Path]:
        """The group version's history as local files in :meth:`read_history`'s order, an
        unchanging copy for readers that pass over it more than once (the out-of-core join):
        the staged files copied and the partitions listed under the flush lock (a flush or
        compaction then cannot move rows between the two), the partitions downloaded after
        it, into ``dest``."""
        dest.mkdir(parents=True, exist_ok=True)
        with self._flush_lock(name, version):
            parts = [p for p in self.partitions(name) if p.group_version == version]
            staged = []
            for i, path in enumerate(self._staged_files(name, version)):
                staged.append(dest / f"staged-{i:06d}.arrow")
                shutil.copyfile(path, staged[-1])
        files = []
        for i, part in enumerate(parts):
            files.append(dest / f"part-{i:06d}.parquet")
            self._artifacts.download_to_file(part.ref, files[-1])
        return files + staged

    # -- maintenance --------------------------------------------------------------------------

    def compact(
        self,
        name: str,
        version: int,
        event_column: str,
        entity_column: str,
        *,
        start_us: int | None = None,
        end_us: int | None = None,
        target_bytes: int = 128 * 1024 * 1024,
        deduplicate: bool = False,
    ) -> CompactionOutcome:
        """Rewrite the window's partitions into fewer, larger ones. New partitions are
        published and registered, and the old ones unregistered, in one DB transaction, so
        readers see either the old set or the new set, never both or neither."""
        if start_us is not None and end_us is not None and end_us <= start_us:
            raise InvalidArgument("compaction window is inverted: end_time <= start_time")
        with self._flush_lock(name, version):
            olds = [
                p
                for p in self.partitions(name, start_us=start_us, end_us=end_us)
                if p.group_version == version
            ]
            if len(olds) <= 1:
                return CompactionOutcome(len(olds), len(olds), sum(p.row_count for p in olds), 0)
            table = pa.concat_tables(
                [pq.read_table(io.BytesIO(self._artifacts.get_bytes(p.ref))) for p in olds]
            )
            rows_in = table.num_rows
            table = table.sort_by([(event_column, "ascending"), (entity_column, "ascending")])
            if deduplicate:
                table = _drop_exact_duplicates(table, entity_column, event_column)
            bytes_per_row = max(1, sum(p.ref.size for p in olds) // max(1, rows_in))
            rows_per_part = max(1, target_bytes // bytes_per_row)
            news = []
            stamp = uuid.uuid4().hex[:8]
            for i, start in enumerate(range(0, table.num_rows, rows_per_part)):
                chunk = table.slice(start, rows_per_part)
                key = f"offline/{name}/v{version}/compacted-{stamp}-{i:05d}.parquet"
                ref = self._put_parquet(key, chunk)
                lo, hi = _event_range(chunk, event_column)
                news.append(Partition(ref, name, version, chunk.num_rows, lo, hi, True))
            with write_transaction(self._engine) as conn:
                conn.execute(
                    delete(offline_partitions).where(
                        offline_partitions.c.key.in_([p.ref.key for p in olds])
                    )
                )
                for p in news:
                    conn.execute(offline_partitions.insert().values(**self._row(p)))
            for p in olds:
                self._artifacts.delete(p.ref.key)
        return CompactionOutcome(len(olds), len(news), table.num_rows, rows_in - table.num_rows)

    def delete_group(self, name: str) -> int:
        parts = self.partitions(name)
        with write_transaction(self._engine) as conn:
            conn.execute(delete(offline_partitions).where(offline_partitions.c.group_name == name))
        for p in parts:
            self._artifacts.delete(p.ref.key)
        for directory in self._staging.glob(f"{name}@*"):
            for path in directory.glob("*"):
                path.unlink(missing_ok=True)
        return len(parts)


def _drop_exact_duplicates(table: pa.Table, entity_column: str, event_column: str) -> pa.Table:
    """Keep the last-ingested row per (entity, event time): re-ingesting a file twice must
    not double the history."""
    order = table.sort_by(
        [
            (entity_column, "ascending"),
            (event_column, "ascending"),
            (INGESTION_TIME_COLUMN, "descending"),
        ]
    )
    keys = pa.table({"e": order.column(entity_column), "t": order.column(event_column)})
    # A row starts a new (entity, time) run when either differs from the previous row.
    e, t = keys.column("e"), keys.column("t")
    if order.num_rows == 0:
        return order
    same_e = pc.equal(e.slice(1), e.slice(0, order.num_rows - 1))
    same_t = pc.equal(t.slice(1), t.slice(0, order.num_rows - 1))
    dup = pc.and_(same_e, same_t)
    keep = pa.concat_arrays([pa.array([True]), pc.invert(dup.combine_chunks())])
    return order.filter(keep).sort_by([(event_column, "ascending"), (entity_column, "ascending")])
