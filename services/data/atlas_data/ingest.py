"""Writing records: validate, write the online store, stage the offline history, then ack.

A batch is acknowledged only after both the online write (durable in the backend) and the
offline staging file (fsynced) are done, so an acknowledged record survives a crash. A crash
before the ack may leave the record in either store; the client's retry rewrites it (an equal
event time overwrites online, and compaction can drop the offline duplicate).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from atlas_data.feature_groups import FeatureGroup, FeatureGroupCatalog
from atlas_data.history import history_table
from atlas_data.offline import OfflineStore
from atlas_data.online import OnlineStore
from atlas_data.records import RawRecord, RecordBatch
from atlas_data.schema import categories_of


@dataclass(frozen=True)
class IngestOutcome:
    written: int
    stale: int
    group_version: int


def _now_us() -> int:
    return time.time_ns() // 1000


class Ingestor:
    """Thread-safe: the stores serialise their own writes."""

    def __init__(
        self,
        catalog: FeatureGroupCatalog,
        online: OnlineStore,
        offline: OfflineStore,
        *,
        clock_us: Callable[[], int] = _now_us,
    ) -> None:
        self._catalog = catalog
        self._online = online
        self._offline = offline
        self._clock_us = clock_us
        # Offline staging runs beside the online write: both end in an fsync, and on a
        # disk-bound host doing them one after the other doubled each batch's latency.
        self._staging = ThreadPoolExecutor(max_workers=4, thread_name_prefix="atlas-stage")

    def close(self) -> None:
        self._staging.shutdown(wait=True)

    def validate(self, group: FeatureGroup, records: Sequence[RawRecord]) -> RecordBatch:
        """Raises InvalidArgument naming the record index and field."""
        return RecordBatch.from_records(
            group.layout, group.spec.entity_key_type, records, categories=categories_of(group.spec)
        )

    def write_batch(
        self, group: FeatureGroup, batch: RecordBatch, *, online: bool = True
    ) -> IngestOutcome:
        """Make ``batch`` durable online (unless ``online`` is false) and offline."""
        if len(batch) == 0:
            return IngestOutcome(0, 0, group.version)
        now = self._clock_us()
        written, stale = len(batch), 0
        staged = self._staging.submit(
            self._offline.stage,
            group.spec.name,
            group.version,
            history_table(group.spec, group.layout, batch, now),
        )
        try:
            if online:
                outcome = self._online.write(
                    group.store_key, batch, ingestion_time_us=now, schema_version=group.version
                )
                written, stale = outcome.written, outcome.stale
        finally:
            staged.result()  # durable offline too before the caller acks (or its error)
        return IngestOutcome(written, stale, group.version)

    def write(self, name: str, version: int, records: Sequence[RawRecord]) -> IngestOutcome:
        group = self._catalog.get(name, version)
        return self.write_batch(group, self.validate(group, records))
