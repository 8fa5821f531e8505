"""Redis online store spread over several Redis servers: Redis Cluster (``redis_cluster``) or
a client-side consistent hash over standalone servers (``redis_sharded``).

Both modes route each entity to one node and talk to every node directly through its own
connection pool. A read of many entities groups them by node, writes every node its MGETs
(one pipelined send per node) before reading any reply, then reads the replies node by node:
the nodes work in parallel while one thread gathers, with no hand-off to other threads per
read (a thread per node measured the same on 2 cores, and adds thread hops to every call under
concurrent reads). Writes run the single-server store's Lua script per node, one thread per
node, so out-of-order safety and the per-chunk atomicity are unchanged.

* ``redis_sharded``: a hash ring over ``redis_nodes``. Keys are named as on one server
  (``<prefix><group>:<key>``); each node counts the group's entities it holds. Adding a node
  moves about 1/N of the entities, which read as missing until re-ingested (no migration).
* ``redis_cluster``: an entity's key carries the hash tag ``{<group>#<bucket>}`` (bucket =
  hash of the entity key mod ``CLUSTER_BUCKETS``), so a bucket's records and its entity
  counter share a slot and the write script stays atomic per bucket, while a group spreads
  over 1,024 slots. redis-py's ``RedisCluster`` keeps the slot map; a MOVED/ASK reply
  refreshes it and the affected nodes' share is retried once.

A node that cannot be reached fails the call with UNAVAILABLE naming it (reason
``ONLINE_SHARD_UNAVAILABLE``), or, for reads with ``redis_shard_down="not_found"``, its
entities read as missing. Calls whose entities all live on reachable nodes are served.
"""

from __future__ import annotations

import abc
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import numpy as np
import redis
from redis.cluster import ClusterNode
from redis.commands.core import Script

from atlas_core.errors import ResourceExhausted, Unavailable
from atlas_data.online._base import (
    EntityKeys,
    OnlineStore,
    OnlineStoreSettings,
    WriteOutcome,
    check_entity_key,
    check_group_key,
)
from atlas_data.online._codec import encode_batch
from atlas_data.online._redis import _GLOB_SPECIALS, _SCAN_BATCH, _WRITE_SCRIPT, _chunks, redact_url
from atlas_data.online._shard_routing import (
    CLUSTER_BUCKETS,
    HashRing,
    bucket_slots,
    cluster_tag,
    stable_hash64,
)
from atlas_data.records import RecordBatch

log = logging.getLogger("atlas.data.online")

# Replies that mean the cluster's slot map changed under us: refresh it, retry once.
_TOPOLOGY_ERRORS = (redis.exceptions.AskError, redis.exceptions.TryAgainError)
_DOWN_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterDownError)
_MAX_FANOUT_THREADS = 32


@dataclass(frozen=True)
class Shard:
    """One Redis server of the store; ``name`` (host:port, no credentials) is what errors
    and logs call it."""

    name: str
    client: redis.Redis


@dataclass
class ShardBatch:
    """The entities of one call that live on one shard, in groups that may share a Redis
    command: (the group's entity counter key on that shard, positions in the call)."""

    shard: Shard
    groups: list[tuple[bytes, list[int]]]

    @property
    def positions(self) -> list[int]:
        return [p for _, positions in self.groups for p in positions]


class ShardRouter(abc.ABC):
    """Names keys and places entities on shards; the two sharded modes differ only here."""

    @abc.abstractmethod
    def entity_keys(self, group_key: str, ids: Sequence[bytes], hashes: np.ndarray) -> list[bytes]:
        """The Redis key of each entity id (``hashes``: their ``stable_hash64``)."""

    @abc.abstractmethod
    def place(self, group_key: str, hashes: np.ndarray, positions: np.ndarray) -> list[ShardBatch]:
        """Group ``positions`` (indexes into ``hashes``) by the shard that holds them."""

    @abc.abstractmethod
    def counters(self, group_key: str) -> list[tuple[Shard, list[bytes]]]:
        """Every entity counter key of the group, by shard."""

    @abc.abstractmethod
    def scan(self, group_key: str) -> list[tuple[Shard, bytes]]:
        """(shard, SCAN MATCH pattern) pairs that together find every entity key of a group."""

    @abc.abstractmethod
    def refresh(self) -> None:
        """Reload the placement after the servers said it changed."""

    @abc.abstractmethod
    def close(self) -> None: ...


