"""The sharded Redis online stores beyond the shared contract: placement over real Redis
servers (three standalone nodes, a three-node Redis Cluster), the hash ring, shard faults and
settings. The contract itself runs on both backends in test_online_store.py."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import numpy as np
import pydantic
import pytest
import redis

from atlas_core.errors import Unavailable
from atlas_data.online import OnlineStoreSettings, open_online_store
from atlas_data.online._shard_routing import HashRing, stable_hash64
from atlas_data.schema import RecordLayout
from tests.support.redis_nodes import REDIS_CLI, RedisNodes, skip_without_redis_server
from tests.unit.data.conftest import expected_vector, remove_prefix, wide_batch, wide_spec

WIDE = RecordLayout.for_spec(wide_spec())
MODES = ["redis_sharded", "redis_cluster"]


@pytest.fixture(autouse=True)
def _redis_server_installed() -> None:
    skip_without_redis_server()


def settings(nodes: RedisNodes, backend: str, **extra: object) -> OnlineStoreSettings:
    return OnlineStoreSettings(
        backend=backend,  # type: ignore[arg-type]
        redis_nodes=tuple(nodes.urls),
        redis_key_prefix=f"atlas:test:{uuid.uuid4().hex}:",
        **extra,  # type: ignore[arg-type]
    )


def entities_on(nodes: RedisNodes, port: int, prefix: str) -> set[int]:
    """The int entity keys whose records node ``port`` holds (the key's text after ':')."""
    with redis.Redis(port=port) as client:
        keys = client.scan_iter(match=prefix + "*:*", count=1000)
        return {int(k.rsplit(b":", 1)[1]) for k in keys}


@pytest.fixture(params=MODES)
def fresh_nodes(request: pytest.FixtureRequest, tmp_path: Path):
    """Nodes of the given mode that a test may stop (not the session's shared ones)."""
    with RedisNodes(tmp_path / "redis", cluster=request.param == "redis_cluster") as nodes:
        yield request.param, nodes


@pytest.mark.parametrize("mode", MODES)
def test_entities_spread_over_every_node_and_read_back_in_order(
    mode: str, request: pytest.FixtureRequest
) -> None:
    nodes = request.getfixturevalue("redis_shards" if mode == "redis_sharded" else "redis_cluster")
    config = settings(nodes, mode)
    keys = list(range(1000))
    with open_online_store(config) as store:
        outcome = store.write(
            "users", wide_batch(keys, [10 + k for k in keys]), ingestion_time_us=1, schema_version=1
        )
        assert (outcome.written, outcome.stale) == (1000, 0)
        assert store.count("users") == 1000
        shuffled = np.random.default_rng(3).permutation(keys).tolist() + [5000]
        rows = store.read_rows("users", shuffled, WIDE)
        assert rows.found.tolist() == [True] * 1000 + [False]
        for row, key in zip(rows.float32[:1000], shuffled, strict=False):
            np.testing.assert_array_equal(row, expected_vector(10 + key))
        held = [entities_on(nodes, port, config.redis_key_prefix) for port in nodes.ports]
        assert set().union(*held) == set(keys) and sum(map(len, held)) == 1000  # each once
        assert all(200 < len(h) < 470 for h in held), [len(h) for h in held]
        assert store.delete_group("users") == 1000 and store.count("users") == 0
    remove_prefix(nodes, config.redis_key_prefix)


def test_cluster_spreads_a_group_over_many_slots(redis_cluster) -> None:
    config = settings(redis_cluster, "redis_cluster")
    with open_online_store(config) as store:
        store.write(
            "users", wide_batch(list(range(300)), [1] * 300), ingestion_time_us=1, schema_version=1
        )
    slots = set()
    for port in redis_cluster.ports:
        with redis.Redis(port=port) as client:
            for key in client.scan_iter(match=config.redis_key_prefix + "*", count=1000):
                slots.add(client.cluster("keyslot", key))
    assert len(slots) > 200  # 300 entities over 1,024 buckets: few share a bucket
    remove_prefix(redis_cluster, config.redis_key_prefix)


def test_hash_ring_moves_about_a_quarter_of_the_entities_when_a_fourth_node_joins() -> None:
    hashes = stable_hash64([str(k).encode() for k in range(20_000)])
    three = HashRing(["a:1", "b:1", "c:1"]).owners(hashes)
    four = HashRing(["c:1", "a:1", "d:1", "b:1"]).owners(hashes)  # order does not matter
    names3 = np.array(["a:1", "b:1", "c:1"])[three]
    names4 = np.array(["c:1", "a:1", "d:1", "b:1"])[four]
    moved = names3 != names4
    assert set(names4[moved]) == {"d:1"}  # entities move only to the new node
    assert 0.18 < moved.mean() < 0.32
    shares = np.bincount(three, minlength=3) / len(hashes)
    assert np.all(np.abs(shares - 1 / 3) < 0.06), shares


def test_a_shard_down_fails_only_reads_that_need_it_naming_it(fresh_nodes) -> None:
    mode, nodes = fresh_nodes
    config = settings(nodes, mode)
    keys = list(range(300))
    with open_online_store(config) as store:
        store.write("users", wide_batch(keys, [7] * 300), ingestion_time_us=1, schema_version=1)
        victim = nodes.ports[1]
        lost = entities_on(nodes, victim, config.redis_key_prefix)
        kept = sorted(set(keys) - lost)
        nodes.stop(victim)
        with pytest.raises(Unavailable) as info:
            store.read("users", keys)
        assert f"127.0.0.1:{victim}" in str(info.value)
        assert info.value.reason == "ONLINE_SHARD_UNAVAILABLE"
        assert info.value.metadata == {"shard": f"127.0.0.1:{victim}"}
        rows = store.read_rows("users", kept, WIDE)  # the other shards still serve
        assert rows.found.all() and rows.event_time_us.tolist() == [7] * len(kept)
        with pytest.raises(Unavailable, match=f"127.0.0.1:{victim}"):
            store.write(
                "users",
                wide_batch(sorted(lost)[:3], [8] * 3),
                ingestion_time_us=2,
                schema_version=1,
            )


def test_shard_down_with_not_found_fallback_reads_its_entities_as_missing(tmp_path: Path) -> None:
    with RedisNodes(tmp_path / "redis") as nodes:
        config = settings(nodes, "redis_sharded", redis_shard_down="not_found")
        keys = list(range(200))
        with open_online_store(config) as store:
            store.write("users", wide_batch(keys, [7] * 200), ingestion_time_us=1, schema_version=1)
            lost = entities_on(nodes, nodes.ports[0], config.redis_key_prefix)
            nodes.stop(nodes.ports[0])
            rows = store.read_rows("users", keys, WIDE)
            assert rows.found.tolist() == [k not in lost for k in keys]
            assert 0 < len(lost) < 200


def test_sharded_store_starts_with_a_node_down_but_not_with_all(tmp_path: Path) -> None:
    with RedisNodes(tmp_path / "redis") as nodes:
        nodes.stop(nodes.ports[2])
        with open_online_store(settings(nodes, "redis_sharded")) as store:  # degraded, up
            with pytest.raises(Unavailable, match=f"127.0.0.1:{nodes.ports[2]}"):
                store.count("users")  # needs every shard
        nodes.stop_all()
        with pytest.raises(Unavailable, match=f"127.0.0.1:{nodes.ports[0]}"):
            open_online_store(settings(nodes, "redis_sharded"))


def test_sharded_settings_need_distinct_nodes_and_cluster_prefixes_without_braces() -> None:
    from atlas_core.config import load_settings
    from atlas_data.config import DataSettings

    env = {
        "ATLAS_DATA_ONLINE__BACKEND": "redis_cluster",
        "ATLAS_DATA_ONLINE__REDIS_NODES": '["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]',
        "ATLAS_DATA_ONLINE__REDIS_SHARD_DOWN": "not_found",
    }
    online = load_settings(DataSettings, env_prefix="ATLAS_DATA", env=env).online
    assert online.redis_nodes == ("redis://10.0.0.1:7000", "redis://10.0.0.2:7000")
    assert online.redis_shard_down == "not_found"
    with pytest.raises(pydantic.ValidationError, match="needs redis_nodes"):
        OnlineStoreSettings(backend="redis_cluster")
    with pytest.raises(pydantic.ValidationError, match="twice"):
        OnlineStoreSettings(backend="redis_sharded", redis_nodes=("redis://a:1/0", "redis://a:1/0"))
    with pytest.raises(pydantic.ValidationError):
        OnlineStoreSettings(backend="redis_sharded", redis_nodes=("redis://a:1",), x=1)
    with pytest.raises(pydantic.ValidationError, match="brace"):
        OnlineStoreSettings(
            backend="redis_cluster", redis_nodes=("redis://127.0.0.1:1",), redis_key_prefix="{a}"
        )


@pytest.mark.slow
def test_cluster_reads_and_writes_follow_slots_moved_by_resharding(tmp_path: Path) -> None:
    with RedisNodes(tmp_path / "redis", cluster=True) as nodes:
        config = settings(nodes, "redis_cluster")
        keys = list(range(300))
        with open_online_store(config) as store:
            store.write("users", wide_batch(keys, [5] * 300), ingestion_time_us=1, schema_version=1)
            source = nodes.ports[0]
            before = entities_on(nodes, source, config.redis_key_prefix)
            with redis.Redis(port=source) as client:
                source_id = client.cluster("myid")
            with redis.Redis(port=nodes.ports[1]) as client:
                target_id = client.cluster("myid")
            # Move half of the first node's slots (with their keys) while the store's slot map
            # still says they live there: its next calls get MOVED and must follow.
            subprocess.run(
                [REDIS_CLI, "--cluster", "reshard", f"127.0.0.1:{source}"]
                + ["--cluster-from", source_id, "--cluster-to", target_id]
                + ["--cluster-slots", "2730", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=120,
            )
            moved = before - entities_on(nodes, source, config.redis_key_prefix)
            assert moved  # some of the entities' slots changed node
            rows = store.read_rows("users", keys, WIDE)
            assert rows.found.all() and rows.event_time_us.tolist() == [5] * 300
            outcome = store.write(
                "users",
                wide_batch(sorted(moved), [6] * len(moved)),
                ingestion_time_us=2,
                schema_version=1,
            )
            assert (outcome.written, outcome.stale) == (len(moved), 0)
            assert store.count("users") == 300
