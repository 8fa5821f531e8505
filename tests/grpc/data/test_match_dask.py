"""SubmitMatchSamplesJob on a dask.distributed LocalCluster (two worker processes) through the
job API: the same dataset as the single-process join, progress and cancel, and a worker lost
mid-join (its shard rerun elsewhere, or the job failing with the shard named and nothing
published)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.protobuf import timestamp_pb2

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as pb
from atlas.data.v1 import data_service_pb2_grpc as pb_grpc
from atlas_core.config import S3Settings
from atlas_core.rpc import ClientSettings, connect, create_server
from atlas_data.config import DaskSettings
from atlas_data.matching import point_in_time_join
from atlas_data.service import DataService
from atlas_data.servicer import data_service_defs

from .conftest import TOKEN, DataHarness, data_settings
from .test_datasets import upload_parquet, wait_job
from .test_feature_store import put

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
GROUP = "scores"
UTC = pa.timestamp("us", tz="UTC")
ENTITIES = 150


def _cluster(allowed_failures: int = 3) -> distributed.LocalCluster:
    # The scheduler reads allowed-failures when it starts: how often a task may be on a
    # worker that dies before it fails with KilledWorker.
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
        return distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        )


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[distributed.LocalCluster, distributed.Client]]:
    with _cluster() as local, distributed.Client(local) as client:
        yield local, client


@asynccontextmanager
async def dask_data_service(
    tmp_path: Path, s3: S3Settings, scheduler: str, **dask_settings: float
) -> AsyncIterator[DataHarness]:
    dask_config = DaskSettings(scheduler_address=scheduler, **{"shards": 4, **dask_settings})
    settings = data_settings(tmp_path, s3).model_copy(update={"dask": dask_config})
    service = DataService.open(settings)
    service.start()
    server = create_server(settings.server, data_service_defs(service))
    await server.start()
    try:
        async with connect(ClientSettings(target=server.address, token=TOKEN)) as channel:
            yield DataHarness(server, service, channel, pb_grpc.DataServiceStub(channel), settings)
    finally:
        await server.stop(0)
        service.stop()


def _record(key: int, event_s: float, score: float) -> pb.FeatureRecord:
    event = timestamp_pb2.Timestamp()
    event.FromMicroseconds(int(event_s * 1e6))
    return pb.FeatureRecord(
        entity_key=pb.EntityKey(int64_key=key),
        event_time=event,
        float32_values=np.array([score], "<f4").tobytes(),
        int64_values=[key],
    )


async def seed(harness: DataHarness) -> tuple[common_pb2.ArtifactRef, pa.Table]:
    """History with corrections that arrive late, and samples between them."""
    stub = harness.stub
    await stub.CreateFeatureGroup(
        pb.CreateFeatureGroupRequest(
            spec=pb.FeatureGroupSpec(
                name=GROUP,
                entity_key="user_id",
                entity_key_type=pb.ENTITY_KEY_TYPE_INT64,
                event_time_column="ts",
                features=[
                    pb.FeatureSpec(name="score", dtype=pb.FEATURE_TYPE_FLOAT32),
                    pb.FeatureSpec(name="n", dtype=pb.FEATURE_TYPE_INT64),
                ],
            )
        )
    )
    start = time.time() - 1000
    rng = np.random.default_rng(5)
    first = [_record(k, start + rng.integers(0, 500), float(k)) for k in range(ENTITIES)]
    await put(stub, first, name=GROUP)
    await asyncio.sleep(0.05)
    sample_time = time.time()
    await asyncio.sleep(0.05)
    late = [_record(k, start + 600, k + 0.5) for k in range(0, ENTITIES, 3)]  # known too late
    await put(stub, late, name=GROUP)
    await asyncio.to_thread(harness.service.flush_offline)
    when = rng.choice([start + 300, start + 700, sample_time], 600)
    samples = pa.table(
        {
            "user_id": rng.integers(0, ENTITIES + 20, 600),  # some unknown entities
            "when": pa.array((when * 1e6).astype(np.int64)).cast(UTC),
            "label": rng.integers(0, 2, 600),
        }
    )
    ref = upload_parquet(harness, f"uploads/samples-{time.time_ns()}.parquet", samples)
    return ref, samples


def match_spec(samples: common_pb2.ArtifactRef, mode: int, name: str) -> pb.MatchSamplesSpec:
    return pb.MatchSamplesSpec(
        sample_source=pb.SampleSource(
            artifact=samples, entity_column="user_id", timestamp_column="when", label_column="label"
        ),
        features=[pb.FeatureSelection(feature_group=common_pb2.FeatureGroupRef(name=GROUP))],
        mode=mode,
        output_dataset_name=name,
        skip_meta_features=True,
    )


async def submit(harness: DataHarness, spec: pb.MatchSamplesSpec) -> str:
    resp = await harness.stub.SubmitMatchSamplesJob(pb.SubmitMatchSamplesJobRequest(spec=spec))
    return resp.job.status.job_id


def published(harness: DataHarness, job: pb.DataJob) -> pa.Table:
    dataset = job.dataset_result.datasets[0]
    key = harness.service.rt.artifacts.key_for_uri(dataset.artifacts[0].uri)
    return pq.read_table(io.BytesIO(harness.service.rt.artifacts.get_bytes(key)))


def local_join(harness: DataHarness, samples: pa.Table, known: bool) -> pa.Table:
    """The single-process join on the same history, through a Parquet round trip."""
    history = harness.service.rt.offline.read_history(GROUP, 1, "ts")
    table = point_in_time_join(
        samples,
        entity_column="user_id",
        timestamp_column="when",
        history=history,
        history_entity_column="user_id",
        event_time_column="ts",
        features=[],
        ttl_seconds=None,
        as_known_at=known,
    ).table
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return pq.read_table(buf)


async def wait_for_shards_on(client: distributed.Client, worker: str) -> None:
    """Until the scheduler has given ``worker`` a shard of a matching job."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        keys = client.processing(workers=[worker]).get(worker, [])
        if any(str(k).startswith("atlas-match-") for k in keys):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no matching shard reached {worker}")


