"""Serving's lists page with opaque tokens bound to the request and report their totals."""

from __future__ import annotations

import grpc
import pytest

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.config import S3Settings

from .conftest import ServingHarness, live, write_model


async def test_models_endpoints_and_versions_page_with_totals(
    serving: ServingHarness, s3_settings: S3Settings
) -> None:
    ref = write_model(s3_settings, "models/paging/v1.tar", trees=2)
    for name in ("pa", "pb", "pc"):
        await serving.register(name, ref)
    await serving.register("pa", ref)  # a second version of pa
    for name in ("pa", "pb"):
        await serving.stub.CreateEndpoint(
            pb.CreateEndpointRequest(spec=pb.EndpointSpec(name=name, variants=[live("v", name, 1)]))
        )

    seen: list[str] = []
    token = ""
    while True:
        reply = await serving.stub.ListModels(
            pb.ListModelsRequest(
                name_prefix="p", page=common_pb2.PageRequest(page_size=2, page_token=token)
            )
        )
        assert reply.page.total_size == 3
        seen += [m.name for m in reply.models]
        token = reply.page.next_page_token
        if not token:
            break
        assert not token.isdigit()  # opaque, not a bare offset
    assert seen == ["pa", "pb", "pc"]

    versions = await serving.stub.ListModelVersions(pb.ListModelVersionsRequest(model_name="pa"))
    assert versions.page.total_size == 2 and [v.ref.version for v in versions.model_versions] == [
        2,
        1,
    ]
    endpoints = await serving.stub.ListEndpoints(
        pb.ListEndpointsRequest(page=common_pb2.PageRequest(page_size=1))
    )
    assert endpoints.page.total_size == 2 and len(endpoints.endpoints) == 1

    # a token from one list is refused by another list (or the same list with other filters)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await serving.stub.ListModels(
            pb.ListModelsRequest(
                name_prefix="pa",
                page=common_pb2.PageRequest(page_token=endpoints.page.next_page_token),
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in (err.value.details() or "")
