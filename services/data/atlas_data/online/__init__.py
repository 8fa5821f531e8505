"""Online feature store: each entity's latest record per feature group.

Pick a backend from configuration with :func:`open_online_store`; both implement
:class:`OnlineStore`, whose docstring is the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from atlas_data.online._base import (
    EntityKeys,
    OnlineStore,
    OnlineStoreSettings,
    WriteOutcome,
    check_entity_key,
    check_group_key,
)
from atlas_data.online._codec import (
    OnlineRows,
    RecordHeader,
    decode_header,
    encode_batch,
    gather_rows,
    read_event_time,
)


# Backends are imported on first use, so a deployment without Redis never imports redis-py.
def _open_lmdb(settings: OnlineStoreSettings) -> OnlineStore:
    from atlas_data.online._lmdb import LmdbOnlineStore

    return LmdbOnlineStore.from_settings(settings)


def _open_redis(settings: OnlineStoreSettings) -> OnlineStore:
    from atlas_data.online._redis import RedisOnlineStore

    return RedisOnlineStore.from_settings(settings)


def _open_sharded_redis(settings: OnlineStoreSettings) -> OnlineStore:
    from atlas_data.online._redis_sharded import ShardedRedisOnlineStore

    return ShardedRedisOnlineStore.from_settings(settings)


ONLINE_STORE_FACTORIES: Mapping[str, Callable[[OnlineStoreSettings], OnlineStore]] = (
    MappingProxyType(
        {
            "lmdb": _open_lmdb,
            "redis": _open_redis,
            "redis_sharded": _open_sharded_redis,
            "redis_cluster": _open_sharded_redis,
        }
    )
)


def open_online_store(settings: OnlineStoreSettings) -> OnlineStore:
    """Open the backend named by ``settings.backend``.

    Raises:
        Unavailable: the backend cannot be opened or reached (the message names where).
    """
    return ONLINE_STORE_FACTORIES[settings.backend](settings)


__all__ = [
    "ONLINE_STORE_FACTORIES",
    "EntityKeys",
    "OnlineRows",
    "OnlineStore",
    "OnlineStoreSettings",
    "RecordHeader",
    "WriteOutcome",
    "check_entity_key",
    "check_group_key",
    "decode_header",
    "encode_batch",
    "gather_rows",
    "open_online_store",
    "read_event_time",
]
