"""Generate -> partition -> train -> infer through the API of a real graph service:
accuracy, outputs under ORIGINAL ids, id translation, listing, watching and deletion."""

from __future__ import annotations

import io

import grpc
import pyarrow.parquet as pq
import pytest

from atlas.common.v1 import common_pb2
from atlas.graph.v1 import graph_service_pb2 as pb

from ._jobs import run_job
from .conftest import GraphHarness

pytestmark = pytest.mark.slow
NODES = 2000


def _parquet(harness: GraphHarness, uri: str):  # type: ignore[no-untyped-def]
    art = harness.service.rt.artifacts
    return pq.read_table(io.BytesIO(art.get_bytes(art.key_for_uri(uri)))).to_pandas()


async def test_generate_partition_train_infer_under_original_ids(
    graph_harness: GraphHarness,
) -> None:
    stub = graph_harness.stub
    graph = (
        await run_job(
            stub,
            generate_graph=pb.GenerateGraphSpec(
                name="sbm-demo",
                nodes=NODES,
                communities=4,
                average_degree=10,
                intra_fraction=0.85,
                feature_dims=8,
                feature_noise=1.0,
                seed=3,
            ),
        )
    ).graph
    assert graph.num_nodes == NODES and graph.num_classes == 4 and graph.has_masks
    listed = await stub.ListGraphs(pb.ListGraphsRequest(name_prefix="sbm-"))
    assert [g.graph_id for g in listed.graphs] == [graph.graph_id]

    spec = pb.PartitionGraphSpec(graph_id=graph.graph_id, num_partitions=2)
    estimate = (await stub.EstimatePartitioning(pb.EstimatePartitioningRequest(spec=spec))).estimate
    assert estimate.fits and estimate.range_map_bytes <= 1024
    part = (await run_job(stub, partition_graph=spec)).partitioning
    assert list(part.node_boundaries)[::2] == [0, NODES] and len(part.partitions) == 2
    ref = common_pb2.GraphRef(graph_id=graph.graph_id, partitioning_id=part.partitioning_id)
    got = (await stub.GetPartitioning(pb.GetPartitioningRequest(ref=ref))).partitioning
    assert got.partitions[1].node_ranges["_N"].end == NODES
    assert (
        len(
            (
                await stub.ListPartitionings(pb.ListPartitioningsRequest(graph_id=graph.graph_id))
            ).partitionings
        )
        == 1
    )

    forward = await stub.TranslateIds(
        pb.TranslateIdsRequest(
            ref=ref,
            kind=pb.ID_KIND_NODE,
            direction=pb.TRANSLATE_DIRECTION_ORIGINAL_TO_NEW,
            int64_ids=[0, 7, NODES - 1],
        )
    )
    back = await stub.TranslateIds(
        pb.TranslateIdsRequest(
            ref=ref,
            kind=pb.ID_KIND_NODE,
            direction=pb.TRANSLATE_DIRECTION_NEW_TO_ORIGINAL,
            int64_ids=forward.new_ids,
        )
    )
    assert list(back.original_int64_ids) == [0, 7, NODES - 1]
    assert list(back.partitions) == list(forward.partitions)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.TranslateIds(
            pb.TranslateIdsRequest(
                ref=ref,
                kind=pb.ID_KIND_NODE,
                direction=pb.TRANSLATE_DIRECTION_ORIGINAL_TO_NEW,
                int64_ids=[5, NODES + 41],
            )
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and str(NODES + 41) in err.value.details()

    train = pb.TrainGraphSpec(
        ref=ref,
        num_trainers=2,
        model=pb.GNN_MODEL_GRAPHSAGE,
        fan_outs=[10, 10],
        hidden_dims=32,
        epochs=4,
        batch_size=128,
        learning_rate=0.02,
        write_embeddings=True,
        seed=1,
    )
    submitted = await stub.SubmitGraphJob(
        pb.SubmitGraphJobRequest(train=train, request_id="train-1")
    )
    job_id = submitted.job.status.job_id
    again = await stub.SubmitGraphJob(pb.SubmitGraphJobRequest(train=train, request_id="train-1"))
    assert again.job.status.job_id == job_id
    epochs, last = set(), None
    async for event in stub.WatchGraphJob(pb.WatchGraphJobRequest(job_id=job_id)):
        if "loss" in event.metrics and event.epoch:
            epochs.add(event.epoch)
        last = event.job
    assert last is not None and last.status.state == common_pb2.JOB_STATE_SUCCEEDED, (
        last.status.error.message
    )
    assert epochs == {1, 2, 3, 4}
    result = last.train_result
    assert result.metrics["test_accuracy"] > 0.85, dict(result.metrics)
    assert len(result.checkpoints) == 4 and "launch.py" in result.launch_command
    preds = _parquet(graph_harness, result.predictions.uri)
    assert sorted(preds["id"]) == list(range(NODES))  # every ORIGINAL id exactly once
    assert (preds["label"] == preds["id"] % 4).mean() > 0.85  # SBM label = id % 4

    # Inference with the bundle on a few original ids (one trainer against two partitions).
    infer = (
        await run_job(
            stub,
            infer=pb.InferGraphSpec(
                ref=ref,
                model_bundle=result.model_bundle,
                write_predictions=True,
                node_int64_ids=[3, 1500, NODES - 1],
            ),
        )
    ).train_result
    chosen = _parquet(graph_harness, infer.predictions.uri)
    assert sorted(chosen["id"]) == [3, 1500, NODES - 1]

    jobs = (
        await stub.ListGraphJobs(
            pb.ListGraphJobsRequest(graph_id=graph.graph_id, kind=pb.GRAPH_JOB_KIND_TRAIN)
        )
    ).jobs
    assert [j.status.job_id for j in jobs] == [job_id]

    deleted = await stub.DeleteGraph(
        pb.DeleteGraphRequest(graph_id=graph.graph_id, request_id="del-1")
    )
    assert deleted.deleted_partitionings == 1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetGraph(pb.GetGraphRequest(graph_id=graph.graph_id))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    retried = await stub.DeleteGraph(
        pb.DeleteGraphRequest(graph_id=graph.graph_id, request_id="del-1")
    )
    assert retried.deleted_partitionings == 1
