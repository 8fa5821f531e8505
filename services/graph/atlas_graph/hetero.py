"""Heterogeneous graphs: several node types, each with its own original ids (int64 or string),
features, labels and masks, and canonical edge types ``(src type, relation, dst type)``.

Within a node type, nodes are numbered densely 0..N_t-1 in node-table order ("type-wise import
ids"); edges of one canonical type are numbered by their row in that type's imported (filtered)
edge list. The storage format is one uncompressed ``.npz`` (no pickles) whose ``meta`` entry
(UTF-8 JSON) names the types; arrays are stored under their type's index.

Import validation (:func:`check_types`, :func:`build_hetero_graph`) refuses, with
INVALID_ARGUMENT naming the table and the column or field: an untyped table in a typed import
(its endpoint types are unknown), a malformed edge type, a relation naming a node type that has
no node table, two tables for one node type, and an edge column whose ids are of another type
than its node type's ids.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from atlas_core.errors import InvalidArgument
from atlas_graph.graph_data import ID_INT64, ID_STRING, NodeTable, random_split

TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MASKS = ("train_mask", "val_mask", "test_mask")
Canonical = tuple[str, str, str]


def etype_str(etype: Canonical) -> str:
    return ":".join(etype)


@dataclass
class NodeType(NodeTable):
    original_ids: np.ndarray
    id_type: str
    feat: np.ndarray | None = None
    label: np.ndarray | None = None  # int64, -1 = unlabelled
    train_mask: np.ndarray | None = None
    val_mask: np.ndarray | None = None
    test_mask: np.ndarray | None = None
    stats: dict[str, int] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        return {
            "node_type": "",
            "num_nodes": self.num_nodes,
            "id_type": self.id_type,
            "feature_dims": self.feature_dims,
            "num_classes": self.num_classes,
            "has_masks": self.has_masks,
        }


@dataclass
class HeteroGraphData:
    nodes: dict[str, NodeType]
    edges: dict[Canonical, tuple[np.ndarray, np.ndarray]]
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return sum(t.num_nodes for t in self.nodes.values())

    @property
    def num_edges(self) -> int:
        return sum(len(src) for src, _ in self.edges.values())

    def type_info(self) -> list[dict[str, Any]]:
        return [{**t.info(), "node_type": name} for name, t in self.nodes.items()]

    def edge_counts(self) -> dict[str, int]:
        return {etype_str(k): int(len(src)) for k, (src, _) in self.edges.items()}

    def save(self, path: Path) -> None:
        ntypes, etypes = list(self.nodes), list(self.edges)
        meta = {"hetero": 1, "node_types": ntypes, "edge_types": [list(e) for e in etypes]}
        arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
        for i, name in enumerate(ntypes):
            t = self.nodes[name]
            arrays[f"n{i}_original_ids"] = t.original_ids
            for col in ("feat", "label", *MASKS):
                value = getattr(t, col)
                if value is not None:
                    arrays[f"n{i}_{col}"] = value
        for j, etype in enumerate(etypes):
            arrays[f"e{j}_src"], arrays[f"e{j}_dst"] = self.edges[etype]
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: Path) -> HeteroGraphData:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        meta = json.loads(arrays["meta"].tobytes().decode())
        nodes = {}
        for i, name in enumerate(meta["node_types"]):
            original = arrays[f"n{i}_original_ids"]
            nodes[name] = NodeType(
                original_ids=original,
                id_type=ID_STRING if original.dtype.kind == "S" else ID_INT64,
                feat=arrays.get(f"n{i}_feat"),
                label=arrays.get(f"n{i}_label"),
                train_mask=arrays.get(f"n{i}_train_mask"),
                val_mask=arrays.get(f"n{i}_val_mask"),
                test_mask=arrays.get(f"n{i}_test_mask"),
            )
        edges = {
            (e[0], e[1], e[2]): (arrays[f"e{j}_src"], arrays[f"e{j}_dst"])
            for j, e in enumerate(meta["edge_types"])
        }
        return cls(nodes=nodes, edges=edges)

    def to_dgl(self) -> Any:
        """A DGL heterograph with per-type ``feat`` (one constant column for a type without
        features), ``label`` and masks (lazy dgl import)."""
        import dgl
        import torch

        g = dgl.heterograph(
            {k: (torch.from_numpy(s), torch.from_numpy(d)) for k, (s, d) in self.edges.items()},
            num_nodes_dict={name: t.num_nodes for name, t in self.nodes.items()},
        )
        for name, t in self.nodes.items():
            data = g.nodes[name].data
            feat = t.feat if t.feat is not None else np.ones((t.num_nodes, 1), np.float32)
            data["feat"] = torch.from_numpy(np.ascontiguousarray(feat, np.float32))
            if t.label is not None:
                data["label"] = torch.from_numpy(t.label.astype(np.int64))
            for mask in MASKS:
                value = getattr(t, mask)
                if value is not None:
                    data[mask] = torch.from_numpy(value.astype(bool))
        return g


def is_typed(node_types: Sequence[str], edge_types: Sequence[str]) -> bool:
    """A typed (heterogeneous) import: any table names a type."""
    return any(node_types) or any(edge_types)


def parse_edge_type(value: str, where: str) -> Canonical:
    parts = value.split(":")
    if len(parts) != 3 or not all(TYPE_NAME.fullmatch(p) for p in parts):
        raise InvalidArgument(
            f"{where}.edge_type {value!r} must be 'src_type:relation:dst_type' (each part "
            "[A-Za-z_][A-Za-z0-9_]*)",
            reason="BAD_EDGE_TYPE",
        )
    return parts[0], parts[1], parts[2]


def check_types(node_types: Sequence[str], edge_types: Sequence[str]) -> list[Canonical]:
    """Validate the types a typed import names (before reading any table); returns the
    canonical edge types in table order. Messages name ``import_graph.nodes[i]`` /
    ``import_graph.edges[j]`` and the field."""
    seen: dict[str, int] = {}
    for i, name in enumerate(node_types):
        where = f"import_graph.nodes[{i}]"
        if not name:
            raise InvalidArgument(
                f"{where}.node_type is empty but other tables are typed: give every node table "
                "its node type",
                reason="UNKNOWN_NODE_TYPE",
            )
        if not TYPE_NAME.fullmatch(name):
            raise InvalidArgument(
                f"{where}.node_type {name!r} must match [A-Za-z_][A-Za-z0-9_]*",
                reason="BAD_NODE_TYPE",
            )
        if name in seen:
            raise InvalidArgument(
                f"{where}.node_type {name!r} already has a table (import_graph.nodes"
                f"[{seen[name]}]): give one node table per type",
                reason="DUPLICATE_NODE_TYPE",
            )
        seen[name] = i
    canonical = []
    for j, value in enumerate(edge_types):
        where = f"import_graph.edges[{j}]"
        if not value:
            raise InvalidArgument(
                f"{where}.edge_type is empty, so the types of its endpoints (src_column, "
                "dst_column) are unknown: give 'src_type:relation:dst_type'",
                reason="UNKNOWN_NODE_TYPE",
            )
        etype = parse_edge_type(value, where)
        for end, name in (("source", etype[0]), ("destination", etype[2])):
            if name not in seen:
                raise InvalidArgument(
                    f"{where}.edge_type {value!r}: relation '{etype[1]}' names {end} node type "
                    f"'{name}', which has no node table (node types: {sorted(seen)})",
                    reason="UNKNOWN_NODE_TYPE",
                )
        canonical.append(etype)
    if not seen:
        raise InvalidArgument(
            "a typed import needs node tables (import_graph.nodes, one per node type)",
            reason="UNKNOWN_NODE_TYPE",
        )
    return canonical


def _id_kind(column: pa.ChunkedArray) -> str:
    return ID_INT64 if pa.types.is_integer(column.type) else ID_STRING


def build_hetero_graph(
    edge_tables: list[tuple[Any, pa.Table]],
    node_tables: list[tuple[Any, pa.Table]],
    *,
    id_type: str,
    policy: Any,
    train_fraction: float = 0.0,
    val_fraction: float = 0.0,
    split_seed: int = 0,
) -> HeteroGraphData:
    """``edge_tables`` / ``node_tables``: (:class:`~atlas_graph.ingest.EdgeInput` /
    :class:`~atlas_graph.ingest.NodeInput`, table) pairs, every one typed."""
    from atlas_graph import ingest as ing

    canonical = check_types(
        [spec.node_type for spec, _ in node_tables], [spec.edge_type for spec, _ in edge_tables]
    )
    nodes: dict[str, NodeType] = {}
    sources: dict[str, str] = {}  # node type -> "import_graph.nodes[i] column 'c'"
    stats: dict[str, int] = {}
    for i, (spec, table) in enumerate(node_tables):
        where = f"import_graph.nodes[{i}]"
        column = ing._column(table, spec.id_column, f"{where}.id_column")
        kind = spec.id_type or id_type or _id_kind(column)
        if kind == ID_INT64 and not pa.types.is_integer(column.type):
            raise InvalidArgument(
                f"{where}.id_column '{spec.id_column}' (node type '{spec.node_type}') holds "
                f"{column.type} ids but its id_type is INT64; use ID_TYPE_STRING",
                reason="WRONG_ID_TYPE",
            )
        ids = ing._ids(column, kind, spec.id_column)
        uniq, counts = np.unique(ids, return_counts=True)
        if np.any(counts > 1):
            raise InvalidArgument(
                f"{where} (node type '{spec.node_type}'): id {ing._show(uniq[counts > 1][0])} "
                f"appears {int(counts[counts > 1][0])} times in column '{spec.id_column}'",
                reason="DUPLICATE_NODE",
            )
        node = NodeType(original_ids=ids, id_type=kind, stats=stats)
        ing._attach_node_columns(node, spec, table, train_fraction, val_fraction, split_seed + i)
        nodes[spec.node_type] = node
        sources[spec.node_type] = f"import_graph.nodes[{i}] column '{spec.id_column}'"
    parts: dict[Canonical, list[tuple[np.ndarray, np.ndarray]]] = {}
    stats["input_edges"] = 0
    dangling = 0
    for j, ((spec, table), etype) in enumerate(zip(edge_tables, canonical)):
        where = f"import_graph.edges[{j}]"
        ends = []
        for col_field, col, ntype in (
            ("src_column", spec.src_column, etype[0]),
            ("dst_column", spec.dst_column, etype[2]),
        ):
            column = ing._column(table, col, f"{where}.{col_field}")
            node = nodes[ntype]
            if _id_kind(column) != node.id_type:
                raise InvalidArgument(
                    f"{where}.{col_field} '{col}' holds {column.type} ids but node type "
                    f"'{ntype}' has {node.id_type} ids ({sources[ntype]}): one node type's ids "
                    "must be of one type everywhere",
                    reason="MIXED_ID_TYPES",
                )
            ends.append(_locate(node.original_ids, ing._ids(column, node.id_type, col)))
        (src, src_ok), (dst, dst_ok) = ends
        stats["input_edges"] += len(src)
        ok = src_ok & dst_ok
        if not ok.all():
            first = int(np.flatnonzero(~ok)[0])
            if not policy.drop_dangling_edges:
                col, ntype = (
                    (spec.src_column, etype[0])
                    if not src_ok[first]
                    else (spec.dst_column, etype[2])
                )
                raise InvalidArgument(
                    f"{where} row {first}: column '{col}' names a '{ntype}' node that is not in "
                    f"its node table ({sources[ntype]}); set edge_policy.drop_dangling_edges to "
                    "drop such edges",
                    reason="DANGLING_EDGE",
                )
            dangling += int((~ok).sum())
            src, dst = src[ok], dst[ok]
        parts.setdefault(etype, []).append((src, dst))
    if dangling:
        stats["dropped_dangling_edges"] = dangling
    edges: dict[Canonical, tuple[np.ndarray, np.ndarray]] = {}
    for etype, pieces in parts.items():
        src = np.concatenate([p[0] for p in pieces])
        dst = np.concatenate([p[1] for p in pieces])
        edges[etype] = (src, dst)
    if policy.add_reverse_edges:
        for (s, r, d), (src, dst) in list(edges.items()):
            reverse = (d, f"rev_{r}", s)
            if reverse not in edges:
                edges[reverse] = (dst, src)
    for etype, (src, dst) in list(edges.items()):
        edges[etype] = _apply_policy(
            src, dst, nodes[etype[2]].num_nodes, etype[0] == etype[2], policy, stats
        )
    if not sum(len(s) for s, _ in edges.values()):
        raise InvalidArgument("the edge tables hold no rows", reason="NO_EDGES")
    graph = HeteroGraphData(nodes=nodes, edges=edges, stats=stats)
    stats["edges"], stats["nodes"] = graph.num_edges, graph.num_nodes
    for node in nodes.values():
        node.stats = {}
    return graph


def _locate(originals: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(type-wise import id, found) per wanted original id."""
    if originals.dtype.kind == "S":
        width = max(originals.dtype.itemsize, wanted.dtype.itemsize, 1)
        originals, wanted = originals.astype(f"S{width}"), wanted.astype(f"S{width}")
    order = np.argsort(originals, kind="stable")
    sorted_ids = originals[order]
    if not len(sorted_ids):
        return np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
    pos = np.minimum(np.searchsorted(sorted_ids, wanted), len(sorted_ids) - 1)
    return order[pos].astype(np.int64), sorted_ids[pos] == wanted


