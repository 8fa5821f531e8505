"""Endpoint state in the metadata DB: the desired variants (with resolved model versions and
the current live traffic split), capacity, lookup and capture settings. Every replica polls
this table and converges to it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Engine, Row, select

from atlas_core.db import fetch_page, write_transaction
from atlas_core.errors import Aborted, AlreadyExists, InvalidArgument
from atlas_serving.control.registry import Registry, check_name
from atlas_serving.domain import (
    Capacity,
    Capture,
    Endpoint,
    EndpointSpec,
    EndpointState,
    QualityConfig,
    Variant,
    VariantRole,
    endpoint_not_found,
)
from atlas_serving.records import Codec, now
from atlas_serving.tables import endpoints

MAX_BATCH = 4096


def _bad(message: str, field: str) -> InvalidArgument:
    return InvalidArgument(message, reason="INVALID_SPEC", metadata={"field": field})


def validate_variants(variants: Sequence[Variant]) -> None:
    names = [v.name for v in variants]
    if not variants:
        raise _bad("at least one variant is required", "variants")
    for i, v in enumerate(variants):
        check_name(v.name, f"variants[{i}].name")
        if not v.model.model_name:
            raise _bad(f"variants[{i}].model.model_name is required", f"variants[{i}].model")
        if not 0 <= v.weight <= 100:
            raise _bad(f"variants[{i}].weight must be in [0, 100]", f"variants[{i}].weight")
        if not 0 <= v.shadow_fraction <= 1:
            raise _bad(
                f"variants[{i}].shadow_fraction must be in [0, 1]", f"variants[{i}].shadow_fraction"
            )
        if v.replicas < 0 or v.replicas > 64:
            raise _bad(f"variants[{i}].replicas must be in [0, 64]", f"variants[{i}].replicas")
        b = v.batching
        if not 0 <= b.max_batch_size <= MAX_BATCH:
            raise _bad(
                f"variants[{i}].batching.max_batch_size must be in [0, {MAX_BATCH}]",
                f"variants[{i}].batching.max_batch_size",
            )
        if b.max_delay_s is not None and not 0 <= b.max_delay_s <= 1:
            raise _bad(
                f"variants[{i}].batching.max_delay must be in [0, 1s]",
                f"variants[{i}].batching.max_delay",
            )
        validate_capacity(v.capacity, f"variants[{i}].capacity")
    if len(set(names)) != len(names):
        raise _bad("variant names must be unique", "variants")
    live = [v for v in variants if v.role != VariantRole.SHADOW]
    if not live:
        raise _bad("at least one live variant is required", "variants")
    total = sum(v.weight for v in live)
    if abs(total - 100) > 1e-6:
        raise _bad(f"live variant weights must sum to 100, got {total:g}", "variants.weight")


def validate_capacity(c: Capacity, field: str) -> None:
    if c.max_concurrency < 0 or c.max_queue < 0 or c.memory_budget_bytes < 0:
        raise _bad(
            f"{field}: max_concurrency, max_queue and memory_budget_bytes must be >= 0", field
        )
    if c.idle_ttl_s is not None and c.idle_ttl_s < 0:
        raise _bad(f"{field}.idle_ttl must not be negative", f"{field}.idle_ttl")


def validate_capture(c: Capture) -> None:
    if c.enabled and not 0 < c.sample_fraction <= 1:
        raise _bad("capture.sample_fraction must be in (0, 1]", "capture.sample_fraction")
    if c.flush_rows < 0:
        raise _bad("capture.flush_rows must be >= 0", "capture.flush_rows")


def validate_quality(q: QualityConfig) -> None:
    from atlas_serving.monitoring.quality import HIGHER_IS_BETTER

    if not 0 <= q.sample_fraction <= 1:
        raise _bad("quality.sample_fraction must be in [0, 1]", "quality.sample_fraction")
    if q.min_labeled < 0:
        raise _bad("quality.min_labeled must be >= 0", "quality.min_labeled")
    if q.window_s is not None and q.window_s <= 0:
        raise _bad("quality.window must be positive", "quality.window")
    for t in q.thresholds:
        if t.metric not in HIGHER_IS_BETTER:
            raise _bad(
                f"quality.thresholds: unknown metric {t.metric!r} "
                f"(one of {', '.join(HIGHER_IS_BETTER)})",
                "quality.thresholds",
            )


def validate_spec(spec: EndpointSpec) -> None:
    check_name(spec.name, "spec.name")
    validate_variants(spec.variants)
    validate_capacity(spec.capacity, "capacity")
    validate_capture(spec.capture)
    validate_quality(spec.quality)
    for i, ref in enumerate(spec.feature_lookup.feature_groups):
        if not ref.name:
            raise _bad(
                f"feature_lookup.feature_groups[{i}].name is required",
                "feature_lookup.feature_groups",
            )


def resolve_variants(registry: Registry, variants: Sequence[Variant]) -> list[Variant]:
    """Copies with model versions resolved (aliases kept for display in ``model``)."""
    return [replace(v, resolved_version=registry.get_ref(v.model).version) for v in variants]


class EndpointStore:
    def __init__(self, engine: Engine, codec: Codec[EndpointSpec]) -> None:
        self.engine = engine
        self.codec = codec

    def create(self, spec: EndpointSpec) -> Endpoint:
        stamp = now()
        with write_transaction(self.engine) as conn:
            if (
                conn.execute(select(endpoints.c.name).where(endpoints.c.name == spec.name)).first()
                is not None
            ):
                raise AlreadyExists(
                    f"endpoint {spec.name} already exists", reason="ENDPOINT_EXISTS"
                )
            conn.execute(
                endpoints.insert().values(
                    name=spec.name,
                    spec=self.codec.dumps(spec),
                    state=_state_name(EndpointState.SERVING),
                    traffic=json.dumps(live_split(spec)),
                    active_deployment_id="",
                    last_deployment_id="",
                    etag=uuid.uuid4().hex[:16],
                    created_at=stamp,
                    updated_at=stamp,
                )
            )
        return self.get(spec.name)

    def get(self, name: str) -> Endpoint:
        if not name:
            raise InvalidArgument("endpoint name is required", reason="NAME_REQUIRED")
        with self.engine.connect() as conn:
            row = conn.execute(select(endpoints).where(endpoints.c.name == name)).first()
        if row is None:
            raise endpoint_not_found(name)
        return self._endpoint(row)

    def list(
        self, prefix: str = "", offset: int = 0, limit: int = 10_000
    ) -> tuple[list[Endpoint], int]:
        query = select(endpoints).where(endpoints.c.name.startswith(prefix))
        with self.engine.connect() as conn:
            rows, total = fetch_page(conn, query.order_by(endpoints.c.name), offset, limit)
        return [self._endpoint(r) for r in rows], total

    def snapshot(self) -> dict[str, tuple[str, EndpointSpec]]:
        """name -> (etag, spec) of every endpoint: what a replica polls."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(endpoints.c.name, endpoints.c.etag, endpoints.c.spec)).all()
        return {r.name: (r.etag, self.codec.loads(r.spec)) for r in rows}

    def mutate(self, name: str, change: Callable[[Endpoint], None], *, etag: str = "") -> Endpoint:
        """Apply ``change`` to the stored endpoint atomically; ABORTED on an etag mismatch."""
        with write_transaction(self.engine) as conn:
            row = conn.execute(select(endpoints).where(endpoints.c.name == name)).first()
            if row is None:
                raise endpoint_not_found(name)
            if etag and etag != row.etag:
                raise Aborted(
                    f"endpoint {name} changed since etag {etag} (now {row.etag})",
                    reason="ETAG_MISMATCH",
                )
            endpoint = self._endpoint(row)
            change(endpoint)
            conn.execute(
                endpoints.update()
                .where(endpoints.c.name == name)
                .values(
                    spec=self.codec.dumps(endpoint.spec),
                    state=_state_name(endpoint.state),
                    traffic=json.dumps(live_split(endpoint.spec)),
                    active_deployment_id=endpoint.active_deployment_id,
                    last_deployment_id=endpoint.last_deployment_id,
                    etag=uuid.uuid4().hex[:16],
                    updated_at=now(),
                )
            )
        return self.get(name)

    def delete(self, name: str) -> Endpoint:
        endpoint = self.get(name)
        with write_transaction(self.engine) as conn:
            conn.execute(endpoints.delete().where(endpoints.c.name == name))
        return endpoint

    def _endpoint(self, row: Row[Any]) -> Endpoint:
        return Endpoint(
            spec=self.codec.loads(row.spec),
            state=EndpointState[row.state.removeprefix(_STATE_PREFIX)],
            active_deployment_id=row.active_deployment_id,
            last_deployment_id=row.last_deployment_id,
            etag=row.etag,
            create_time=row.created_at,
            update_time=row.updated_at,
        )


# The state column holds the proto enum names (ENDPOINT_STATE_SERVING, ...).
_STATE_PREFIX = "ENDPOINT_STATE_"


def _state_name(state: EndpointState) -> str:
    return _STATE_PREFIX + state.name


def live_split(spec: EndpointSpec) -> dict[str, float]:
    return {v.name: v.weight for v in spec.variants if v.role != VariantRole.SHADOW}
