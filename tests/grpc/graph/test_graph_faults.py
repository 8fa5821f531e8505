"""A trainer killed mid-epoch fails the job through the API: the error names the trainer and
its signal, and no graph server or trainer process is left running."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import psutil
import pytest

from atlas.common.v1 import common_pb2
from atlas.graph.v1 import graph_service_pb2 as pb

from ._jobs import run_job, wait_job
from .conftest import GraphHarness

pytestmark = pytest.mark.slow


async def test_trainer_killed_mid_epoch_fails_cleanly(graph_harness: GraphHarness) -> None:
    stub = graph_harness.stub
    graph = (
        await run_job(
            stub,
            generate_graph=pb.GenerateGraphSpec(nodes=20000, communities=4, feature_dims=8, seed=2),
        )
    ).graph
    part = (
        await run_job(
            stub, partition_graph=pb.PartitionGraphSpec(graph_id=graph.graph_id, num_partitions=2)
        )
    ).partitioning
    submitted = await stub.SubmitGraphJob(
        pb.SubmitGraphJobRequest(
            train=pb.TrainGraphSpec(
                ref=common_pb2.GraphRef(
                    graph_id=graph.graph_id, partitioning_id=part.partitioning_id
                ),
                num_trainers=2,
                fan_outs=[10, 10],
                epochs=50,
                batch_size=64,
            )
        )
    )
    job_id = submitted.job.status.job_id
    # The process ids are in the job's event log (test-side introspection only).
    pids: dict[str, list[int]] = {}
    deadline = time.monotonic() + 120
    async for event in stub.WatchGraphJob(pb.WatchGraphJobRequest(job_id=job_id)):
        if not pids:
            pids = next(
                (
                    e.payload["pids"]
                    for e in graph_harness.service.jobs.events(job_id)
                    if "pids" in e.payload
                ),
                {},
            )
        if pids and "batch" in event.job.status.progress.message:
            break
        assert time.monotonic() < deadline, "training never reached a batch"
    os.kill(pids["trainers"][1], signal.SIGKILL)
    job = await wait_job(stub, job_id, 60)
    assert job.status.state == common_pb2.JOB_STATE_FAILED
    assert "trainer 1" in job.status.error.message and "SIGKILL" in job.status.error.message
    await asyncio.sleep(0.5)
    alive = [
        p
        for p in pids["servers"] + pids["trainers"]
        if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ]
    assert alive == []