def _apply_policy(
    src: np.ndarray, dst: np.ndarray, n_dst: int, same_type: bool, policy: Any, stats: dict
) -> tuple[np.ndarray, np.ndarray]:
    if same_type:
        loops = src == dst
        stats["self_loops"] = stats.get("self_loops", 0) + int(loops.sum())
        if policy.drop_self_loops and loops.any():
            src, dst = src[~loops], dst[~loops]
            stats["dropped_self_loops"] = stats.get("dropped_self_loops", 0) + int(loops.sum())
    key = src * max(n_dst, 1) + dst
    _, first = np.unique(key, return_index=True)
    duplicates = int(len(key) - len(first))
    stats["duplicate_edges"] = stats.get("duplicate_edges", 0) + duplicates
    if policy.drop_duplicates and duplicates:
        keep = np.sort(first)
        src, dst = src[keep], dst[keep]
        stats["dropped_duplicate_edges"] = stats.get("dropped_duplicate_edges", 0) + duplicates
    return src, dst


def hetero_split(node: NodeType, train: float, val: float, seed: int) -> None:
    """A seeded random split over the labelled nodes of one type (generated graphs)."""
    labelled = node.label >= 0 if node.label is not None else None
    node.train_mask, node.val_mask, node.test_mask = random_split(
        node.num_nodes, train, val, seed, labelled
    )
