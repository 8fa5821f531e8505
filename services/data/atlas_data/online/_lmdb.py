"""LMDB online store: the embedded default. One environment, one sub-database per group.

LMDB is a memory-mapped B+tree with MVCC: a read transaction sees a consistent snapshot
and never waits for the (single) writer, and values can be read straight from the mapped
pages. Each write batch is one transaction committed with ``fsync`` (``sync=True``).
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lmdb

from atlas_core.errors import ResourceExhausted, Unavailable
from atlas_data.online._base import (
    EntityKeys,
    OnlineStore,
    OnlineStoreSettings,
    WriteOutcome,
    check_entity_key,
    check_group_key,
)
from atlas_data.online._codec import OnlineRows, encode_batch, gather_rows, read_event_time
from atlas_data.records import RecordBatch
from atlas_data.schema import LayoutSubset, RecordLayout

# Sub-databases are never deleted (see delete_group), so this bounds groups ever created.
MAX_GROUPS = 4096
# Group versions mirrored for the native online reader (never a group key: those hold '@').
CATALOG_DB = "__catalog__"
# One slot per concurrent read transaction; gRPC thread pools can be wide.
MAX_READERS = 1024
_INT_KEY = struct.Struct(">q")


def _key_bytes(key: object) -> bytes:
    checked = check_entity_key(key)
    return _INT_KEY.pack(checked) if isinstance(checked, int) else checked.encode("utf-8")


class LmdbOnlineStore(OnlineStore):
    """Online store in one LMDB environment at ``path`` (a directory, created if missing).

    See :class:`OnlineStore` for the contract. Only one instance per path may exist in a
    process (an LMDB rule); other processes may open the same path concurrently.
    """

    def __init__(self, path: Path, *, map_size_bytes: int) -> None:
        self._path = Path(path)
        self._map_size = map_size_bytes
        try:
            self._path.mkdir(parents=True, exist_ok=True)
            self._env = lmdb.open(
                str(self._path),
                map_size=map_size_bytes,
                max_dbs=MAX_GROUPS,
                max_readers=MAX_READERS,
                sync=True,
                metasync=True,
                lock=True,
                # Random point reads: read-ahead would only evict useful pages.
                readahead=False,
            )
        except (OSError, lmdb.Error) as exc:
            raise Unavailable(
                f"cannot open the LMDB online store at {self._path}: {exc}",
                reason="ONLINE_STORE_UNAVAILABLE",
                metadata={"path": str(self._path)},
            ) from exc
        self._dbs: dict[str, Any] = {}
        self._dbs_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: OnlineStoreSettings) -> LmdbOnlineStore:
        return cls(settings.lmdb_path, map_size_bytes=settings.lmdb_map_size_bytes)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except lmdb.MapFullError as exc:
            raise ResourceExhausted(
                f"the LMDB online store at {self._path} is full ({self._map_size} bytes): "
                "raise lmdb_map_size_bytes",
                reason="ONLINE_STORE_FULL",
                metadata={"setting": "lmdb_map_size_bytes", "path": str(self._path)},
            ) from exc
        except lmdb.Error as exc:
            raise Unavailable(
                f"the LMDB online store at {self._path} failed: {exc}",
                reason="ONLINE_STORE_UNAVAILABLE",
                metadata={"path": str(self._path)},
            ) from exc

    def _db(self, group_key: str, *, create: bool) -> Any | None:
        db = self._dbs.get(check_group_key(group_key))
        if db is not None:
            return db
        with self._dbs_lock:
            db = self._dbs.get(group_key)
            if db is not None:
                return db
            name = group_key.encode("utf-8")
            if not create:
                # Named databases are entries of the main database: check without writing.
                with self._env.begin() as txn:
                    if txn.get(name) is None:
                        return None
            # Handles must be opened in a write transaction to stay valid (a handle opened
            # in a read transaction dies with it); this happens once per group per process.
            db = self._env.open_db(name, create=True)
            self._dbs[group_key] = db
            return db

    def write(
        self, group_key: str, batch: RecordBatch, *, ingestion_time_us: int, schema_version: int
    ) -> WriteOutcome:
        keys = [_key_bytes(k) for k in batch.keys]
        if not keys:
            return WriteOutcome(0, 0)
        # Encode before taking the write lock so the lock is held only for the B-tree work.
        records = encode_batch(
            batch, ingestion_time_us=ingestion_time_us, schema_version=schema_version
        )
        times = batch.event_time_us.tolist()
        written = stale = 0
        with self._errors():
            db = self._db(group_key, create=True)
            with self._env.begin(write=True, db=db, buffers=True) as txn:
                for key, event_time, record in zip(keys, times, records, strict=True):
                    stored = txn.get(key)
                    if stored is not None and read_event_time(stored) > event_time:
                        stale += 1
                        continue
                    txn.put(key, record)
                    written += 1
        return WriteOutcome(written, stale)

    def read(self, group_key: str, keys: EntityKeys) -> list[bytes | None]:
        encoded = [_key_bytes(k) for k in keys]
        with self._errors():
            db = self._db(group_key, create=False)
            if db is None:
                return [None] * len(encoded)
            with self._env.begin(db=db) as txn:
                return [txn.get(key) for key in encoded]

    def read_rows(
        self,
        group_key: str,
        keys: EntityKeys,
        layout: RecordLayout,
        subset: LayoutSubset | None = None,
        *,
        min_event_time_us: int | None = None,
    ) -> OnlineRows:
        encoded = [_key_bytes(k) for k in keys]
        with self._errors():
            db = self._db(group_key, create=False)
            if db is None:
                return gather_rows([None] * len(encoded), layout, subset)
            # buffers=True: values are views on the mapped pages; gather_rows copies them
            # into the result before the transaction (and the snapshot) ends.
            with self._env.begin(db=db, buffers=True) as txn:
                views = [txn.get(key) for key in encoded]
                return gather_rows(views, layout, subset, min_event_time_us=min_event_time_us)

    def mirror_catalog(self, entries: Mapping[str, bytes], *, name: str | None) -> None:
        with self._errors():
            db = self._db(CATALOG_DB, create=True)
            with self._env.begin(write=True, db=db) as txn:
                if name is None:
                    assert db is not None  # create=True always opens it
                    txn.drop(db, delete=False)
                else:
                    txn.delete(name.encode())
                    prefix = f"{name}@".encode()
                    cursor = txn.cursor()
                    # delete() moves the cursor to the next entry, so loop on its key.
                    if cursor.set_range(prefix):
                        while cursor.key().startswith(prefix) and cursor.delete():
                            pass
                for key, value in entries.items():
                    txn.put(key.encode(), value)

    def count(self, group_key: str) -> int:
        with self._errors():
            db = self._db(group_key, create=False)
            if db is None:
                return 0
            with self._env.begin() as txn:
                return int(txn.stat(db)["entries"])

    def delete_group(self, group_key: str) -> int:
        with self._errors():
            db = self._db(group_key, create=False)
            if db is None:
                return 0
            with self._env.begin(write=True) as txn:
                removed = int(txn.stat(db)["entries"])
                # Empty the sub-database but keep it: deleting it would invalidate the
                # handle that concurrent readers may hold.
                txn.drop(db, delete=False)
            return removed

    def close(self) -> None:
        self._env.close()
