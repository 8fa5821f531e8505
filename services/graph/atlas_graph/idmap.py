"""ID mapping with memory O(#partitions), and compact original <-> new id translation.

After partitioning, partition p owns the contiguous new-id range
``[boundaries[p], boundaries[p+1])``. :class:`RangeMap` keeps only those P+1 boundaries and maps
any batch of global ids to (partition, local id) by a vectorised binary search. The same class
serves nodes and edges (one instance per kind).

:class:`IdTranslation` maps new ids back to ORIGINAL ids and original ids to new ids through
per-partition arrays on disk, opened with ``np.load(mmap_mode="r")``: the process touches only
the pages it reads, never builds a dict, and its resident memory does not grow with the graph.
Per partition and kind (``node``/``edge``) a directory holds:

* ``{kind}_orig.npy``         original id of each local id (new id = start + local);
* ``{kind}_sorted_orig.npy``  the same originals, sorted;
* ``{kind}_sorted_local.npy`` local id of each sorted original.

Originals are int64 (int64 graphs, and edges) or fixed-width UTF-8 bytes (string graphs).

Heterogeneous partitionings have one kind per type: ``node:<node type>`` and
``edge:<src:relation:dst>``, each with its own :class:`RangeMap` over the type's own ids
(:class:`TypedRangeMap`) and its own three arrays per partition.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atlas_core.errors import InvalidArgument, NotFound

KINDS = ("node", "edge")


class RangeMap:
    """Global id -> (partition, local id) for contiguous per-partition ranges.

    ``boundaries`` has P+1 ascending values; partition p owns [b[p], b[p+1]). Thread-safe
    (read-only after construction).
    """

    def __init__(self, boundaries: Sequence[int] | np.ndarray) -> None:
        b = np.asarray(boundaries, dtype=np.int64)
        if b.ndim != 1 or len(b) < 2 or b[0] != 0 or np.any(np.diff(b) < 0):
            raise InvalidArgument(
                "range boundaries must start at 0 and never decrease", reason="BAD_BOUNDARIES"
            )
        self.boundaries = b

    @property
    def num_partitions(self) -> int:
        return len(self.boundaries) - 1

    @property
    def total(self) -> int:
        return int(self.boundaries[-1])

    @property
    def nbytes(self) -> int:
        """Bytes of mapping state: the boundary array, O(P)."""
        return int(self.boundaries.nbytes)

    def partition_of(self, ids: np.ndarray) -> np.ndarray:
        """Owning partition per id (int64 array). Raises NotFound for ids out of range."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.total):
            bad = ids[(ids < 0) | (ids >= self.total)][0]
            raise NotFound(f"id {int(bad)} is outside 0..{self.total - 1}", reason="UNKNOWN_ID")
        return np.searchsorted(self.boundaries, ids, side="right") - 1

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(partition, local id) per global id, vectorised."""
        ids = np.asarray(ids, dtype=np.int64)
        parts = self.partition_of(ids)
        return parts, ids - self.boundaries[parts]

    def to_global(self, parts: np.ndarray, local: np.ndarray) -> np.ndarray:
        return self.boundaries[np.asarray(parts)] + np.asarray(local, dtype=np.int64)


def write_partition_id_map(directory: Path, kind: str, originals: np.ndarray) -> None:
    """Write the three arrays of one partition and kind (``originals`` indexed by local id)."""
    directory.mkdir(parents=True, exist_ok=True)
    order = np.argsort(originals, kind="stable")
    np.save(directory / f"{kind}_orig.npy", originals)
    np.save(directory / f"{kind}_sorted_orig.npy", originals[order])
    np.save(directory / f"{kind}_sorted_local.npy", order.astype(np.int64))


class IdTranslation:
    """Original <-> new ids over the per-partition memory-mapped arrays under ``root``
    (``root/part{p}/...``), with one :class:`RangeMap` per kind."""

    def __init__(self, root: Path, ranges: dict[str, RangeMap]) -> None:
        self.root = root
        self.ranges = ranges
        self._arrays: dict[tuple[str, int, str], np.ndarray] = {}

    def _array(self, kind: str, part: int, name: str) -> np.ndarray:
        key = (kind, part, name)
        if key not in self._arrays:
            self._arrays[key] = np.load(
                self.root / f"part{part}" / f"{kind}_{name}.npy", mmap_mode="r", allow_pickle=False
            )
        return self._arrays[key]

    def _range(self, kind: str) -> RangeMap:
        if kind not in self.ranges:
            raise InvalidArgument(
                f"id kind must be one of {sorted(self.ranges)}", reason="BAD_KIND"
            )
        return self.ranges[kind]

    def original_dtype(self, kind: str) -> np.dtype:
        return self._array(kind, 0, "orig").dtype

    def new_to_original(
        self, kind: str, new_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(originals, partitions, local ids) for new ids; NotFound names an unknown id."""
        rmap = self._range(kind)
        parts, local = rmap.locate(new_ids)
        out = np.empty(len(local), dtype=self.original_dtype(kind))
        for p in np.unique(parts):
            sel = parts == p
            out[sel] = self._array(kind, int(p), "orig")[local[sel]]
        return out, parts, local

    def original_to_new(
        self, kind: str, originals: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(new ids, partitions, local ids) for original ids: one binary search per partition
        over its sorted originals. NotFound names the first unknown id."""
        rmap = self._range(kind)
        dtype = self.original_dtype(kind)
        originals = _as_original_dtype(originals, dtype)
        parts = np.full(len(originals), -1, dtype=np.int64)
        local = np.zeros(len(originals), dtype=np.int64)
        for p in range(rmap.num_partitions):
            if rmap.boundaries[p + 1] == rmap.boundaries[p]:
                continue
            sorted_orig = self._array(kind, p, "sorted_orig")
            pos = np.searchsorted(sorted_orig, originals)
            pos_ok = np.minimum(pos, len(sorted_orig) - 1)
            hit = (parts < 0) & (sorted_orig[pos_ok] == originals)
            parts[hit] = p
            local[hit] = self._array(kind, p, "sorted_local")[pos_ok[hit]]
        if np.any(parts < 0):
            bad = originals[parts < 0][0]
            shown = bad.decode(errors="replace") if isinstance(bad, bytes) else int(bad)
            raise NotFound(f"unknown original {kind} id {shown!r}", reason="UNKNOWN_ID")
        return rmap.to_global(parts, local), parts, local


def _as_original_dtype(values: np.ndarray | Sequence, dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "S":
        arr = np.asarray(
            [v if isinstance(v, bytes) else str(v).encode() for v in values], dtype=object
        )
        # Longer than any stored id cannot match; keep it distinct instead of truncating.
        too_long = np.array([len(v) > dtype.itemsize for v in arr], dtype=bool)
        fixed = arr.astype(dtype) if len(arr) else np.empty(0, dtype)
        if too_long.any():
            fixed[too_long] = b"\xff" * dtype.itemsize
        return fixed
    try:
        return np.asarray(values, dtype=np.int64)
    except (TypeError, ValueError):
        raise InvalidArgument(
            "this graph has int64 ids; got non-integer ids", reason="WRONG_ID_TYPE"
        ) from None


def type_boundaries(ranges: Sequence[Sequence[int]]) -> list[int]:
    """Per-type boundaries from DGL's ``node_map`` / ``edge_map`` entry of one type.

    DGL gives each partition one contiguous range of one type in its homogeneous id space;
    in the type's own id space (what ``DistGraph.nodes[t]`` and every per-type tensor use)
    partition p then owns ``[b[p], b[p+1])`` with ``b`` the running sum of the range sizes.
    """
    sizes = [int(end) - int(start) for start, end in ranges]
    if any(s < 0 for s in sizes):
        raise InvalidArgument("DGL produced a negative range", reason="BAD_RANGES")
    return [0, *np.cumsum(sizes).astype(int).tolist()]


class TypedRangeMap:
    """One :class:`RangeMap` per node type and per edge type of a heterogeneous partitioning:
    (P+1) boundaries per type, so O(P x #types) memory at any graph size."""

    def __init__(self, nodes: dict[str, Sequence[int]], edges: dict[str, Sequence[int]]) -> None:
        self.nodes = {t: RangeMap(b) for t, b in nodes.items()}
        self.edges = {t: RangeMap(b) for t, b in edges.items()}

    @classmethod
    def from_dgl_config(cls, config: dict[str, Any]) -> TypedRangeMap:
        """From DGL's partition config (``graph.json``: ``node_map`` / ``edge_map``)."""
        return cls(
            {t: type_boundaries(r) for t, r in config["node_map"].items()},
            {t: type_boundaries(r) for t, r in config["edge_map"].items()},
        )

    @property
    def nbytes(self) -> int:
        return sum(m.nbytes for m in (*self.nodes.values(), *self.edges.values()))

    def kinds(self) -> dict[str, RangeMap]:
        """The per-type maps keyed as :class:`IdTranslation` kinds (``node:<type>``,
        ``edge:<src:rel:dst>``)."""
        return {
            **{f"node:{t}": m for t, m in self.nodes.items()},
            **{f"edge:{t}": m for t, m in self.edges.items()},
        }

    def boundaries(self) -> dict[str, dict[str, list[int]]]:
        return {
            "node": {t: m.boundaries.tolist() for t, m in self.nodes.items()},
            "edge": {t: m.boundaries.tolist() for t, m in self.edges.items()},
        }
