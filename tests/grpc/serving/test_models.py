"""Model capacity: LRU within the memory budget, idle-TTL unload, warm preload, metrics."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pandas as pd
from google.protobuf import duration_pb2

from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.config import S3Settings
from atlas_serving.config import CapacityDefaults

from .conftest import live, row, serving_settings, start_harness, stop_harness, write_model


async def _wait(condition, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        await asyncio.sleep(0.1)
    return condition()


async def test_lru_ttl_and_warm(
    tmp_path: Path, s3_settings: S3Settings, features: pd.DataFrame
) -> None:
    settings = serving_settings(tmp_path, s3_settings, "")
    settings = settings.model_copy(
        update={  # one model at a time
            "capacity": CapacityDefaults(memory_budget_bytes=1)
        }
    )
    h = await start_harness(settings)
    try:
        for name in ("a", "b"):
            await h.register(name, write_model(s3_settings, f"models/{name}/v1.tar"))
            await h.stub.CreateEndpoint(
                pb.CreateEndpointRequest(
                    spec=pb.EndpointSpec(name=name, variants=[live("blue", name, 1)])
                )
            )
        models = h.service.models
        assert not models.loaded(("a", 1))  # lazy: nothing loaded before a request
        one = row(features.iloc[0].to_dict())
        await h.stub.Predict(pb.PredictRequest(endpoint_name="a", row=one))
        assert models.loaded(("a", 1))
        await h.stub.Predict(pb.PredictRequest(endpoint_name="b", row=one))
        assert models.loaded(("b", 1)) and not models.loaded(("a", 1))  # LRU eviction
        await h.stub.Predict(pb.PredictRequest(endpoint_name="a", row=one))  # reloads
        assert models.loaded(("a", 1))

        # idle TTL: scale to zero, next request loads again (a cold start is recorded)
        capacity = pb.CapacityConfig(idle_ttl=duration_pb2.Duration(nanos=300_000_000))
        await h.stub.UpdateEndpoint(pb.UpdateEndpointRequest(name="a", capacity=capacity))
        assert await _wait(lambda: not models.loaded(("a", 1)))
        await h.stub.Predict(pb.PredictRequest(endpoint_name="a", row=one))
        assert models.cold_starts[("a", 1)] > 0

        # warm: preloaded without any request
        models.budget_bytes = 10**10
        await h.stub.UpdateEndpoint(
            pb.UpdateEndpointRequest(name="b", capacity=pb.CapacityConfig(warm=True))
        )
        assert await _wait(lambda: models.loaded(("b", 1)))

        metrics = h.server.metrics.registry
        cold = metrics.get_sample_value(
            "atlas_serving_cold_starts_total", {"model": "a", "version": "1"}
        )
        assert cold is not None and cold >= 3
        ok = metrics.get_sample_value(
            "atlas_serving_requests_total", {"endpoint": "a", "variant": "blue", "code": "OK"}
        )
        assert ok == 3
        assert (
            metrics.get_sample_value(
                "atlas_serving_latency_seconds_count", {"endpoint": "b", "variant": "blue"}
            )
            == 1
        )
    finally:
        await stop_harness(h)


async def test_metrics_are_exposed_over_http(
    tmp_path: Path, s3_settings: S3Settings, features: pd.DataFrame
) -> None:
    import urllib.request

    settings = serving_settings(tmp_path, s3_settings, "")
    settings = settings.model_copy(
        update={"server": settings.server.model_copy(update={"metrics_port": 0})}
    )
    h = await start_harness(settings)
    try:
        await h.register("bc", write_model(s3_settings, "models/bc/v1.tar"))
        await h.stub.CreateEndpoint(
            pb.CreateEndpointRequest(
                spec=pb.EndpointSpec(name="bc", variants=[live("blue", "bc", 1)])
            )
        )
        for i in range(5):
            await h.stub.Predict(
                pb.PredictRequest(endpoint_name="bc", row=row(features.iloc[i].to_dict()))
            )
        url = f"http://127.0.0.1:{h.server.metrics_port}/metrics"
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url).read().decode())
        for needle in (
            'atlas_serving_requests_total{code="OK",endpoint="bc",variant="blue"} 5.0',
            "atlas_serving_batch_size_bucket",
            "atlas_serving_cold_start_seconds",
            'atlas_serving_traffic_percent{endpoint="bc",variant="blue"} 100.0',
        ):
            assert needle in text, needle
    finally:
        await stop_harness(h)
