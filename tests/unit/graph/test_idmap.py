"""RangeMap and IdTranslation against brute-force maps on random graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from atlas_core.errors import InvalidArgument, NotFound
from atlas_graph.idmap import IdTranslation, RangeMap, write_partition_id_map


@pytest.mark.parametrize("seed", range(5))
def test_range_map_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 1000, rng.integers(1, 9))
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    if bounds[-1] == 0:
        return
    brute_part = np.repeat(np.arange(len(sizes)), sizes)
    brute_local = np.concatenate([np.arange(s) for s in sizes])
    rmap = RangeMap(bounds)
    ids = rng.integers(0, bounds[-1], 5000)
    parts, local = rmap.locate(ids)
    assert np.array_equal(parts, brute_part[ids])
    assert np.array_equal(local, brute_local[ids])
    assert np.array_equal(rmap.to_global(parts, local), ids)
    assert rmap.nbytes == 8 * (len(sizes) + 1)


def test_range_map_rejects_out_of_range_and_bad_boundaries() -> None:
    rmap = RangeMap([0, 3, 5])
    with pytest.raises(NotFound, match="id 5"):
        rmap.locate(np.array([1, 5]))
    with pytest.raises(InvalidArgument):
        RangeMap([1, 3])
    with pytest.raises(InvalidArgument):
        RangeMap([0, 3, 2])


def _translation(
    tmp_path: Path, originals: np.ndarray, parts: int, seed: int
) -> tuple[IdTranslation, np.ndarray]:
    """Shuffle ``originals`` into ``parts`` contiguous ranges; returns new id -> original."""
    rng = np.random.default_rng(seed)
    by_new = originals[rng.permutation(len(originals))]
    cuts = np.sort(rng.choice(np.arange(1, len(originals)), parts - 1, replace=False))
    bounds = np.concatenate([[0], cuts, [len(originals)]])
    for p in range(parts):
        for kind in ("node", "edge"):
            write_partition_id_map(tmp_path / f"part{p}", kind, by_new[bounds[p] : bounds[p + 1]])
    rmap = RangeMap(bounds)
    return IdTranslation(tmp_path, {"node": rmap, "edge": rmap}), by_new


@pytest.mark.parametrize("seed", range(3))
def test_translation_int64_both_ways(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    originals = rng.choice(10**12, 3000, replace=False).astype(np.int64)  # non-contiguous
    tr, by_new = _translation(tmp_path, originals, 4, seed)
    new_ids = rng.integers(0, len(originals), 500)
    for kind in ("node", "edge"):
        back, parts, local = tr.new_to_original(kind, new_ids)
        assert np.array_equal(back, by_new[new_ids])
        again, parts2, local2 = tr.original_to_new(kind, back)
        assert np.array_equal(again, new_ids)
        assert np.array_equal(parts, parts2) and np.array_equal(local, local2)
    with pytest.raises(NotFound, match="unknown original node id"):
        tr.original_to_new("node", np.array([-7]))


def test_translation_string_ids(tmp_path: Path) -> None:
    originals = np.array([f"user-{i * 7}" for i in range(500)], dtype=object).astype("S")
    tr, by_new = _translation(tmp_path, originals, 3, 0)
    new, _, _ = tr.original_to_new("node", np.array([b"user-7", b"user-14"]))
    assert [by_new[i] for i in new] == [b"user-7", b"user-14"]
    with pytest.raises(NotFound, match="user-8"):
        tr.original_to_new("node", [b"user-8"])
    # Longer than any stored id: unknown, never truncated into a match.
    with pytest.raises(NotFound):
        tr.original_to_new("node", [b"user-7" + b"x" * 40])


def test_translation_arrays_are_memory_mapped(tmp_path: Path) -> None:
    tr, _ = _translation(tmp_path, np.arange(1000, dtype=np.int64), 2, 1)
    tr.new_to_original("node", np.array([0, 999]))
    assert all(isinstance(a, np.memmap) for a in tr._arrays.values())
