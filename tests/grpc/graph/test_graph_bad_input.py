"""Every bad input of the graph service through the API: the right status and a message
naming the problem (or the input handled, with the import report saying how)."""

from __future__ import annotations

import io
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from atlas.common.v1 import common_pb2
from atlas.graph.v1 import graph_service_pb2 as pb
from atlas_core.config import S3Settings

from ._jobs import failed_job, run_job
from .conftest import GraphHarness, running_graph_service


def _upload(harness: GraphHarness, name: str, table: pa.Table) -> pb.TableSource:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    ref = harness.service.rt.artifacts.put_bytes(f"inputs/{name}.parquet", buf.getvalue())
    return pb.TableSource(
        artifacts=[common_pb2.ArtifactRef(uri=ref.uri, sha256=ref.sha256, size_bytes=ref.size)]
    )


def _import(
    harness: GraphHarness,
    src: list,
    dst: list,
    node_ids: list | None = None,
    policy: pb.EdgePolicy | None = None,
    **node_cols: list,
) -> pb.ImportGraphSpec:
    edges = pb.EdgeTableSpec(
        source=_upload(harness, f"e{len(src)}{src[:2]}", pa.table({"s": src, "d": dst})),
        src_column="s",
        dst_column="d",
    )
    nodes = []
    if node_ids is not None:
        source = _upload(harness, f"n{len(node_ids)}", pa.table({"id": node_ids, **node_cols}))
        nodes.append(
            pb.NodeTableSpec(
                source=source,
                id_column="id",
                feature_columns=["f"] if "f" in node_cols else [],
                label_column="y" if "y" in node_cols else "",
            )
        )
    return pb.ImportGraphSpec(
        name="bad", edges=[edges], nodes=nodes, edge_policy=policy or pb.EdgePolicy()
    )


async def _status(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), err.value.details() or ""


