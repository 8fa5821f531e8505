"""Paging over real gRPC: opaque tokens, total_size on every page, foreign tokens refused."""

from __future__ import annotations

import grpc
import pytest

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as pb
from atlas_core.rpc.status import error_from_rpc

pytestmark = pytest.mark.asyncio


def group_spec(name: str) -> pb.FeatureGroupSpec:
    return pb.FeatureGroupSpec(
        name=name,
        entity_key="user_id",
        entity_key_type=pb.ENTITY_KEY_TYPE_INT64,
        event_time_column="ts",
        features=[pb.FeatureSpec(name="age", dtype=pb.FEATURE_TYPE_FLOAT32)],
    )


async def test_paging_through_feature_groups_reports_the_total(data_harness):
    stub = data_harness.stub
    wanted = [f"paged_{i:02d}" for i in range(7)]
    for name in [*wanted, "other_a", "other_b"]:
        await stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=group_spec(name)))

    seen, tokens, token = [], [], ""
    while True:
        response = await stub.ListFeatureGroups(
            pb.ListFeatureGroupsRequest(
                name_prefix="paged_", page=common_pb2.PageRequest(page_size=3, page_token=token)
            )
        )
        assert response.page.total_size == 7  # on every page, not only the first
        seen += [g.spec.name for g in response.feature_groups]
        token = response.page.next_page_token
        if not token:
            break
        tokens.append(token)
    assert seen == wanted  # in order, each once
    assert len(tokens) == 2
    assert not any(t.isdigit() for t in tokens)  # opaque, not a bare offset

    unfiltered = await stub.ListFeatureGroups(pb.ListFeatureGroupsRequest())
    assert unfiltered.page.total_size == 9 and unfiltered.page.next_page_token == ""

    # The token of the "paged_" list is refused by another filter and when altered.
    for request in (
        pb.ListFeatureGroupsRequest(
            name_prefix="other_", page=common_pb2.PageRequest(page_token=tokens[0])
        ),
        pb.ListFeatureGroupsRequest(
            name_prefix="paged_", page=common_pb2.PageRequest(page_token=tokens[0][:-2] + "AA")
        ),
        pb.ListFeatureGroupsRequest(
            name_prefix="paged_", page=common_pb2.PageRequest(page_token="3")
        ),
        pb.ListDatasetsRequest(page=common_pb2.PageRequest(page_token=tokens[0])),
    ):
        call = stub.ListDatasets if isinstance(request, pb.ListDatasetsRequest) else None
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await (call or stub.ListFeatureGroups)(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_from_rpc(caught.value).reason == "BAD_PAGE_TOKEN"


async def test_empty_list_reports_zero_not_unknown(data_harness):
    response = await data_harness.stub.ListDatasets(pb.ListDatasetsRequest(name_prefix="none-"))
    assert list(response.datasets) == []
    assert response.page.total_size == 0
    assert response.page.next_page_token == ""
