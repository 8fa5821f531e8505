"""Link prediction through the graph service's API: two trainers on two partitions score
held-out edges well above chance (ROC AUC and MRR in the job's metrics), and bad link
prediction requests are refused naming the field."""

from __future__ import annotations

import io

import grpc
import pyarrow.parquet as pq
import pytest

from atlas.common.v1 import common_pb2
from atlas.graph.v1 import graph_service_pb2 as pb

from ._jobs import failed_job, run_job
from .conftest import GraphHarness

NODES = 600


async def _partitioned(stub, nodes: int, degree: float, parts: int) -> common_pb2.GraphRef:  # type: ignore[no-untyped-def]
    graph = (
        await run_job(
            stub,
            generate_graph=pb.GenerateGraphSpec(
                name="sbm-links",
                nodes=nodes,
                communities=4,
                average_degree=degree,
                intra_fraction=0.9,
                feature_dims=8,
                feature_noise=0.5,
                seed=11,
            ),
        )
    ).graph
    part = (
        await run_job(
            stub,
            partition_graph=pb.PartitionGraphSpec(graph_id=graph.graph_id, num_partitions=parts),
        )
    ).partitioning
    return common_pb2.GraphRef(graph_id=graph.graph_id, partitioning_id=part.partitioning_id)


@pytest.mark.slow
async def test_two_trainers_predict_held_out_links(graph_harness: GraphHarness) -> None:
    stub = graph_harness.stub
    ref = await _partitioned(stub, NODES, 10, parts=2)
    job = await run_job(
        stub,
        timeout=240,
        train=pb.TrainGraphSpec(
            ref=ref,
            task=pb.GRAPH_TASK_LINK_PREDICTION,
            link_prediction=pb.LinkPredictionSpec(test_fraction=0.15, eval_negatives=20),
            num_trainers=2,
            fan_outs=[5, 5],
            hidden_dims=16,
            epochs=3,
            batch_size=256,
            learning_rate=0.02,
            write_embeddings=True,
            seed=1,
        ),
    )
    result = job.train_result
    metrics = dict(result.metrics)
    # About 15% of the 6,000 directed edges are held out for test; chance AUC is 0.5 and
    # chance MRR about 1/21 * H(21) ~ 0.17 (rank uniform over 1..21).
    assert 600 < metrics["test_edges"] < 1200, metrics
    assert metrics["test_auc"] > 0.75 and metrics["val_auc"] > 0.7, metrics
    assert metrics["test_mrr"] > 0.3, metrics
    assert "loss" in metrics and "test_accuracy" not in metrics
    assert not result.predictions.uri and not result.serving_bundle.uri  # no classes to serve
    art = graph_harness.service.rt.artifacts
    emb = pq.read_table(io.BytesIO(art.get_bytes(art.key_for_uri(result.embeddings.uri))))
    assert emb.num_rows == NODES and emb.schema.field("embedding").type.list_size == 16
    assert sorted(emb.column("id").to_pylist()) == list(range(NODES))

    # The bundle re-embeds chosen nodes (the same split and model); it has no classes.
    infer = pb.InferGraphSpec(
        ref=ref, model_bundle=result.model_bundle, write_embeddings=True, node_int64_ids=[3, 7]
    )
    again = (await run_job(stub, timeout=180, infer=infer)).train_result
    rows = pq.read_table(io.BytesIO(art.get_bytes(art.key_for_uri(again.embeddings.uri))))
    assert sorted(rows.column("id").to_pylist()) == [3, 7]
    # Re-embedding sums float32 messages in another order: a few near-tied pairs may swap.
    assert dict(again.metrics)["test_auc"] == pytest.approx(metrics["test_auc"], abs=1e-3)
    infer.write_predictions = True
    error = await failed_job(stub, infer=infer)
    assert error.code == "INVALID_ARGUMENT" and "infer.write_predictions" in error.message


async def _refused(stub, spec: pb.TrainGraphSpec) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SubmitGraphJob(pb.SubmitGraphJobRequest(train=spec))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return err.value.details() or ""


@pytest.mark.slow  # a graph generated and partitioned through the API first
async def test_bad_link_prediction_requests_name_the_field(graph_harness: GraphHarness) -> None:
    stub = graph_harness.stub
    ref = await _partitioned(stub, 40, 2, parts=1)  # 80 directed edges

    def spec(**kw: object) -> pb.TrainGraphSpec:
        return pb.TrainGraphSpec(ref=ref, fan_outs=[5], **kw)  # type: ignore[arg-type]

    link = pb.GRAPH_TASK_LINK_PREDICTION
    details = await _refused(stub, spec(task=link))  # 10% of 80 edges: 8 test edges
    assert "80 edges" in details and "train.link_prediction.test_fraction" in details
    details = await _refused(stub, spec(task=7))  # type: ignore[arg-type]
    assert "train.task 7" in details
    details = await _refused(stub, spec(link_prediction=pb.LinkPredictionSpec(test_fraction=0.5)))
    assert "train.link_prediction is set" in details
    for bad, field in (
        (pb.LinkPredictionSpec(test_fraction=1.5), "train.link_prediction.test_fraction"),
        (pb.LinkPredictionSpec(val_fraction=-0.1), "train.link_prediction.val_fraction"),
        (pb.LinkPredictionSpec(test_fraction=0.6, val_fraction=0.4), "val_fraction must be"),
        (pb.LinkPredictionSpec(test_fraction=0.5, num_negatives=-1), "num_negatives"),
    ):
        details = await _refused(stub, spec(task=link, link_prediction=bad))
        assert field in details, details
    # Enough edges at a larger fraction: accepted (and a graph with labels is not required).
    accepted = await stub.SubmitGraphJob(
        pb.SubmitGraphJobRequest(
            train=spec(task=link, link_prediction=pb.LinkPredictionSpec(test_fraction=0.5))
        )
    )
    await stub.CancelGraphJob(pb.CancelGraphJobRequest(job_id=accepted.job.status.job_id))
