"""Sampled request/response capture to Parquet in the object store. Rows are buffered in
memory (bounded) and written by a background thread, never on a request's critical path."""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine

from atlas_core.db import write_transaction
from atlas_core.storage import ArtifactStore
from atlas_serving.tables import capture_files

log = logging.getLogger("atlas.serving.capture")

DEFAULT_FLUSH_ROWS = 1000
DEFAULT_FLUSH_SECONDS = 60.0
MAX_BUFFERED_ROWS = 100_000  # per variant: beyond it rows are dropped (and counted)


class CaptureWriter:
    """Thread-safe buffers per (endpoint, variant); ``flush_due`` runs in a worker thread."""

    def __init__(self, engine: Engine, store: ArtifactStore, prefix: str, replica: str) -> None:
        self.engine = engine
        self.store = store
        self.prefix = prefix.rstrip("/")
        self.replica = replica
        self._lock = threading.Lock()
        self._buffers: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._first: dict[tuple[str, str], float] = {}
        self.dropped = 0

    def add(self, endpoint: str, variant: str, row: Mapping[str, Any]) -> None:
        key = (endpoint, variant)
        with self._lock:
            buffer = self._buffers.setdefault(key, [])
            if len(buffer) >= MAX_BUFFERED_ROWS:
                self.dropped += 1
                return
            if not buffer:
                self._first[key] = time.monotonic()
            buffer.append(dict(row))

    def pending(self) -> int:
        with self._lock:
            return sum(len(b) for b in self._buffers.values())

    def flush_due(self, limits: Mapping[str, tuple[int, float]], force: bool = False) -> int:
        """Write every buffer past its row or age limit (endpoint -> (rows, seconds))."""
        now = time.monotonic()
        taken: list[tuple[tuple[str, str], list[dict[str, Any]]]] = []
        with self._lock:
            for key, rows in list(self._buffers.items()):
                flush_rows, flush_s = limits.get(
                    key[0], (DEFAULT_FLUSH_ROWS, DEFAULT_FLUSH_SECONDS)
                )
                if rows and (
                    force or len(rows) >= flush_rows or now - self._first.get(key, now) >= flush_s
                ):
                    taken.append((key, rows))
                    self._buffers[key] = []
        written = 0
        for (endpoint, variant), rows in taken:
            try:
                self._write(endpoint, variant, rows)
                written += len(rows)
            except Exception:  # noqa: BLE001 - capture must never break serving
                log.exception("capture flush failed; %d rows dropped", len(rows))
        return written

    def _write(self, endpoint: str, variant: str, rows: list[dict[str, Any]]) -> None:
        import pandas as pd

        frame = pd.DataFrame(rows)
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        start_us, end_us = int(frame["time_us"].min()), int(frame["time_us"].max())
        day = time.strftime("%Y-%m-%d", time.gmtime(start_us / 1e6))
        key = (
            f"{self.prefix}/{endpoint}/{variant}/{day}/"
            f"{start_us}-{self.replica}-{uuid.uuid4().hex[:8]}.parquet"
        )
        ref = self.store.put_bytes(key, buffer.getvalue())
        with write_transaction(self.engine) as conn:
            conn.execute(
                capture_files.insert().values(
                    key=key,
                    endpoint_name=endpoint,
                    variant=variant,
                    uri=ref.uri,
                    sha256=ref.sha256,
                    size_bytes=ref.size,
                    row_count=len(frame),
                    start_us=start_us,
                    end_us=end_us,
                )
            )
