"""As-known-at matching over gRPC: a correction ingested after the sample time must not leak
into the sample (as-of matching, which ignores ingestion time, does see it)."""

from __future__ import annotations

import asyncio
import io
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.protobuf import timestamp_pb2

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as pb

from .test_datasets import upload_parquet, wait_job
from .test_feature_store import put

pytestmark = pytest.mark.asyncio
GROUP = "scores"


def score_record(key: int, event_s: float, score: float) -> pb.FeatureRecord:
    event = timestamp_pb2.Timestamp()
    event.FromMicroseconds(int(event_s * 1e6))
    return pb.FeatureRecord(
        entity_key=pb.EntityKey(int64_key=key),
        event_time=event,
        float32_values=np.array([score], "<f4").tobytes(),
    )


async def match(harness, samples: common_pb2.ArtifactRef, mode: int, name: str) -> list[float]:
    spec = pb.MatchSamplesSpec(
        sample_source=pb.SampleSource(
            artifact=samples, entity_column="user_id", timestamp_column="when", label_column="label"
        ),
        features=[pb.FeatureSelection(feature_group=common_pb2.FeatureGroupRef(name=GROUP))],
        mode=mode,
        output_dataset_name=name,
        skip_meta_features=True,
    )
    stub = harness.stub
    job = (await stub.SubmitMatchSamplesJob(pb.SubmitMatchSamplesJobRequest(spec=spec))).job
    done = await wait_job(stub, job.status.job_id, timeout=60)
    assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message
    dataset = done.dataset_result.datasets[0]
    key = harness.service.rt.artifacts.key_for_uri(dataset.artifacts[0].uri)
    table = pq.read_table(io.BytesIO(harness.service.rt.artifacts.get_bytes(key)))
    order = np.argsort(table.column("user_id").to_numpy())
    return [float(v) for v in np.asarray(table.column("score").to_pylist())[order]]


async def test_late_correction_does_not_leak_into_as_known_at_samples(data_harness):
    stub = data_harness.stub
    await stub.CreateFeatureGroup(
        pb.CreateFeatureGroupRequest(
            spec=pb.FeatureGroupSpec(
                name=GROUP,
                entity_key="user_id",
                entity_key_type=pb.ENTITY_KEY_TYPE_INT64,
                event_time_column="ts",
                features=[pb.FeatureSpec(name="score", dtype=pb.FEATURE_TYPE_FLOAT32)],
            )
        )
    )
    start = time.time()
    # Known before the sample time: user 1's original value; user 2's original and correction.
    await put(
        stub,
        [
            score_record(1, start - 60, 1.0),
            score_record(2, start - 60, 10.0),
            score_record(2, start - 30, 20.0),
        ],
        name=GROUP,
    )
    await asyncio.sleep(0.05)
    sample_time = time.time()
    await asyncio.sleep(0.05)
    # Ingested after the sample time, though its event time (start - 30) is before it.
    await put(stub, [score_record(1, start - 30, 2.0)], name=GROUP)
    await asyncio.to_thread(data_harness.service.flush_offline)

    when = pa.array([int(sample_time * 1e6)] * 2, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    samples = upload_parquet(
        data_harness,
        "uploads/known-at-samples.parquet",
        pa.table({"user_id": [1, 2], "when": when, "label": [0, 1]}),
    )
    as_of = await match(data_harness, samples, pb.MATCH_MODE_AS_OF, "as-of")
    known_at = await match(data_harness, samples, pb.MATCH_MODE_AS_KNOWN_AT, "known-at")

    assert as_of == [2.0, 20.0]  # as-of: the latest event time wins, whenever it arrived
    assert known_at == [1.0, 20.0]  # the late correction was not known at the sample time
