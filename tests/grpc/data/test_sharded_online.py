"""GetFeatures over gRPC on the sharded Redis online stores (three local redis-server
processes: standalone nodes behind a consistent hash, or a Redis Cluster), with a shard down."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
import redis

from atlas.data.v1 import data_service_pb2 as pb
from atlas.data.v1 import data_service_pb2_grpc as pb_grpc
from atlas_core.config import S3Settings
from atlas_core.rpc import ClientSettings, connect, create_server
from atlas_core.rpc.status import error_from_rpc
from atlas_data.online import OnlineStoreSettings
from atlas_data.service import DataService
from atlas_data.servicer import data_service_defs
from tests.support.redis_nodes import RedisNodes, skip_without_redis_server

from .conftest import TOKEN, data_settings
from .test_feature_store import DIMS, put, record, ref, spec

pytestmark = pytest.mark.asyncio


@pytest.fixture(autouse=True)
def _redis_server_installed() -> None:
    skip_without_redis_server()


@asynccontextmanager
async def sharded_service(
    tmp_path: Path, s3: S3Settings, online: OnlineStoreSettings
) -> AsyncIterator[pb_grpc.DataServiceStub]:
    settings = data_settings(tmp_path, s3).model_copy(update={"online": online})
    service = DataService.open(settings)
    service.start()
    server = create_server(settings.server, data_service_defs(service))
    await server.start()
    try:
        async with connect(ClientSettings(target=server.address, token=TOKEN)) as channel:
            yield pb_grpc.DataServiceStub(channel)
    finally:
        await server.stop(0)
        service.stop()


def held_by(port: int, prefix: str) -> set[int]:
    with redis.Redis(port=port) as client:
        return {int(k.rsplit(b":", 1)[1]) for k in client.scan_iter(match=prefix + "*:*")}


def get(keys: list[int]) -> pb.GetFeaturesRequest:
    return pb.GetFeaturesRequest(feature_group=ref(), entity_keys=pb.EntityKeys(int64_keys=keys))


@pytest.mark.parametrize(
    "mode", ["redis_sharded", pytest.param("redis_cluster", marks=pytest.mark.slow)]
)
async def test_a_shard_down_fails_reads_of_its_entities_and_serves_the_others(
    mode: str, tmp_path: Path, s3_settings: S3Settings
) -> None:
    keys = list(range(1, 61))
    with RedisNodes(tmp_path / "redis", cluster=mode == "redis_cluster") as nodes:
        online = OnlineStoreSettings(
            backend=mode,  # type: ignore[arg-type]
            redis_nodes=tuple(nodes.urls),
            redis_key_prefix=f"atlas-test-{uuid.uuid4().hex[:8]}:",
        )
        async with sharded_service(tmp_path, s3_settings, online) as stub:
            await stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=spec()))
            await put(stub, [record(k, 10.0, np.full(DIMS, k)) for k in keys])
            got = await stub.GetFeatures(get(keys))
            block = np.frombuffer(got.float32_values, "<f4").reshape(len(keys), DIMS + 1)
            assert all(got.found) and block[:, 0].tolist() == keys

            victim = nodes.ports[0]
            lost = held_by(victim, online.redis_key_prefix)
            assert 0 < len(lost) < len(keys)
            nodes.stop(victim)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetFeatures(get(keys))
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert f"127.0.0.1:{victim}" in (caught.value.details() or "")
            assert error_from_rpc(caught.value).reason == "ONLINE_SHARD_UNAVAILABLE"

            kept = [k for k in keys if k not in lost]
            got = await stub.GetFeatures(get(kept))
            block = np.frombuffer(got.float32_values, "<f4").reshape(len(kept), DIMS + 1)
            assert all(got.found) and block[:, 0].tolist() == kept


async def test_not_found_fallback_serves_a_downed_shards_entities_as_missing(
    tmp_path: Path, s3_settings: S3Settings
) -> None:
    keys = list(range(1, 61))
    with RedisNodes(tmp_path / "redis") as nodes:
        online = OnlineStoreSettings(
            backend="redis_sharded",
            redis_nodes=tuple(nodes.urls),
            redis_key_prefix=f"atlas-test-{uuid.uuid4().hex[:8]}:",
            redis_shard_down="not_found",
        )
        async with sharded_service(tmp_path, s3_settings, online) as stub:
            await stub.CreateFeatureGroup(pb.CreateFeatureGroupRequest(spec=spec()))
            await put(stub, [record(k, 10.0, np.full(DIMS, k)) for k in keys])
            lost = held_by(nodes.ports[2], online.redis_key_prefix)
            nodes.stop(nodes.ports[2])
            got = await stub.GetFeatures(get(keys))
            assert list(got.found) == [k not in lost for k in keys]
            block = np.frombuffer(got.float32_values, "<f4").reshape(len(keys), DIMS + 1)
            served = [k for k in keys if k not in lost]
            assert block[[keys.index(k) for k in served], 0].tolist() == served
