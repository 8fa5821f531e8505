"""kill -9 of the trainer while a finished job is registering its bundle (serving down): on
restart the job resumes from its checkpoint — no new trials — and registers the bundle once."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import time
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.protobuf import duration_pb2
from sklearn.datasets import load_breast_cancer

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as serving_pb
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas.trainer.v1 import trainer_service_pb2_grpc as pb_grpc
from atlas_core.config import S3Settings
from atlas_core.rpc import ClientSettings, connect_sync
from atlas_core.storage import open_artifact_store
from tests.grpc.serving.conftest import TOKEN as SERVING_TOKEN
from tests.grpc.serving.conftest import serving_settings, start_harness, stop_harness
from tests.integration.test_trainer_crash import TOKEN, _kill_group
from tests.support.processes import free_port, start_service
from tests.support.signing import signing_settings

pytestmark = pytest.mark.slow


def _start(tmp_path: Path, s3: S3Settings, port: int, serving: str) -> subprocess.Popen:
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
            "ATLAS_TRAINER_JOBS__RUNNER_ID": "trainer-register-crash-test",
            "ATLAS_TRAINER_JOBS__REGISTER_BACKOFF_MAX_SECONDS": "1",
            "ATLAS_TRAINER_SERVING__TARGET": serving,
            "ATLAS_TRAINER_SERVING__TOKEN": SERVING_TOKEN,
            # the test key, which the serving harness trusts
            "ATLAS_TRAINER_BUNDLES__SIGNING_KEY_FILE": str(
                signing_settings(tmp_path).signing_key_file
            ),
        },
        tmp_path,
    )


def _complete_trials(stub: pb_grpc.TrainerServiceStub, job_id: str) -> set[int]:
    trials = stub.ListTrials(pb.ListTrialsRequest(job_id=job_id)).trials
    return {t.number for t in trials if t.state == pb.TRIAL_STATE_COMPLETE}


def test_kill_9_while_registering_then_restart_registers_once(tmp_path, s3_settings):
    frame = load_breast_cancer(as_frame=True).frame.rename(columns=lambda c: c.replace(" ", "_"))
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf)
    ref = open_artifact_store(s3_settings).put_bytes("uploads/bc-reg.parquet", buf.getvalue())
    port, serving_port = free_port(), free_port()
    serving_target = f"127.0.0.1:{serving_port}"  # nothing listens there yet
    spec = pb.TrainingJobSpec(
        dataset_artifact=common_pb2.ArtifactRef(uri=ref.uri),
        target_column="target",
        budget=pb.Budget(wall_time=duration_pb2.Duration(seconds=60), max_trials=3),
        automl=pb.AutoMlSpec(
            search_space=pb.SearchSpaceOptions(model_families=[pb.MODEL_FAMILY_LINEAR])
        ),
        register=pb.RegisterModelOptions(model_name="bc"),
    )
    proc = _start(tmp_path, s3_settings, port, serving_target)
    try:
        channel = connect_sync(ClientSettings(target=f"127.0.0.1:{port}", token=TOKEN))
        stub = pb_grpc.TrainerServiceStub(channel)
        job_id = stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=spec)).job.status.job_id
        deadline = time.monotonic() + 120
        while True:
            job = stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job_id)).job
            if "registering in serving: attempt" in job.status.progress.message:
                break  # trained, checkpointed, and failing to reach serving
            assert job.status.state != common_pb2.JOB_STATE_FAILED, job.status.error.message
            assert time.monotonic() < deadline, job.status.progress.message
            time.sleep(0.3)
        trained = _complete_trials(stub, job_id)
        channel.close()
    finally:
        _kill_group(proc)
    assert trained

    async def restart_with_serving_up() -> tuple[pb.TrainingJob, set[int], list]:
        settings = serving_settings(tmp_path / "serving", s3_settings, "")
        settings = settings.model_copy(
            update={"server": settings.server.model_copy(update={"port": serving_port})}
        )
        serving = await start_harness(settings)
        try:
            job, after = await asyncio.to_thread(_resume, tmp_path, s3_settings, port, job_id)
            listed = await serving.stub.ListModelVersions(
                serving_pb.ListModelVersionsRequest(model_name="bc")
            )
            return job, after, list(listed.model_versions)
        finally:
            await stop_harness(serving)

    def _resume(tmp, s3, port, job_id):
        proc = _start(tmp, s3, port, serving_target)
        try:
            channel = connect_sync(ClientSettings(target=f"127.0.0.1:{port}", token=TOKEN))
            stub = pb_grpc.TrainerServiceStub(channel)
            deadline = time.monotonic() + 120
            job = stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job_id)).job
            while job.status.state not in (
                common_pb2.JOB_STATE_SUCCEEDED,
                common_pb2.JOB_STATE_FAILED,
            ):
                assert time.monotonic() < deadline, job.status.progress.message
                time.sleep(0.5)
                try:
                    job = stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job_id)).job
                except grpc.RpcError:
                    continue
            after = _complete_trials(stub, job_id)
            channel.close()
            return job, after
        finally:
            _kill_group(proc)

    job, after, versions = asyncio.run(restart_with_serving_up())
    assert job.status.state == common_pb2.JOB_STATE_SUCCEEDED, job.status.error.message
    assert job.status.attempt == 2
    assert after == trained, "the resumed job trained again instead of registering"
    reg = job.result.registration
    assert reg.state == pb.REGISTRATION_STATE_REGISTERED
    assert (reg.model_version.version, reg.alias) == (1, "candidate")
    assert [v.ref.version for v in versions] == [1]
    assert versions[0].bundle.sha256 == job.result.model_bundle.sha256
