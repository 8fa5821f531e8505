"""Partitioning a graph into P parts with contiguous node/edge id ranges (DGL METIS/random,
reshuffled), the memory estimate that guards it, and the per-partition id maps.

Output directory layout (``out``): DGL's ``graph.json`` + ``part{p}/`` files, and ``idmap/part{p}/``
with the arrays described in :mod:`atlas_graph.idmap`.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atlas_core.errors import InvalidArgument, ResourceExhausted
from atlas_graph.graph_data import GraphData
from atlas_graph.hetero import HeteroGraphData, etype_str
from atlas_graph.idmap import RangeMap, TypedRangeMap, write_partition_id_map

GRAPH_NAME = "graph"
# Peak RSS model of partition_graph (bytes), fitted on SBM graphs with bench/graph.py: the
# DGL graph with COO/CSR/CSC and edge ids, METIS's symmetrised adjacency, the reshuffled copy
# and the per-partition halo subgraphs together cost about this much per edge and node.
# Kept slightly above the peaks measured by full `bench/graph.py` runs (bench/README.md).
BYTES_PER_EDGE = 200
BYTES_PER_NODE = 160
BASE_BYTES = 700 * 1024 * 1024  # interpreter + torch + dgl


@dataclass(frozen=True)
class Estimate:
    peak_memory_bytes: int
    disk_bytes: int
    memory_limit_bytes: int
    range_map_bytes: int

    @property
    def fits(self) -> bool:
        return self.peak_memory_bytes <= self.memory_limit_bytes


def memory_budget(configured: int) -> int:
    if configured > 0:
        return configured
    import psutil

    return int(psutil.virtual_memory().available)


def estimate(
    num_nodes: int, num_edges: int, feature_dims: int, num_partitions: int, limit: int
) -> Estimate:
    if num_partitions < 1:
        raise InvalidArgument("num_partitions must be at least 1", reason="BAD_PARTITIONS")
    if num_partitions > num_nodes:
        raise InvalidArgument(
            f"num_partitions {num_partitions} is larger than the graph's {num_nodes} nodes",
            reason="TOO_MANY_PARTITIONS",
        )
    feat = num_nodes * (feature_dims * 4 + 8 + 3)
    peak = BASE_BYTES + BYTES_PER_EDGE * num_edges + BYTES_PER_NODE * num_nodes + 3 * feat
    # Partition graphs with halo (≈2x edges), features, and three id-map arrays per kind.
    disk = 2 * 24 * num_edges + feat + 3 * 8 * (num_nodes + num_edges)
    return Estimate(peak, disk, limit, 2 * 8 * (num_partitions + 1))


# A heterograph is partitioned through its homogeneous form (node and edge type arrays, the
# per-type ids of every node and edge), and each type gets its own three id-map arrays.
HETERO_BYTES_PER_ITEM = 24


def estimate_types(
    node_types: dict[str, tuple[int, int]],
    edge_types: dict[str, int],
    num_partitions: int,
    limit: int,
) -> Estimate:
    """The estimate of a heterogeneous partitioning. ``node_types``: type -> (nodes, feature
    dims); ``edge_types``: canonical type -> edges. Every partition owns one range per type,
    so P may not exceed the smallest type's node count."""
    if num_partitions < 1:
        raise InvalidArgument("num_partitions must be at least 1", reason="BAD_PARTITIONS")
    for name, (n, _) in node_types.items():
        if num_partitions > n:
            raise InvalidArgument(
                f"num_partitions {num_partitions} is larger than node type '{name}''s {n} "
                "nodes (every partition owns a range of every type)",
                reason="TOO_MANY_PARTITIONS",
            )
    for name, count in edge_types.items():
        if num_partitions > count:
            raise InvalidArgument(
                f"num_partitions {num_partitions} is larger than edge type '{name}''s {count} "
                "edges (every partition owns a range of every type)",
                reason="TOO_MANY_PARTITIONS",
            )
    nodes = sum(n for n, _ in node_types.values())
    edges = sum(edge_types.values())
    feat = sum(n * (max(1, dims) * 4 + 8 + 3) for n, dims in node_types.values())
    peak = (
        BASE_BYTES
        + (BYTES_PER_EDGE + HETERO_BYTES_PER_ITEM) * edges
        + (BYTES_PER_NODE + HETERO_BYTES_PER_ITEM) * nodes
        + 3 * feat
    )
    disk = 2 * 24 * edges + feat + 3 * 8 * (nodes + edges)
    kinds = 2 + len(node_types) + len(edge_types)  # homogeneous node/edge + one per type
    return Estimate(peak, disk, limit, 8 * (num_partitions + 1) * kinds)


