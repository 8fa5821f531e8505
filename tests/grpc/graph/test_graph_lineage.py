"""GetLineage on the graph service: a generated graph, its partitioning and the jobs that
made them, linked both ways; unknown ids NOT_FOUND."""

from __future__ import annotations

import grpc
import pytest

from atlas.graph.v1 import graph_service_pb2 as pb
from atlas_core import lineage

from ._jobs import run_job
from .conftest import GraphHarness

pytestmark = pytest.mark.asyncio


async def _lineage(stub, lid: str) -> lineage.LineageView:  # type: ignore[no-untyped-def]
    return lineage.from_pb((await stub.GetLineage(pb.GetLineageRequest(id=lid))).lineage)


async def test_graph_partitioning_and_jobs_link_both_ways(graph_harness: GraphHarness) -> None:
    stub = graph_harness.stub
    made = await run_job(
        stub,
        generate_graph=pb.GenerateGraphSpec(
            name="sbm-lineage", nodes=200, communities=2, average_degree=6, seed=1
        ),
    )
    g = made.graph.graph_id
    part_job = await run_job(
        stub, partition_graph=pb.PartitionGraphSpec(graph_id=g, num_partitions=2)
    )
    p = part_job.partitioning.partitioning_id

    graph = await _lineage(stub, f"graph:{g}")
    assert graph.node is not None and graph.node.display_name == "sbm-lineage"
    assert graph.node.produced_by == f"graph_job:{made.status.job_id}"
    assert graph.node.create_time is not None
    assert [c.id for c in graph.children] == [f"partitioning:{p}"]
    assert graph.child_counts == {"partitioning": 1}

    part = await _lineage(stub, f"partitioning:{p}")
    assert {(x.role, x.id) for x in part.parents} == {
        ("graph", f"graph:{g}"),
        ("produced_by", f"graph_job:{part_job.status.job_id}"),
    }
    job = await _lineage(stub, f"graph_job:{part_job.status.job_id}")
    assert [x.id for x in job.parents] == [f"graph:{g}"]
    assert [x.id for x in job.children] == [f"partitioning:{p}"]

    for lid, code in (
        ("graph:g_none", grpc.StatusCode.NOT_FOUND),
        ("partitioning:p_none", grpc.StatusCode.NOT_FOUND),
        ("graph_job:none", grpc.StatusCode.NOT_FOUND),
        ("graph", grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetLineage(pb.GetLineageRequest(id=lid))
        assert err.value.code() == code, lid
    # A foreign id: the graph service holds no children of it.
    foreign = await _lineage(stub, "dataset:d@1")
    assert foreign.node is None and not foreign.children