def _shard_name(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}"


def _place_by(
    owner_of_position: np.ndarray,
    positions: np.ndarray,
    group_of_position: np.ndarray,
    counter_of_group: Callable[[int], bytes],
    shard_of_owner: Callable[[int], Shard],
) -> list[ShardBatch]:
    batches: dict[str, ShardBatch] = {}
    for owner in np.unique(owner_of_position):
        shard = shard_of_owner(int(owner))
        mine = positions[owner_of_position == owner]
        groups = group_of_position[owner_of_position == owner]
        batch = batches.setdefault(shard.name, ShardBatch(shard, []))
        for group in np.unique(groups):
            batch.groups.append((counter_of_group(int(group)), mine[groups == group].tolist()))
    return list(batches.values())


class HashRingRouter(ShardRouter):
    """Consistent hash over standalone servers, ``<prefix><group>:<key>`` as on one server."""

    def __init__(self, urls: Sequence[str], *, prefix: bytes, timeout_seconds: float) -> None:
        self._prefix = prefix
        self.shards = [
            Shard(
                _shard_name(url),
                redis.Redis.from_url(
                    url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
                ),
            )
            for url in urls
        ]
        self._ring = HashRing([s.name for s in self.shards])
        down = []
        for shard in self.shards:
            try:
                shard.client.ping()
            except redis.RedisError as exc:
                down.append(f"{shard.name} ({exc})")
        if len(down) == len(self.shards):
            self.close()
            raise Unavailable(
                "no node of the sharded Redis online store is reachable: " + "; ".join(down),
                reason="ONLINE_STORE_UNAVAILABLE",
                metadata={"url": ",".join(redact_url(u) for u in urls)},
            )
        if down:  # serve the entities of the other nodes; reads name the missing node
            log.warning("sharded Redis online store: unreachable at start: %s", "; ".join(down))

    def _counter(self, group_key: str) -> bytes:
        return self._prefix + group_key.encode("utf-8")

    def entity_keys(self, group_key: str, ids: Sequence[bytes], hashes: np.ndarray) -> list[bytes]:
        head = self._counter(group_key) + b":"
        return [head + e for e in ids]

    def place(self, group_key: str, hashes: np.ndarray, positions: np.ndarray) -> list[ShardBatch]:
        counter = self._counter(group_key)
        owners = self._ring.owners(hashes[positions])
        return _place_by(
            owners, positions, owners, lambda _: counter, lambda owner: self.shards[owner]
        )

    def counters(self, group_key: str) -> list[tuple[Shard, list[bytes]]]:
        return [(shard, [self._counter(group_key)]) for shard in self.shards]

    def refresh(self) -> None:
        """Nothing to reload: the ring is fixed by the configured nodes (standalone servers
        never answer MOVED)."""

    def scan(self, group_key: str) -> list[tuple[Shard, bytes]]:
        pattern = _GLOB_SPECIALS.sub(rb"\\\1", self._counter(group_key) + b":") + b"*"
        return [(shard, pattern) for shard in self.shards]

    def close(self) -> None:
        for shard in self.shards:
            shard.client.close()


