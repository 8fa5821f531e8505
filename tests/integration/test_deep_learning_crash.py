"""kill -9 of the trainer service during a data-parallel deep-learning job: its workers die
with the job process (none is left behind), and on restart the job resumes from its last
checkpoint in the object store instead of starting over."""

from __future__ import annotations

import io
import signal
import subprocess
import time

import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.protobuf import struct_pb2
from sklearn.datasets import load_digits

from atlas.common.v1 import common_pb2
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas.trainer.v1 import trainer_service_pb2_grpc as pb_grpc
from atlas_core.rpc import ClientSettings, connect_sync
from atlas_core.storage import open_artifact_store
from tests.integration.test_trainer_crash import TOKEN, _kill_group, _start
from tests.support.processes import free_port

pytestmark = pytest.mark.slow
EPOCHS = 5


def _workers(job_id: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "atlas_trainer.deep.worker" in cmdline and job_id in cmdline:
            found.append(proc)
    return found


def test_kill_9_of_the_service_resumes_a_data_parallel_job(tmp_path, s3_settings):
    buf = io.BytesIO()
    # the digits eight times over: epochs long enough that the job is still running (its
    # workers alive) when the client has read the second checkpoint's event on a loaded host
    frame = pd.concat([load_digits(as_frame=True).frame] * 8, ignore_index=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf)
    ref = open_artifact_store(s3_settings).put_bytes("uploads/digits.parquet", buf.getvalue())
    params = struct_pb2.Struct()
    params.update({"hidden": [64], "lr": 0.003})
    spec = pb.TrainingJobSpec(
        dataset_artifact=common_pb2.ArtifactRef(uri=ref.uri),
        target_column="target",
        deep_learning=pb.DeepLearningSpec(
            architecture="mlp", epochs=EPOCHS, batch_size=32, workers=2, params=params
        ),
    )
    port = free_port()
    proc = _start(tmp_path, s3_settings, port)
    try:
        channel = connect_sync(ClientSettings(target=f"127.0.0.1:{port}", token=TOKEN))
        stub = pb_grpc.TrainerServiceStub(channel)
        job_id = stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=spec)).job.status.job_id
        saved = 0
        for ev in stub.WatchTrainingJob(pb.WatchTrainingJobRequest(job_id=job_id), timeout=180):
            if ev.event_type == pb.TRAINING_EVENT_TYPE_CHECKPOINT_SAVED:
                saved = ev.epoch
                if saved >= 2:
                    break
        assert len(_workers(job_id)) == 2
        channel.close()
    finally:
        _kill_group(proc)
    assert saved >= 2
    deadline = time.monotonic() + 10
    while _workers(job_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _workers(job_id), "workers outlived their job process"

    proc = _start(tmp_path, s3_settings, port)
    try:
        channel = connect_sync(ClientSettings(target=f"127.0.0.1:{port}", token=TOKEN))
        stub = pb_grpc.TrainerServiceStub(channel)
        deadline = time.monotonic() + 240
        job = stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job_id)).job
        while (
            job.status.state not in (common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED)
            and time.monotonic() < deadline
        ):
            time.sleep(1)
            job = stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job_id)).job
        assert job.status.state == common_pb2.JOB_STATE_SUCCEEDED, job.status.error.message
        assert job.status.attempt == 2
        deep = job.result.deep_learning
        assert deep.resumed_from_epoch >= saved  # not from scratch
        assert [e.epoch for e in deep.epochs] == list(range(1, EPOCHS + 1))
        assert job.result.best.score > 0.8
        channel.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
