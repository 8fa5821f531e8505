"""Scale-out exercised with real service processes on this machine (no containers):

- two trainer services (``python -m atlas_trainer``, each its own process and job runner) on
  one PostgreSQL database run one AutoML study together: a job submitted to each names the
  same ``automl.study_name``; the study's trials come from both, the trial budget holds
  study-wide, and no trial number nor configuration appears twice in Optuna's trial table;
- two data-service replicas on one Redis online store: features written through one are read
  back from both, the client balancing its reads round-robin over the two addresses (each
  replica's own Prometheus counter shows its share).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import optuna
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_breast_cancer
from sqlalchemy import create_engine, text

from atlas.common.v1 import common_pb2
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas.trainer.v1 import trainer_service_pb2_grpc as pb_grpc
from atlas_core.config import S3Settings
from atlas_core.rpc import ClientSettings, connect_sync
from atlas_core.storage import open_artifact_store
from tests.support.processes import free_port, start_service

pytestmark = pytest.mark.slow
TOKEN = "scale-out-token-0123"
FINISHED = (common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the service and its job subprocesses
            proc.wait()


# ------------------------------------------------------------------ trainers, one study


def _trainer(tmp: Path, s3: S3Settings, db_url: str, i: int, port: int) -> subprocess.Popen:
    data_dir = tmp / f"trainer-{i}"
    data_dir.mkdir(exist_ok=True)  # a restarted trainer keeps its data directory
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
            "ATLAS_TRAINER_DATABASE__URL": db_url,
            "ATLAS_TRAINER_DATA_DIR": str(data_dir),
            # one job at a time each, and a runner id of its own (a shared id would make a
            # starting trainer take the other's running jobs for its own, interrupted ones)
            "ATLAS_TRAINER_JOBS__MAX_CONCURRENT": "1",
            "ATLAS_TRAINER_JOBS__RUNNER_ID": f"trainer-{i}",
        },
        tmp,
        timeout=120,
    )


@pytest.fixture
def two_trainers(
    tmp_path: Path, s3_settings: S3Settings, postgres_schema_url: str
) -> Iterator[list[str]]:
    ports = [free_port(), free_port()]
    # the first migrates the schema before the second starts on it
    procs = [_trainer(tmp_path, s3_settings, postgres_schema_url, 0, ports[0])]
    try:
        procs.append(_trainer(tmp_path, s3_settings, postgres_schema_url, 1, ports[1]))
        yield [f"127.0.0.1:{p}" for p in ports]
    finally:
        _stop(procs)


def _upload_breast_cancer(s3: S3Settings) -> str:
    frame = load_breast_cancer(as_frame=True).frame.rename(columns=lambda c: c.replace(" ", "_"))
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf)
    key = f"uploads/scale-out-{uuid.uuid4().hex[:8]}.parquet"
    return open_artifact_store(s3).put_bytes(key, buf.getvalue()).uri


def _spec(uri: str, study: str, max_trials: int, wall_s: int) -> pb.TrainingJobSpec:
    return pb.TrainingJobSpec(
        dataset_artifact=common_pb2.ArtifactRef(uri=uri),
        target_column="target",
        budget=pb.Budget(wall_time=duration_pb2.Duration(seconds=wall_s), max_trials=max_trials),
        automl=pb.AutoMlSpec(
            study_name=study,
            warm_start=pb.WARM_START_MODE_OFF,
            search_space=pb.SearchSpaceOptions(
                model_families=[pb.MODEL_FAMILY_LINEAR, pb.MODEL_FAMILY_LIGHTGBM]
            ),
        ),
    )


def test_two_trainer_services_share_one_study(
    two_trainers: list[str], s3_settings: S3Settings, postgres_schema_url: str
) -> None:
    uri = _upload_breast_cancer(s3_settings)
    study_name = f"shared-{uuid.uuid4().hex[:8]}"
    max_trials, wall_s = 12, 150
    channels = [connect_sync(ClientSettings(target=a, token=TOKEN)) for a in two_trainers]
    try:
        stubs = [pb_grpc.TrainerServiceStub(c) for c in channels]
        # a malformed study name is refused before anything is stored, naming the field
        with pytest.raises(grpc.RpcError) as bad:
            stubs[0].SubmitTrainingJob(
                pb.SubmitTrainingJobRequest(spec=_spec(uri, "no spaces allowed", 4, 30))
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "automl.study_name" in (bad.value.details() or "")
        assert not stubs[0].ListTrainingJobs(pb.ListTrainingJobsRequest()).jobs

        spec = _spec(uri, study_name, max_trials, wall_s)
        job_ids = [
            stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=spec)).job.status.job_id
            for stub in stubs
        ]
        deadline = time.monotonic() + 300
        jobs = {}
        while len(jobs) < 2 and time.monotonic() < deadline:
            for stub, job_id in zip(stubs, job_ids, strict=True):
                job = stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job_id)).job
                if job.status.state in FINISHED:
                    jobs[job_id] = job
            time.sleep(1)
        assert len(jobs) == 2, "both jobs finish"
        for job in jobs.values():
            assert job.status.state == common_pb2.JOB_STATE_SUCCEEDED, job.status.error.message
            assert job.study_name == study_name
            assert job.result.model_bundle.uri  # each job writes its own model
            ran = (
                job.status.end_time.ToDatetime() - job.status.start_time.ToDatetime()
            ).total_seconds()
            assert ran <= 1.1 * wall_s, f"job {job.status.job_id} overran its budget: {ran:.0f}s"
    finally:
        for c in channels:
            c.close()

    # Optuna's trial table, read directly: one study, its trials numbered once each
    engine = create_engine(postgres_schema_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT t.number, t.state FROM trials t JOIN studies s "
                    "ON s.study_id = t.study_id WHERE s.study_name = :n"
                ),
                {"n": study_name},
            ).all()
            studies = conn.execute(text("SELECT count(*) FROM studies")).scalar_one()
    finally:
        engine.dispose()
    assert studies == 1, "both jobs ran in one study"
    numbers = [r.number for r in rows]
    assert len(numbers) == len(set(numbers)), f"a trial number twice: {sorted(numbers)}"
    assert "WAITING" not in {r.state for r in rows}, "no enqueued configuration left behind"
    assert len(rows) == max_trials, f"the trial budget is study-wide: {len(rows)} trials"

    trials = optuna.load_study(study_name=study_name, storage=postgres_schema_url).trials
    configs = [json.dumps(t.user_attrs["config"], sort_keys=True) for t in trials]
    assert len(configs) == len(set(configs)), "a configuration was evaluated twice"
    ran_by = [t.user_attrs["worker"].split("/")[0] for t in trials]
    workers = set(ran_by)
    assert workers == {"trainer-0", "trainer-1"}, f"trials from both trainers: {ran_by}"
    jobs_seen = {t.user_attrs["worker"].split("/")[1] for t in trials}
    assert jobs_seen == set(job_ids)
    portfolio = [t for t in trials if t.user_attrs.get("origin") == "portfolio"]
    assert portfolio, "the curated defaults ran (once each, as all configurations)"


def _study_trials(url: str, study_name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=study_name, storage=url).trials
    except KeyError:  # not created yet
        return []


GRACE_S = 30  # Optuna's heartbeat grace period, as the trainer sets it


def _heartbeat_age_s(url: str, study_name: str, worker: str) -> float:
    """Seconds since the last heartbeat of `worker`'s running trials, on the database's clock
    (the one Optuna stamps heartbeats with and judges staleness by)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            age = conn.execute(
                text(
                    "SELECT EXTRACT(EPOCH FROM LOCALTIMESTAMP - max(h.heartbeat)) "
                    "FROM trial_heartbeats h JOIN trials t ON t.trial_id = h.trial_id "
                    "JOIN studies s ON s.study_id = t.study_id "
                    "JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
                    "WHERE s.study_name = :n AND t.state = 'RUNNING' "
                    "AND a.key = 'worker' AND a.value_json LIKE :w"
                ),
                {"n": study_name, "w": f'"{worker}/%'},
            ).scalar_one()
    finally:
        engine.dispose()
    assert age is not None, f"no running trial of {worker} with a heartbeat"
    return float(age)


