"""Overload: beyond the concurrency limit and queue, RESOURCE_EXHAUSTED at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import grpc
import pandas as pd
import pytest

from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.config import S3Settings
from atlas_core.rpc import error_from_rpc
from atlas_serving.config import CapacityDefaults

from .conftest import (
    ServingHarness,
    live,
    row,
    serving_settings,
    start_harness,
    stop_harness,
    write_model,
)


async def test_overload_is_refused_at_once(serving: ServingHarness, features: pd.DataFrame) -> None:
    await serving.register("bc", write_model(serving.settings.s3, "models/bc/v1.tar", trees=300))
    await serving.stub.CreateEndpoint(
        pb.CreateEndpointRequest(
            spec=pb.EndpointSpec(
                name="bc",
                variants=[live("blue", "bc", 1)],
                capacity=pb.CapacityConfig(max_concurrency=2, max_queue=2, warm=True),
            )
        )
    )
    request = pb.PredictRequest(
        endpoint_name="bc",
        row=row(features.iloc[0].to_dict()),
        options=pb.PredictOptions(explain=True),
    )
    await serving.stub.Predict(request)

    calls = await asyncio.gather(*[_timed(serving.stub, request) for _ in range(40)])
    codes = [c for c, _, _ in calls]
    assert codes.count("RESOURCE_EXHAUSTED") > 0 and codes.count("OK") >= 4
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}
    # refused at once: beyond the queue nothing waits, so refusals come back before the
    # admitted calls that had to wait for the slow model
    refused = sorted(s for c, s, _ in calls if c == "RESOURCE_EXHAUSTED")
    admitted = sorted(s for c, s, _ in calls if c == "OK")
    assert refused[len(refused) // 2] < admitted[-1]
    details = next(d for c, _, d in calls if c == "RESOURCE_EXHAUSTED")
    assert "max_concurrency" in details and "backoff" in details, details
    await serving.stub.Predict(request)  # admitted again once the burst is over


async def _timed(stub: Any, request: pb.PredictRequest) -> tuple[str, float, str]:
    t = time.perf_counter()
    try:
        await stub.Predict(request, timeout=60)
        return "OK", time.perf_counter() - t, ""
    except grpc.aio.AioRpcError as exc:
        return exc.code().name, time.perf_counter() - t, exc.details() or ""


@pytest.mark.slow
async def test_queue_timeout_refuses_long_waits_not_at_the_deadline(
    tmp_path: Path, s3_settings: S3Settings, features: pd.DataFrame
) -> None:
    """One slot, a long queue and a 30 ms queue timeout: requests queued behind a slow model
    are refused after about the queue timeout (not the 60 s deadline), with a message that
    says what to do, and counted in atlas_serving_rejected."""
    base = serving_settings(tmp_path, s3_settings, "")
    settings = base.model_copy(update={"capacity": CapacityDefaults(queue_timeout_ms=30)})
    h = await start_harness(settings)
    try:
        await h.register("slow", write_model(settings.s3, "models/slow/v1.tar", trees=400))
        await h.stub.CreateEndpoint(
            pb.CreateEndpointRequest(
                spec=pb.EndpointSpec(
                    name="slow",
                    variants=[live("blue", "slow", 1)],
                    capacity=pb.CapacityConfig(max_concurrency=1, max_queue=100, warm=True),
                )
            )
        )
        request = pb.PredictRequest(
            endpoint_name="slow",
            row=row(features.iloc[0].to_dict()),
            options=pb.PredictOptions(explain=True),
        )
        await h.stub.Predict(request)
        calls = await asyncio.gather(*[_timed(h.stub, request) for _ in range(30)])
        codes = [c for c, _, _ in calls]
        assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}
        assert codes.count("OK") >= 1 and codes.count("RESOURCE_EXHAUSTED") >= 10
        refused = [(s, d) for c, s, d in calls if c == "RESOURCE_EXHAUSTED"]
        assert max(s for s, _ in refused) < 10  # the queue timeout, far from the deadline
        details = refused[0][1]
        assert "queue_timeout_ms" in details and "backoff" in details, details
        rejected = h.server.metrics.registry.get_sample_value(
            "atlas_serving_rejected_total", {"endpoint": "slow"}
        )
        assert rejected == codes.count("RESOURCE_EXHAUSTED")
        await h.stub.Predict(request)  # served again once the burst is over
    finally:
        await stop_harness(h)


@pytest.mark.slow
async def test_a_lagging_event_loop_sheds_new_predictions(
    tmp_path: Path, s3_settings: S3Settings, features: pd.DataFrame
) -> None:
    """While the replica's event loop runs timers later than max_loop_lag_ms (here: a task
    that blocks it 250 ms at a time, as a backlog of calls would), predictions are refused
    at once with REPLICA_OVERLOADED although admission has free slots; once the loop keeps
    up again they are served."""
    base = serving_settings(tmp_path, s3_settings, "")
    settings = base.model_copy(update={"capacity": CapacityDefaults(max_loop_lag_ms=100)})
    h = await start_harness(settings)
    hog: asyncio.Task[None] | None = None
    try:
        await h.register("bc", write_model(settings.s3, "models/bc/v1.tar"))
        await h.stub.CreateEndpoint(
            pb.CreateEndpointRequest(
                spec=pb.EndpointSpec(name="bc", variants=[live("blue", "bc", 1)])
            )
        )
        request = pb.PredictRequest(endpoint_name="bc", row=row(features.iloc[0].to_dict()))
        await h.stub.Predict(request)
        lag = h.service.plane.loop_lag

        async def block_the_loop() -> None:
            while True:
                time.sleep(0.25)
                await asyncio.sleep(0)

        hog = asyncio.ensure_future(block_the_loop())
        for _ in range(100):
            await asyncio.sleep(0.01)
            if lag.shedding:
                break
        assert lag.shedding, lag.lag
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await h.stub.Predict(request)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_from_rpc(err.value).reason == "REPLICA_OVERLOADED"
        assert "backoff" in (err.value.details() or "")
        hog.cancel()
        hog = None
        for _ in range(100):
            await asyncio.sleep(0.02)
            if not lag.shedding:
                break
        await h.stub.Predict(request)
        rejected = h.server.metrics.registry.get_sample_value(
            "atlas_serving_rejected_total", {"endpoint": "bc"}
        )
        assert rejected == 1
    finally:
        if hog is not None:
            hog.cancel()
        await stop_harness(h)
