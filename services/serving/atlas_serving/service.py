"""The serving service's domain facade (no grpc): registry, endpoints, deployments, the data
plane and monitoring, wired from settings in one place."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.clients.data import DataClient
from atlas_core.db import (
    IdempotencyStore,
    apply_migrations,
    check_connection,
    create_engine_from_settings,
)
from atlas_core.jobs import JOBS_MIGRATIONS, JobState
from atlas_core.storage import ArtifactStore, open_artifact_store
from atlas_serving.alerts import AlertStore
from atlas_serving.bundle_access import BundleLoader, default_loader
from atlas_serving.capture import CaptureWriter
from atlas_serving.config import ServingSettings
from atlas_serving.control import Control
from atlas_serving.dataplane import DataPlane
from atlas_serving.endpoints import EndpointStore
from atlas_serving.jobs import JOBS, KIND_MONITOR
from atlas_serving.lookup import FeatureFetcher
from atlas_serving.metrics import ServingMetrics
from atlas_serving.models import ModelCache, settle_heap
from atlas_serving.registry import Registry
from atlas_serving.replica import Replica, read_stats
from atlas_serving.rollout import DeploymentStore, Driver
from atlas_serving.schedule import submit_due
from atlas_serving.stats import merge, percentile_ms
from atlas_serving.tables import MIGRATIONS, alerts, idempotency

log = logging.getLogger("atlas.serving")


@dataclass
class VariantWindow:
    variant: pb.Variant
    totals: dict[str, Any]
    loaded: int


class ServingService:
    def __init__(
        self,
        settings: ServingSettings,
        engine: Engine,
        store: ArtifactStore,
        loader: BundleLoader,
        data_client: DataClient | None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.data_client = data_client
        self.metrics = ServingMetrics()
        self.registry = Registry(engine, store, loader)
        self.endpoints = EndpointStore(engine)
        self.deployments = DeploymentStore(engine)
        self.alerts = AlertStore(engine)
        self.idem = IdempotencyStore(engine, idempotency)
        rt = settings.runtime
        self.models = ModelCache(
            store,
            loader,
            budget_bytes=settings.capacity.memory_budget_bytes,
            on_cold_start=self._cold_start,
        )
        self.capture = CaptureWriter(engine, store, rt.capture_prefix, rt.replica_id)
        self.executor = ThreadPoolExecutor(rt.inference_threads, "atlas-infer")
        self.plane = DataPlane(self.models, FeatureFetcher(data_client), self.capture, self.metrics)
        self.replica = Replica(
            settings, engine, self.endpoints, self.registry, self.plane, self.executor
        )
        self.control = Control(
            self.registry, self.endpoints, self.deployments, self.models, data_client, self.idem
        )
        self.driver = Driver(
            self.deployments,
            self.endpoints,
            engine,
            rt.replica_id,
            rt.rollout_tick_seconds,
            self._alert,
        )
        self.jobs = JOBS.runner(engine, settings, settings.jobs)
        self._drivers: dict[str, asyncio.Task[None]] = {}
        self._last_alert_poll = 0.0
        self._stopped = False

    @classmethod
    def open(
        cls, settings: ServingSettings, *, loader: BundleLoader | None = None, migrate: bool = True
    ) -> ServingService:
        """Connect to the DB (migrating it), the object store and the data service.

        Raises Unavailable / Unauthenticated / ConfigError saying what to fix."""
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        engine = create_engine_from_settings(settings.database)
        check_connection(engine)
        if migrate:
            apply_migrations(engine, MIGRATIONS, JOBS_MIGRATIONS)
        store = open_artifact_store(settings.s3)
        store.exists("atlas-startup-probe")  # fail fast on wrong S3 credentials
        client = DataClient(settings.data, timeout=5.0) if settings.data else None
        return cls(settings, engine, store, loader or default_loader, client)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.jobs.start()
        self.replica.on_tick.append(self._tick)
        await self.replica.start()
        settle_heap()
        # Background threads (DB polls, job runner, batches) hand the GIL back to the event
        # loop within 1 ms instead of the default 5 ms: a bound on their latency spikes.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))

    async def stop(self) -> None:
        """Stop loops, drivers and jobs; release connections. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for task in self._drivers.values():
            task.cancel()
        await self.replica.stop()
        await asyncio.to_thread(self.jobs.stop)
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.data_client is not None:
            self.data_client.close()
        self.engine.dispose()

    def _cold_start(self, key: tuple[str, int], seconds: float) -> None:
        self.metrics.cold_starts.labels(key[0], str(key[1])).inc()
        self.metrics.cold_start_seconds.labels(key[0]).observe(seconds)
        for (endpoint, variant), stats in self.replica.stats.items():
            ep = self.plane.endpoints.get(endpoint)
            v = ep.variants.get(variant) if ep else None
            if v is not None and (v.version.ref.model_name, v.version.ref.version) == key:
                stats.count("cold_starts")
                stats.last_cold_start_s = seconds

    def _alert(self, alert: pb.Alert) -> None:
        self.alerts.add(alert)

    def _tick(self) -> None:
        """Drive orphaned rollouts; refresh alert gauges (every few seconds)."""
        for dep_id in list(self._drivers):
            if self._drivers[dep_id].done():
                del self._drivers[dep_id]
        asyncio.ensure_future(self._adopt_orphans())
        if time.monotonic() - self._last_alert_poll > 2:
            self._last_alert_poll = time.monotonic()
            asyncio.ensure_future(self._refresh_alert_gauges())
            asyncio.ensure_future(asyncio.to_thread(self._monitoring_tick))

    def _monitoring_tick(self) -> None:
        """Submit due scheduled monitoring runs; export the latest PSI per feature."""
        try:
            submit_due(self.jobs, KIND_MONITOR)
            seen: set[str] = set()
            for record in self.jobs.list(KIND_MONITOR, JobState.SUCCEEDED, 100, 0):
                endpoint = record.spec.get("endpoint", "")
                if endpoint in seen or not record.result:
                    continue
                seen.add(endpoint)
                for f in record.result.get("report", {}).get("features", []):
                    self.metrics.drift.labels(endpoint, f["feature"]).set(f.get("psi", 0.0))
        except Exception:  # noqa: BLE001 - retried next tick
            log.exception("monitoring schedule tick failed")

    async def _adopt_orphans(self) -> None:
        lease = self.settings.runtime.rollout_lease_seconds
        for dep_id in await asyncio.to_thread(self.deployments.orphans, lease):
            if dep_id not in self._drivers and await asyncio.to_thread(
                self.deployments.claim, dep_id, self.settings.runtime.replica_id, lease
            ):
                log.info("taking over rollout %s", dep_id)
                self.drive(dep_id)

    async def _refresh_alert_gauges(self) -> None:
        def counts() -> list[Any]:
            with self.engine.connect() as conn:
                return conn.execute(
                    select(alerts.c.endpoint_name, alerts.c.kind, func.count())
                    .where(alerts.c.acknowledged.is_(False))
                    .group_by(alerts.c.endpoint_name, alerts.c.kind)
                ).all()

        for endpoint, kind, n in await asyncio.to_thread(counts):
            self.metrics.alerts.labels(endpoint, kind).set(n)

    def drive(self, deployment_id: str) -> None:
        self._drivers[deployment_id] = asyncio.ensure_future(self.driver.run(deployment_id))

    # -- deployments (async wrappers) ------------------------------------------------------

    async def submit_deployment(self, req: pb.SubmitDeploymentRequest) -> pb.Deployment:
        dep = await asyncio.to_thread(self.control.submit, req, self.settings.runtime.replica_id)
        if dep.deployment_id not in self._drivers:
            self.drive(dep.deployment_id)
        return dep

    async def rollback(self, endpoint: str, request_id: str) -> pb.Deployment:
        dep = await asyncio.to_thread(
            self.control.rollback, endpoint, request_id, self.settings.runtime.replica_id
        )
        if dep.deployment_id not in self._drivers:
            self.drive(dep.deployment_id)
        return dep

    # -- statistics ------------------------------------------------------------------------

    def variant_windows(self, name: str, window_s: float) -> list[VariantWindow]:
        endpoint = self.endpoints.get(name)
        published = read_stats(self.engine, name)
        out = []
        for v in endpoint.spec.variants:
            exports = published.get(v.name, [])
            out.append(
                VariantWindow(
                    v, merge(exports, window_s), sum(int(e.get("loaded", 0)) for e in exports)
                )
            )
        return out


