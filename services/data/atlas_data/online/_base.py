"""The online store interface and its settings."""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np
from pydantic import model_validator

from atlas_core.config import StrictModel
from atlas_core.errors import InvalidArgument
from atlas_data.online._codec import OnlineRows, gather_rows
from atlas_data.records import MAX_STRING_KEY_BYTES, RecordBatch
from atlas_data.schema import LayoutSubset, RecordLayout

EntityKeys = Sequence[int] | Sequence[str] | np.ndarray

# Group keys name an LMDB sub-database and sit inside Redis keys ("<prefix><group>:<key>"):
# no ':' (the separator) and no glob characters (delete_group scans by pattern).
_GROUP_KEY = re.compile(r"[A-Za-z0-9_.@/-]{1,200}")


class OnlineStoreSettings(StrictModel):
    """Which online store backend to use and how to reach it."""

    # redis_sharded: a client-side consistent hash over ``redis_nodes`` (standalone servers);
    # redis_cluster: a Redis Cluster reached through ``redis_nodes`` (any of its nodes).
    backend: Literal["lmdb", "redis", "redis_sharded", "redis_cluster"] = "lmdb"
    lmdb_path: Path = Path("online.lmdb")
    # Upper bound of the memory map (sparse on disk); writes beyond it fail RESOURCE_EXHAUSTED.
    lmdb_map_size_bytes: int = 64 * 1024**3
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_key_prefix: str = "atlas:online:"
    # Connect and per-command timeout; an unreachable server fails UNAVAILABLE after this.
    redis_timeout_seconds: float = 5.0
    # The Redis URLs of the sharded backends (ignored by "lmdb" and "redis").
    redis_nodes: tuple[str, ...] = ()
    # What a read of entities whose shard is unreachable gets: "fail" (UNAVAILABLE naming the
    # shard) or "not_found" (those entities read as missing; the caller's defaults apply).
    redis_shard_down: Literal["fail", "not_found"] = "fail"

    @model_validator(mode="after")
    def _sharded_backends_need_nodes(self) -> OnlineStoreSettings:
        if self.backend in ("redis_sharded", "redis_cluster"):
            if not self.redis_nodes:
                raise ValueError(
                    f"online backend {self.backend!r} needs redis_nodes: the URLs of its nodes"
                )
            if len(set(self.redis_nodes)) != len(self.redis_nodes):
                raise ValueError("redis_nodes lists a node twice")
        if self.backend == "redis_cluster" and (
            "{" in self.redis_key_prefix or "}" in self.redis_key_prefix
        ):
            raise ValueError(
                f"redis_key_prefix {self.redis_key_prefix!r} holds a brace: on Redis Cluster "
                "the braces of a key are its hash tag"
            )
        return self


@dataclass(frozen=True)
class WriteOutcome:
    """Result of :meth:`OnlineStore.write`: records stored and records ignored as stale."""

    written: int
    stale: int


class OnlineStore(abc.ABC):
    """Latest feature record per entity, per feature group.

    Records are opaque encoded bytes (see ``_codec``); a group is addressed by a
    ``group_key`` (``[A-Za-z0-9_.@/-]{1,200}``, typically the group name) and an entity by
    its int64 or string key. Keys are stored untagged: callers use one key type per group
    (the group's entity key type), otherwise the int 42 and the string "42" may collide.

    Contract (every backend):

    * Thread-safety: one instance may be shared by any number of threads; reads run
      concurrently with a write and never observe a partially written record.
    * Durability: :meth:`write` returns only once every record of the batch is durable in
      the backend -- LMDB: the transaction is committed and synced to disk, so the records
      survive ``kill -9`` (and power loss); Redis: the server has applied them (persistence
      beyond that is the Redis server's AOF/RDB configuration).
    * Out-of-order safety: a record whose event time is older than the entity's stored
      record is ignored and counted as ``stale``; an equal event time replaces the stored
      record (the newer write wins). Records of one batch apply in batch order.
    * Atomicity: LMDB applies a batch atomically; Redis applies it in chunks, each atomic.

    Errors: ``InvalidArgument`` for a malformed group key or entity key; ``Unavailable``
    when the backend cannot be reached or opened (the message names the path or URL);
    ``ResourceExhausted`` when the backend is full (names the setting to raise).
    """

    @abc.abstractmethod
    def write(
        self, group_key: str, batch: RecordBatch, *, ingestion_time_us: int, schema_version: int
    ) -> WriteOutcome:
        """Store each record of ``batch`` unless the entity holds a newer one.

        Returns:
            How many records were written and how many were stale.
        """

    @abc.abstractmethod
    def read(self, group_key: str, keys: EntityKeys) -> list[bytes | None]:
        """Encoded latest record of each key, in ``keys`` order; ``None`` when absent.

        An unknown group reads as all ``None``.
        """

    def read_rows(
        self,
        group_key: str,
        keys: EntityKeys,
        layout: RecordLayout,
        subset: LayoutSubset | None = None,
        *,
        min_event_time_us: int | None = None,
    ) -> OnlineRows:
        """Read and decode ``keys`` into contiguous blocks (see :func:`gather_rows`).

        Backends override this to decode without an intermediate copy.
        """
        return gather_rows(
            self.read(group_key, keys), layout, subset, min_event_time_us=min_event_time_us
        )

    def mirror_catalog(self, entries: Mapping[str, bytes], *, name: str | None) -> None:
        """Replace the catalog mirror of group ``name`` (of every group when None) with
        ``entries`` ("<name>" = latest version, "<name>@<v>" = version v).

        The mirror lets an out-of-process reader (the native online reader) resolve groups
        without the metadata DB. Backends no such reader reads keep nothing (this default).
        """
        return None

    @abc.abstractmethod
    def count(self, group_key: str) -> int:
        """Number of entities with a record in the group (0 for an unknown group)."""

    @abc.abstractmethod
    def delete_group(self, group_key: str) -> int:
        """Remove every record of the group; returns how many were removed."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the backend; the instance is unusable afterwards. Idempotent."""

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def check_group_key(group_key: str) -> str:
    """Return ``group_key`` if it is usable by every backend.

    Raises:
        InvalidArgument: the key is empty, too long or holds characters outside
            ``[A-Za-z0-9_.@/-]``.
    """
    if not isinstance(group_key, str) or not _GROUP_KEY.fullmatch(group_key):
        raise InvalidArgument(
            f"online store group key {group_key!r} is malformed: expected [A-Za-z0-9_.@/-]{{1,200}}"
        )
    return group_key


def check_entity_key(key: object) -> int | str:
    """Normalise one entity key to ``int`` or ``str``.

    Raises:
        InvalidArgument: the key is neither an int64 nor a non-empty string of at most
            ``MAX_STRING_KEY_BYTES`` UTF-8 bytes.
    """
    if isinstance(key, str):
        if (
            key
            and len(key) <= MAX_STRING_KEY_BYTES
            and len(key.encode("utf-8")) <= MAX_STRING_KEY_BYTES
        ):
            return key
        raise InvalidArgument(
            f"entity key {key[:40]!r} must be 1..{MAX_STRING_KEY_BYTES} UTF-8 bytes"
        )
    if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
        if -(2**63) <= key < 2**63:
            return int(key)
    raise InvalidArgument(f"entity key {key!r} is neither an int64 nor a string")
