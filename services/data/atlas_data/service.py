"""The data service's domain facade (no grpc): what every front end (gRPC, CLI, tests) uses.

It owns the runtime, the online reader, the job runner and the background flusher that
moves staged offline rows into Parquet partitions.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

from atlas_core import lineage as lin
from atlas_core.db import IdempotencyStore
from atlas_core.errors import FailedPrecondition, Unavailable
from atlas_core.jobs import JobRunner
from atlas_data.config import DataSettings
from atlas_data.feature_groups import FeatureGroup
from atlas_data.jobs import JOBS
from atlas_data.lineage import DataLineage
from atlas_data.native_reader import NativeReader, mirror_all, mirror_group, wanted_binary
from atlas_data.reads import OnlineReader
from atlas_data.runtime import DataRuntime, open_runtime
from atlas_data.schema import FeatureGroupSpec
from atlas_data.tables import idempotency

log = logging.getLogger("atlas.data")


class DataService:
    def __init__(self, runtime: DataRuntime, runner: JobRunner) -> None:
        self.rt = runtime
        self.jobs = runner
        self.lineage_index = DataLineage(runtime.engine, runtime.groups, runtime.datasets, runner)
        self.reader = OnlineReader(
            runtime.groups,
            runtime.online,
            max_entities=runtime.settings.ingest.max_entities_per_read,
        )
        self.idempotency = IdempotencyStore(runtime.engine, idempotency)
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self.native_reader: NativeReader | None = None

    @classmethod
    def open(cls, settings: DataSettings) -> DataService:
        runtime = open_runtime(settings)
        runtime.artifacts.exists("atlas-startup-probe")  # fail fast on wrong S3 credentials
        runner = JOBS.runner(runtime.engine, runtime.settings, settings.jobs)
        return cls(runtime, runner)

    def start(self) -> None:
        self.flush_offline()  # rows staged before a crash are published first
        self._start_native_reader()
        self.jobs.start()
        self._flusher = threading.Thread(
            target=self._flush_loop, name="atlas-offline-flush", daemon=True
        )
        self._flusher.start()

    def _start_native_reader(self) -> None:
        settings = self.rt.settings
        binary = wanted_binary(settings.native_reader, backend=settings.online.backend)
        if binary is None:
            return
        mirror_all(self.rt.online, self.rt.groups)
        try:
            self.native_reader = NativeReader.start(
                binary,
                lmdb_path=settings.online.lmdb_path,
                settings=settings.native_reader,
                auth=settings.server.auth,
                tls=settings.server.tls,
                work_dir=settings.data_dir,
                max_entities=settings.ingest.max_entities_per_read,
            )
        except Unavailable:
            if settings.native_reader.enabled:
                raise
            # Started only because it is installed: reads stay on this service.
            log.warning(
                "native online reader unavailable; serving reads from Python", exc_info=True
            )

    def stop(self) -> None:
        if self.native_reader is not None:
            self.native_reader.stop()
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(timeout=30)
        self.jobs.stop()
        self.flush_offline()
        self.rt.close()

    # -- offline flushing ---------------------------------------------------------------------

    def _event_columns(self) -> dict[tuple[str, int], str]:
        columns = {}
        for name, version in self.rt.offline.staged_groups():
            try:
                group = self.rt.groups.get(name, version)
            except Exception:  # noqa: BLE001 - a deleted group's leftovers are skipped
                continue
            columns[(name, version)] = group.spec.event_time_column
        return columns

    def flush_offline(self) -> int:
        try:
            return self.rt.offline.flush_all(self._event_columns())
        except Exception:  # noqa: BLE001 - retried on the next tick; staged rows stay durable
            log.exception("offline flush failed; will retry")
            return 0

    def _flush_loop(self) -> None:
        interval = self.rt.settings.ingest.offline_flush_seconds
        # Publishing staged rows is background work: under load it yields the CPU to the
        # calls being acknowledged (Linux applies a thread's nice value to that thread alone).
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        while not self._stop.wait(interval):
            self.flush_offline()

    # -- feature groups -----------------------------------------------------------------------

    def lineage(
        self, lineage_id: str, children_limit: int, ancestor_depth: int = 0
    ) -> lin.LineageView:
        return lin.answer(self.lineage_index.view, lineage_id, children_limit, ancestor_depth)

    def create_feature_group(self, spec: FeatureGroupSpec, *, new_version: bool) -> FeatureGroup:
        group = self.rt.groups.create(spec, new_version=new_version)
        if self.native_reader is not None:
            mirror_group(self.rt.online, self.rt.groups, group.spec.name)
        return group

    def delete_feature_group(self, name: str, *, keep_offline: bool) -> int:
        running = [
            j for j in self.jobs.list_all() if not j.finished and job_uses_group(j.spec, name)
        ]
        if running:
            raise FailedPrecondition(
                f"feature group '{name}' is used by running job {running[0].id}; cancel it or "
                "wait for it to finish",
                reason="GROUP_IN_USE",
            )
        doomed = self.rt.groups.delete(name)
        if self.native_reader is not None:
            mirror_group(self.rt.online, self.rt.groups, name)
        for group in doomed:
            self.rt.online.delete_group(group.store_key)
        if not keep_offline:
            self.rt.offline.delete_group(name)
        return len(doomed)


def job_uses_group(spec: dict[str, Any], name: str) -> bool:
    return f'"name": "{name}"' in json.dumps(spec)
