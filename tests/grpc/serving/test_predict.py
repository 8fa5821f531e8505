"""Registry, endpoints and predictions through a real server."""

from __future__ import annotations

import grpc
import pandas as pd
import pytest

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as pb

from .conftest import ServingHarness, live, row, write_model


async def test_register_deploy_predict(serving: ServingHarness, features: pd.DataFrame) -> None:
    ref = write_model(serving.settings.s3, "models/bc/v1.tar")
    version = await serving.register("bc", ref, aliases=("production",))
    assert version.ref.version == 1 and version.task_type == "binary"
    assert list(version.aliases) == ["production"] and version.has_training_stats
    assert len(version.input_schema.columns) == 30
    await serving.stub.CreateEndpoint(
        pb.CreateEndpointRequest(
            spec=pb.EndpointSpec(name="bc", variants=[live("blue", "bc", alias="production")])
        )
    )
    first = features.iloc[0].to_dict()
    resp = await serving.stub.Predict(
        pb.PredictRequest(
            endpoint_name="bc",
            row=row(first),
            options=pb.PredictOptions(explain=True, return_all_scores=True),
        )
    )
    assert resp.variant == "blue" and resp.model.version == 1
    assert resp.prediction.label == "0"  # the first row is malignant
    assert set(resp.prediction.scores) == {"0", "1"}
    assert len(resp.prediction.contributions) >= 30
    batch = await serving.stub.PredictBatch(
        pb.PredictBatchRequest(
            endpoint_name="bc", rows=[row(r) for r in features.iloc[:50].to_dict("records")]
        )
    )
    assert len(batch.predictions) == 50


async def test_bad_input_is_named(serving: ServingHarness, features: pd.DataFrame) -> None:
    ref = write_model(serving.settings.s3, "models/bc/v1.tar")
    await serving.register("bc", ref)
    await serving.stub.CreateEndpoint(
        pb.CreateEndpointRequest(spec=pb.EndpointSpec(name="bc", variants=[live("blue", "bc", 1)]))
    )
    good = features.iloc[0].to_dict()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await serving.stub.Predict(pb.PredictRequest(endpoint_name="nope", row=row(good)))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    missing = {k: v for k, v in good.items() if k != "mean_radius"}
    extra = dict(good, bogus=1.0)
    mistyped = dict(good, mean_area="big")
    for values, named in ((missing, "mean_radius"), (extra, "bogus"), (mistyped, "mean_area")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await serving.stub.Predict(pb.PredictRequest(endpoint_name="bc", row=row(values)))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert named in err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await serving.stub.PredictBatch(
            pb.PredictBatchRequest(endpoint_name="bc", rows=[row(good), row(good), row(mistyped)])
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "row 2" in err.value.details()


async def test_stream_reports_row_errors_and_continues(
    serving: ServingHarness, features: pd.DataFrame
) -> None:
    await serving.register("bc", write_model(serving.settings.s3, "models/bc/v1.tar"))
    await serving.stub.CreateEndpoint(
        pb.CreateEndpointRequest(spec=pb.EndpointSpec(name="bc", variants=[live("blue", "bc", 1)]))
    )
    rows = features.iloc[:3].to_dict("records")
    rows[1] = {"mean_radius": 1.0}

    async def requests():  # type: ignore[no-untyped-def]
        for i, r in enumerate(rows):
            yield pb.PredictStreamRequest(endpoint_name="bc", row=row(r), correlation_id=str(i))

    out = [r async for r in serving.stub.PredictStream(requests())]
    assert [r.correlation_id for r in out] == ["0", "1", "2"]
    assert out[1].error.code == "INVALID_ARGUMENT" and not out[0].error.code
    assert out[2].prediction.label in ("0", "1")


async def test_corrupt_bundle_is_refused(serving: ServingHarness) -> None:
    ref = write_model(serving.settings.s3, "models/bc/v1.tar")
    await serving.register("bc", ref)
    store = serving.service.store
    data = bytearray(store.get_bytes(ref))
    data[len(data) // 2] ^= 0xFF
    bad = store.put_bytes("models/bc/v2.tar", bytes(data))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await serving.stub.RegisterModelVersion(
            pb.RegisterModelVersionRequest(
                model_name="bc", bundle=common_pb2.ArtifactRef(uri=bad.uri)
            )
        )
    assert err.value.code() in (grpc.StatusCode.DATA_LOSS, grpc.StatusCode.FAILED_PRECONDITION)


async def test_a_missing_value_sent_by_the_client_is_missing_not_text(
    serving: ServingHarness, features: pd.DataFrame
) -> None:
    """The SDK sends None as the empty Value (missing), answered like NaN; it once sent the
    text "None", refused as a mistyped number."""
    from atlas_core.clients.serving import feature_row, value

    assert value(None).WhichOneof("kind") is None
    ref = write_model(serving.settings.s3, "models/bc/v1.tar")
    await serving.register("bc", ref)
    await serving.stub.CreateEndpoint(
        pb.CreateEndpointRequest(spec=pb.EndpointSpec(name="bc", variants=[live("blue", "bc", 1)]))
    )
    first = features.iloc[0].to_dict()
    answers = []
    for missing in (None, float("nan")):
        resp = await serving.stub.Predict(
            pb.PredictRequest(
                endpoint_name="bc",
                row=feature_row(dict(first, mean_radius=missing)),
                options=pb.PredictOptions(return_all_scores=True),
            )
        )
        answers.append(dict(resp.prediction.scores))
    assert answers[0] == answers[1]
