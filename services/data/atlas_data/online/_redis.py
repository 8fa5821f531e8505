"""Redis online store: one string key per entity, ``<prefix><group>:<key>``.

The value is the encoded record (``_codec``), whose header holds the event time at a fixed
offset, so a Lua script can compare event times server-side without shipping the stored
record back. A per-group counter ``<prefix><group>`` makes :meth:`count` O(1).

The write script touches many keys in one call, which suits a standalone Redis; a Redis
Cluster deployment needs the chunks split by hash slot.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast
from urllib.parse import urlsplit

import redis

from atlas_core.errors import ResourceExhausted, Unavailable
from atlas_data.online._base import (
    EntityKeys,
    OnlineStore,
    OnlineStoreSettings,
    WriteOutcome,
    check_entity_key,
    check_group_key,
)
from atlas_data.online._codec import EVENT_TIME_OFFSET, encode_batch
from atlas_data.records import RecordBatch

# KEYS[1]: the group's entity counter; KEYS[i] (i >= 2): entity key of record i-1.
# ARGV[2j-1], ARGV[2j]: event time (decimal) and encoded record of record j.
# Event times are Unix microseconds: exact in Lua's doubles until the year 2255.
_WRITE_SCRIPT = f"""
local written, stale = 0, 0
for i = 2, #KEYS do
  local event_time = tonumber(ARGV[2 * i - 3])
  local stored = redis.call('GETRANGE', KEYS[i], {EVENT_TIME_OFFSET}, {EVENT_TIME_OFFSET + 7})
  if stored == '' then
    redis.call('SET', KEYS[i], ARGV[2 * i - 2])
    redis.call('INCR', KEYS[1])
    written = written + 1
  elseif struct.unpack('<i8', stored) > event_time then
    stale = stale + 1
  else
    redis.call('SET', KEYS[i], ARGV[2 * i - 2])
    written = written + 1
  end
end
return {{written, stale}}
"""

# Bound one script call: it blocks the Redis server while it runs.
_CHUNK_RECORDS = 256
_CHUNK_BYTES = 8 * 1024 * 1024
_SCAN_BATCH = 1000
_GLOB_SPECIALS = re.compile(rb"([*?\[\]\\])")


def redact_url(url: str) -> str:
    """``url`` without credentials, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedisOnlineStore(OnlineStore):
    """Online store in a Redis server; see :class:`OnlineStore` for the contract."""

    def __init__(self, url: str, *, key_prefix: str, timeout_seconds: float = 5.0) -> None:
        self._url = redact_url(url)
        self._prefix = key_prefix.encode("utf-8")
        # from_url gives the client its own thread-safe connection pool.
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
        )
        self._write_script = self._client.register_script(_WRITE_SCRIPT)
        with self._errors():
            self._client.ping()

    @classmethod
    def from_settings(cls, settings: OnlineStoreSettings) -> RedisOnlineStore:
        return cls(
            settings.redis_url,
            key_prefix=settings.redis_key_prefix,
            timeout_seconds=settings.redis_timeout_seconds,
        )

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise Unavailable(
                f"the Redis online store at {self._url} is unreachable: {exc}",
                reason="ONLINE_STORE_UNAVAILABLE",
                metadata={"url": self._url},
            ) from exc
        except redis.ResponseError as exc:
            if str(exc).startswith("OOM"):
                raise ResourceExhausted(
                    f"the Redis online store at {self._url} is out of memory (maxmemory)",
                    reason="ONLINE_STORE_FULL",
                    metadata={"url": self._url},
                ) from exc
            raise

    def _group_prefix(self, group_key: str) -> bytes:
        return self._prefix + check_group_key(group_key).encode("utf-8") + b":"

    def _counter_key(self, group_key: str) -> bytes:
        return self._prefix + check_group_key(group_key).encode("utf-8")

    def _entity_keys(self, group_key: str, keys: EntityKeys) -> list[bytes]:
        head = self._group_prefix(group_key)
        return [head + str(check_entity_key(k)).encode("utf-8") for k in keys]

    def write(
        self, group_key: str, batch: RecordBatch, *, ingestion_time_us: int, schema_version: int
    ) -> WriteOutcome:
        keys = self._entity_keys(group_key, batch.keys)
        if not keys:
            return WriteOutcome(0, 0)
        counter = self._counter_key(group_key)
        records = encode_batch(
            batch, ingestion_time_us=ingestion_time_us, schema_version=schema_version
        )
        times = batch.event_time_us.tolist()
        with self._errors():
            pipe = self._client.pipeline(transaction=False)
            for start, stop in _chunks(records):
                args: list[int | bytes] = []
                for event_time, record in zip(times[start:stop], records[start:stop], strict=True):
                    args += (event_time, record)
                self._write_script(keys=[counter, *keys[start:stop]], args=args, client=pipe)
            results = pipe.execute()
        return WriteOutcome(sum(r[0] for r in results), sum(r[1] for r in results))

    def read(self, group_key: str, keys: EntityKeys) -> list[bytes | None]:
        redis_keys = self._entity_keys(group_key, keys)
        if not redis_keys:
            return []
        with self._errors():
            # decode_responses is off: values are the raw encoded bytes.
            return cast("list[bytes | None]", self._client.mget(redis_keys))

    def count(self, group_key: str) -> int:
        with self._errors():
            value = self._client.get(self._counter_key(group_key))
        return int(value) if value is not None else 0

    def delete_group(self, group_key: str) -> int:
        pattern = _GLOB_SPECIALS.sub(rb"\\\1", self._group_prefix(group_key)) + b"*"
        removed = 0
        with self._errors():
            pending: list[bytes] = []
            for key in self._client.scan_iter(match=pattern, count=_SCAN_BATCH):
                pending.append(key)
                if len(pending) >= _SCAN_BATCH:
                    removed += self._client.unlink(*pending)
                    pending.clear()
            if pending:
                removed += self._client.unlink(*pending)
            self._client.delete(self._counter_key(group_key))
        return removed

    def close(self) -> None:
        self._client.close()


def _chunks(records: list[bytes]) -> Iterator[tuple[int, int]]:
    start, size = 0, 0
    for i, record in enumerate(records):
        if i > start and (i - start >= _CHUNK_RECORDS or size + len(record) > _CHUNK_BYTES):
            yield start, i
            start, size = i, 0
        size += len(record)
    yield start, len(records)