class ClusterRouter(ShardRouter):
    """Redis Cluster: entity keys ``<prefix>{<group>#<bucket>}:<key>``, bucket counters
    ``<prefix>{<group>#<bucket>}``."""

    def __init__(self, urls: Sequence[str], *, prefix: bytes, timeout_seconds: float) -> None:
        self._prefix = prefix  # brace-free: checked by OnlineStoreSettings
        first = urlsplit(urls[0])
        try:
            self._cluster = redis.RedisCluster(
                startup_nodes=[ClusterNode(_host(u), urlsplit(u).port or 6379) for u in urls],
                username=first.username,
                password=first.password,
                ssl=first.scheme == "rediss",
                socket_timeout=timeout_seconds,
                socket_connect_timeout=timeout_seconds,
            )
        except redis.RedisError as exc:
            names = ", ".join(_shard_name(u) for u in urls)
            raise Unavailable(
                f"the Redis Cluster online store is unreachable through {names}: {exc}",
                reason="ONLINE_STORE_UNAVAILABLE",
                metadata={"url": ",".join(redact_url(u) for u in urls)},
            ) from exc
        self._slots: dict[str, np.ndarray] = {}

    def _bucket_slots(self, group_key: str) -> np.ndarray:
        slots = self._slots.get(group_key)
        if slots is None:
            slots = self._slots[group_key] = bucket_slots(group_key)
        return slots

    def _shard_of_slot(self, slot: int) -> Shard:
        node = self._cluster.nodes_manager.get_node_from_slot(slot)
        return Shard(node.name, self._cluster.get_redis_connection(node))

    def _counter(self, group_key: str, bucket: int) -> bytes:
        return self._prefix + cluster_tag(group_key, bucket)

    def entity_keys(self, group_key: str, ids: Sequence[bytes], hashes: np.ndarray) -> list[bytes]:
        buckets = (hashes % CLUSTER_BUCKETS).tolist()
        return [self._counter(group_key, b) + b":" + e for b, e in zip(buckets, ids, strict=True)]

    def place(self, group_key: str, hashes: np.ndarray, positions: np.ndarray) -> list[ShardBatch]:
        buckets = (hashes[positions] % CLUSTER_BUCKETS).astype(np.int64)
        slots = self._bucket_slots(group_key)[buckets]
        return _place_by(
            slots,
            positions,
            buckets,
            lambda bucket: self._counter(group_key, bucket),
            self._shard_of_slot,
        )

    def counters(self, group_key: str) -> list[tuple[Shard, list[bytes]]]:
        slots = self._bucket_slots(group_key)
        by_shard: dict[str, tuple[Shard, list[bytes]]] = {}
        for bucket, slot in enumerate(slots.tolist()):
            shard = self._shard_of_slot(slot)
            by_shard.setdefault(shard.name, (shard, []))[1].append(self._counter(group_key, bucket))
        return list(by_shard.values())

    def scan(self, group_key: str) -> list[tuple[Shard, bytes]]:
        head = _GLOB_SPECIALS.sub(rb"\\\1", self._prefix + b"{" + group_key.encode("utf-8"))
        pattern = head + b"#*}:*"
        return [
            (Shard(node.name, self._cluster.get_redis_connection(node)), pattern)
            for node in self._cluster.get_primaries()
        ]

    def refresh(self) -> None:
        self._cluster.nodes_manager.initialize()

    def close(self) -> None:
        self._cluster.close()


def _host(url: str) -> str:
    return urlsplit(url).hostname or "127.0.0.1"