def estimate_record(record: dict[str, Any], num_partitions: int, limit: int) -> Estimate:
    """The memory estimate of partitioning a registered graph (per type when typed)."""
    if record.get("hetero"):
        return estimate_types(
            {t["node_type"]: (t["num_nodes"], t["feature_dims"]) for t in record["node_type_info"]},
            record["edge_type_counts"],
            num_partitions,
            limit,
        )
    return estimate(
        record["num_nodes"],
        record["num_edges"],
        record["node_feature_dims"],
        num_partitions,
        limit,
    )


def refuse_if_too_big(est: Estimate) -> None:
    if not est.fits:
        raise ResourceExhausted(
            f"partitioning needs an estimated {est.peak_memory_bytes / 2**30:.2f} GiB of memory "
            f"but the limit is {est.memory_limit_bytes / 2**30:.2f} GiB; use a machine with "
            "more memory or raise max_memory_bytes",
            reason="PARTITION_MEMORY",
            metadata={
                "peak_memory_bytes": str(est.peak_memory_bytes),
                "memory_limit_bytes": str(est.memory_limit_bytes),
            },
        )


@dataclass
class PartitionOutcome:
    node_boundaries: list[int]
    edge_boundaries: list[int]
    part_nodes: list[int]
    part_edges: list[int]
    edge_cut: int
    balance: float
    elapsed_s: float
    peak_rss_bytes: int
    # Heterogeneous graphs: per-type boundaries in each type's own id space.
    type_boundaries: dict[str, dict[str, list[int]]] | None = None


def run_partitioning(
    graph: GraphData,
    out: Path,
    num_partitions: int,
    method: str,
    num_hops: int = 1,
    balance_train: bool = False,
    balance_edges: bool = False,
) -> PartitionOutcome:
    """Partition with DGL into ``out`` and write the id maps; returns boundaries and stats."""
    import dgl

    started = time.monotonic()
    g = graph.to_dgl()
    balance = g.ndata["train_mask"].long() if balance_train and graph.has_masks else None
    node_map, edge_map = dgl.distributed.partition_graph(
        g,
        GRAPH_NAME,
        num_partitions,
        str(out),
        num_hops=max(1, num_hops),
        part_method=method,
        balance_ntypes=balance,
        balance_edges=balance_edges,
        return_mapping=True,
    )
    del g
    node_map, edge_map = node_map.numpy(), edge_map.numpy()  # new id -> import id
    config = json.loads((out / f"{GRAPH_NAME}.json").read_text())
    node_b = _boundaries(config["node_map"])
    edge_b = _boundaries(config["edge_map"])
    nodes, edges = RangeMap(node_b), RangeMap(edge_b)
    for p in range(num_partitions):
        lo, hi = node_b[p], node_b[p + 1]
        write_partition_id_map(
            out / "idmap" / f"part{p}", "node", graph.original_ids[node_map[lo:hi]]
        )
        write_partition_id_map(
            out / "idmap" / f"part{p}", "edge", edge_map[edge_b[p] : edge_b[p + 1]].astype(np.int64)
        )
    new_of_import = np.empty(graph.num_nodes, dtype=np.int64)
    new_of_import[node_map] = np.arange(graph.num_nodes, dtype=np.int64)
    src_part = nodes.partition_of(new_of_import[graph.src])
    dst_part = nodes.partition_of(new_of_import[graph.dst])
    part_nodes = np.diff(node_b).tolist()
    return PartitionOutcome(
        node_boundaries=node_b,
        edge_boundaries=edge_b,
        part_nodes=part_nodes,
        part_edges=np.diff(edges.boundaries).tolist(),
        edge_cut=int((src_part != dst_part).sum()),
        balance=float(max(part_nodes) / (graph.num_nodes / num_partitions)),
        elapsed_s=time.monotonic() - started,
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    )


def _boundaries(type_map: dict[str, list[list[int]]]) -> list[int]:
    if len(type_map) != 1:
        raise InvalidArgument("only homogeneous graphs are supported", reason="HETEROGENEOUS")
    ranges = next(iter(type_map.values()))
    bounds = [int(ranges[0][0])] + [int(r[1]) for r in ranges]
    if bounds[0] != 0 or any(int(r[0]) != b for r, b in zip(ranges, bounds)):
        raise InvalidArgument("DGL produced non-contiguous ranges", reason="BAD_RANGES")
    return bounds


