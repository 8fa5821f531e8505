"""GetLineage on serving: a batch prediction answered by a live and a shadow variant names
both model versions; endpoints and versions count their predictions (one per request, not
per row or shadow) and list the newest; registration parents come through."""

from __future__ import annotations

import asyncio

import grpc
import pandas as pd
import pytest

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core import lineage
from atlas_core.config import S3Settings

from .conftest import ServingHarness, live, row, write_model

pytestmark = pytest.mark.asyncio


async def _lineage(h: ServingHarness, lid: str, limit: int = 0) -> lineage.LineageView:
    reply = await h.stub.GetLineage(pb.GetLineageRequest(id=lid, children_limit=limit))
    return lineage.from_pb(reply.lineage)


async def test_predictions_link_endpoint_and_versions_live_and_shadow(
    serving: ServingHarness, s3_settings: S3Settings, features: pd.DataFrame
) -> None:
    h = serving
    ref = await asyncio.to_thread(write_model, s3_settings, "models/lineage-bc.tar")
    await h.register("bc", ref)
    await h.stub.RegisterModelVersion(
        pb.RegisterModelVersionRequest(
            model_name="bc",
            bundle=common_pb2.ArtifactRef(uri=ref.uri),
            parents=[
                common_pb2.LineageParent(
                    role="base_model", model=common_pb2.ModelRef(model_name="bc", version=1)
                )
            ],
        )
    )
    shadow = live("green", "bc", 2)
    shadow.role, shadow.weight = pb.VARIANT_ROLE_SHADOW, 0
    spec = pb.EndpointSpec(
        name="bc", variants=[live("blue", "bc", 1), shadow], quality=pb.QualityConfig(enabled=True)
    )
    await h.stub.CreateEndpoint(pb.CreateEndpointRequest(spec=spec))
    rows = [row(r) for r in features.iloc[:3].to_dict("records")]
    batch = await h.stub.PredictBatch(pb.PredictBatchRequest(endpoint_name="bc", rows=rows))
    single = await h.stub.Predict(pb.PredictRequest(endpoint_name="bc", row=rows[0]))
    await asyncio.sleep(0.2)  # the shadow answers off the request path

    got = await _lineage(h, f"prediction:{batch.prediction_id}")
    assert got.node is not None and got.node.operation == "predict"
    assert {(p.role, p.id) for p in got.parents} == {
        ("endpoint", "endpoint:bc"),
        ("model", "model_version:bc@1"),
        ("shadow_model", "model_version:bc@2"),
    }
    endpoint = await _lineage(h, "endpoint:bc", limit=1)
    assert endpoint.child_counts == {"prediction": 2}
    assert [c.id for c in endpoint.children] == [f"prediction:{single.prediction_id}"]
    assert {p.id for p in endpoint.parents} == {"model_version:bc@1", "model_version:bc@2"}
    first = await _lineage(h, "model_version:bc@1")
    assert first.child_counts == {"endpoint": 1, "model_version": 1, "prediction": 2}
    assert ("base_model", "model_version:bc@2") in {(c.role, c.id) for c in first.children}
    second = await _lineage(h, "model_version:bc@2")
    assert second.child_counts["prediction"] == 2  # as the shadow of both requests
    assert ("base_model", "model_version:bc@1") in {(p.role, p.id) for p in second.parents}
    assert any(p.role == "bundle" and p.id.startswith("artifact:") for p in second.parents)

    for lid, code in (
        ("model_version:bc@9", grpc.StatusCode.NOT_FOUND),
        ("model_version:nope@1", grpc.StatusCode.NOT_FOUND),
        ("endpoint:nope", grpc.StatusCode.NOT_FOUND),
        ("prediction:" + "0" * 32, grpc.StatusCode.NOT_FOUND),
        ("model_version:bc", grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await h.stub.GetLineage(pb.GetLineageRequest(id=lid))
        assert err.value.code() == code, lid
