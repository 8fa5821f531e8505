"""kill -9 of the data service during streaming ingest, then a restart: every acknowledged
record is readable online and reaches the offline store; nothing is corrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as pb
from atlas.data.v1 import data_service_pb2_grpc as pb_grpc
from atlas_core.rpc import ClientSettings, connect_sync
from tests.support.processes import free_port, start_service

pytestmark = pytest.mark.slow
TOKEN = "crash-test-token-0123"
DIMS = 256


def _start(tmp_path, s3, port: int) -> subprocess.Popen:
    return start_service(
        "atlas_data",
        "atlas.data.v1.DataService",
        port,
        {
            "ATLAS_DATA_SERVER__PORT": str(port),
            "ATLAS_DATA_SERVER__AUTH__TOKENS": json.dumps({TOKEN: ["*"]}),
            "ATLAS_DATA_S3__ENDPOINT": s3.endpoint,
            "ATLAS_DATA_S3__ACCESS_KEY": s3.access_key.get_secret_value(),
            "ATLAS_DATA_S3__SECRET_KEY": s3.secret_key.get_secret_value(),
            "ATLAS_DATA_S3__BUCKET": s3.bucket,
            "ATLAS_DATA_DATABASE__URL": f"sqlite:///{tmp_path / 'data.db'}",
            "ATLAS_DATA_DATA_DIR": str(tmp_path),
            "ATLAS_DATA_ONLINE__LMDB_MAP_SIZE_BYTES": str(2 * 1024**3),
            "ATLAS_DATA_INGEST__OFFLINE_FLUSH_SECONDS": "0.5",
        },
        tmp_path,
    )


def _record(key: int) -> pb.FeatureRecord:
    return pb.FeatureRecord(
        entity_key=pb.EntityKey(int64_key=key),
        event_time=_ts(key),
        float32_values=np.full(DIMS, key, "<f4").tobytes(),
    )


def _ts(seconds: int):
    from google.protobuf import timestamp_pb2

    t = timestamp_pb2.Timestamp()
    t.FromSeconds(1_000 + seconds)
    return t


def test_kill_9_during_ingest_loses_no_acknowledged_record(tmp_path, s3_settings):
    port = free_port()
    proc = _start(tmp_path, s3_settings, port)
    channel = connect_sync(ClientSettings(target=f"127.0.0.1:{port}", token=TOKEN))
    stub = pb_grpc.DataServiceStub(channel)
    ref = common_pb2.FeatureGroupRef(name="vecs")
    stub.CreateFeatureGroup(
        pb.CreateFeatureGroupRequest(
            spec=pb.FeatureGroupSpec(
                name="vecs",
                entity_key="id",
                entity_key_type=pb.ENTITY_KEY_TYPE_INT64,
                event_time_column="ts",
                features=[
                    pb.FeatureSpec(name="v", dtype=pb.FEATURE_TYPE_FLOAT32_VECTOR, dims=DIMS)
                ],
            )
        )
    )
    acked: list[int] = []

    def requests():
        seq = 0
        while True:  # until the server dies under us
            seq += 1
            keys = range((seq - 1) * 100, seq * 100)
            yield pb.WriteRecordsRequest(
                feature_group=ref, sequence=seq, records=[_record(k) for k in keys]
            )

    def consume():
        try:
            for ack in stub.WriteRecords(requests()):
                acked.append(ack.sequence)
        except Exception:  # noqa: BLE001 - the stream breaks when the server is killed
            pass

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    while len(acked) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join(10)
    channel.close()
    assert len(acked) >= 20
    last_key = acked[-1] * 100

    proc = _start(tmp_path, s3_settings, port)
    try:
        channel = connect_sync(ClientSettings(target=f"127.0.0.1:{port}", token=TOKEN))
        stub = pb_grpc.DataServiceStub(channel)
        for start in range(0, last_key, 1000):
            keys = list(range(start, min(start + 1000, last_key)))
            got = stub.GetFeatures(
                pb.GetFeaturesRequest(feature_group=ref, entity_keys=pb.EntityKeys(int64_keys=keys))
            )
            assert all(got.found), f"acknowledged records missing after restart near {start}"
            values = np.frombuffer(got.float32_values, "<f4").reshape(len(keys), DIMS)
            np.testing.assert_array_equal(values[:, 0], np.array(keys, "f4"))
        # staged offline rows from before the crash are published on restart
        deadline = time.monotonic() + 20
        rows = 0
        while time.monotonic() < deadline:
            parts = stub.ListOfflinePartitions(pb.ListOfflinePartitionsRequest(feature_group=ref))
            rows = sum(p.row_count for p in parts.partitions)
            if rows >= last_key:
                break
            time.sleep(0.5)
        assert rows >= last_key
        channel.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
