"""Overload: beyond the concurrency limit and queue, RESOURCE_EXHAUSTED at once."""

from __future__ import annotations

import asyncio

import grpc
import pandas as pd

from atlas.serving.v1 import serving_service_pb2 as pb

from .conftest import ServingHarness, live, row, write_model


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

    async def one() -> str:
        try:
            await serving.stub.Predict(request)
            return "OK"
        except grpc.aio.AioRpcError as exc:
            return exc.code().name

    codes = await asyncio.gather(*[one() for _ in range(40)])
    assert codes.count("RESOURCE_EXHAUSTED") > 0 and codes.count("OK") >= 4
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}
    await serving.stub.Predict(request)  # admitted again once the burst is over
