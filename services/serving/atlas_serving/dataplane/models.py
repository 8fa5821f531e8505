"""Loaded models of one replica: lazy load on first use (cold start measured), one load per
version at a time, LRU eviction within a memory budget, unload after an idle TTL."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from atlas_core.storage import ArtifactStore
from atlas_serving.bundle_access import BundleLoader, resolve_artifact
from atlas_serving.dataplane.inference import ServableModel
from atlas_serving.dataplane.node_lookup import servable
from atlas_serving.dataplane.variants import choose_variant
from atlas_serving.domain import ModelVersion

log = logging.getLogger("atlas.serving.models")

ModelKey = tuple[str, int]
ColdStartHook = Callable[[ModelKey, float], None]


def settle_heap() -> None:
    """Move everything alive now (libraries, loaded models) out of the cyclic GC's reach.

    A full collection walks every tracked object: with pandas, scikit-learn and XGBoost
    loaded that is hundreds of thousands of objects walked with the GIL held, a stall for
    every request in flight. Long-lived objects never need it; requests' garbage stays in the young
    generations, which are collected as usual."""
    gc.collect(1)
    gc.freeze()


@dataclass
class _Entry:
    model: ServableModel
    last_used: float


class ModelCache:
    """Not thread-safe: used from the event loop only (loads run in worker threads)."""

    def __init__(
        self,
        store: ArtifactStore,
        loader: BundleLoader,
        *,
        budget_bytes: int,
        on_cold_start: ColdStartHook | None = None,
        compile_models: bool = True,
        refit_full_tolerance: float = 0.005,
    ) -> None:
        self.store = store
        self.loader = loader
        self.budget_bytes = budget_bytes
        self.on_cold_start = on_cold_start
        self.compile_models = compile_models
        self.refit_full_tolerance = refit_full_tolerance
        self._entries: OrderedDict[ModelKey, _Entry] = OrderedDict()
        self._loading: dict[ModelKey, asyncio.Future[ServableModel]] = {}
        self.cold_starts: dict[ModelKey, float] = {}

    def loaded(self, key: ModelKey) -> bool:
        return key in self._entries

    @property
    def used_bytes(self) -> int:
        return sum(e.model.memory_bytes for e in self._entries.values())

    def peek(self, key: ModelKey) -> ServableModel | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        entry.last_used = time.monotonic()
        self._entries.move_to_end(key)
        return entry.model

    def peek_version(self, version: ModelVersion) -> ServableModel | None:
        return self.peek(version.key)

    async def get(self, version: ModelVersion) -> ServableModel:
        key = version.key
        model = self.peek(key)
        if model is not None:
            return model
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._loading[key] = pending
            asyncio.ensure_future(self._load(key, version, pending))
        return await asyncio.shield(pending)

    async def _load(
        self, key: ModelKey, version: ModelVersion, done: asyncio.Future[ServableModel]
    ) -> None:
        start = time.perf_counter()
        try:
            model = await asyncio.to_thread(self.load_now, version)
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter
            self._loading.pop(key, None)
            if not done.done():
                done.set_exception(exc)
            done.exception()  # mark retrieved: waiters may have gone
            return
        seconds = time.perf_counter() - start
        self._entries[key] = _Entry(model, time.monotonic())
        self._loading.pop(key, None)
        self.cold_starts[key] = seconds
        log.info(
            "model loaded",
            extra={
                "model": key[0],
                "version": key[1],
                "seconds": round(seconds, 4),
                "bytes": model.memory_bytes,
                "variant": model.variant,
            },
        )
        if self.on_cold_start is not None:
            self.on_cold_start(key, seconds)
        self._evict(keep=key)
        settle_heap()
        done.set_result(model)

    def load_now(self, version: ModelVersion) -> ServableModel:
        """Load and check a bundle (blocking): DataLoss on checksum failure."""
        ref = resolve_artifact(self.store, version.bundle)
        bundle, chosen = choose_variant(self.loader(self.store, ref), self.refit_full_tolerance)
        model = servable(bundle, compile_all=self.compile_models)
        model.variant, model.variant_reason = chosen.name, chosen.reason
        return model

    def _evict(self, keep: ModelKey) -> None:
        while self.used_bytes > self.budget_bytes and len(self._entries) > 1:
            victim = next(k for k in self._entries if k != keep)
            self.unload(victim, why="memory budget")

    def unload(self, key: ModelKey, why: str) -> None:
        if self._entries.pop(key, None) is not None:
            log.info("model unloaded", extra={"model": key[0], "version": key[1], "why": why})

    def unload_idle(self, ttl_seconds: Callable[[ModelKey], float | None]) -> list[ModelKey]:
        """Unload models idle longer than their TTL (None: keep)."""
        now = time.monotonic()
        gone = []
        for key, entry in list(self._entries.items()):
            ttl = ttl_seconds(key)
            if ttl is not None and now - entry.last_used > ttl:
                self.unload(key, why="idle")
                gone.append(key)
        return gone