class ShardedRedisOnlineStore(OnlineStore):
    """Online store over several Redis servers; see :class:`OnlineStore` for the contract
    and the module docstring for placement and faults."""

    def __init__(self, router: ShardRouter, *, shard_down: str = "fail") -> None:
        self._router = router
        self._missing_when_down = shard_down == "not_found"
        # Bytes need no client encoder; the script only ever runs through a shard's pipeline.
        self._script = Script(None, _WRITE_SCRIPT.encode())  # type: ignore[arg-type]
        self._pool = ThreadPoolExecutor(_MAX_FANOUT_THREADS, thread_name_prefix="online-shard")
        self._closed = threading.Event()

    @classmethod
    def from_settings(cls, settings: OnlineStoreSettings) -> ShardedRedisOnlineStore:
        router_type = {"redis_sharded": HashRingRouter, "redis_cluster": ClusterRouter}
        router = router_type[settings.backend](
            settings.redis_nodes,
            prefix=settings.redis_key_prefix.encode("utf-8"),
            timeout_seconds=settings.redis_timeout_seconds,
        )
        return cls(router, shard_down=settings.redis_shard_down)

    # ------------------------------------------------------------------ fan-out machinery

    def _keys(self, group_key: str, keys: EntityKeys) -> tuple[list[bytes], np.ndarray]:
        check_group_key(group_key)
        ids = [str(check_entity_key(k)).encode("utf-8") for k in keys]
        hashes = stable_hash64(ids)
        return self._router.entity_keys(group_key, ids, hashes), hashes

    def _on_threads(
        self, batches: list[ShardBatch], work: Callable[[ShardBatch], list[Any]]
    ) -> list[Any]:
        """``work`` on every batch at once, a thread per batch; each outcome is the result or
        the RedisError raised."""
        futures = [self._pool.submit(_attempt, work, b) for b in batches[1:]]
        return [_attempt(work, batches[0]), *(f.result() for f in futures)]

    def _fan_out(
        self,
        group_key: str,
        hashes: np.ndarray,
        run: Callable[[list[ShardBatch]], list[Any]],
    ) -> tuple[list[tuple[ShardBatch, list[Any]]], list[tuple[ShardBatch, BaseException]]]:
        """Run every shard's batch (``run`` returns one result or RedisError per batch); a
        batch whose shard reports that the slot map changed is re-placed and retried once.
        Returns (done, failed)."""
        positions = np.arange(len(hashes))
        done: list[tuple[ShardBatch, list[Any]]] = []
        failed: list[tuple[ShardBatch, BaseException]] = []
        for attempt in range(2):
            batches = self._router.place(group_key, hashes, positions)
            outcomes = run(batches)
            moved: list[int] = []
            failed = []
            for batch, outcome in zip(batches, outcomes, strict=True):
                if isinstance(outcome, _TOPOLOGY_ERRORS) and attempt == 0:
                    moved += batch.positions
                elif isinstance(outcome, BaseException):
                    failed.append((batch, outcome))
                else:
                    done.append((batch, outcome))
            if not moved:
                break
            self._router.refresh()
            positions = np.asarray(moved)
        return done, failed

    def _raise_first(self, failed: list[tuple[ShardBatch, BaseException]], doing: str) -> None:
        for batch, exc in failed:
            if not isinstance(exc, _DOWN_ERRORS):
                with _errors(batch.shard):
                    raise exc
        if failed:
            names = ", ".join(b.shard.name for b, _ in failed)
            first_batch, first_exc = failed[0]
            raise Unavailable(
                f"online store shard {names} is unreachable ({first_exc}); {doing} "
                f"{sum(len(b.positions) for b, _ in failed)} of the entities failed, entities on "
                "other shards are served",
                reason="ONLINE_SHARD_UNAVAILABLE",
                metadata={"shard": names},
            ) from first_exc

    # ------------------------------------------------------------------ OnlineStore

    def write(
        self, group_key: str, batch: RecordBatch, *, ingestion_time_us: int, schema_version: int
    ) -> WriteOutcome:
        keys, hashes = self._keys(group_key, batch.keys)
        if not keys:
            return WriteOutcome(0, 0)
        records = encode_batch(
            batch, ingestion_time_us=ingestion_time_us, schema_version=schema_version
        )
        times = batch.event_time_us.tolist()

        def write_shard(shard_batch: ShardBatch) -> list[Any]:
            pipe = shard_batch.shard.client.pipeline(transaction=False)
            for counter, positions in shard_batch.groups:
                mine = [records[p] for p in positions]
                for start, stop in _chunks(mine):
                    args: list[int | bytes] = []
                    for p in positions[start:stop]:
                        args += (times[p], records[p])
                    chunk_keys = [keys[p] for p in positions[start:stop]]
                    self._script(keys=[counter, *chunk_keys], args=args, client=pipe)
            return cast("list[Any]", pipe.execute())

        done, failed = self._fan_out(
            group_key, hashes, lambda batches: self._on_threads(batches, write_shard)
        )
        self._raise_first(failed, "writing")
        results = [r for _, replies in done for r in replies]
        return WriteOutcome(sum(r[0] for r in results), sum(r[1] for r in results))

    def read(self, group_key: str, keys: EntityKeys) -> list[bytes | None]:
        redis_keys, hashes = self._keys(group_key, keys)
        out: list[bytes | None] = [None] * len(redis_keys)
        if not redis_keys:
            return out

        def scatter_gather(batches: list[ShardBatch]) -> list[Any]:
            return _scatter_gather(
                [
                    [("MGET", *[redis_keys[p] for p in positions]) for _, positions in b.groups]
                    for b in batches
                ],
                [b.shard.client for b in batches],
            )

        done, failed = self._fan_out(group_key, hashes, scatter_gather)
        if (
            failed
            and self._missing_when_down
            and all(isinstance(e, _DOWN_ERRORS) for _, e in failed)
        ):
            log.warning(
                "online store shard %s unreachable: %d entities read as missing",
                ", ".join(b.shard.name for b, _ in failed),
                sum(len(b.positions) for b, _ in failed),
            )
        else:
            self._raise_first(failed, "reading")
        for shard_batch, replies in done:
            for (_, positions), values in zip(shard_batch.groups, replies, strict=True):
                for p, value in zip(positions, values, strict=True):
                    out[p] = value
        return out

    def count(self, group_key: str) -> int:
        check_group_key(group_key)
        total = 0
        for shard, counters in self._router.counters(group_key):
            pipe = shard.client.pipeline(transaction=False)
            for counter in counters:  # one GET each: on Redis Cluster they sit in many slots
                pipe.get(counter)
            with _errors(shard):
                total += sum(int(v) for v in pipe.execute() if v is not None)
        return total

    def delete_group(self, group_key: str) -> int:
        check_group_key(group_key)
        removed = 0
        for shard, pattern in self._router.scan(group_key):
            with _errors(shard):
                pending: list[bytes] = []
                for key in shard.client.scan_iter(match=pattern, count=_SCAN_BATCH):
                    pending.append(key)
                    if len(pending) >= _SCAN_BATCH:
                        removed += _unlink(shard.client, pending)
                        pending.clear()
                removed += _unlink(shard.client, pending)
        for shard, counters in self._router.counters(group_key):
            with _errors(shard):
                _unlink(shard.client, counters)
        return removed

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._pool.shutdown(wait=True)
        self._router.close()


