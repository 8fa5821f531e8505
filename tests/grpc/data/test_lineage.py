"""GetLineage on the data service, and a walk over it: parents recorded at registration
link both ways, a cycle made through recorded parents is reported (not looped on), and a
deleted parent is reported as missing."""

from __future__ import annotations

import asyncio

import grpc
import pyarrow as pa
import pytest
from pydantic import SecretStr

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as pb
from atlas_core.clients import LineageClient
from atlas_core.rpc import ClientSettings

from .conftest import TOKEN, DataHarness
from .test_datasets import upload_parquet

pytestmark = pytest.mark.asyncio


def _parent(dataset_id: str, version: int) -> common_pb2.LineageParent:
    return common_pb2.LineageParent(
        role="derived_from", dataset=common_pb2.DatasetRef(dataset_id=dataset_id, version=version)
    )


async def test_recorded_parents_link_both_ways_and_a_cycle_is_reported(
    data_harness: DataHarness,
) -> None:
    stub = data_harness.stub
    artifact = upload_parquet(data_harness, "uploads/lineage.parquet", pa.table({"x": [1, 2]}))

    async def register(name: str, *parents: common_pb2.LineageParent) -> str:
        ds = (
            await stub.RegisterDataset(
                pb.RegisterDatasetRequest(name=name, artifacts=[artifact], parents=parents)
            )
        ).dataset
        return f"dataset:{ds.ref.dataset_id}@{ds.ref.version}"

    base = await register("base")
    # Version 1 of "loop" names its own version 2 as a parent, and version 2 names version 1:
    # nothing checks that a parent exists yet when it is recorded.
    first = await register("loop", _parent("base", 1), _parent("loop", 2))
    second = await register("loop", _parent("loop", 1))
    orphan = await register("orphan", _parent("gone", 1))

    got = (await stub.GetLineage(pb.GetLineageRequest(id=base))).lineage
    assert (got.node.kind, got.node.service, got.node.display_name) == ("dataset", "data", "base")
    assert [c.id for c in got.children] == [first] and dict(got.child_counts) == {"dataset": 1}

    client = LineageClient.connect(
        {"data": ClientSettings(target=data_harness.server.address, token=SecretStr(TOKEN))}
    )
    try:
        graph = await asyncio.to_thread(client.walk, second)
        assert [sorted(c) for c in graph.cycles] == [[first, second]]
        assert graph.nodes[base].status == "ok"
        # Downstream of base the cycle is met again and still reported once.
        down = await asyncio.to_thread(client.walk, base, upstream=False)
        assert {first, second} <= set(down.nodes) and len(down.cycles) == 1
        # A parent that does not exist is a missing node; the walk still succeeds.
        lone = await asyncio.to_thread(client.walk, orphan)
        assert lone.nodes["dataset:gone@1"].status == "missing"
        await stub.DeleteDataset(
            pb.DeleteDatasetRequest(ref=common_pb2.DatasetRef(dataset_id="base", version=1))
        )
        after = await asyncio.to_thread(client.walk, first, downstream=False)
        assert after.nodes[base].status == "missing"
    finally:
        client.close()

    for lid, code in (
        (base, grpc.StatusCode.NOT_FOUND),  # deleted
        ("feature_group:none@1", grpc.StatusCode.NOT_FOUND),
        ("data_job:none", grpc.StatusCode.NOT_FOUND),
        ("dataset:loop", grpc.StatusCode.INVALID_ARGUMENT),  # no version
        ("", grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetLineage(pb.GetLineageRequest(id=lid))
        assert err.value.code() == code, lid
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetLineage(pb.GetLineageRequest(id=first, children_limit=-1))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
