"""Heterogeneous graphs through the graph service's API: users x devices x merchants imported
from typed tables (int64 and string ids per type), partitioned with per-type contiguous ranges,
an R-GCN trained on the users by two DGL trainers (distributed), predictions under the users'
original ids; and the refusals of bad typed input, with nothing stored."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from atlas.common.v1 import common_pb2
from atlas.graph.v1 import graph_service_pb2 as pb

from ._hetero import hetero_import, small_graph, upload
from ._jobs import failed_job, run_job
from .conftest import GraphHarness

CLASSES = 4


async def _refused(harness: GraphHarness, **spec: object) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await harness.stub.SubmitGraphJob(pb.SubmitGraphJobRequest(**spec))  # type: ignore[arg-type]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return err.value.details() or ""


async def _refused_estimate(harness: GraphHarness, graph_id: str, parts: int) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await harness.stub.EstimatePartitioning(
            pb.EstimatePartitioningRequest(
                spec=pb.PartitionGraphSpec(graph_id=graph_id, num_partitions=parts)
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return err.value.details() or ""


async def _graph_count(harness: GraphHarness) -> int:
    return len((await harness.stub.ListGraphs(pb.ListGraphsRequest())).graphs)


@pytest.mark.slow
async def test_hetero_graph_trains_distributed_above_chance(graph_harness: GraphHarness) -> None:
    stub = graph_harness.stub
    generated = small_graph()
    graph = (
        await run_job(stub, import_graph=hetero_import(graph_harness, generated, "payments"))
    ).graph
    assert sorted(graph.node_types) == ["device", "merchant", "user"]
    assert sorted(graph.edge_types) == [
        "device:rev_uses:user",
        "merchant:rev_pays:user",
        "user:pays:merchant",
        "user:uses:device",
    ]
    info = {t.node_type: t for t in graph.node_type_info}
    assert info["device"].id_type == pb.ID_TYPE_STRING and info["user"].id_type == pb.ID_TYPE_INT64
    assert info["user"].num_classes == CLASSES and info["user"].has_masks
    assert info["device"].num_classes == 0 and info["device"].feature_dims == 0
    assert graph.edge_type_counts["user:uses:device"] == 1200 * 3

    estimate = (
        await stub.EstimatePartitioning(
            pb.EstimatePartitioningRequest(
                spec=pb.PartitionGraphSpec(graph_id=graph.graph_id, num_partitions=2)
            )
        )
    ).estimate
    assert estimate.fits and estimate.range_map_bytes == 8 * 3 * (2 + 3 + 4)
    details = await _refused_estimate(graph_harness, graph.graph_id, 201)
    assert "node type 'merchant'" in details  # 200 merchants: a partition would own none

    part = (
        await run_job(
            stub, partition_graph=pb.PartitionGraphSpec(graph_id=graph.graph_id, num_partitions=2)
        )
    ).partitioning
    # One contiguous range per node type and per edge type in every partition, covering the type.
    for ntype, count in (("user", 1200), ("device", 600), ("merchant", 200)):
        ranges = [p.node_ranges[ntype] for p in part.partitions]
        assert ranges[0].start == 0 and ranges[-1].end == count
        assert all(a.end == b.start for a, b in zip(ranges, ranges[1:]))
    for etype in graph.edge_types:
        ranges = [p.edge_ranges[etype] for p in part.partitions]
        assert ranges[-1].end == graph.edge_type_counts[etype]
    assert part.estimate.range_map_bytes == 8 * 3 * (2 + 3 + 4)

    ref = common_pb2.GraphRef(graph_id=graph.graph_id, partitioning_id=part.partitioning_id)
    devices = await stub.TranslateIds(
        pb.TranslateIdsRequest(
            ref=ref,
            kind=pb.ID_KIND_NODE,
            direction=pb.TRANSLATE_DIRECTION_ORIGINAL_TO_NEW,
            type="device",
            string_ids=["dev-0", "dev-599"],
        )
    )
    back = await stub.TranslateIds(
        pb.TranslateIdsRequest(
            ref=ref,
            kind=pb.ID_KIND_NODE,
            direction=pb.TRANSLATE_DIRECTION_NEW_TO_ORIGINAL,
            type="device",
            int64_ids=list(devices.new_ids),
        )
    )
    assert list(back.original_string_ids) == ["dev-0", "dev-599"]

    # A type without labels cannot be the target.
    details = await _refused(
        graph_harness,
        train=pb.TrainGraphSpec(ref=ref, fan_outs=[5], target_node_type="device"),
    )
    assert "'device' has no labels" in details and "label_column" in details

    submitted = await stub.SubmitGraphJob(
        pb.SubmitGraphJobRequest(
            train=pb.TrainGraphSpec(
                ref=ref,
                num_trainers=2,
                model=pb.GNN_MODEL_RGCN,
                target_node_type="user",
                fan_outs=[10, 10],
                hidden_dims=32,
                epochs=6,
                batch_size=128,
                learning_rate=0.02,
                dropout=0.1,
                seed=1,
                write_predictions=True,
                write_embeddings=True,
            )
        )
    )
    job_id = submitted.job.status.job_id
    epochs = [
        e.epoch
        async for e in stub.WatchGraphJob(pb.WatchGraphJobRequest(job_id=job_id))
        if "loss" in e.metrics and e.epoch
    ]
    job = (await stub.GetGraphJob(pb.GetGraphJobRequest(job_id=job_id))).job
    assert job.status.state == common_pb2.JOB_STATE_SUCCEEDED, job.status.error.message
    assert {1, 6} <= set(epochs)
    result = job.train_result
    metrics = dict(result.metrics)
    assert metrics["test_accuracy"] > 0.6, metrics  # chance is 1 / CLASSES = 0.25
    assert len(result.checkpoints) == 6 and result.model_bundle.uri
    assert result.serving_bundle.uri

    art = graph_harness.service.rt.artifacts
    pred = pq.read_table(io.BytesIO(art.get_bytes(art.key_for_uri(result.predictions.uri))))
    users = generated.nodes["user"]
    assert sorted(pred.column("id").to_pylist()) == users.original_ids.tolist()
    by_id = dict(zip(pred.column("id").to_pylist(), pred.column("label").to_pylist()))
    truth = dict(zip(users.original_ids.tolist(), users.label.tolist()))
    agree = np.mean([by_id[k] == truth[k] for k in truth])
    assert agree > 0.6
    emb = pq.read_table(io.BytesIO(art.get_bytes(art.key_for_uri(result.embeddings.uri))))
    assert emb.num_rows == 1200 and len(emb.column("embedding")[0]) == 32
    # Every node type's embeddings, each keyed by its own original ids (int or string).
    assert sorted(result.embeddings_by_type) == ["device", "merchant", "user"]
    for ntype, ref_ in result.embeddings_by_type.items():
        typed = pq.read_table(io.BytesIO(art.get_bytes(art.key_for_uri(ref_.uri))))
        originals = generated.nodes[ntype].original_ids
        expected = [v.decode() for v in originals] if originals.dtype.kind == "S" else originals
        assert sorted(typed.column("id").to_pylist()) == sorted(list(expected)), ntype
        assert len(typed.column("embedding")[0]) == 32
    by_user = pq.read_table(
        io.BytesIO(art.get_bytes(art.key_for_uri(result.embeddings_by_type["user"].uri)))
    ).to_pandas()
    same = emb.to_pandas().set_index("id").loc[by_user["id"], "embedding"].to_list()
    np.testing.assert_array_equal(np.stack(same), np.stack(by_user["embedding"].to_list()))

    # The bundle infers the target type again, for chosen users (original ids).
    inferred = await run_job(
        stub,
        infer=pb.InferGraphSpec(
            ref=ref,
            model_bundle=result.model_bundle,
            write_predictions=True,
            node_int64_ids=[1000, 1014],
        ),
    )
    again = pq.read_table(
        io.BytesIO(art.get_bytes(art.key_for_uri(inferred.train_result.predictions.uri)))
    )
    assert sorted(again.column("id").to_pylist()) == [1000, 1014]
    for key, label in zip(again.column("id").to_pylist(), again.column("label").to_pylist()):
        assert label == by_id[key]


async def test_bad_typed_input_is_refused_naming_table_and_column(
    graph_harness: GraphHarness,
) -> None:
    stub = graph_harness.stub
    spec = hetero_import(graph_harness, small_graph(), "bad")
    before = await _graph_count(graph_harness)

    untyped = pb.ImportGraphSpec()
    untyped.CopyFrom(spec)
    untyped.edges[1].edge_type = ""
    details = await _refused(graph_harness, import_graph=untyped)
    assert "import_graph.edges[1].edge_type is empty" in details
    assert "endpoint" in details

    missing = pb.ImportGraphSpec()
    missing.CopyFrom(spec)
    missing.edges[1].edge_type = "user:pays:shop"
    details = await _refused(graph_harness, import_graph=missing)
    assert "import_graph.edges[1].edge_type" in details and "'shop'" in details

    malformed = pb.ImportGraphSpec()
    malformed.CopyFrom(spec)
    malformed.edges[0].edge_type = "user-uses-device"
    details = await _refused(graph_harness, import_graph=malformed)
    assert "import_graph.edges[0].edge_type" in details

    # Devices have string ids; an edge table naming devices by integers mixes id types.
    mixed = pb.ImportGraphSpec()
    mixed.CopyFrom(spec)
    mixed.edges[0].source.CopyFrom(
        upload(graph_harness, "mixed", pa.table({"user": [1000, 1007], "device": [1, 2]}))
    )
    error = await failed_job(stub, import_graph=mixed)
    assert error.code == "INVALID_ARGUMENT", error  # (a job's error keeps the code only)
    assert "import_graph.edges[0].dst_column 'device'" in error.message
    assert "node type 'device' has string ids" in error.message
    assert await _graph_count(graph_harness) == before
