"""Fixtures for the data service's domain tests: specs, batches and every online store backend."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytest
import redis

from atlas_data.online import OnlineStore, OnlineStoreSettings, open_online_store
from atlas_data.records import RawRecord, RecordBatch
from atlas_data.schema import (
    EntityKeyType,
    FeatureGroupSpec,
    FeatureSpec,
    FeatureType,
    RecordLayout,
    categories_of,
    validate_spec,
)
from tests.support.redis_nodes import RedisNodes, skip_without_redis_server

REDIS_URL = "redis://127.0.0.1:6379/0"
# Every backend the contract suite runs against (Optuna's STORAGE_MODES pattern).
ONLINE_BACKENDS = ["lmdb", "redis", "redis_sharded", "redis_cluster"]
WIDE_DIMS = 5000


def _redis_unreachable_reason() -> str | None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        return f"Redis is not reachable at {REDIS_URL}: {exc}"
    return None


@pytest.fixture(scope="session")
def redis_shards(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisNodes]:
    """Three standalone redis-server processes shared by the session's tests (each test
    uses its own key prefix); tests that stop a node start their own."""
    skip_without_redis_server()
    with RedisNodes(tmp_path_factory.mktemp("redis-shards")) as nodes:
        yield nodes


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisNodes]:
    """A three-node Redis Cluster shared by the session's tests."""
    skip_without_redis_server()
    with RedisNodes(tmp_path_factory.mktemp("redis-cluster"), cluster=True) as nodes:
        yield nodes


def remove_prefix(nodes: RedisNodes, prefix: str) -> None:
    """Delete every key under ``prefix`` from every live node."""
    for port in nodes.procs:
        with redis.Redis(port=port) as client:
            for key in client.scan_iter(match=prefix + "*", count=1000):
                client.delete(key)


@pytest.fixture(params=ONLINE_BACKENDS)
def online_settings(request: pytest.FixtureRequest, tmp_path) -> Iterator[OnlineStoreSettings]:
    """Settings of a fresh, empty store of each backend; Redis keys are removed afterwards."""
    if request.param == "lmdb":
        yield OnlineStoreSettings(
            backend="lmdb", lmdb_path=tmp_path / "online.lmdb", lmdb_map_size_bytes=256 << 20
        )
        return
    if request.param in ("redis_sharded", "redis_cluster"):
        nodes = request.getfixturevalue(
            "redis_shards" if request.param == "redis_sharded" else "redis_cluster"
        )
        prefix = f"atlas:test:{uuid.uuid4().hex}:"
        yield OnlineStoreSettings(
            backend=request.param, redis_nodes=tuple(nodes.urls), redis_key_prefix=prefix
        )
        remove_prefix(nodes, prefix)
        return
    reason = _redis_unreachable_reason()
    if reason:
        pytest.skip(reason)
    prefix = f"atlas:test:{uuid.uuid4().hex}:"
    yield OnlineStoreSettings(backend="redis", redis_url=REDIS_URL, redis_key_prefix=prefix)
    client = redis.Redis.from_url(REDIS_URL)
    leftovers = list(client.scan_iter(match=prefix + "*", count=1000))
    if leftovers:
        client.delete(*leftovers)
    client.close()


@pytest.fixture
def online_store(online_settings: OnlineStoreSettings) -> Iterator[OnlineStore]:
    store = open_online_store(online_settings)
    yield store
    store.close()


def wide_spec(
    name: str = "users", key_type: EntityKeyType = EntityKeyType.INT64
) -> FeatureGroupSpec:
    """One 5,000-dim float32 vector plus an int64 scalar (used to cross-check the vector)."""
    return validate_spec(
        FeatureGroupSpec(
            name=name,
            entity_key="user_id",
            entity_key_type=key_type,
            event_time_column="ts",
            features=(
                FeatureSpec("emb", FeatureType.FLOAT32_VECTOR, WIDE_DIMS),
                FeatureSpec("version", FeatureType.INT64),
            ),
        )
    )


def mixed_spec() -> FeatureGroupSpec:
    """Every feature type, interleaved so that blocks and schema order differ."""
    return validate_spec(
        FeatureGroupSpec(
            name="accounts",
            entity_key="account_id",
            entity_key_type=EntityKeyType.STRING,
            event_time_column="event_time",
            features=(
                FeatureSpec("score", FeatureType.FLOAT32),
                FeatureSpec("country", FeatureType.CATEGORICAL, categories=("DE", "FR", "US")),
                FeatureSpec("balance", FeatureType.FLOAT64),
                FeatureSpec("emb", FeatureType.FLOAT32_VECTOR, 3),
                FeatureSpec("age", FeatureType.INT64),
                FeatureSpec("is_vip", FeatureType.BOOL),
                FeatureSpec("nickname", FeatureType.STRING),
                FeatureSpec("ratio", FeatureType.FLOAT64),
            ),
        )
    )


def wide_batch(
    keys: Sequence[int | str],
    event_times: Sequence[int],
    *,
    fill: Callable[[int], float] | None = None,
) -> RecordBatch:
    """Wide records whose vector is ``fill(i)`` + a ramp, and whose ``version`` is the time.

    With ``fill`` unset a record's vector is derived from its event time, so a reader can
    tell from any single record whether it is internally consistent (not torn).
    """
    spec = wide_spec(
        key_type=EntityKeyType.STRING if keys and isinstance(keys[0], str) else EntityKeyType.INT64
    )
    layout = RecordLayout.for_spec(spec)
    ramp = np.arange(WIDE_DIMS, dtype=np.float32)
    records = []
    for i, (key, event_time) in enumerate(zip(keys, event_times, strict=True)):
        base = fill(i) if fill else float(event_time)
        vector = (ramp + np.float32(base)).astype("<f4")
        records.append(RawRecord(key, event_time, vector.tobytes(), int64=(event_time,)))
    return RecordBatch.from_records(layout, spec.entity_key_type, records)


def expected_vector(base: float) -> np.ndarray:
    return np.arange(WIDE_DIMS, dtype=np.float32) + np.float32(base)


@pytest.fixture
def mixed_layout() -> RecordLayout:
    return RecordLayout.for_spec(mixed_spec())


@pytest.fixture
def mixed_categories():
    return categories_of(mixed_spec())