def _homogeneous_boundaries(type_map: dict[str, list[list[int]]], parts: int) -> list[int]:
    """Partition p's range in DGL's homogeneous id space: the union of its per-type ranges,
    which DGL lays out contiguously (partition-major, types within)."""
    starts = [min(int(r[p][0]) for r in type_map.values()) for p in range(parts)]
    ends = [max(int(r[p][1]) for r in type_map.values()) for p in range(parts)]
    bounds = [0, *ends]
    if starts[0] != 0 or any(s != e for s, e in zip(starts[1:], ends[:-1])):
        raise InvalidArgument("DGL produced non-contiguous ranges", reason="BAD_RANGES")
    return bounds


def run_hetero_partitioning(
    graph: HeteroGraphData,
    out: Path,
    num_partitions: int,
    method: str,
    num_hops: int = 1,
    balance_edges: bool = False,
) -> PartitionOutcome:
    """Partition a heterograph with DGL into ``out``: every partition owns one contiguous
    range of every node type and every edge type (in the type's own ids); writes one id map
    per type and partition (kinds ``node:<type>`` / ``edge:<src:rel:dst>``)."""
    import dgl

    started = time.monotonic()
    g = graph.to_dgl()
    try:
        node_maps, edge_maps = dgl.distributed.partition_graph(
            g,
            GRAPH_NAME,
            num_partitions,
            str(out),
            num_hops=max(1, num_hops),
            part_method=method,
            balance_edges=balance_edges,
            return_mapping=True,
        )
    except IndexError:  # DGL 2.1 indexes the first id of every type in every partition
        rarest = min(graph.edge_counts().items(), key=lambda kv: kv[1])
        raise InvalidArgument(
            f"partitioning into {num_partitions} parts left a partition without any edge (or "
            f"node) of some type, which DGL cannot store; the rarest edge type is "
            f"'{rarest[0]}' with {rarest[1]} edges: use fewer partitions or import more edges "
            "of the rare types",
            reason="TOO_MANY_PARTITIONS",
        ) from None
    del g
    if not isinstance(node_maps, dict):  # one type of each: DGL returns bare tensors
        node_maps = {next(iter(graph.nodes)): node_maps}
        edge_maps = {next(iter(graph.edges)): edge_maps}
    config = json.loads((out / f"{GRAPH_NAME}.json").read_text())
    typed = TypedRangeMap.from_dgl_config(config)
    new_of_import: dict[str, np.ndarray] = {}
    for ntype, node in graph.nodes.items():
        order = node_maps[ntype].numpy()  # new type-wise id -> import type-wise id
        bounds = typed.nodes[ntype].boundaries
        for p in range(num_partitions):
            write_partition_id_map(
                out / "idmap" / f"part{p}",
                f"node:{ntype}",
                node.original_ids[order[bounds[p] : bounds[p + 1]]],
            )
        inverse = np.empty(node.num_nodes, dtype=np.int64)
        inverse[order] = np.arange(node.num_nodes, dtype=np.int64)
        new_of_import[ntype] = inverse
    edge_cut = 0
    for etype, (src, dst) in graph.edges.items():
        name = etype_str(etype)
        order = edge_maps[etype].numpy().astype(np.int64)
        bounds = typed.edges[name].boundaries
        for p in range(num_partitions):
            write_partition_id_map(
                out / "idmap" / f"part{p}", f"edge:{name}", order[bounds[p] : bounds[p + 1]]
            )
        src_part = typed.nodes[etype[0]].partition_of(new_of_import[etype[0]][src])
        dst_part = typed.nodes[etype[2]].partition_of(new_of_import[etype[2]][dst])
        edge_cut += int((src_part != dst_part).sum())
    node_b = _homogeneous_boundaries(config["node_map"], num_partitions)
    edge_b = _homogeneous_boundaries(config["edge_map"], num_partitions)
    part_nodes = np.diff(node_b).tolist()
    return PartitionOutcome(
        node_boundaries=node_b,
        edge_boundaries=edge_b,
        part_nodes=part_nodes,
        part_edges=np.diff(edge_b).tolist(),
        edge_cut=edge_cut,
        balance=float(max(part_nodes) / (graph.num_nodes / num_partitions)),
        elapsed_s=time.monotonic() - started,
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        type_boundaries=typed.boundaries(),
    )