async def test_import_bad_edges_are_named_or_handled(graph_harness: GraphHarness) -> None:
    stub = graph_harness.stub
    error = await failed_job(
        stub, import_graph=_import(graph_harness, [1, 2], [2, 99], node_ids=[1, 2, 3])
    )
    assert error.code == "INVALID_ARGUMENT" and "references node 99" in error.message
    dropped = (
        await run_job(
            stub,
            import_graph=_import(
                graph_harness,
                [1, 2],
                [2, 99],
                node_ids=[1, 2, 3],
                policy=pb.EdgePolicy(drop_dangling_edges=True),
            ),
        )
    ).graph
    assert dropped.num_edges == 1 and dropped.import_stats["dropped_dangling_edges"] == 1

    # Duplicates and self-loops: kept and counted, or dropped; non-contiguous int64 ids.
    kept = (
        await run_job(
            stub, import_graph=_import(graph_harness, [10**12, 10**12, 5, 7], [5, 5, 5, 10**12])
        )
    ).graph
    assert kept.num_nodes == 3 and kept.num_edges == 4
    assert kept.import_stats["duplicate_edges"] == 1 and kept.import_stats["self_loops"] == 1
    clean = (
        await run_job(
            stub,
            import_graph=_import(
                graph_harness,
                [10**12, 10**12, 5, 7],
                [5, 5, 5, 10**12],
                policy=pb.EdgePolicy(drop_duplicates=True, drop_self_loops=True),
            ),
        )
    ).graph
    assert clean.num_edges == 2

    # String ids; missing masks -> a seeded random split, reported.
    names = [f"user-{i}" for i in range(40)]
    strings = (
        await run_job(
            stub,
            import_graph=_import(
                graph_harness,
                names[:-1],
                names[1:],
                node_ids=names,
                f=[0.5] * 40,
                y=[i % 2 for i in range(40)],
            ),
        )
    ).graph
    assert strings.id_type == pb.ID_TYPE_STRING and strings.has_masks
    assert strings.import_stats["random_split"] == 1

    spec = _import(graph_harness, [1], [2])
    spec.edges[0].src_column = "source"
    error = await failed_job(stub, import_graph=spec)
    assert error.code == "INVALID_ARGUMENT" and "'source' is not a column" in error.message
    spec.edges[0].src_column = ""
    code, details = await _status(stub.SubmitGraphJob(pb.SubmitGraphJobRequest(import_graph=spec)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "src_column" in details


async def test_partition_and_train_requests_are_checked(graph_harness: GraphHarness) -> None:
    stub = graph_harness.stub
    code, details = await _status(stub.SubmitGraphJob(pb.SubmitGraphJobRequest()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "generate_graph" in details
    code, details = await _status(
        stub.SubmitGraphJob(
            pb.SubmitGraphJobRequest(
                partition_graph=pb.PartitionGraphSpec(graph_id="g_missing", num_partitions=2)
            )
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND and "g_missing" in details
    graph = (
        await run_job(
            stub,
            generate_graph=pb.GenerateGraphSpec(
                name="tiny", nodes=50, communities=2, feature_dims=4, seed=1
            ),
        )
    ).graph
    for parts, text in ((51, "larger than the graph's 50 nodes"), (0, "at least 1")):
        code, details = await _status(
            stub.SubmitGraphJob(
                pb.SubmitGraphJobRequest(
                    partition_graph=pb.PartitionGraphSpec(
                        graph_id=graph.graph_id, num_partitions=parts
                    )
                )
            )
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and text in details
    code, details = await _status(
        stub.SubmitGraphJob(
            pb.SubmitGraphJobRequest(
                partition_graph=pb.PartitionGraphSpec(
                    graph_id=graph.graph_id, num_partitions=2, max_memory_bytes=1024
                )
            )
        )
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "GiB" in details

    part = (
        await run_job(
            stub,
            partition_graph=pb.PartitionGraphSpec(
                graph_id=graph.graph_id, num_partitions=2, method=pb.PARTITION_METHOD_RANDOM
            ),
        )
    ).partitioning
    ref = common_pb2.GraphRef(graph_id=graph.graph_id, partitioning_id=part.partitioning_id)
    code, details = await _status(
        stub.SubmitGraphJob(pb.SubmitGraphJobRequest(train=pb.TrainGraphSpec(ref=ref)))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "fan_outs" in details
    code, details = await _status(
        stub.SubmitGraphJob(
            pb.SubmitGraphJobRequest(train=pb.TrainGraphSpec(ref=ref, fan_outs=[5], backend="mpi"))
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "mpi" in details
    # Embeddings into a feature group: a valid group name, and a data service to write to.
    for group, want, text in (
        ("Node-Emb", grpc.StatusCode.INVALID_ARGUMENT, "Node-Emb"),
        ("node_emb", grpc.StatusCode.FAILED_PRECONDITION, "ATLAS_GRAPH_DATA__TARGET"),
    ):
        code, details = await _status(
            stub.SubmitGraphJob(
                pb.SubmitGraphJobRequest(
                    train=pb.TrainGraphSpec(ref=ref, fan_outs=[5], embeddings_feature_group=group)
                )
            )
        )
        assert code == want and text in details
    code, details = await _status(
        stub.TranslateIds(
            pb.TranslateIdsRequest(
                ref=ref, kind=pb.ID_KIND_NODE, direction=pb.TRANSLATE_DIRECTION_ORIGINAL_TO_NEW
            )
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "ids" in details
    code, details = await _status(
        stub.TranslateIds(
            pb.TranslateIdsRequest(
                ref=ref,
                kind=pb.ID_KIND_NODE,
                direction=pb.TRANSLATE_DIRECTION_ORIGINAL_TO_NEW,
                string_ids=["a"],
            )
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "int64" in details

    # An unlabelled graph cannot be trained on.
    plain = (await run_job(stub, import_graph=_import(graph_harness, [1, 2, 3], [2, 3, 1]))).graph
    plain_part = (
        await run_job(
            stub, partition_graph=pb.PartitionGraphSpec(graph_id=plain.graph_id, num_partitions=1)
        )
    ).partitioning
    code, details = await _status(
        stub.SubmitGraphJob(
            pb.SubmitGraphJobRequest(
                train=pb.TrainGraphSpec(
                    ref=common_pb2.GraphRef(
                        graph_id=plain.graph_id, partitioning_id=plain_part.partitioning_id
                    ),
                    fan_outs=[5],
                )
            )
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "labels" in details


async def test_lookups_with_empty_or_unknown_ids(graph_harness: GraphHarness) -> None:
    stub = graph_harness.stub
    for call in (
        stub.GetGraphJob(pb.GetGraphJobRequest()),
        stub.GetGraph(pb.GetGraphRequest()),
        stub.ListGraphs(pb.ListGraphsRequest(page=common_pb2.PageRequest(page_token="x"))),
    ):
        code, _ = await _status(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, details = await _status(stub.GetGraphJob(pb.GetGraphJobRequest(job_id="nope")))
    assert code == grpc.StatusCode.NOT_FOUND
    code, details = await _status(
        stub.GetPartitioning(
            pb.GetPartitioningRequest(
                ref=common_pb2.GraphRef(graph_id="g_x", partitioning_id="p_x")
            )
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND and "g_x" in details


async def test_configured_memory_budget_refuses_with_the_estimate(
    tmp_path: Path, s3_settings: S3Settings
) -> None:
    async with running_graph_service(
        tmp_path, s3_settings, memory_budget_bytes=64 * 2**20
    ) as harness:
        graph = (
            await run_job(
                harness.stub, generate_graph=pb.GenerateGraphSpec(nodes=100, communities=2, seed=1)
            )
        ).graph
        spec = pb.PartitionGraphSpec(graph_id=graph.graph_id, num_partitions=2)
        estimate = (
            await harness.stub.EstimatePartitioning(pb.EstimatePartitioningRequest(spec=spec))
        ).estimate
        assert not estimate.fits and estimate.memory_limit_bytes == 64 * 2**20
        code, details = await _status(
            harness.stub.SubmitGraphJob(pb.SubmitGraphJobRequest(partition_graph=spec))
        )
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "0.06 GiB" in details and f"{estimate.peak_memory_bytes / 2**30:.2f}" in details
