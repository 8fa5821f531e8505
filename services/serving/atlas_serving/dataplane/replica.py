"""The replica loop: converge to the endpoints stored in the metadata DB (rebuilding only what
changed), preload warm variants, unload idle models, publish statistics, flush capture."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor

from sqlalchemy import Engine, delete

from atlas_core.db import write_transaction
from atlas_serving.config import ServingSettings
from atlas_serving.control.endpoints import EndpointStore
from atlas_serving.control.registry import Registry
from atlas_serving.dataplane.capture import DEFAULT_FLUSH_ROWS, DEFAULT_FLUSH_SECONDS
from atlas_serving.dataplane.live import EndpointRuntime, admission_for, build_variant
from atlas_serving.dataplane.models import ModelKey
from atlas_serving.dataplane.predict import DataPlane
from atlas_serving.domain import EndpointSpec, ModelVersion
from atlas_serving.monitoring.stats import WindowStats
from atlas_serving.tables import variant_stats

log = logging.getLogger("atlas.serving.replica")
CLOSE_DELAY_S = 10.0  # old batchers finish their in-flight work before closing


class Replica:
    def __init__(
        self,
        settings: ServingSettings,
        engine: Engine,
        endpoints: EndpointStore,
        registry: Registry,
        plane: DataPlane,
        executor: Executor,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.store = endpoints
        self.registry = registry
        self.plane = plane
        self.executor = executor
        self.stats: dict[tuple[str, str], WindowStats] = {}
        self._versions: dict[tuple[str, int], ModelVersion] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.on_tick: list[Callable[[], None]] = []

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.sync()
        rt = self.settings.runtime
        self._tasks = [
            asyncio.ensure_future(self._every(rt.poll_seconds, self.sync)),
            asyncio.ensure_future(self._every(rt.stats_publish_seconds, self.publish_stats)),
            asyncio.ensure_future(self._every(1.0, self.housekeeping)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for ep in self.plane.endpoints.values():
            for v in ep.variants.values():
                v.batcher.close()
        await asyncio.to_thread(self.flush_capture, True)

    async def _every(self, seconds: float, step: Callable[[], object]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                result = step()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # noqa: BLE001 - the loop must survive a DB hiccup
                log.exception("replica step %s failed", getattr(step, "__name__", step))

    # -- convergence -----------------------------------------------------------------------

    async def sync(self) -> None:
        snapshot = await asyncio.to_thread(self.store.snapshot)
        current = self.plane.endpoints
        for name in [n for n in current if n not in snapshot]:
            self._retire(current.pop(name))
        for name, (etag, spec) in snapshot.items():
            old = current.get(name)
            if old is not None and old.etag == etag:
                continue
            try:
                current[name] = await self._build(spec, etag, old)
            except Exception:  # noqa: BLE001 - keep serving the previous state
                log.exception("cannot apply endpoint %s", name)
                continue
            if old is not None:
                self._retire(old, keep=current[name])
            self._warm(current[name])
            for v in current[name].live:
                self.plane.metrics.traffic.labels(name, v.name).set(v.spec.weight)

    async def _build(
        self, spec: EndpointSpec, etag: str, old: EndpointRuntime | None
    ) -> EndpointRuntime:
        variants = {}
        for vspec in spec.variants:
            if (
                old is not None
                and vspec.name in old.variants
                and old.variants[vspec.name].same_as(vspec)
            ):
                kept = old.variants[vspec.name]
                kept.spec = vspec
                variants[vspec.name] = kept
                continue
            version = await self._version(vspec.model.model_name, vspec.resolved_version)
            stats = self.stats.setdefault((spec.name, vspec.name), WindowStats())
            metrics = self.plane.metrics.batch_size.labels(spec.name, vspec.name)
            variants[vspec.name] = build_variant(
                vspec,
                version,
                self.executor,
                self.settings.capacity,
                self.settings.runtime.inference_threads,
                stats,
                others=functools.partial(self._admitted, spec.name),
                on_batch=functools.partial(_batch_seen, stats=stats, histogram=metrics),
            )
        admission = (
            old.admission
            if old is not None and old.spec.capacity == spec.capacity
            else admission_for(spec, self.settings.capacity)
        )
        return EndpointRuntime(spec, etag, variants, admission)

    def _admitted(self, name: str) -> int:
        ep = self.plane.endpoints.get(name)
        return ep.admission.running if ep is not None else 0

    async def _version(self, model: str, number: int) -> ModelVersion:
        key = (model, number)
        if key not in self._versions:
            self._versions[key] = await asyncio.to_thread(self.registry.get, model, number)
        return self._versions[key]

    def _retire(self, ep: EndpointRuntime, keep: EndpointRuntime | None = None) -> None:
        kept = {id(v) for v in keep.variants.values()} if keep is not None else set()
        loop = asyncio.get_running_loop()
        for v in ep.variants.values():
            if id(v) not in kept:
                loop.call_later(CLOSE_DELAY_S, v.batcher.close)

    def _warm(self, ep: EndpointRuntime) -> None:
        if not ep.spec.capacity.warm:
            return
        for v in ep.variants.values():
            asyncio.ensure_future(self._preload(v.version))

    async def _preload(self, version: ModelVersion) -> None:
        try:
            await self.plane.models.get(version)
        except Exception:  # noqa: BLE001 - a failed preload retries lazily on first request
            log.exception("warm preload of %s failed", version.model_name)

    # -- housekeeping ----------------------------------------------------------------------

    def _ttl(self, key: ModelKey) -> float | None:
        """The shortest idle TTL among variants serving ``key``; None when one has none."""
        ttls = []
        for ep in self.plane.endpoints.values():
            for v in ep.variants.values():
                if v.key != key:
                    continue
                ttl = (
                    v.spec.capacity.idle_ttl_s
                    if v.spec.capacity.idle_ttl_s is not None
                    else ep.spec.capacity.idle_ttl_s
                )
                if not ttl or ep.spec.capacity.warm:
                    return None
                ttls.append(ttl)
        return min(ttls) if ttls else 0.0  # served by nobody: unload

    async def housekeeping(self) -> None:
        self.plane.models.unload_idle(self._ttl)
        self.plane.metrics.loaded_models.set(len(self.plane.models._entries))
        for name, ep in self.plane.endpoints.items():
            self.plane.metrics.queue_depth.labels(name).set(ep.admission.waiting)
            self.plane.metrics.inflight.labels(name).set(ep.admission.running)
        for hook in self.on_tick:
            hook()
        await asyncio.to_thread(self.flush_capture, False)

    def flush_capture(self, force: bool) -> int:
        limits = {}
        for name, ep in self.plane.endpoints.items():
            c = ep.spec.capture
            limits[name] = (
                c.flush_rows or DEFAULT_FLUSH_ROWS,
                c.flush_interval_s if c.flush_interval_s is not None else DEFAULT_FLUSH_SECONDS,
            )
        return self.plane.capture.flush_due(limits, force)

    async def publish_stats(self) -> None:
        rows = []
        now_us = int(time.time() * 1e6)
        for (endpoint, variant), stats in self.stats.items():
            model_key = None
            ep = self.plane.endpoints.get(endpoint)
            if ep is not None and variant in ep.variants:
                model_key = ep.variants[variant].key
            extra = (
                {}
                if model_key is None
                else {
                    "last_cold_start_s": self.plane.models.cold_starts.get(model_key, 0.0),
                    "loaded": int(self.plane.models.loaded(model_key)),
                }
            )
            rows.append(
                dict(
                    replica_id=self.settings.runtime.replica_id,
                    endpoint_name=endpoint,
                    variant=variant,
                    buckets=stats.export_json(**extra),
                    updated_us=now_us,
                )
            )
        if rows:
            await asyncio.to_thread(self._write_stats, rows)

    def _write_stats(self, rows: list[dict[str, object]]) -> None:
        replica = self.settings.runtime.replica_id
        with write_transaction(self.engine) as conn:
            conn.execute(delete(variant_stats).where(variant_stats.c.replica_id == replica))
            conn.execute(variant_stats.insert(), rows)


def _batch_seen(rows: int, stats: WindowStats, histogram: object) -> None:
    histogram.observe(rows)  # type: ignore[attr-defined]  # a prometheus Histogram child
    stats.count("batches")
    stats.count("batch_rows", rows)
