"""Heterogeneous graphs without a network: typed import validation (each refusal names the
table and the column or field), per-type range maps from DGL's partition config, per-type id
translation over memory-mapped arrays, the per-type memory estimate, and the storage format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from atlas.graph.v1 import graph_service_pb2 as pb
from atlas_core.errors import InvalidArgument, NotFound
from atlas_graph.hetero import HeteroGraphData, build_hetero_graph, check_types
from atlas_graph.idmap import IdTranslation, TypedRangeMap, type_boundaries, write_partition_id_map
from atlas_graph.ingest import EdgeInput, EdgePolicy, NodeInput, TableInput
from atlas_graph.partitioning import estimate_types
from atlas_graph.sbm import generate_hetero
from atlas_graph.tasks import target_type

T = TableInput(["x.parquet"])


def _tables(user_ids: list, device_ids: list, uses: tuple[list, list], **user_cols: list) -> dict:
    nodes = [
        (
            NodeInput(T, "id", [], "y" if "y" in user_cols else "", node_type="user"),
            pa.table({"id": user_ids, **user_cols}),
        ),
        (NodeInput(T, "id", node_type="device"), pa.table({"id": device_ids})),
    ]
    edges = [
        (
            EdgeInput(T, "u", "d", edge_type="user:uses:device"),
            pa.table({"u": uses[0], "d": uses[1]}),
        )
    ]
    return {"edge_tables": edges, "node_tables": nodes}


def test_typed_import_keeps_each_types_own_ids_and_columns() -> None:
    g = build_hetero_graph(
        **_tables([10, 20, 30], ["a", "b"], ([30, 10, 10], ["b", "a", "b"]), y=[0, 1, 1]),
        id_type="",
        policy=EdgePolicy(add_reverse_edges=True),
    )
    assert g.nodes["user"].id_type == "int64" and g.nodes["device"].id_type == "string"
    src, dst = g.edges[("user", "uses", "device")]
    assert src.tolist() == [2, 0, 0] and dst.tolist() == [1, 0, 1]
    rsrc, rdst = g.edges[("device", "rev_uses", "user")]
    assert rsrc.tolist() == dst.tolist() and rdst.tolist() == src.tolist()
    assert g.nodes["user"].num_classes == 2 and g.nodes["user"].has_masks
    assert g.nodes["device"].label is None and g.nodes["device"].feature_dims == 0
    assert g.stats["nodes"] == 5 and g.stats["edges"] == 6


@pytest.mark.parametrize(
    ("nodes", "edges", "reason", "named"),
    [
        (["user", "device"], ["user:uses:device", ""], "UNKNOWN_NODE_TYPE", "edges[1].edge_type"),
        (["user"], ["user:uses:device"], "UNKNOWN_NODE_TYPE", "'device'"),
        (["user", "device"], ["user:uses:shop"], "UNKNOWN_NODE_TYPE", "relation 'uses'"),
        (["user", "device"], ["user-uses-device"], "BAD_EDGE_TYPE", "edges[0].edge_type"),
        (["user", ""], ["user:uses:user"], "UNKNOWN_NODE_TYPE", "nodes[1].node_type"),
        (["user", "user"], ["user:uses:user"], "DUPLICATE_NODE_TYPE", "nodes[1].node_type"),
    ],
)
def test_type_structure_refusals_name_the_table(
    nodes: list[str], edges: list[str], reason: str, named: str
) -> None:
    with pytest.raises(InvalidArgument) as err:
        check_types(nodes, edges)
    assert err.value.reason == reason and named in str(err.value)


def test_mixed_id_types_within_a_node_type_name_table_and_column() -> None:
    with pytest.raises(InvalidArgument) as err:
        build_hetero_graph(
            **_tables([10, 20], ["a", "b"], ([10, 20], [1, 2])), id_type="", policy=EdgePolicy()
        )
    assert err.value.reason == "MIXED_ID_TYPES"
    assert "import_graph.edges[0].dst_column 'd'" in str(err.value)
    assert "import_graph.nodes[1] column 'id'" in str(err.value)


def test_dangling_typed_edge_names_type_and_is_droppable() -> None:
    tables = _tables([10, 20], ["a"], ([10, 20], ["a", "zz"]))
    with pytest.raises(InvalidArgument, match="names a 'device' node that is not"):
        build_hetero_graph(**tables, id_type="", policy=EdgePolicy())
    g = build_hetero_graph(**tables, id_type="", policy=EdgePolicy(drop_dangling_edges=True))
    assert g.stats["dropped_dangling_edges"] == 1 and g.num_edges == 1


def test_type_boundaries_follow_dgl_homogeneous_ranges() -> None:
    # DGL lays partitions out partition-major: p0 = [device, user], p1 = [device, user].
    config = {
        "node_map": {"device": [[0, 5], [12, 18]], "user": [[5, 12], [18, 20]]},
        "edge_map": {"user:uses:device": [[0, 30], [30, 41]]},
    }
    typed = TypedRangeMap.from_dgl_config(config)
    assert typed.nodes["device"].boundaries.tolist() == [0, 5, 11]
    assert typed.nodes["user"].boundaries.tolist() == [0, 7, 9]
    assert typed.edges["user:uses:device"].boundaries.tolist() == [0, 30, 41]
    parts, local = typed.nodes["user"].locate(np.array([0, 6, 7, 8]))
    assert parts.tolist() == [0, 0, 1, 1] and local.tolist() == [0, 6, 0, 1]
    assert typed.nbytes == 3 * 3 * 8  # (P + 1) int64 per type
    assert type_boundaries([[3, 3], [3, 9]]) == [0, 0, 6]


def test_range_map_is_o_partitions_times_types_at_any_size() -> None:
    per_type = 100_000_000 // 3
    bounds = [int(v) for v in np.linspace(0, per_type, 5)]
    small = TypedRangeMap({t: [0, 1, 2, 3, 4] for t in "abc"}, {"a:r:b": [0, 1, 2, 3, 4]})
    big = TypedRangeMap({t: bounds for t in "abc"}, {"a:r:b": bounds})
    assert small.nbytes == big.nbytes == 4 * 5 * 8


def test_id_translation_per_type_over_memory_mapped_arrays(tmp_path: Path) -> None:
    devices = np.array([b"d3", b"d1", b"d2", b"d0"])  # by new id
    users = np.array([70, 10, 40], dtype=np.int64)
    write_partition_id_map(tmp_path / "part0", "node:device", devices[:1])
    write_partition_id_map(tmp_path / "part1", "node:device", devices[1:])
    write_partition_id_map(tmp_path / "part0", "node:user", users[:2])
    write_partition_id_map(tmp_path / "part1", "node:user", users[2:])
    typed = TypedRangeMap({"device": [0, 1, 4], "user": [0, 2, 3]}, {})
    tr = IdTranslation(tmp_path, typed.kinds())
    new, parts, local = tr.original_to_new("node:device", np.array([b"d0", b"d3"]))
    assert new.tolist() == [3, 0] and parts.tolist() == [1, 0] and local.tolist() == [2, 0]
    originals, _, _ = tr.new_to_original("node:user", np.array([2, 0]))
    assert originals.tolist() == [40, 70]
    assert isinstance(tr._array("node:user", 0, "orig"), np.memmap)
    with pytest.raises(NotFound, match="unknown original node:user id 11"):
        tr.original_to_new("node:user", np.array([11]))
    with pytest.raises(InvalidArgument, match="node:device"):
        tr.new_to_original("node:shop", np.array([0]))


def test_estimate_counts_every_type() -> None:
    types = {"user": (1000, 8), "device": (500, 0), "merchant": (100, 4)}
    est = estimate_types(types, {"user:uses:device": 3000, "device:rev_uses:user": 3000}, 4, 2**40)
    assert est.range_map_bytes == 8 * 5 * (2 + 3 + 2)
    bigger = estimate_types(
        {**types, "user": (2000, 8)}, {"user:uses:device": 3000, "device:rev_uses:user": 3000}, 4, 0
    )
    assert bigger.peak_memory_bytes > est.peak_memory_bytes and not bigger.fits
    with pytest.raises(InvalidArgument, match="node type 'merchant'"):
        estimate_types(types, {}, 101, 2**40)


def test_target_type_needs_a_known_labelled_type() -> None:
    part = {
        "node_type_info": [
            {"node_type": "user", "num_classes": 4},
            {"node_type": "device", "num_classes": 0},
        ]
    }
    assert target_type(pb.TrainGraphSpec(), part) == "user"
    with pytest.raises(InvalidArgument, match="'shop' is not a node type") as err:
        target_type(pb.TrainGraphSpec(target_node_type="shop"), part)
    assert err.value.reason == "UNKNOWN_TARGET_TYPE"


def test_storage_round_trip(tmp_path: Path) -> None:
    g = generate_hetero(40, 20, 8, communities=4, seed=2)
    g.save(tmp_path / "g.npz")
    back = HeteroGraphData.load(tmp_path / "g.npz")
    assert list(back.nodes) == list(g.nodes) and list(back.edges) == list(g.edges)
    assert back.nodes["device"].original_ids.tolist() == g.nodes["device"].original_ids.tolist()
    assert np.array_equal(back.nodes["user"].feat, g.nodes["user"].feat)
    assert back.nodes["user"].train_mask is not None and back.nodes["device"].feat is None
    for key, (src, dst) in g.edges.items():
        assert np.array_equal(back.edges[key][0], src) and np.array_equal(back.edges[key][1], dst)


@pytest.mark.parametrize("conv", ["rgcn", "graphsage", "gat"])
def test_hetero_model_trains_on_sampled_blocks_in_one_process(conv: str) -> None:
    from atlas_graph.training.single import train_single_hetero

    g = generate_hetero(200, 100, 40, communities=4, feature_noise=0.5, seed=4)
    cfg = {
        "model": conv,
        "hetero": True,
        "in_dims": {t: max(1, n.feature_dims) for t, n in g.nodes.items()},
        "hidden": 16,
        "classes": 4,
        "layers": 2,
        "dropout": 0.0,
        "relations": [list(e) for e in g.edges],
        "target": "user",
    }
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # several spinning OpenMP threads crawl on a shared host
    try:
        out = train_single_hetero(g, cfg, [5, 5], 8, 32, 0.02, seed=1)
    finally:
        torch.set_num_threads(threads)
    assert out["train_accuracy"] > 0.5, out  # chance 0.25


def test_partitioning_that_leaves_a_type_out_of_a_partition_is_refused(tmp_path: Path) -> None:
    from atlas_graph.partitioning import run_hetero_partitioning

    g = generate_hetero(400, 200, 40, seed=3)
    g.edges[("merchant", "owns", "device")] = (np.array([0, 1]), np.array([0, 1]))
    with pytest.raises(InvalidArgument, match="'merchant:owns:device' with 2 edges") as err:
        run_hetero_partitioning(g, tmp_path / "out", 3, "metis")  # 3 parts, 2 such edges
    assert err.value.reason == "TOO_MANY_PARTITIONS"
    with pytest.raises(InvalidArgument, match="edge type 'merchant:owns:device''s 2 edges"):
        estimate_types({"merchant": (40, 4)}, g.edge_counts(), 3, 2**40)
