"""kill -9 of the trainer service during an AutoML job: on restart the job is re-queued and
continues its Optuna study, keeping the trials completed before the crash."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.protobuf import duration_pb2
from sklearn.datasets import load_breast_cancer

from atlas.common.v1 import common_pb2
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas.trainer.v1 import trainer_service_pb2_grpc as pb_grpc
from atlas_core.rpc import ClientSettings, connect_sync
from atlas_core.storage import open_artifact_store
from tests.support.processes import free_port, start_service

pytestmark = pytest.mark.slow
TOKEN = "trainer-crash-token-0123"


def _start(tmp_path, s3, port: int) -> subprocess.Popen:
    return start_service(
        "atlas_trainer",
        "atlas.trainer.v1.TrainerService",
        port,
        {
            "ATLAS_TRAINER_SERVER__PORT": str(port),
            "ATLAS_TRAINER_SERVER__AUTH__TOKENS": json.dumps({TOKEN: ["*"]}),
            "ATLAS_TRAINER_S3__ENDPOINT": s3.endpoint,
            "ATLAS_TRAINER_S3__ACCESS_KEY": s3.access_key.get_secret_value(),
            "ATLAS_TRAINER_S3__SECRET_KEY": s3.secret_key.get_secret_value(),
            "ATLAS_TRAINER_S3__BUCKET": s3.bucket,
            "ATLAS_TRAINER_DATABASE__URL": f"sqlite:///{tmp_path / 'trainer.db'}",
            "ATLAS_TRAINER_DATA_DIR": str(tmp_path),
            "ATLAS_TRAINER_JOBS__RUNNER_ID": "trainer-crash-test",
        },
        tmp_path,
    )


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the service and its job subprocess
    except ProcessLookupError:
        pass
    proc.wait()


def test_kill_9_then_restart_resumes_the_study(tmp_path, s3_settings):
    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.rename(columns=lambda c: c.replace(" ", "_"))
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf)
    ref = open_artifact_store(s3_settings).put_bytes("uploads/bc.parquet", buf.getvalue())
    port = free_port()
    proc = _start(tmp_path, s3_settings, port)
    try:
        channel = connect_sync(ClientSettings(target=f"127.0.0.1:{port}", token=TOKEN))
        stub = pb_grpc.TrainerServiceStub(channel)
        spec = pb.TrainingJobSpec(
            dataset_artifact=common_pb2.ArtifactRef(uri=ref.uri),
            target_column="target",
            budget=pb.Budget(wall_time=duration_pb2.Duration(seconds=45)),
            automl=pb.AutoMlSpec(),
        )
        job_id = stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=spec)).job.status.job_id
        finished = 0
        for ev in stub.WatchTrainingJob(pb.WatchTrainingJobRequest(job_id=job_id), timeout=120):
            if ev.event_type == pb.TRAINING_EVENT_TYPE_TRIAL_FINISHED:
                finished += 1
                if finished >= 3:
                    break
        before = {
            t.number
            for t in stub.ListTrials(
                pb.ListTrialsRequest(job_id=job_id, states=[pb.TRIAL_STATE_COMPLETE])
            ).trials
        }
        channel.close()
    finally:
        _kill_group(proc)
    assert len(before) >= 3

    proc = _start(tmp_path, s3_settings, port)
    try:
        channel = connect_sync(ClientSettings(target=f"127.0.0.1:{port}", token=TOKEN))
        stub = pb_grpc.TrainerServiceStub(channel)
        deadline = time.monotonic() + 180
        job = stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job_id)).job
        while (
            job.status.state not in (common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED)
            and time.monotonic() < deadline
        ):
            time.sleep(1)
            job = stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job_id)).job
        assert job.status.state == common_pb2.JOB_STATE_SUCCEEDED, job.status.error.message
        assert job.status.attempt == 2
        after = {
            t.number
            for t in stub.ListTrials(
                pb.ListTrialsRequest(job_id=job_id, states=[pb.TRIAL_STATE_COMPLETE])
            ).trials
        }
        assert before <= after, "trials completed before the crash were lost"
        assert len(after) > len(before)
        assert job.result.model_bundle.uri
        channel.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