async def wait_progress(harness: DataHarness, job_id: str, text: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = (await harness.stub.GetDataJob(pb.GetDataJobRequest(job_id=job_id))).job
        if text in job.status.progress.message:
            return job.status.progress.message
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} never reported {text!r}")


def worker_pids(client: distributed.Client) -> dict[str, int]:
    return client.run(os.getpid)


async def test_dask_job_publishes_the_single_process_result_as_of_and_as_known_at(
    cluster, tmp_path: Path, s3_settings: S3Settings
) -> None:
    local, client = cluster
    async with dask_data_service(tmp_path, s3_settings, local.scheduler_address) as harness:
        samples_ref, samples = await seed(harness)
        for mode, known in ((pb.MATCH_MODE_AS_OF, False), (pb.MATCH_MODE_AS_KNOWN_AT, True)):
            job_id = await submit(harness, match_spec(samples_ref, mode, f"m-{int(known)}"))
            done = await wait_job(harness.stub, job_id)
            assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message
            got, want = published(harness, done), local_join(harness, samples, known)
            assert got.num_rows == 600 and got.equals(want.cast(got.schema))
        as_of = published(harness, await wait_job(harness.stub, job_id))
        assert as_of.column("score").null_count < 600  # matches exist


async def test_cancel_stops_a_dask_job_while_a_shard_runs(
    cluster, tmp_path: Path, s3_settings: S3Settings
) -> None:
    local, client = cluster
    stalled, pid = next(iter(worker_pids(client).items()))
    async with dask_data_service(tmp_path, s3_settings, local.scheduler_address) as harness:
        samples_ref, _ = await seed(harness)
        os.kill(pid, signal.SIGSTOP)  # its shards never finish until it is resumed
        try:
            job_id = await submit(harness, match_spec(samples_ref, pb.MATCH_MODE_AS_OF, "cx"))
            await wait_for_shards_on(client, stalled)
            # The other worker's shards finish: progress shows them, the stalled one's do not.
            message = await wait_progress(harness, job_id, "shards done on Dask")
            done_count, total = message.split(": ")[1].split(" ")[0].split("/")
            assert 0 < int(done_count) < int(total) == 4, message
            await harness.stub.CancelDataJob(pb.CancelDataJobRequest(job_id=job_id))
            done = await wait_job(harness.stub, job_id, timeout=60)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert done.status.state == common_pb2.JOB_STATE_CANCELLED
        listed = await harness.stub.ListDatasets(pb.ListDatasetsRequest())
        assert "cx" not in [d.name for d in listed.datasets]


async def test_a_worker_lost_mid_join_has_its_shard_rerun_elsewhere(
    cluster, tmp_path: Path, s3_settings: S3Settings
) -> None:
    local, client = cluster
    victim, pid = next(iter(worker_pids(client).items()))
    async with dask_data_service(tmp_path, s3_settings, local.scheduler_address) as harness:
        samples_ref, samples = await seed(harness)
        os.kill(pid, signal.SIGSTOP)
        job_id = await submit(harness, match_spec(samples_ref, pb.MATCH_MODE_AS_KNOWN_AT, "lost"))
        await wait_for_shards_on(client, victim)
        os.kill(pid, signal.SIGKILL)  # dies holding a shard
        done = await wait_job(harness.stub, job_id, timeout=90)
        assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message
        assert published(harness, done).equals(local_join(harness, samples, True))
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the next tests


async def test_a_worker_lost_too_often_fails_the_job_naming_the_shard_and_publishes_nothing(
    tmp_path: Path, s3_settings: S3Settings
) -> None:
    with _cluster(allowed_failures=0) as local, distributed.Client(local) as client:
        victim, pid = next(iter(worker_pids(client).items()))
        async with dask_data_service(tmp_path, s3_settings, local.scheduler_address) as harness:
            samples_ref, _ = await seed(harness)
            os.kill(pid, signal.SIGSTOP)
            job_id = await submit(harness, match_spec(samples_ref, pb.MATCH_MODE_AS_OF, "gone"))
            await wait_for_shards_on(client, victim)
            os.kill(pid, signal.SIGKILL)
            done = await wait_job(harness.stub, job_id, timeout=90)
            assert done.status.state == common_pb2.JOB_STATE_FAILED
            message = done.status.error.message
            assert "shard" in message and f"feature group {GROUP} v1" in message, message
            assert "nothing was published" in message
            listed = await harness.stub.ListDatasets(pb.ListDatasetsRequest())
            assert "gone" not in [d.name for d in listed.datasets]


async def test_an_unreachable_scheduler_fails_the_job_naming_its_address(
    tmp_path: Path, s3_settings: S3Settings
) -> None:
    from tests.support.processes import free_port

    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    async with dask_data_service(
        tmp_path, s3_settings, address, connect_timeout_seconds=1
    ) as harness:
        samples_ref, _ = await seed(harness)
        job_id = await submit(harness, match_spec(samples_ref, pb.MATCH_MODE_AS_OF, "nope"))
        done = await wait_job(harness.stub, job_id, timeout=90)
        assert done.status.state == common_pb2.JOB_STATE_FAILED
        assert address in done.status.error.message, done.status.error.message
        listed = await harness.stub.ListDatasets(pb.ListDatasetsRequest())
        assert "nope" not in [d.name for d in listed.datasets]
