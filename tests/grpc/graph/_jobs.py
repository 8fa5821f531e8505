"""Helpers of the graph gRPC tests: submit a job and wait for its terminal state."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from atlas.common.v1 import common_pb2
from atlas.graph.v1 import graph_service_pb2 as pb

TERMINAL = {
    common_pb2.JOB_STATE_SUCCEEDED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
}


async def wait_job(stub: Any, job_id: str, timeout: float = 240) -> pb.GraphJob:
    deadline = time.monotonic() + timeout
    while True:
        job = (await stub.GetGraphJob(pb.GetGraphJobRequest(job_id=job_id))).job
        if job.status.state in TERMINAL:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.status.state}"
        await asyncio.sleep(0.2)


async def run_job(stub: Any, timeout: float = 240, **spec: Any) -> pb.GraphJob:
    """Submit (spec as SubmitGraphJobRequest fields) and require success."""
    submitted = await stub.SubmitGraphJob(pb.SubmitGraphJobRequest(**spec))
    job = await wait_job(stub, submitted.job.status.job_id, timeout)
    assert job.status.state == common_pb2.JOB_STATE_SUCCEEDED, job.status.error.message
    return job


async def failed_job(stub: Any, **spec: Any) -> common_pb2.JobError:
    submitted = await stub.SubmitGraphJob(pb.SubmitGraphJobRequest(**spec))
    job = await wait_job(stub, submitted.job.status.job_id, 120)
    assert job.status.state == common_pb2.JOB_STATE_FAILED
    return job.status.error
