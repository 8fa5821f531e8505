"""The native online reader answers OnlineFeatureService exactly as the Python data service
does: same values, same flags, same errors; it follows the catalog as groups change."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
from grpc import aio

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as pb
from atlas.data.v1 import online_service_pb2 as online_pb
from atlas.data.v1 import online_service_pb2_grpc as online_grpc
from tests.grpc.data.conftest import TOKEN
from tests.grpc.data.test_feature_store import put, ts
from tests.support.online_reader import reader_binary

pytestmark = [
    pytest.mark.skipif(
        reader_binary() is None,
        reason="atlas-online-reader is not built (`make native` needs g++ and "
        "Debian's libgrpc++-dev, protobuf-compiler-grpc, liblmdb-dev)",
    ),
]
NOW = time.time()


def mixed_spec(name: str, *, string_keys: bool = False, ttl_s: int = 0) -> pb.FeatureGroupSpec:
    spec = pb.FeatureGroupSpec(
        name=name,
        entity_key="id",
        event_time_column="ts",
        entity_key_type=pb.ENTITY_KEY_TYPE_STRING if string_keys else pb.ENTITY_KEY_TYPE_INT64,
        features=[
            pb.FeatureSpec(name="a", dtype=pb.FEATURE_TYPE_FLOAT32),
            pb.FeatureSpec(name="vec", dtype=pb.FEATURE_TYPE_FLOAT32_VECTOR, dims=3),
            pb.FeatureSpec(name="x64", dtype=pb.FEATURE_TYPE_FLOAT64),
            pb.FeatureSpec(name="n", dtype=pb.FEATURE_TYPE_INT64),
            pb.FeatureSpec(name="city", dtype=pb.FEATURE_TYPE_STRING),
            pb.FeatureSpec(name="b", dtype=pb.FEATURE_TYPE_FLOAT32),
            pb.FeatureSpec(name="tag", dtype=pb.FEATURE_TYPE_STRING),
        ],
    )
    if ttl_s:
        spec.ttl.seconds = ttl_s
    return spec


def mixed_record(key: int | str, t: float, *, null_slot: int | None = None) -> pb.FeatureRecord:
    k = float(hash(key) % 1000)
    entity = pb.EntityKey(string_key=key) if isinstance(key, str) else pb.EntityKey(int64_key=key)
    rec = pb.FeatureRecord(
        entity_key=entity,
        event_time=ts(t),
        float32_values=np.array([k, k + 0.5, k + 1.5, k + 2.5, -k], "<f4").tobytes(),
        float64_values=[k / 3],
        int64_values=[int(k) * 7],
        string_values=[f"city-{key}", f"tag-{key}"],
    )
    if null_slot is not None:
        rec.null_mask = bytes([1 << null_slot])
    return rec


def request(name: str, keys: list, names: tuple[str, ...] = (), **kw) -> pb.GetFeaturesRequest:
    entity_keys = (
        pb.EntityKeys(string_keys=keys)
        if keys and isinstance(keys[0], str)
        else pb.EntityKeys(int64_keys=keys)
    )
    return pb.GetFeaturesRequest(
        feature_group=common_pb2.FeatureGroupRef(name=name, **kw),
        entity_keys=entity_keys,
        feature_names=list(names),
    )


@pytest.fixture
async def both(data_harness):
    """(python stub, native stub) for the same store."""
    reader = data_harness.service.native_reader
    assert reader is not None, "the data service did not start the native reader"
    py = online_grpc.OnlineFeatureServiceStub(data_harness.channel)
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    async with aio.insecure_channel(reader.address) as channel:
        native = online_grpc.OnlineFeatureServiceStub(channel)

        async def call(stub, req, md=metadata):
            return await stub.GetOnlineFeatures(
                online_pb.GetOnlineFeaturesRequest(read=req), metadata=md
            )

        yield data_harness, py, native, call


async def assert_same(call, py, native, req) -> pb.GetFeaturesResponse:
    expected = (await call(py, req)).features
    got = (await call(native, req)).features
    # NaN != NaN, so compare the wire form (both sides serialize with the same library).
    assert got.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    ), (got, expected)
    return got


async def test_values_flags_and_subsets_match_python(both):
    harness, py, native, call = both
    stub = harness.stub
    await stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=mixed_spec("mix")))
    await put(
        stub,
        [mixed_record(k, NOW - 5, null_slot=k % 7 if k % 3 == 0 else None) for k in range(40)],
        name="mix",
    )
    keys = [3, 999, 0, 7, 12, -5]
    full = await assert_same(call, py, native, request("mix", keys))
    assert list(full.found) == [True, False, True, True, True, False]
    assert np.isnan(np.frombuffer(full.float32_values, "<f4").reshape(6, 5)[1]).all()
    assert len(full.null_masks) == 6 and full.null_masks[0] != b""
    for names in [
        ("b", "city"),
        ("tag", "vec", "x64", "n"),
        ("city",),
        ("a", "vec", "x64", "n", "city", "b", "tag"),
    ]:
        sub = await assert_same(call, py, native, request("mix", keys, names))
        assert [s.name for s in sub.layout.slots] == list(names)
    await assert_same(call, py, native, request("mix", keys, ("n", "a"), version=1))
    with_times = await assert_same(
        call,
        py,
        native,
        pb.GetFeaturesRequest(
            feature_group=common_pb2.FeatureGroupRef(name="mix"),
            entity_keys=pb.EntityKeys(int64_keys=keys),
            include_ingestion_times=True,
        ),
    )
    assert with_times.ingestion_time_micros[0] > 0


async def test_string_keys_and_ttl_match_python(both):
    harness, py, native, call = both
    stub = harness.stub
    await stub.CreateFeatureGroup(
        pb.CreateFeatureGroupRequest(spec=mixed_spec("skeys", string_keys=True, ttl_s=3600))
    )
    await put(
        stub, [mixed_record("fresh", NOW - 60), mixed_record("stale", NOW - 7200)], name="skeys"
    )
    got = await assert_same(call, py, native, request("skeys", ["fresh", "stale", "nobody"]))
    assert list(got.found) == [True, False, False]  # "stale" is older than the TTL


async def test_errors_match_python(both):
    harness, py, native, call = both
    await harness.stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=mixed_spec("mix")))
    bad = [
        (request("nope", [1]), grpc.StatusCode.NOT_FOUND),
        (request("mix", [1], version=9), grpc.StatusCode.NOT_FOUND),
        (request("mix", [1], ("a", "ghost")), grpc.StatusCode.NOT_FOUND),
        (request("mix", [1], ("a", "a")), grpc.StatusCode.INVALID_ARGUMENT),
        (request("mix", list(range(1001))), grpc.StatusCode.INVALID_ARGUMENT),
        (request("mix", []), grpc.StatusCode.INVALID_ARGUMENT),
        (request("mix", ["text"]), grpc.StatusCode.INVALID_ARGUMENT),
        (request("", [1]), grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for req, code in bad:
        errors = []
        for stub in (py, native):
            with pytest.raises(aio.AioRpcError) as err:
                await call(stub, req)
            errors.append((err.value.code(), err.value.details()))
        assert errors[0] == errors[1] == (code, errors[0][1]), errors
    for md, code in [
        ((), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Bearer wrong"),), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Basic x"),), grpc.StatusCode.UNAUTHENTICATED),
    ]:
        with pytest.raises(aio.AioRpcError) as err:
            await call(native, request("mix", [1]), md)
        assert err.value.code() == code


async def test_reader_follows_new_versions_and_deletes(both):
    harness, py, native, call = both
    stub = harness.stub
    await stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=mixed_spec("evolving")))
    await put(stub, [mixed_record(1, NOW)], name="evolving")
    assert (await call(native, request("evolving", [1]))).features.feature_group_version == 1
    v2 = mixed_spec("evolving")
    v2.features.append(pb.FeatureSpec(name="extra", dtype=pb.FEATURE_TYPE_FLOAT32))
    await stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=v2, new_version=True))
    latest = await assert_same(call, py, native, request("evolving", [1]))
    assert latest.feature_group_version == 2 and list(latest.found) == [False]
    assert "extra" in [s.name for s in latest.layout.slots]
    old = await assert_same(call, py, native, request("evolving", [1], version=1))
    assert list(old.found) == [True]
    await stub.DeleteFeatureGroup(pb.DeleteFeatureGroupRequest(name="evolving"))
    with pytest.raises(aio.AioRpcError) as err:
        await call(native, request("evolving", [1]))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_reader_exits_when_its_parent_is_killed(tmp_path):
    """kill -9 of the data service must not leave the reader holding its port."""
    (tmp_path / "db").mkdir()
    import lmdb

    lmdb.open(str(tmp_path / "db"), max_dbs=8).close()
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time;"
            f"p = subprocess.Popen([{str(reader_binary())!r}, '--lmdb', {str(tmp_path / 'db')!r},"
            " '--address', '127.0.0.1:0'], stdout=subprocess.PIPE, text=True);"
            "print(p.stdout.readline().strip(), p.pid, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = parent.stdout.readline().split()
    assert line[0] == "listening", line
    reader_pid = int(line[2])
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    stat = f"/proc/{reader_pid}/stat"
    while time.monotonic() < deadline:
        try:
            with open(stat) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":  # dead, not yet reaped
                    return
        except (FileNotFoundError, ProcessLookupError):
            return
        time.sleep(0.05)
    os.kill(reader_pid, signal.SIGKILL)
    pytest.fail("the reader outlived its parent")


async def test_data_client_reads_through_the_reader(both):
    import asyncio

    from atlas_core.clients import DataClient
    from atlas_core.rpc import ClientSettings

    harness, _, _, _ = both
    await harness.stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=mixed_spec("mix")))
    await put(harness.stub, [mixed_record(k, NOW) for k in range(5)], name="mix")
    settings = ClientSettings(target=harness.server.address, token=TOKEN)

    def read(read_target: str | None) -> tuple[list[bool], list[float]]:
        with DataClient(settings.model_copy(update={"read_target": read_target})) as client:
            got = client.get_features("mix", [1, 99], ["b", "a"])
            return got.found.tolist(), got.float32[0].tolist()

    via_reader = await asyncio.to_thread(read, harness.service.native_reader.address)
    via_service = await asyncio.to_thread(read, None)
    assert via_reader == via_service and via_reader[0] == [True, False]
    # The reader is read-only and separate: stopping it fails reads sent to it, clearly.
    harness.service.native_reader.stop()
    from atlas_core.errors import Unavailable

    with pytest.raises(Unavailable):
        await asyncio.to_thread(read, harness.service.native_reader.address)


async def test_reader_keeps_the_store_resident(both):
    """Pages of the store are locked in RAM (hosts that page out idle memory would turn
    reads of cold entities into disk reads), following the file as it grows."""
    import asyncio

    harness, _, _, _ = both
    reader = harness.service.native_reader

    def locked_kb() -> int:
        status = open(f"/proc/{reader.pid}/status").read()
        return int(status.split("VmLck:")[1].split()[0])

    await harness.stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=mixed_spec("mix")))
    before = locked_kb()
    await put(harness.stub, [mixed_record(k, NOW) for k in range(3000)], name="mix")
    size_kb = (harness.settings.online.lmdb_path / "data.mdb").stat().st_size // 1024
    for _ in range(40):  # the reader checks the file once a second
        if locked_kb() >= size_kb:
            break
        await asyncio.sleep(0.1)
    assert locked_kb() >= size_kb > before


def test_a_reader_that_cannot_start(tmp_path, s3_settings):
    """Installed but unable to start (here: its port is taken): the data service serves reads
    itself; explicitly enabled: start-up fails with the reader's own message."""
    import socket

    from atlas_core.errors import Unavailable
    from atlas_data.service import DataService
    from tests.grpc.data.conftest import data_settings

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for enabled in (None, True):
            base = data_settings(tmp_path / str(enabled), s3_settings)
            reader = base.native_reader.model_copy(update={"enabled": enabled, "port": port})
            settings = base.model_copy(update={"native_reader": reader})
            service = DataService.open(settings)
            try:
                if enabled:
                    with pytest.raises(Unavailable, match=f"cannot listen on 127.0.0.1:{port}"):
                        service.start()
                else:
                    service.start()
                    assert service.native_reader is None
            finally:
                service.stop()