def _wait_job(stub: pb_grpc.TrainerServiceStub, job_id: str, timeout: float) -> pb.TrainingJob:
    deadline = time.monotonic() + timeout
    while True:
        try:
            job = stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job_id)).job
            if job.status.state in FINISHED:
                return job
        except grpc.RpcError as exc:  # a restarted trainer may still be starting its runner
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
        assert time.monotonic() < deadline, f"job {job_id} did not finish in {timeout}s"
        time.sleep(1)


def test_a_trainer_killed_mid_study(
    tmp_path: Path, s3_settings: S3Settings, postgres_schema_url: str
) -> None:
    """Two trainers on one study; one is SIGKILLed (with its job process) while it runs a
    trial. The other finishes the study: the lost trial stops beating, is failed and run
    again there, not charged to the budget. Restarted, the killed trainer resumes its job
    (a new attempt), which ends on the study as it stands."""
    uri = _upload_breast_cancer(s3_settings)
    study_name = f"killed-{uuid.uuid4().hex[:8]}"
    # the survivor waits for the lost trial to go stale (Optuna's heartbeat grace: 30 s)
    max_trials, wall_s = 16, 240
    ports = [free_port(), free_port()]
    procs = [_trainer(tmp_path, s3_settings, postgres_schema_url, 0, ports[0])]
    channels: list[grpc.Channel] = []
    try:
        procs.append(_trainer(tmp_path, s3_settings, postgres_schema_url, 1, ports[1]))
        channels = [
            connect_sync(ClientSettings(target=f"127.0.0.1:{p}", token=TOKEN)) for p in ports
        ]
        stubs = [pb_grpc.TrainerServiceStub(c) for c in channels]
        spec = _spec(uri, study_name, max_trials, wall_s)
        job_ids = [
            stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=spec)).job.status.job_id
            for stub in stubs
        ]

        # kill trainer-1 while it runs a trial, after it has finished at least one
        deadline = time.monotonic() + 180
        while True:
            trials = _study_trials(postgres_schema_url, study_name)
            mine = [t for t in trials if t.user_attrs.get("worker", "").startswith("trainer-1")]
            running = [t for t in mine if t.state == optuna.trial.TrialState.RUNNING]
            if running and any(t.state == optuna.trial.TrialState.COMPLETE for t in mine):
                break
            assert time.monotonic() < deadline, "trainer-1 never ran a trial"
            time.sleep(0.2)
        os.killpg(procs[1].pid, signal.SIGKILL)  # the service and its job process
        procs[1].wait()
        channels[1].close()
        killed_at = time.monotonic()
        # A trial goes stale GRACE_S after its last heartbeat, which may be up to one beat
        # interval (or a late beat's more) before the kill: the wait is measured from it.
        beat_age = _heartbeat_age_s(postgres_schema_url, study_name, "trainer-1")
        assert beat_age < GRACE_S, (
            f"trainer-1's trial had stopped beating before the kill: {beat_age:.1f}s"
        )

        survivor = _wait_job(stubs[0], job_ids[0], 2 * wall_s)
        assert survivor.status.state == common_pb2.JOB_STATE_SUCCEEDED, (
            survivor.status.error.message
        )
        waited = time.monotonic() - killed_at
        assert waited > GRACE_S - beat_age - 1, (
            f"it finished {waited:.1f}s after the kill, before the lost trial (last beat "
            f"{beat_age:.1f}s before the kill) could go stale"
        )

        trials = _study_trials(postgres_schema_url, study_name)
        states = [t.state for t in trials]
        assert optuna.trial.TrialState.RUNNING not in states
        assert optuna.trial.TrialState.WAITING not in states
        retries = [t for t in trials if "failed_trial" in t.system_attrs]
        lost = {t.system_attrs["failed_trial"] for t in retries}
        assert lost, "the killed trainer's trial was queued again"
        for t in trials:
            if t.number in lost:  # failed by the survivor, once its heartbeat went stale
                assert t.state == optuna.trial.TrialState.FAIL
                assert t.user_attrs["worker"].startswith("trainer-1")
        for t in retries:  # ... and run by the survivor with the same configuration
            assert t.state != optuna.trial.TrialState.FAIL
            assert t.user_attrs["worker"].startswith("trainer-0")
            assert t.params == trials[t.system_attrs["failed_trial"]].params
        charged = [t for t in trials if t.number not in lost]
        assert len(charged) == max_trials, f"the budget holds: {len(charged)} trials charged"
        configs = [json.dumps(t.user_attrs["config"], sort_keys=True) for t in charged]
        assert len(configs) == len(set(configs)), "a configuration was evaluated twice"

        # the killed trainer comes back under its runner id: its job runs again and ends
        procs[1] = _trainer(tmp_path, s3_settings, postgres_schema_url, 1, ports[1])
        channels[1] = connect_sync(ClientSettings(target=f"127.0.0.1:{ports[1]}", token=TOKEN))
        resumed = _wait_job(pb_grpc.TrainerServiceStub(channels[1]), job_ids[1], 2 * wall_s)
        assert resumed.status.state == common_pb2.JOB_STATE_SUCCEEDED, resumed.status.error.message
        assert resumed.status.attempt == 2
        assert resumed.result.model_bundle.uri
        after = _study_trials(postgres_schema_url, study_name)
        assert len([t for t in after if t.number not in lost]) == max_trials, "no extra trial"
    finally:
        for c in channels:
            c.close()
        _stop(procs)


