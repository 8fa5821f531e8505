"""Streaming ingest guarantees, batch ingest and compaction jobs, stream limits."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pyarrow as pa
import pytest

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as pb
from atlas_core.rpc import create_server
from atlas_data.service import DataService
from atlas_data.servicer import data_service_defs

from .conftest import data_settings
from .test_datasets import upload_parquet, wait_job
from .test_feature_store import DIMS, put, record, ref, spec

pytestmark = pytest.mark.asyncio


async def found(stub, keys):
    got = await stub.GetFeatures(
        pb.GetFeaturesRequest(feature_group=ref(), entity_keys=pb.EntityKeys(int64_keys=keys))
    )
    return list(got.found)


async def test_put_records_stream_broken_midway_commits_nothing(data_harness):
    stub = data_harness.stub
    await stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=spec()))

    async def broken():
        yield pb.PutRecordsRequest(
            feature_group=ref(), records=[record(k, 1.0, np.zeros(DIMS)) for k in range(10)]
        )
        raise ConnectionError("client died")

    # grpc.aio turns a failing request iterator into a cancelled call
    with pytest.raises((grpc.aio.AioRpcError, asyncio.CancelledError, ConnectionError)):
        await stub.PutRecords(broken())
    await asyncio.sleep(0.3)
    assert await found(stub, list(range(10))) == [False] * 10


async def test_write_records_keeps_every_acknowledged_batch(data_harness):
    stub = data_harness.stub
    await stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=spec()))
    acked: list[int] = []

    async def requests():
        for seq in range(3):
            keys = range(seq * 10, seq * 10 + 10)
            yield pb.WriteRecordsRequest(
                feature_group=ref(),
                sequence=seq + 1,
                records=[record(k, 1.0, np.zeros(DIMS)) for k in keys],
            )
            while len(acked) < seq + 1:
                await asyncio.sleep(0.01)
        # an invalid 4th batch ends the stream; the first three stay committed
        yield pb.WriteRecordsRequest(
            feature_group=ref(),
            sequence=4,
            records=[pb.FeatureRecord(entity_key=pb.EntityKey(int64_key=99))],
        )

    call = stub.WriteRecords(requests())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for ack in call:
            acked.append(ack.sequence)
            assert ack.records_written == 10
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert acked == [1, 2, 3]
    assert await found(stub, list(range(30)) + [99]) == [True] * 30 + [False]


async def test_stream_over_the_size_limit_is_resource_exhausted(tmp_path, s3_settings):
    settings = data_settings(tmp_path, s3_settings, max_stream_bytes=50_000)
    service = DataService.open(settings)
    service.start()
    server = create_server(settings.server, data_service_defs(service))
    await server.start()
    from atlas.data.v1 import data_service_pb2_grpc as pb_grpc
    from atlas_core.rpc import ClientSettings, connect

    from .conftest import TOKEN

    try:
        async with connect(ClientSettings(target=server.address, token=TOKEN)) as ch:
            stub = pb_grpc.DataServiceStub(ch)
            await stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=spec()))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await put(stub, [record(k, 1.0, np.zeros(DIMS)) for k in range(400)])
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_stream_bytes" in err.value.details()
    finally:
        await server.stop(0)


@pytest.mark.slow
async def test_batch_ingest_job_then_compaction(data_harness):
    stub = data_harness.stub
    await stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=spec()))
    rng = np.random.default_rng(1)
    for part in range(2):
        n = 50
        vectors = rng.normal(size=(n, DIMS)).astype("f4")
        table = pa.table(
            {
                "uid": np.arange(part * n, part * n + n),
                "ts": pa.array(np.full(n, 5_000_000 + part, dtype=np.int64)).cast(
                    pa.timestamp("us", tz="UTC")
                ),
                "emb": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIMS),
                "age": rng.uniform(18, 80, n).astype("f4"),
                "clicks": rng.integers(0, 10, n),
                "country": ["de"] * n,
            }
        )
        upload_parquet(data_harness, f"incoming/users/part-{part}.parquet", table)
    prefix = data_harness.service.rt.artifacts.uri("incoming/users/")
    job = (
        await stub.SubmitIngestJob(
            pb.SubmitIngestJobRequest(
                spec=pb.IngestSpec(
                    feature_group=ref(),
                    source=pb.ParquetSource(uri_prefix=prefix, column_mapping={"user_id": "uid"}),
                )
            )
        )
    ).job
    done = await wait_job(stub, job.status.job_id)
    assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message
    assert done.ingest_result.records_written == 100 and done.ingest_result.files_done == 2
    assert await found(stub, [0, 99, 100]) == [True, True, False]
    # a second batch of streamed records makes a second partition; compaction merges them
    await put(stub, [record(k, 9.0, np.zeros(DIMS)) for k in range(200, 210)])
    await asyncio.to_thread(data_harness.service.flush_offline)
    parts = await stub.ListOfflinePartitions(pb.ListOfflinePartitionsRequest(feature_group=ref()))
    # the background flusher may publish the ingest in one or more partitions
    before = len(parts.partitions)
    assert before >= 2
    assert sum(p.row_count for p in parts.partitions) == 110
    job = (
        await stub.SubmitCompactionJob(
            pb.SubmitCompactionJobRequest(spec=pb.CompactionSpec(feature_group=ref()))
        )
    ).job
    done = await wait_job(stub, job.status.job_id)
    assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message
    assert done.compaction_result.input_partitions == before
    assert done.compaction_result.rows == 110
    parts = await stub.ListOfflinePartitions(pb.ListOfflinePartitionsRequest(feature_group=ref()))
    assert len(parts.partitions) == 1 and parts.partitions[0].compacted
    assert parts.partitions[0].row_count == 110


@pytest.mark.slow
async def test_ingest_job_with_wrong_vector_length_fails_naming_the_column(data_harness):
    stub = data_harness.stub
    await stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=spec()))
    table = pa.table(
        {
            "user_id": [1, 2],
            "ts": pa.array([1, 2], pa.int64()).cast(pa.timestamp("us")),
            "emb": [[0.0] * DIMS, [0.0] * (DIMS - 3)],
            "age": [1.0, 2.0],
            "clicks": [1, 2],
            "country": ["de", "fr"],
        }
    )
    art = upload_parquet(data_harness, "incoming/bad.parquet", table)
    job = (
        await stub.SubmitIngestJob(
            pb.SubmitIngestJobRequest(
                spec=pb.IngestSpec(feature_group=ref(), source=pb.ParquetSource(artifacts=[art]))
            )
        )
    ).job
    done = await wait_job(stub, job.status.job_id)
    assert done.status.state == common_pb2.JOB_STATE_FAILED
    assert done.status.error.code == "INVALID_ARGUMENT"
    assert "emb" in done.status.error.message and "row 1" in done.status.error.message
