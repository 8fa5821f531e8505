"""Where an entity lives in a sharded Redis online store: a consistent-hash ring over
standalone nodes, or a Redis Cluster hash slot.

Both routers hash the entity key's UTF-8 text (``str(key)``, as it appears in the Redis key)
with BLAKE2b-64, which is stable across processes and machines (Python's ``hash`` is not).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from redis.crc import key_slot

# Points per node on the ring: enough that three nodes get within a few percent of 1/3 each.
RING_POINTS_PER_NODE = 160
# Hash-tag buckets per feature group on Redis Cluster. A bucket's entities and its entity
# counter share one slot (so the write script stays atomic per bucket); 1,024 buckets spread
# a group over as many slots, enough to balance hundreds of nodes. Changing it relocates keys.
CLUSTER_BUCKETS = 1024


def stable_hash64(entity_ids: Sequence[bytes]) -> np.ndarray:
    """BLAKE2b-64 of each entity id, as uint64."""
    digests = b"".join(hashlib.blake2b(e, digest_size=8).digest() for e in entity_ids)
    return np.frombuffer(digests, dtype="<u8")


class HashRing:
    """Consistent hashing (Karger et al.): each node owns the arcs ending at its points.

    Adding or removing a node moves only the entities on its arcs (about 1/N of them).
    Nodes are identified by name, so a ring built from the same names in any order is the
    same ring.
    """

    def __init__(self, names: Sequence[str], points_per_node: int = RING_POINTS_PER_NODE) -> None:
        if not names:
            raise ValueError("a hash ring needs at least one node")
        labels = [f"{name}#{p}".encode() for name in names for p in range(points_per_node)]
        owners = np.repeat(np.arange(len(names)), points_per_node)
        points = stable_hash64(labels)
        order = np.argsort(points, kind="stable")
        self._points = points[order]
        self._owners = owners[order]

    def owners(self, hashes: np.ndarray) -> np.ndarray:
        """Index (into the names) of the node owning each hash: the first point at or after
        it, wrapping around."""
        at = np.searchsorted(self._points, hashes, side="left")
        return self._owners[at % len(self._points)]


def cluster_tag(group_key: str, bucket: int) -> bytes:
    """The hash tag that pins bucket ``bucket`` of a group to one Redis Cluster slot."""
    return b"{" + group_key.encode("utf-8") + b"#" + str(bucket).encode() + b"}"


def bucket_slots(group_key: str) -> np.ndarray:
    """The cluster slot of every bucket of a group, indexed by bucket."""
    return np.array(
        [key_slot(cluster_tag(group_key, b)) for b in range(CLUSTER_BUCKETS)], dtype=np.int32
    )