def _scatter_gather(commands: list[list[tuple[Any, ...]]], clients: list[redis.Redis]) -> list[Any]:
    """Send ``commands[i]`` to ``clients[i]`` for every i, then read every reply; per client
    the list of replies, or the RedisError that ended its exchange (its connection is then
    dropped, not reused)."""
    outcomes: list[Any] = [None] * len(clients)
    sent: list[tuple[int, Any]] = []
    for i, (client, batch) in enumerate(zip(clients, commands, strict=True)):
        pool = client.connection_pool
        conn = None
        try:
            conn = pool.get_connection()
            conn.send_packed_command(conn.pack_commands(batch), check_health=False)
            sent.append((i, conn))
        except redis.RedisError as exc:
            outcomes[i] = exc
            if conn is not None:
                conn.disconnect()
                pool.release(conn)
    for i, conn in sent:
        pool = clients[i].connection_pool
        try:
            # Every reply is read even after an error reply, so the connection stays usable.
            replies, error = [], None
            for _ in commands[i]:
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as exc:
                    error = error or exc
            outcomes[i] = error or replies
        except redis.RedisError as exc:
            outcomes[i] = exc
            conn.disconnect()
        finally:
            pool.release(conn)
    return outcomes


def _attempt(work: Callable[[ShardBatch], list[Any]], batch: ShardBatch) -> Any:
    try:
        return work(batch)
    except redis.RedisError as exc:
        return exc


def _unlink(client: redis.Redis, keys: list[bytes]) -> int:
    # One key per command: on Redis Cluster, keys of one UNLINK must share a slot.
    if not keys:
        return 0
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.unlink(key)
    return sum(cast("list[int]", pipe.execute()))


@contextmanager
def _errors(shard: Shard) -> Iterator[None]:
    try:
        yield
    except _DOWN_ERRORS as exc:
        raise Unavailable(
            f"online store shard {shard.name} is unreachable: {exc}",
            reason="ONLINE_SHARD_UNAVAILABLE",
            metadata={"shard": shard.name},
        ) from exc
    except redis.ResponseError as exc:
        if str(exc).startswith("OOM") or isinstance(exc, redis.exceptions.OutOfMemoryError):
            raise ResourceExhausted(
                f"online store shard {shard.name} is out of memory (maxmemory)",
                reason="ONLINE_STORE_FULL",
                metadata={"shard": shard.name},
            ) from exc
        raise
