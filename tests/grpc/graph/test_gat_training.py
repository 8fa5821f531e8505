"""GAT training through the graph service's API, distributed: a small SBM graph in two
partitions, two trainers; the job succeeds, trains a GAT (attention weights in the bundle) and
beats chance."""

from __future__ import annotations

import io

import pytest
import torch

from atlas.common.v1 import common_pb2
from atlas.graph.v1 import graph_service_pb2 as pb

from ._jobs import run_job
from .conftest import GraphHarness

pytestmark = pytest.mark.slow
NODES, CLASSES = 600, 4


async def test_gat_training_job_succeeds_above_chance(graph_harness: GraphHarness) -> None:
    stub = graph_harness.stub
    graph = (
        await run_job(
            stub,
            generate_graph=pb.GenerateGraphSpec(
                name="sbm-gat",
                nodes=NODES,
                communities=CLASSES,
                average_degree=10,
                intra_fraction=0.85,
                feature_dims=8,
                feature_noise=1.0,
                seed=5,
            ),
        )
    ).graph
    part = (
        await run_job(
            stub, partition_graph=pb.PartitionGraphSpec(graph_id=graph.graph_id, num_partitions=2)
        )
    ).partitioning
    ref = common_pb2.GraphRef(graph_id=graph.graph_id, partitioning_id=part.partitioning_id)
    job = await run_job(
        stub,
        timeout=180,
        train=pb.TrainGraphSpec(
            ref=ref,
            num_trainers=2,
            model=pb.GNN_MODEL_GAT,
            fan_outs=[10, 10],
            hidden_dims=16,
            num_heads=2,
            epochs=3,
            batch_size=128,
            learning_rate=0.02,
            seed=1,
        ),
    )
    result = job.train_result
    metrics = dict(result.metrics)
    assert metrics["test_accuracy"] > 0.5, metrics  # chance is 1 / CLASSES = 0.25
    assert metrics["train_accuracy"] > 1 / CLASSES, metrics

    art = graph_harness.service.rt.artifacts
    bundle = torch.load(
        io.BytesIO(art.get_bytes(art.key_for_uri(result.model_bundle.uri))), weights_only=False
    )
    assert bundle["config"]["model"] == "gat" and bundle["config"]["heads"] == 2
    assert any("attn_l" in name for name in bundle["model"])  # GATConv's attention vectors
