"""Distributed training end to end on the domain layer: real SeaweedFS, SQLite, DGL graph
servers and trainers as processes; cancelling stops every one of them. (A trainer killed
mid-epoch is tested through the API: tests/grpc/graph/test_graph_faults.py.)"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from atlas.common.v1 import common_pb2
from atlas.graph.v1 import graph_service_pb2 as pb
from atlas_core.config import DatabaseSettings, JobSettings, S3Settings
from atlas_core.jobs import JobState
from atlas_graph.config import GraphSettings
from atlas_graph.jobs import KIND_GENERATE, KIND_PARTITION, KIND_TRAIN
from atlas_graph.service import GraphService

pytestmark = pytest.mark.slow


@pytest.fixture
def graph_service(tmp_path: Path, s3_settings: S3Settings) -> Iterator[GraphService]:
    settings = GraphSettings(
        s3=s3_settings,
        data_dir=tmp_path,
        database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'g.db'}"),
        jobs=JobSettings(max_concurrent=1, runner_id="graph-test"),
    )
    service = GraphService.open(settings)
    service.start()
    try:
        yield service
    finally:
        service.stop()


def _run(service: GraphService, kind: str, spec: object, timeout: float = 240) -> dict:
    record = service.submit(kind, spec)
    done = service.jobs.wait(record.id, timeout=timeout)
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.result is not None
    return done.result


def _partitioned_sbm(service: GraphService, nodes: int = 3000) -> tuple[str, str]:
    graph = _run(
        service,
        KIND_GENERATE,
        pb.GenerateGraphSpec(
            name="sbm",
            nodes=nodes,
            communities=4,
            average_degree=10,
            intra_fraction=0.85,
            feature_dims=8,
            feature_noise=1.0,
            seed=3,
        ),
    )["graph"]
    part = _run(
        service, KIND_PARTITION, pb.PartitionGraphSpec(graph_id=graph["graph_id"], num_partitions=2)
    )["partitioning"]
    return graph["graph_id"], part["partitioning_id"]


def _descendants_alive(pids: list[int]) -> list[int]:
    return [
        p
        for p in pids
        if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ]


def test_two_trainers_learn_and_write_outputs_under_original_ids(
    graph_service: GraphService,
) -> None:
    graph_id, part_id = _partitioned_sbm(graph_service)
    result = _run(
        graph_service,
        KIND_TRAIN,
        pb.TrainGraphSpec(
            ref=common_pb2.GraphRef(graph_id=graph_id, partitioning_id=part_id),
            num_trainers=2,
            model=pb.GNN_MODEL_GRAPHSAGE,
            fan_outs=[10, 10],
            hidden_dims=32,
            epochs=4,
            batch_size=128,
            learning_rate=0.02,
            write_embeddings=True,
            skip_serving_bundle=True,
            seed=1,
        ),
    )["train_result"]
    assert "serving_bundle" not in result  # asked not to: tests/integration/test_gnn_serving.py
    assert result["metrics"]["test_accuracy"] > 0.75
    assert len(result["checkpoints"]) == 4
    art = graph_service.rt.artifacts
    preds_key = art.key_for_uri(result["predictions"]["uri"])
    preds = pq.read_table(io.BytesIO(art.get_bytes(preds_key))).to_pandas()
    assert sorted(preds["id"]) == list(range(3000))  # every ORIGINAL id exactly once
    # SBM labels are id % communities: predictions line up with original ids.
    assert (preds["label"] == preds["id"] % 4).mean() > 0.75
    emb = pq.read_table(io.BytesIO(art.get_bytes(art.key_for_uri(result["embeddings"]["uri"]))))
    assert emb.num_rows == 3000 and emb.schema.field("embedding").type.list_size == 32
    assert "127.0.0.1" in result["ip_config"] and "launch.py" in result["launch_command"]


def test_cancel_stops_every_server_and_trainer(graph_service: GraphService) -> None:
    graph_id, part_id = _partitioned_sbm(graph_service, nodes=20000)
    record = graph_service.submit(
        KIND_TRAIN,
        pb.TrainGraphSpec(
            ref=common_pb2.GraphRef(graph_id=graph_id, partitioning_id=part_id),
            fan_outs=[10],
            epochs=50,
            batch_size=64,
        ),
    )
    deadline = time.monotonic() + 120
    pids: dict[str, list[int]] = {}
    while not pids and time.monotonic() < deadline:
        pids = next(
            (
                e.payload["pids"]
                for e in graph_service.jobs.events(record.id)
                if "pids" in e.payload
            ),
            {},
        )
        time.sleep(0.2)
    assert pids
    graph_service.cancel(record.id)
    done = graph_service.jobs.wait(record.id, timeout=60)
    assert done.state is JobState.CANCELLED
    time.sleep(0.5)
    assert _descendants_alive(pids["servers"] + pids["trainers"]) == []
