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

import numpy as np

from atlas_core.errors import InvalidArgument, ResourceExhausted
from atlas_graph.graph_data import GraphData
from atlas_graph.idmap import RangeMap, write_partition_id_map

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