# ------------------------------------------------------------------ data replicas on Redis

REDIS_URL = "redis://127.0.0.1:6379/0"
DIMS = 16
GET_FEATURES = "/atlas.data.v1.DataService/GetFeatures"


def _data_replica(
    tmp: Path, s3: S3Settings, db_url: str, prefix: str, i: int, port: int, metrics_port: int
) -> subprocess.Popen:
    data_dir = tmp / f"data-{i}"
    data_dir.mkdir()
    return start_service(
        "atlas_data",
        "atlas.data.v1.DataService",
        port,
        {
            "ATLAS_DATA_SERVER__PORT": str(port),
            "ATLAS_DATA_SERVER__METRICS_PORT": str(metrics_port),
            "ATLAS_DATA_SERVER__AUTH__TOKENS": json.dumps({TOKEN: ["*"]}),
            "ATLAS_DATA_S3__ENDPOINT": s3.endpoint,
            "ATLAS_DATA_S3__ACCESS_KEY": s3.access_key.get_secret_value(),
            "ATLAS_DATA_S3__SECRET_KEY": s3.secret_key.get_secret_value(),
            "ATLAS_DATA_S3__BUCKET": s3.bucket,
            "ATLAS_DATA_DATABASE__URL": db_url,
            "ATLAS_DATA_DATA_DIR": str(data_dir),
            "ATLAS_DATA_ONLINE__BACKEND": "redis",
            "ATLAS_DATA_ONLINE__REDIS_URL": REDIS_URL,
            "ATLAS_DATA_ONLINE__REDIS_KEY_PREFIX": prefix,
            "ATLAS_DATA_NATIVE_READER__ENABLED": "false",
            "ATLAS_DATA_JOBS__RUNNER_ID": f"data-{i}",
        },
        tmp,
    )


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own on the machine's Redis; its keys are removed after."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at {REDIS_URL} unreachable: {exc}")
    prefix = f"atlas:scale-out:{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def _reads_served(metrics_port: int) -> float:
    """GetFeatures calls one replica answered OK, from its own /metrics."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        body = r.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == "atlas_grpc_requests_total"
        and sample.labels.get("method") == GET_FEATURES
        and sample.labels.get("code") == "OK"
    )


def test_two_data_replicas_on_redis_balance_reads(
    tmp_path: Path, s3_settings: S3Settings, postgres_schema_url: str, redis_prefix: str
) -> None:
    from atlas.data.v1 import data_service_pb2 as dpb
    from atlas_core.clients import DataClient

    ports = [free_port(), free_port()]
    metrics_ports = [free_port(), free_port()]
    args = (tmp_path, s3_settings, postgres_schema_url, redis_prefix)
    procs = [_data_replica(*args, 0, ports[0], metrics_ports[0])]  # migrates the schema first
    clients: list[DataClient] = []
    try:
        procs.append(_data_replica(*args, 1, ports[1], metrics_ports[1]))
        addresses = [f"127.0.0.1:{p}" for p in ports]
        writer = DataClient(ClientSettings(target=addresses[0], token=TOKEN))
        balanced = DataClient(ClientSettings(target=",".join(addresses), token=TOKEN))
        direct = [DataClient(ClientSettings(target=a, token=TOKEN)) for a in addresses]
        clients = [writer, balanced, *direct]
        writer.create_feature_group(
            dpb.FeatureGroupSpec(
                name="vecs",
                entity_key="id",
                entity_key_type=dpb.ENTITY_KEY_TYPE_INT64,
                event_time_column="ts",
                features=[
                    dpb.FeatureSpec(name="v", dtype=dpb.FEATURE_TYPE_FLOAT32_VECTOR, dims=DIMS)
                ],
            )
        )
        keys = list(range(200))

        def record(key: int) -> dpb.FeatureRecord:
            ts = timestamp_pb2.Timestamp()
            ts.FromSeconds(1_000 + key)
            return dpb.FeatureRecord(
                entity_key=dpb.EntityKey(int64_key=key),
                event_time=ts,
                float32_values=np.arange(key, key + DIMS, dtype="<f4").tobytes(),
            )

        written = writer.put_records("vecs", (record(k) for k in keys))
        assert written.records_written == len(keys)
        expected = np.stack([np.arange(k, k + DIMS, dtype="<f4") for k in keys])

        # every written value reads back from each replica on its own
        for client in direct:
            got = client.get_features("vecs", keys)
            assert got.found.all()
            np.testing.assert_array_equal(got.float32, expected)

        before = [_reads_served(p) for p in metrics_ports]
        reads = 60
        for i in range(reads):  # three entities per call, balanced over both replicas
            chunk = keys[i * 3 : i * 3 + 3]
            got = balanced.get_features("vecs", chunk)
            assert got.found.all()
            np.testing.assert_array_equal(got.float32, expected[chunk])
        share = [_reads_served(p) - b for p, b in zip(metrics_ports, before, strict=True)]
        assert sum(share) == reads, share
        assert min(share) >= reads * 0.3, f"round_robin spreads the reads: {share}"
    finally:
        for client in clients:
            client.close()
        _stop(procs)