def summarize(window: VariantWindow, window_s: float) -> pb.VariantStats:
    t = window.totals
    v = window.variant
    stats = pb.VariantStats(
        variant=v.name,
        model_version=v.resolved_version,
        qps=t["requests"] / window_s,
        p50_ms=percentile_ms(t["lat"], 0.5),
        p99_ms=percentile_ms(t["lat"], 0.99),
        error_rate=t["errors"] / t["requests"] if t["requests"] else 0.0,
        rejected=t["rejected"],
        mean_batch_size=t["batch_rows"] / t["batches"] if t["batches"] else 0.0,
        loaded_replicas=window.loaded,
        cold_starts=t["cold_starts"],
        traffic_percent=0.0 if v.role == pb.VARIANT_ROLE_SHADOW else v.weight,
    )
    stats.last_cold_start.FromNanoseconds(int(t["last_cold_start_s"] * 1e9))
    if v.role == pb.VARIANT_ROLE_SHADOW:
        stats.shadow.CopyFrom(
            pb.ShadowComparison(
                compared=t["compared"],
                label_agreement=t["agreed"] / t["compared"] if t["compared"] else 0.0,
                mean_abs_score_diff=t["score_diff"] / t["compared"] if t["compared"] else 0.0,
                p50_ms=percentile_ms(t["shadow_lat"], 0.5),
                p99_ms=percentile_ms(t["shadow_lat"], 0.99),
                errors=t["shadow_errors"],
            )
        )
    return stats
