"""Data-parallel deep-learning jobs: two worker processes under torch.distributed (gloo, DDP,
DistributedSampler) on digits. A worker killed with SIGKILL either restarts the workers from
the last checkpoint (max_restarts) or fails the job naming the worker and its log; a cancel
stops every worker within seconds; no worker outlives its job."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pandas as pd
import psutil
import pytest
from sklearn.datasets import load_digits

from atlas.common.v1 import common_pb2
from atlas.trainer.v1 import trainer_service_pb2 as pb

from .test_deep_learning_jobs import deep_spec

pytestmark = pytest.mark.slow
TERMINAL = {
    common_pb2.JOB_STATE_SUCCEEDED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
}


def workers_of(job_id: str) -> dict[int, psutil.Process]:
    """The job's worker processes by rank (their work directory is named after the job)."""
    found = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(proc.cmdline())
            if "atlas_trainer.deep.worker" in cmdline and job_id in cmdline:
                found[int(proc.environ()["RANK"])] = proc
        except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError):
            continue
    return found


async def follow(stub, job_id, on_event, timeout=240):
    async def run():
        async for ev in stub.WatchTrainingJob(pb.WatchTrainingJobRequest(job_id=job_id)):
            await on_event(ev)
            if ev.event_type == pb.TRAINING_EVENT_TYPE_STATUS and ev.status.state in TERMINAL:
                return

    await asyncio.wait_for(run(), timeout)
    return (await stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job_id))).job


async def no_workers_left(job_id: str, within: float) -> None:
    deadline = time.monotonic() + within
    while workers_of(job_id) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not workers_of(job_id)


async def test_two_workers_restart_fail_and_cancel(trainer_harness) -> None:
    h = trainer_harness
    # the digits eight times over: on a fast machine four epochs of the plain digits end
    # before the test has read the first checkpoint event and found the workers.
    frame = pd.concat([load_digits(as_frame=True).frame] * 8, ignore_index=True)
    ref = await asyncio.to_thread(h.upload, "uploads/digits.parquet", frame)

    def spec(restarts: int, epochs: int = 4) -> pb.TrainingJobSpec:
        return deep_spec(
            ref,
            "target",
            "mlp",
            epochs=epochs,
            batch_size=32,
            params={"hidden": [64], "lr": 0.003},
            workers=2,
            max_restarts=restarts,
        )

    async def submit(s):
        job = (await h.stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=s))).job
        return job.status.job_id

    # 1. rank 1 is killed after the first checkpoint: the workers restart from it.
    job_id = await submit(spec(restarts=1))
    killed = []

    async def kill_rank_1(ev):
        if ev.event_type == pb.TRAINING_EVENT_TYPE_CHECKPOINT_SAVED and not killed:
            workers = workers_of(job_id)
            assert sorted(workers) == [0, 1]
            os.kill(workers[1].pid, signal.SIGKILL)
            killed.append(ev.epoch)

    done = await follow(h.stub, job_id, kill_rank_1)
    assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message
    deep = done.result.deep_learning
    assert deep.workers == 2 and deep.restarts == 1
    assert 1 <= deep.resumed_from_epoch <= 4
    assert [e.epoch for e in deep.epochs] == [1, 2, 3, 4]
    assert done.result.best.score > 0.8
    assert "--nproc-per-node=2" in deep.torchrun_command
    files = json.loads(deep.rendezvous_config)["work_dir_files"]
    store = h.service.rt.artifacts
    stored = json.loads(store.get_bytes(store.key_for_uri(files["config.json"])))
    assert stored["workers"] == 2 and stored["architecture"] == "mlp"
    await no_workers_left(job_id, within=5)

    # 2. no restarts allowed: the job fails naming the worker and the tail of its log.
    job_id = await submit(spec(restarts=0))
    killed.clear()
    done = await follow(h.stub, job_id, kill_rank_1)
    assert done.status.state == common_pb2.JOB_STATE_FAILED
    error = done.status.error.message
    assert "worker 1" in error and "SIGKILL" in error and "tail of its log" in error, error
    await no_workers_left(job_id, within=5)

    # 3. a cancel stops every worker within seconds.
    job_id = await submit(spec(restarts=0, epochs=200))
    cancelled_at = []

    async def cancel_after_first_epoch(ev):
        if ev.event_type == pb.TRAINING_EVENT_TYPE_EPOCH_FINISHED and not cancelled_at:
            assert len(workers_of(job_id)) == 2
            cancelled_at.append(time.monotonic())
            await h.stub.CancelTrainingJob(pb.CancelTrainingJobRequest(job_id=job_id))

    done = await follow(h.stub, job_id, cancel_after_first_epoch)
    assert done.status.state == common_pb2.JOB_STATE_CANCELLED
    await no_workers_left(job_id, within=5)
    assert time.monotonic() - cancelled_at[0] < 15


async def test_the_wall_budget_ends_training_at_the_last_checkpoint(trainer_harness) -> None:
    h = trainer_harness
    ref = await asyncio.to_thread(
        h.upload, "uploads/digits.parquet", load_digits(as_frame=True).frame
    )
    spec = deep_spec(
        ref, "target", "mlp", epochs=1000, params={"hidden": [32], "lr": 0.003}, workers=2
    )
    spec.budget.wall_time.seconds = 30
    job = (await h.stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=spec))).job
    started = time.monotonic()

    async def nothing(ev):
        return None

    done = await follow(h.stub, job.status.job_id, nothing)
    assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message
    assert time.monotonic() - started < 30 * 1.1 + 5  # the runner's start and the watch
    trained = len(done.result.deep_learning.epochs)
    assert 1 <= trained < 1000
    report = (
        await h.stub.GetTrainingReport(pb.GetTrainingReportRequest(job_id=job.status.job_id))
    ).report
    assert f"the wall budget ended training after epoch {trained} of 1000" in report.warnings
    await no_workers_left(job.status.job_id, within=5)
