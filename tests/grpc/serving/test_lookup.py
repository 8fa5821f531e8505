"""Entity-id requests: online features from a real data service (in-process), the
deploy-time schema check, and the data service stopped: fallback or UNAVAILABLE, never a
hang past the lookup deadline."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
from google.protobuf import duration_pb2
from pydantic import SecretStr

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as data_pb
from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.clients.data import DataClient
from atlas_core.config import S3Settings
from atlas_core.rpc import ClientSettings

from ..data.conftest import TOKEN as DATA_TOKEN
from ..data.conftest import running_data_service
from .conftest import live, serving_settings, start_harness, stop_harness, write_model


def _ingest(address: str, features: pd.DataFrame) -> None:
    _ingest_with(ClientSettings(target=address, token=SecretStr(DATA_TOKEN)), features)


def _ingest_with(settings: ClientSettings, features: pd.DataFrame) -> None:
    with DataClient(settings) as client:
        client.create_feature_group(
            data_pb.FeatureGroupSpec(
                name="patients",
                entity_key="patient_id",
                entity_key_type=data_pb.ENTITY_KEY_TYPE_INT64,
                event_time_column="observed_at",
                features=[
                    data_pb.FeatureSpec(name=c, dtype=data_pb.FEATURE_TYPE_FLOAT32)
                    for c in features.columns
                ],
            )
        )
        values = features.to_numpy(dtype="<f4")
        client.put_records(
            "patients",
            [
                data_pb.FeatureRecord(
                    entity_key=data_pb.EntityKey(int64_key=i),
                    float32_values=values[i].tobytes(),
                    event_time=_now(),
                )
                for i in range(50)
            ],
        )


def _now():  # type: ignore[no-untyped-def]
    from google.protobuf import timestamp_pb2

    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts


def _entity(i: int) -> pb.PredictRow:
    return pb.PredictRow(entity_id=common_pb2.Value(int64_value=i))


@pytest.mark.slow
async def test_entity_lookup_and_data_service_down(
    tmp_path: Path, s3_settings: S3Settings, features: pd.DataFrame
) -> None:
    async with running_data_service(tmp_path / "data", s3_settings) as data:
        await asyncio.to_thread(_ingest, data.server.address, features)
        settings = serving_settings(tmp_path, s3_settings, "").model_copy(
            update={"data": ClientSettings(target=data.server.address, token=SecretStr(DATA_TOKEN))}
        )
        h = await start_harness(settings)
        try:
            await h.register("bc", write_model(s3_settings, "models/bc/v1.tar"))
            lookup = pb.FeatureLookup(
                feature_groups=[common_pb2.FeatureGroupRef(name="patients")],
                fallback=pb.FALLBACK_POLICY_FAIL,
                timeout=duration_pb2.Duration(nanos=200_000_000),
            )
            # deploy-time check: a group that does not cover the model's inputs is refused
            await asyncio.to_thread(_narrow_group, data.server.address)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await h.stub.CreateEndpoint(
                    pb.CreateEndpointRequest(
                        spec=pb.EndpointSpec(
                            name="narrow",
                            variants=[live("blue", "bc", 1)],
                            feature_lookup=pb.FeatureLookup(
                                feature_groups=[common_pb2.FeatureGroupRef(name="narrow")]
                            ),
                        )
                    )
                )
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "mean_texture" in err.value.details()

            await h.stub.CreateEndpoint(
                pb.CreateEndpointRequest(
                    spec=pb.EndpointSpec(
                        name="bc", variants=[live("blue", "bc", 1)], feature_lookup=lookup
                    )
                )
            )
            by_id = await h.stub.Predict(pb.PredictRequest(endpoint_name="bc", row=_entity(3)))
            inline = await h.stub.PredictBatch(
                pb.PredictBatchRequest(
                    endpoint_name="bc",
                    rows=[
                        pb.PredictRow(
                            features=pb.InlineFeatures(
                                values={
                                    k: common_pb2.Value(double_value=float(np.float32(v)))
                                    for k, v in features.iloc[3].items()
                                }
                            )
                        )
                    ],
                )
            )
            assert by_id.prediction.label == inline.predictions[0].label
            assert abs(by_id.prediction.value - inline.predictions[0].value) < 1e-6
            assert not by_id.prediction.fallback_used
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await h.stub.Predict(pb.PredictRequest(endpoint_name="bc", row=_entity(10_000)))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND

            await data.server.stop(0)  # the data service goes away
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await h.stub.Predict(pb.PredictRequest(endpoint_name="bc", row=_entity(4)))
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - started < 1.0  # the 200 ms deadline, not a hang

            # A lookup change re-checks the schema against the data service, which is down:
            # refused, and the endpoint keeps its current lookup.
            lookup.fallback = pb.FALLBACK_POLICY_DEFAULTS
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await h.stub.UpdateEndpoint(
                    pb.UpdateEndpointRequest(name="bc", feature_lookup=lookup), timeout=30
                )
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
            kept = await h.stub.GetEndpoint(pb.GetEndpointRequest(name="bc"))
            assert kept.endpoint.spec.feature_lookup.fallback == pb.FALLBACK_POLICY_FAIL
        finally:
            await stop_harness(h)


def _narrow_group(address: str) -> None:
    with DataClient(ClientSettings(target=address, token=SecretStr(DATA_TOKEN))) as client:
        client.create_feature_group(
            data_pb.FeatureGroupSpec(
                name="narrow",
                entity_key="patient_id",
                entity_key_type=data_pb.ENTITY_KEY_TYPE_INT64,
                event_time_column="observed_at",
                features=[
                    data_pb.FeatureSpec(name="mean_radius", dtype=data_pb.FEATURE_TYPE_FLOAT32)
                ],
            )
        )


@pytest.mark.slow
async def test_fallback_defaults_when_the_data_service_is_down(
    tmp_path: Path, s3_settings: S3Settings, features: pd.DataFrame
) -> None:
    async with running_data_service(tmp_path / "data", s3_settings) as data:
        await asyncio.to_thread(_ingest, data.server.address, features)
        settings = serving_settings(tmp_path, s3_settings, "").model_copy(
            update={"data": ClientSettings(target=data.server.address, token=SecretStr(DATA_TOKEN))}
        )
        h = await start_harness(settings)
        try:
            await h.register("bc", write_model(s3_settings, "models/bc/v1.tar"))
            await h.stub.CreateEndpoint(
                pb.CreateEndpointRequest(
                    spec=pb.EndpointSpec(
                        name="bc",
                        variants=[live("blue", "bc", 1)],
                        feature_lookup=pb.FeatureLookup(
                            feature_groups=[common_pb2.FeatureGroupRef(name="patients")],
                            fallback=pb.FALLBACK_POLICY_DEFAULTS,
                        ),
                    )
                )
            )
            ok = await h.stub.Predict(pb.PredictRequest(endpoint_name="bc", row=_entity(1)))
            assert not ok.prediction.fallback_used
            missing = await h.stub.Predict(pb.PredictRequest(endpoint_name="bc", row=_entity(9999)))
            assert missing.prediction.fallback_used
            await data.server.stop(0)
            started = time.monotonic()
            down = await h.stub.Predict(pb.PredictRequest(endpoint_name="bc", row=_entity(2)))
            assert down.prediction.fallback_used and time.monotonic() - started < 1.0
        finally:
            await stop_harness(h)
