"""The prediction path shared by every front end (unary, batch, stream): admission, routing,
feature lookup, lazy model load, batched inference, statistics, capture and shadows."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from atlas_core.errors import AtlasError, InvalidArgument, ResourceExhausted
from atlas_serving.dataplane.capture import CaptureWriter
from atlas_serving.dataplane.inference import RowResult, ServableModel, check_row_names
from atlas_serving.dataplane.live import EndpointRuntime, VariantRuntime
from atlas_serving.dataplane.lookup import FeatureFetcher
from atlas_serving.dataplane.loop_lag import LoopLag
from atlas_serving.dataplane.models import ModelCache, ModelKey
from atlas_serving.dataplane.prediction_log import PredictionLog, new_prediction_id
from atlas_serving.dataplane.variants import ServedVersion
from atlas_serving.domain import PredictOptions, Row, endpoint_not_found
from atlas_serving.monitoring.metrics import ServingMetrics

log = logging.getLogger("atlas.serving.predict")

MAX_ROWS = 10_000
MAX_SHADOW_INFLIGHT = 256
_CLIENT_ERRORS = ("INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED")
_NOT_ERRORS = frozenset(("OK", *_CLIENT_ERRORS))


@dataclass
class Answer:
    results: list[RowResult]
    variant: str
    model: ModelKey  # (model name, version) that answered
    prediction_id: str
    served: ServedVersion = ServedVersion()  # which version of its bundle's model, and why


class DataPlane:
    def __init__(
        self,
        models: ModelCache,
        fetcher: FeatureFetcher,
        capture: CaptureWriter,
        metrics: ServingMetrics,
        predictions: PredictionLog | None = None,
        loop_lag: LoopLag | None = None,
    ) -> None:
        self.loop_lag = loop_lag or LoopLag(0.0)
        self.models = models
        self.fetcher = fetcher
        self.capture = capture
        self.metrics = metrics
        self.predictions = predictions
        self.endpoints: dict[str, EndpointRuntime] = {}
        self._background: set[asyncio.Task[Any]] = set()

    def endpoint(self, name: str) -> EndpointRuntime:
        if not name:
            raise InvalidArgument("endpoint_name is required", reason="NAME_REQUIRED")
        ep = self.endpoints.get(name)
        if ep is None:
            raise endpoint_not_found(name)
        return ep

    async def predict(
        self,
        name: str,
        rows: Sequence[Row],
        options: PredictOptions,
        *,
        timeout: float | None = None,
    ) -> Answer:
        """Rows of inline features or entity ids (looked up in the data service)."""
        _check_count(len(rows))
        ep = self.endpoint(name)

        async def features(model: ServableModel) -> tuple[list[dict[str, Any]], list[bool]]:
            return await self._features(ep, model, rows)

        return await self._serve(ep, options, timeout, features, rows)

    async def predict_values(
        self,
        name: str,
        rows: Sequence[dict[str, Any]],
        options: PredictOptions,
        *,
        timeout: float | None = None,
    ) -> Answer:
        """Rows already decoded to Python values (artifact batches)."""
        _check_count(len(rows))
        ep = self.endpoint(name)

        async def features(model: ServableModel) -> tuple[list[dict[str, Any]], list[bool]]:
            checked = []
            for i, values in enumerate(rows):
                try:
                    checked.append(
                        check_row_names(values, model.names, model.name_set, model.unused)
                    )
                except InvalidArgument as exc:
                    raise row_error(i, len(rows), exc) from None
            return checked, [False] * len(rows)

        return await self._serve(ep, options, timeout, features)

    async def _serve(
        self,
        ep: EndpointRuntime,
        options: PredictOptions,
        timeout: float | None,
        decode: Any,
        rows: Sequence[Row] | None = None,
    ) -> Answer:
        name = ep.name
        start = time.perf_counter()
        admission = ep.admission
        try:
            if self.loop_lag.shedding:
                raise ResourceExhausted(
                    f"serving replica overloaded: calls wait {self.loop_lag.lag * 1000:.0f} ms "
                    f"before they are handled (capacity.max_loop_lag_ms "
                    f"{self.loop_lag.limit * 1000:g}); retry with exponential backoff (another "
                    "replica may answer), or add replicas",
                    reason="REPLICA_OVERLOADED",
                )
            await admission.enter(name, timeout)
        except AtlasError:
            self.metrics.rejected.labels(name).inc()
            for v in ep.live[:1]:
                v.stats.count("rejected")
            raise
        variant: VariantRuntime | None = None
        try:
            variant = ep.choose(options.target_variant)
            model = self.models.peek(variant.key) or await self.models.get(variant.version)
            features, fallbacks = await decode(model)
            results = await variant.batcher.predict(
                model, features, explain=options.explain, all_scores=options.return_all_scores
            )
            for i, result in enumerate(results):
                if result.error is not None:
                    raise row_error(i, len(results), result.error)
        except AtlasError as exc:
            if variant is not None:
                self._observe(ep, variant, start, exc.code.value)
            raise
        except Exception:
            if variant is not None:
                self._observe(ep, variant, start, "INTERNAL")
            raise
        finally:
            admission.leave()
        for result, used in zip(results, fallbacks, strict=True):
            result.fallback_used = used
            for feature in result.unseen:
                self.metrics.unseen_categories.labels(name, feature).inc()
        seconds = self._observe(ep, variant, start, "OK")
        answer = Answer(
            results, variant.name, variant.key, new_prediction_id(), model.served_version()
        )
        if ep.spec.capture.enabled and random.random() < ep.spec.capture.sample_fraction:
            self._capture(ep, answer, features, seconds)
        record = None
        quality = ep.spec.quality
        if (
            quality.enabled
            and self.predictions is not None
            and (not quality.sample_fraction or random.random() < quality.sample_fraction)
        ):
            record = (answer.prediction_id, _entities(rows, features, quality.entity_feature))
            self.predictions.add(
                name, record[0], variant.name, variant.key, False, record[1], results, _now_us()
            )
        for shadow in ep.shadows:
            if shadow.shadow_inflight < MAX_SHADOW_INFLIGHT and random.random() < (
                shadow.spec.shadow_fraction or 1.0
            ):
                self._spawn(self._shadow(ep.name, shadow, features, results, options, record))
        return answer

    def _observe(
        self, ep: EndpointRuntime, variant: VariantRuntime, start: float, code: str
    ) -> float:
        seconds = time.perf_counter() - start
        variant.stats.latency(seconds, error=code not in _NOT_ERRORS)
        children = variant.observers.get(code)
        if children is None:  # label lookups once per (variant, code), not per request
            children = variant.observers[code] = (
                self.metrics.requests.labels(ep.name, variant.name, code),
                self.metrics.latency.labels(ep.name, variant.name),
            )
        children[0].inc()
        children[1].observe(seconds)
        return seconds

    async def _features(
        self, ep: EndpointRuntime, model: ServableModel, rows: Sequence[Row]
    ) -> tuple[list[dict[str, Any]], list[bool]]:
        out: list[dict[str, Any] | None] = [None] * len(rows)
        used = [False] * len(rows)
        lookups: list[int] = []
        for i, row in enumerate(rows):
            values = row.features
            if values is None:
                lookups.append(i)
                continue
            try:
                out[i] = check_row_names(values, model.names, model.name_set, model.unused)
            except InvalidArgument as exc:
                raise row_error(i, len(rows), exc) from None
        if lookups:
            fetched = await self.fetcher.rows(
                ep.spec.feature_lookup, model, [rows[i].entity_id for i in lookups]
            )
            for i, (values, fallback) in zip(lookups, fetched, strict=True):
                values.update(rows[i].overrides)
                try:
                    out[i] = check_row_names(values, model.names, model.name_set, model.unused)
                except InvalidArgument as exc:
                    raise row_error(i, len(rows), exc) from None
                used[i] = fallback
        return [r for r in out if r is not None], used

    def _capture(
        self, ep: EndpointRuntime, answer: Answer, features: list[dict[str, Any]], seconds: float
    ) -> None:
        now_us = int(time.time() * 1e6)
        for n, (row, result) in enumerate(zip(features, answer.results, strict=True)):
            record = {f"f_{k}": v for k, v in row.items()}
            record.update(
                time_us=now_us,
                prediction_id=answer.prediction_id,
                prediction_row=n,
                variant=answer.variant,
                model_version=answer.model[1],
                label=result.label,
                value=result.value,
                latency_ms=seconds * 1000,
            )
            self.capture.add(ep.name, answer.variant, record)

    async def _shadow(
        self,
        endpoint: str,
        shadow: VariantRuntime,
        features: list[dict[str, Any]],
        live: list[RowResult],
        options: PredictOptions,
        record: tuple[str, list[Any] | None] | None = None,
    ) -> None:
        shadow.shadow_inflight += 1
        start = time.perf_counter()
        try:
            model = await self.models.get(shadow.version)
            results = await shadow.batcher.predict(
                model, features, all_scores=options.return_all_scores
            )
        except Exception:  # noqa: BLE001 - a shadow failure never reaches the caller
            shadow.stats.count("shadow_errors")
            return
        finally:
            shadow.shadow_inflight -= 1
        seconds = time.perf_counter() - start
        if record is not None and self.predictions is not None:
            # the live prediction's id: pairs the shadow's answer with it on the same request
            self.predictions.add(
                endpoint, record[0], shadow.name, shadow.key, True, record[1], results, _now_us()
            )
        for mine, theirs in zip(results, live, strict=True):
            shadow.stats.shadow(mine.label == theirs.label, abs(mine.value - theirs.value), seconds)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _now_us() -> int:
    return int(time.time() * 1e6)


def _entities(
    rows: Sequence[Row] | None, features: list[dict[str, Any]], entity_feature: str
) -> list[Any] | None:
    """Each row's entity: its lookup id, else the value of the configured entity feature."""
    if rows is None and not entity_feature:
        return None
    out: list[Any] = []
    for i, values in enumerate(features):
        row = rows[i] if rows is not None and i < len(rows) else None
        if row is not None and row.features is None:
            out.append(row.entity_id)
        else:
            out.append(values.get(entity_feature) if entity_feature else None)
    return out


def _check_count(n: int) -> None:
    if not n:
        raise InvalidArgument("no rows to predict", reason="NO_ROWS")
    if n > MAX_ROWS:
        raise InvalidArgument(
            f"{n} rows exceed the limit of {MAX_ROWS}; use input_artifact", reason="TOO_MANY_ROWS"
        )


def row_error(index: int, total: int, exc: Exception) -> InvalidArgument:
    """INVALID_ARGUMENT naming the row (in the message when there are several, always in the
    metadata)."""
    message = getattr(exc, "message", str(exc))
    if total > 1:
        message = f"row {index}: {message}"
    metadata = dict(getattr(exc, "metadata", {}))
    metadata["row"] = str(index)
    return InvalidArgument(
        message, reason=getattr(exc, "reason", "INVALID_FEATURES"), metadata=metadata
    )
