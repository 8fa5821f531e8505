"""Bad input at import: each case handled or INVALID_ARGUMENT naming the problem."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from atlas_core.errors import InvalidArgument
from atlas_graph.ingest import EdgeInput, EdgePolicy, NodeInput, TableInput, build_graph
from atlas_graph.partitioning import estimate
from atlas_graph.sbm import generate_sbm

T = TableInput(["x.parquet"])


def _edges(src: list, dst: list) -> list:
    return [(EdgeInput(T, "s", "d"), pa.table({"s": src, "d": dst}))]


def _nodes(ids: list, **cols: list) -> list:
    spec = NodeInput(
        T,
        "id",
        ["f"] if "f" in cols else [],
        "y" if "y" in cols else "",
        {k: k + "_m" for k in ("train", "val", "test") if k + "_m" in cols},
    )
    return [(spec, pa.table({"id": ids, **cols}))]


def test_edge_to_unknown_node_is_named_or_dropped() -> None:
    with pytest.raises(InvalidArgument, match="references node 99"):
        build_graph(
            _edges([1, 2], [2, 99]), _nodes([1, 2, 3]), id_type="int64", policy=EdgePolicy()
        )
    g = build_graph(
        _edges([1, 2], [2, 99]),
        _nodes([1, 2, 3]),
        id_type="int64",
        policy=EdgePolicy(drop_dangling_edges=True),
    )
    assert g.num_edges == 1 and g.stats["dropped_dangling_edges"] == 1


def test_duplicates_and_self_loops_are_counted_kept_or_dropped() -> None:
    edges = _edges([1, 1, 2, 3], [2, 2, 2, 1])
    kept = build_graph(edges, [], id_type="int64", policy=EdgePolicy())
    assert kept.num_edges == 4 and kept.stats["duplicate_edges"] == 1
    assert kept.stats["self_loops"] == 1
    dropped = build_graph(
        edges, [], id_type="int64", policy=EdgePolicy(drop_duplicates=True, drop_self_loops=True)
    )
    assert dropped.num_edges == 2


def test_non_contiguous_and_string_ids() -> None:
    g = build_graph(_edges([10**12, 5], [5, 7]), [], id_type="int64", policy=EdgePolicy())
    assert g.num_nodes == 3 and sorted(g.original_ids.tolist()) == [5, 7, 10**12]
    s = build_graph(_edges(["alice", "bob"], ["bob", "carol"]), [], id_type="", policy=EdgePolicy())
    assert s.id_type == "string" and s.num_nodes == 3
    with pytest.raises(InvalidArgument, match="column 's' holds string ids"):
        build_graph(_edges(["a"], ["b"]), [], id_type="int64", policy=EdgePolicy())


def test_missing_masks_give_a_seeded_split_and_missing_columns_are_named() -> None:
    ids = list(range(100))
    g = build_graph(
        _edges(ids[:-1], ids[1:]),
        _nodes(ids, f=[0.5] * 100, y=[i % 2 for i in ids]),
        id_type="int64",
        policy=EdgePolicy(),
        split_seed=3,
    )
    assert g.has_masks and g.stats["random_split"] == 1
    assert not np.any(g.train_mask & g.test_mask)
    spec, table = _nodes(ids, y=[0] * 100)[0]
    spec.mask_columns = {"train": "is_train"}
    with pytest.raises(InvalidArgument, match="'is_train' is not a column"):
        build_graph(_edges([0], [1]), [(spec, table)], id_type="int64", policy=EdgePolicy())
    with pytest.raises(InvalidArgument, match="node id 1 appears 2 times"):
        build_graph(_edges([0], [1]), _nodes([0, 1, 1]), id_type="int64", policy=EdgePolicy())


def test_more_partitions_than_nodes_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="larger than the graph's 3 nodes"):
        estimate(3, 10, 0, 4, 10**12)


def test_sbm_is_reproducible_and_labels_follow_structure() -> None:
    a, b = generate_sbm(2000, 4, seed=5), generate_sbm(2000, 4, seed=5)
    assert np.array_equal(a.src, b.src) and np.array_equal(a.feat, b.feat)
    assert (a.label[a.src] == a.label[a.dst]).mean() > 0.7
