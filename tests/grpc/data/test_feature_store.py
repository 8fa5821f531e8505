"""Feature groups, ingestion and online reads over real gRPC."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from google.protobuf import timestamp_pb2

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as pb

pytestmark = pytest.mark.asyncio
DIMS = 64


def spec(name: str = "users", dims: int = DIMS) -> pb.FeatureGroupSpec:
    return pb.FeatureGroupSpec(
        name=name,
        entity_key="user_id",
        entity_key_type=pb.ENTITY_KEY_TYPE_INT64,
        event_time_column="ts",
        features=[
            pb.FeatureSpec(name="emb", dtype=pb.FEATURE_TYPE_FLOAT32_VECTOR, dims=dims),
            pb.FeatureSpec(name="age", dtype=pb.FEATURE_TYPE_FLOAT32),
            pb.FeatureSpec(name="clicks", dtype=pb.FEATURE_TYPE_INT64),
            pb.FeatureSpec(
                name="country", dtype=pb.FEATURE_TYPE_CATEGORICAL, categories=["de", "fr"]
            ),
        ],
    )


def ts(seconds: float) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromMicroseconds(int(seconds * 1e6))
    return t


def record(
    key: int, t: float, vec: np.ndarray, age: float = 30.0, clicks: int = 1, country: str = "de"
) -> pb.FeatureRecord:
    f32 = np.concatenate([vec.astype("<f4"), np.array([age], "<f4")])
    return pb.FeatureRecord(
        entity_key=pb.EntityKey(int64_key=key),
        event_time=ts(t),
        float32_values=f32.tobytes(),
        int64_values=[clicks],
        string_values=[country],
    )


def ref(name: str = "users") -> common_pb2.FeatureGroupRef:
    return common_pb2.FeatureGroupRef(name=name)


async def put(stub, records, name="users"):
    async def stream():
        for i in range(0, len(records), 50):
            yield pb.PutRecordsRequest(feature_group=ref(name), records=records[i : i + 50])

    return await stub.PutRecords(stream())


async def test_create_put_get_roundtrip(data_harness):
    stub = data_harness.stub
    created = await stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=spec()))
    assert created.feature_group.version == 1
    assert created.feature_group.layout.float32_width == DIMS + 1
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(120, DIMS)).astype("<f4")
    resp = await put(stub, [record(k, 100.0, vecs[k], clicks=k) for k in range(120)])
    assert resp.records_written == 120 and resp.records_stale == 0
    got = await stub.GetFeatures(
        pb.GetFeaturesRequest(
            feature_group=ref(), entity_keys=pb.EntityKeys(int64_keys=[5, 999, 7])
        )
    )
    assert list(got.found) == [True, False, True]
    block = np.frombuffer(got.float32_values, "<f4").reshape(3, DIMS + 1)
    np.testing.assert_array_equal(block[0, :DIMS], vecs[5])
    np.testing.assert_array_equal(block[2, :DIMS], vecs[7])
    assert list(got.int64_values)[0] == 5 and list(got.string_values)[0] == "de"
    assert got.event_time_micros[0] == 100_000_000
    subset = await stub.GetFeatures(
        pb.GetFeaturesRequest(
            feature_group=ref(),
            entity_keys=pb.EntityKeys(int64_keys=[5]),
            feature_names=["age", "clicks"],
        )
    )
    assert [s.name for s in subset.layout.slots] == ["age", "clicks"]
    assert np.frombuffer(subset.float32_values, "<f4").tolist() == [30.0]
    assert list(subset.int64_values) == [5]


async def test_out_of_order_write_is_ignored(data_harness):
    stub = data_harness.stub
    await stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=spec()))
    new, old = np.ones(DIMS), np.zeros(DIMS)
    await put(stub, [record(1, 200.0, new)])
    resp = await put(stub, [record(1, 100.0, old)])
    assert resp.records_stale == 1
    got = await stub.GetFeatures(
        pb.GetFeaturesRequest(feature_group=ref(), entity_keys=pb.EntityKeys(int64_keys=[1]))
    )
    assert np.frombuffer(got.float32_values, "<f4")[:DIMS].tolist() == new.tolist()


async def test_bad_input_statuses(data_harness):
    stub = data_harness.stub
    await stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=spec()))
    cases = [
        (
            stub.GetFeatures(
                pb.GetFeaturesRequest(
                    feature_group=ref("nope"), entity_keys=pb.EntityKeys(int64_keys=[1])
                )
            ),
            grpc.StatusCode.NOT_FOUND,
            "nope",
        ),
        (
            stub.GetFeatures(
                pb.GetFeaturesRequest(
                    feature_group=ref(),
                    entity_keys=pb.EntityKeys(int64_keys=[1]),
                    feature_names=["missing_feat"],
                )
            ),
            grpc.StatusCode.NOT_FOUND,
            "missing_feat",
        ),
        (
            stub.GetFeatures(
                pb.GetFeaturesRequest(
                    feature_group=ref(), entity_keys=pb.EntityKeys(int64_keys=list(range(1001)))
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "1000",
        ),
        (
            stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=spec())),
            grpc.StatusCode.ALREADY_EXISTS,
            "users",
        ),
        (
            stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=spec("bad", dims=20000))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "16384",
        ),
    ]
    for call, code, text in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == code, err.value.details()
        assert text in err.value.details()
    short = pb.FeatureRecord(
        entity_key=pb.EntityKey(int64_key=1),
        event_time=ts(1),
        float32_values=np.zeros(DIMS - 1, "<f4").tobytes(),
        int64_values=[1],
        string_values=["de"],
    )
    good = record(2, 1.0, np.zeros(DIMS))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await put(stub, [good, short])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "record 1" in err.value.details() and "float32_values" in err.value.details()
    # all-or-nothing: the valid record of the rejected stream was not written
    got = await stub.GetFeatures(
        pb.GetFeaturesRequest(feature_group=ref(), entity_keys=pb.EntityKeys(int64_keys=[2]))
    )
    assert list(got.found) == [False]


async def test_redis_online_backend_serves_the_same_contract(tmp_path, s3_settings):
    import uuid

    import redis

    from atlas.data.v1 import data_service_pb2_grpc as pb_grpc
    from atlas_core.rpc import ClientSettings, connect, create_server
    from atlas_data.online import OnlineStoreSettings
    from atlas_data.service import DataService
    from atlas_data.servicer import data_service_defs

    from .conftest import TOKEN, data_settings

    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at 127.0.0.1:6379 unreachable: {exc}")
    prefix = f"atlas-test-{uuid.uuid4().hex[:8]}:"
    settings = data_settings(tmp_path, s3_settings).model_copy(
        update={"online": OnlineStoreSettings(backend="redis", redis_key_prefix=prefix)}
    )
    service = DataService.open(settings)
    service.start()
    server = create_server(settings.server, data_service_defs(service))
    await server.start()
    try:
        async with connect(ClientSettings(target=server.address, token=TOKEN)) as ch:
            stub = pb_grpc.DataServiceStub(ch)
            await stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=spec()))
            await put(stub, [record(k, 10.0, np.full(DIMS, k)) for k in range(5)])
            stale = await put(stub, [record(1, 5.0, np.zeros(DIMS))])
            assert stale.records_stale == 1
            got = await stub.GetFeatures(
                pb.GetFeaturesRequest(
                    feature_group=ref(), entity_keys=pb.EntityKeys(int64_keys=[1, 4, 77])
                )
            )
            assert list(got.found) == [True, True, False]
            block = np.frombuffer(got.float32_values, "<f4").reshape(3, DIMS + 1)
            assert block[0, 0] == 1 and block[1, 0] == 4
    finally:
        await server.stop(0)
        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


async def test_request_id_makes_mutations_idempotent(data_harness):
    stub = data_harness.stub
    first = await stub.CreateFeatureGroup(
        pb.CreateFeatureGroupRequest(spec=spec(), request_id="create-1")
    )
    retry = await stub.CreateFeatureGroup(
        pb.CreateFeatureGroupRequest(spec=spec(), request_id="create-1")
    )
    assert retry.feature_group.version == first.feature_group.version == 1

    def stream(value: float):
        async def gen():
            yield pb.PutRecordsRequest(
                feature_group=ref(),
                request_id="put-1",
                records=[record(1, 10.0 + value, np.full(DIMS, value))],
            )

        return gen()

    once = await stub.PutRecords(stream(0.0))
    # a retry under the same request_id returns the first result and writes nothing
    twice = await stub.PutRecords(stream(5.0))
    assert once.records_written == twice.records_written == 1
    got = await stub.GetFeatures(
        pb.GetFeaturesRequest(feature_group=ref(), entity_keys=pb.EntityKeys(int64_keys=[1]))
    )
    assert np.frombuffer(got.float32_values, "<f4")[0] == 0.0
