"""What one replica serves right now: endpoints built from the stored specs, their variants
(model version + batcher), weighted routing and admission control."""

from __future__ import annotations

import asyncio
import bisect
import random
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from atlas_core.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from atlas_serving.config import CapacityDefaults
from atlas_serving.dataplane.batching import Batcher
from atlas_serving.domain import EndpointSpec, ModelVersion, Variant, VariantRole
from atlas_serving.monitoring.stats import WindowStats


class Admission:
    """At most ``limit`` requests run at once and ``queue`` wait (each at most
    ``queue_timeout`` seconds, None: until its deadline); the rest are refused at once
    (RESOURCE_EXHAUSTED), so memory and latency stay bounded under overload."""

    def __init__(self, limit: int, queue: int, queue_timeout: float | None = None) -> None:
        self.limit = limit
        self.queue = queue
        self.queue_timeout = queue_timeout
        self.running = 0
        self.waiting = 0
        self._slots = asyncio.Semaphore(limit)

    async def enter(self, endpoint: str, timeout: float | None) -> None:
        if self.running >= self.limit or self.waiting:
            if self.waiting >= self.queue:
                raise ResourceExhausted(
                    f"endpoint {endpoint} is at capacity ({self.limit} running, {self.queue} "
                    f"queued on this replica): {_WHAT_TO_DO}",
                    reason="ENDPOINT_AT_CAPACITY",
                )
            wait, why = timeout, "the call's deadline"
            limit = self.queue_timeout
            if limit is not None and (wait is None or limit < wait):
                wait, why = limit, f"capacity.queue_timeout_ms ({limit * 1000:g} ms)"
            self.waiting += 1
            try:
                await asyncio.wait_for(self._slots.acquire(), wait)
            except TimeoutError:
                raise ResourceExhausted(
                    f"endpoint {endpoint}: no slot freed within {why}: {_WHAT_TO_DO}",
                    reason="ENDPOINT_AT_CAPACITY",
                ) from None
            finally:
                self.waiting -= 1
        else:
            await self._slots.acquire()
        self.running += 1

    def leave(self) -> None:
        self.running -= 1
        self._slots.release()


_WHAT_TO_DO = (
    "retry with exponential backoff, or raise the endpoint's capacity.max_concurrency / "
    "max_queue (UpdateEndpoint) or add replicas"
)


@dataclass
class VariantRuntime:
    spec: Variant
    version: ModelVersion
    batcher: Batcher
    stats: WindowStats
    shadow_inflight: int = 0
    # hot-path caches: the model cache key, and metric children by status code
    key: tuple[str, int] = field(init=False)
    observers: dict[str, tuple[Any, Any]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.key = self.version.key

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def shadow(self) -> bool:
        return self.spec.role == VariantRole.SHADOW

    def same_as(self, spec: Variant) -> bool:
        return (
            spec.resolved_version == self.spec.resolved_version
            and spec.model.model_name == self.spec.model.model_name
            and spec.batching == self.spec.batching
            and spec.replicas == self.spec.replicas
            and spec.role == self.spec.role
        )


@dataclass
class EndpointRuntime:
    spec: EndpointSpec
    etag: str
    variants: dict[str, VariantRuntime]
    admission: Admission
    live: list[VariantRuntime] = field(default_factory=list)
    cumulative: list[float] = field(default_factory=list)
    shadows: list[VariantRuntime] = field(default_factory=list)

    def __post_init__(self) -> None:
        total = 0.0
        for v in self.variants.values():
            if v.shadow:
                self.shadows.append(v)
            elif v.spec.weight > 0:
                total += v.spec.weight
                self.live.append(v)
                self.cumulative.append(total)

    @property
    def name(self) -> str:
        return self.spec.name

    def choose(self, target: str = "") -> VariantRuntime:
        if target:
            variant = self.variants.get(target)
            if variant is None or variant.shadow:
                raise InvalidArgument(
                    f"endpoint {self.name} has no live variant {target!r}", reason="UNKNOWN_VARIANT"
                )
            return variant
        if not self.live:
            raise FailedPrecondition(
                f"endpoint {self.name} has no live variant", reason="NO_LIVE_VARIANT"
            )
        if len(self.live) == 1:
            return self.live[0]
        pick = random.random() * self.cumulative[-1]
        return self.live[min(bisect.bisect_right(self.cumulative, pick), len(self.live) - 1)]


def build_variant(
    spec: Variant,
    version: ModelVersion,
    executor: Executor,
    defaults: CapacityDefaults,
    workers: int,
    stats: WindowStats,
    others: Callable[[], int],
    on_batch: Callable[[int], None],
) -> VariantRuntime:
    b = spec.batching
    delay = b.max_delay_s if b.max_delay_s is not None else defaults.max_delay_ms / 1000
    batcher = Batcher(
        executor,
        max_batch_size=b.max_batch_size or defaults.max_batch_size,
        max_delay_s=delay,
        workers=spec.replicas or workers,
        others_waiting=others,
        on_batch=on_batch,
        disabled=b.disabled,
        inline_budget_s=defaults.inline_budget_ms / 1000,
    )
    return VariantRuntime(spec, version, batcher, stats)


def admission_for(spec: EndpointSpec, defaults: CapacityDefaults) -> Admission:
    c = spec.capacity
    return Admission(
        c.max_concurrency or defaults.max_concurrency,
        c.max_queue if c.max_queue or c.max_concurrency else defaults.max_queue,
        defaults.queue_timeout_ms / 1000 or None,
    )
