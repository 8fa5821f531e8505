"""Import of a graph from edge and node tables (Parquet or CSV in the object store).

Validation names the problem (INVALID_ARGUMENT): a missing column, ids of the wrong type, a
duplicate node id, an edge whose endpoint is not in the node table (unless
``drop_dangling_edges``), an empty edge list. Non-contiguous ids are fine: nodes are renumbered
densely and the originals kept. Duplicate edges and self-loops are kept or dropped by the edge
policy and counted in ``stats``. Missing masks give a seeded random split over labelled nodes.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from atlas_core.errors import InvalidArgument
from atlas_core.storage import ArtifactStore
from atlas_graph.graph_data import ID_INT64, ID_STRING, GraphData, random_split

if TYPE_CHECKING:
    from atlas_graph.hetero import NodeType


@dataclass
class TableInput:
    keys: list[str]
    format: str = ""


@dataclass
class NodeInput:
    table: TableInput
    id_column: str
    feature_columns: list[str] = field(default_factory=list)
    label_column: str = ""
    mask_columns: dict[str, str] = field(default_factory=dict)  # train/val/test -> column
    node_type: str = ""  # heterogeneous imports (atlas_graph.hetero)
    id_type: str = ""  # this type's id type; empty: the graph's, else the column's


@dataclass
class EdgeInput:
    table: TableInput
    src_column: str
    dst_column: str
    edge_type: str = ""  # "src_type:relation:dst_type" (heterogeneous imports)


@dataclass
class EdgePolicy:
    drop_duplicates: bool = False
    drop_self_loops: bool = False
    add_reverse_edges: bool = False
    drop_dangling_edges: bool = False


def read_table(artifacts: ArtifactStore, source: TableInput) -> pa.Table:
    if not source.keys:
        raise InvalidArgument("table source lists no files", reason="NO_INPUT")
    tables = []
    with tempfile.TemporaryDirectory(prefix="atlas-graph-") as tmp:
        for i, key in enumerate(source.keys):
            path = Path(tmp) / f"{i}"
            artifacts.download_to_file(key, path)
            fmt = source.format or ("csv" if key.lower().endswith(".csv") else "parquet")
            try:
                tables.append(pacsv.read_csv(path) if fmt == "csv" else pq.read_table(path))
            except (pa.ArrowException, OSError) as exc:
                raise InvalidArgument(
                    f"artifact '{key}' is not readable {fmt}: {exc}", reason="UNREADABLE_TABLE"
                ) from None
    return pa.concat_tables(tables, promote_options="default")


def _column(table: pa.Table, name: str, what: str) -> pa.ChunkedArray:
    if not name:
        raise InvalidArgument(f"{what} is empty", reason="MISSING_COLUMN")
    if name not in table.column_names:
        raise InvalidArgument(
            f"{what} '{name}' is not a column (have {table.column_names})", reason="UNKNOWN_COLUMN"
        )
    column = table.column(name)
    if column.null_count:
        raise InvalidArgument(
            f"column '{name}' has {column.null_count} null ids", reason="NULL_IDS"
        )
    return column


def _ids(column: pa.ChunkedArray, id_type: str, name: str) -> np.ndarray:
    kind = column.type
    if id_type == ID_INT64:
        if not pa.types.is_integer(kind):
            raise InvalidArgument(
                f"column '{name}' holds {kind} ids but the graph's id_type "
                "is INT64; use ID_TYPE_STRING",
                reason="WRONG_ID_TYPE",
            )
        return column.to_numpy().astype(np.int64)
    return np.asarray(pc.cast(column, pa.string()).to_pylist(), dtype=object).astype("S")


def infer_id_type(column: pa.ChunkedArray) -> str:
    return ID_INT64 if pa.types.is_integer(column.type) else ID_STRING


def _features(table: pa.Table, columns: list[str]) -> np.ndarray | None:
    parts = []
    for name in columns:
        column = _column(table, name, "feature column")
        if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
            parts.append(np.asarray(column.to_pylist(), dtype=np.float32).reshape(len(table), -1))
        elif (
            pa.types.is_integer(column.type)
            or pa.types.is_floating(column.type)
            or pa.types.is_boolean(column.type)
        ):
            parts.append(column.to_numpy().astype(np.float32).reshape(-1, 1))
        else:
            raise InvalidArgument(
                f"feature column '{name}' has type {column.type}; numeric "
                "scalars or float vectors only",
                reason="BAD_FEATURE",
            )
    return np.concatenate(parts, axis=1) if parts else None


def _labels(column: pa.ChunkedArray) -> np.ndarray:
    values = column.to_pandas()
    codes = (
        values.astype("category").cat.codes.to_numpy()
        if not pa.types.is_integer(column.type)
        else values.fillna(-1).to_numpy()
    )
    return np.asarray(codes, dtype=np.int64)


def build_graph(
    edge_tables: list[tuple[EdgeInput, pa.Table]],
    node_tables: list[tuple[NodeInput, pa.Table]],
    *,
    id_type: str,
    policy: EdgePolicy,
    train_fraction: float = 0.0,
    val_fraction: float = 0.0,
    split_seed: int = 0,
) -> GraphData:
    if not edge_tables:
        raise InvalidArgument("import needs at least one edge table", reason="NO_EDGES")
    if not id_type:
        first_spec, first_table = edge_tables[0]
        id_type = infer_id_type(_column(first_table, first_spec.src_column, "edge src_column"))
    src_parts, dst_parts = [], []
    for spec, table in edge_tables:
        src_parts.append(
            _ids(_column(table, spec.src_column, "edge src_column"), id_type, spec.src_column)
        )
        dst_parts.append(
            _ids(_column(table, spec.dst_column, "edge dst_column"), id_type, spec.dst_column)
        )
    if id_type == ID_STRING:
        width = max(max((a.dtype.itemsize for a in src_parts + dst_parts), default=1), 1)
        src_parts = [a.astype(f"S{width}") for a in src_parts]
        dst_parts = [a.astype(f"S{width}") for a in dst_parts]
    src_orig, dst_orig = np.concatenate(src_parts), np.concatenate(dst_parts)
    if not len(src_orig):
        raise InvalidArgument("the edge tables hold no rows", reason="NO_EDGES")
    stats: dict[str, int] = {"input_edges": int(len(src_orig))}
    node = node_tables[0] if node_tables else None
    if len(node_tables) > 1:
        raise InvalidArgument(
            "several node tables without node types: give each node table its node_type "
            "and each edge table its edge_type (a heterogeneous import), or give one node table",
            reason="HETEROGENEOUS",
        )
    if node is not None:
        node_spec, node_table = node
        node_ids = _ids(
            _column(node_table, node_spec.id_column, "node id_column"), id_type, node_spec.id_column
        )
        if id_type == ID_STRING:
            width = max(node_ids.dtype.itemsize, src_orig.dtype.itemsize)
            node_ids, src_orig, dst_orig = (
                a.astype(f"S{width}") for a in (node_ids, src_orig, dst_orig)
            )
        uniq, counts = np.unique(node_ids, return_counts=True)
        if np.any(counts > 1):
            raise InvalidArgument(
                f"node id {_show(uniq[counts > 1][0])} appears "
                f"{int(counts[counts > 1][0])} times in the node table",
                reason="DUPLICATE_NODE",
            )
        originals = node_ids
        order = np.argsort(originals, kind="stable")
        src, src_ok = _lookup(originals, order, src_orig)
        dst, dst_ok = _lookup(originals, order, dst_orig)
        ok = src_ok & dst_ok
        if not ok.all():
            first = int(np.flatnonzero(~ok)[0])
            if not policy.drop_dangling_edges:
                missing = src_orig[first] if not src_ok[first] else dst_orig[first]
                raise InvalidArgument(
                    f"edge {first} ({_show(src_orig[first])} -> {_show(dst_orig[first])}) "
                    f"references node {_show(missing)} which is not in the node table; set "
                    "edge_policy.drop_dangling_edges to drop such edges",
                    reason="DANGLING_EDGE",
                )
            stats["dropped_dangling_edges"] = int((~ok).sum())
            src, dst = src[ok], dst[ok]
    else:
        originals, inverse = np.unique(np.concatenate([src_orig, dst_orig]), return_inverse=True)
        src, dst = (
            inverse[: len(src_orig)].astype(np.int64),
            inverse[len(src_orig) :].astype(np.int64),
        )
    src, dst = _apply_policy(src, dst, len(originals), policy, stats)
    graph = GraphData(src=src, dst=dst, original_ids=originals, id_type=id_type, stats=stats)
    if node is not None:
        _attach_node_columns(graph, node[0], node[1], train_fraction, val_fraction, split_seed)
    stats["edges"] = graph.num_edges
    stats["nodes"] = graph.num_nodes
    return graph


def _show(value: object) -> str:
    return repr(value.decode()) if isinstance(value, bytes) else str(value)


def _lookup(
    originals: np.ndarray, order: np.ndarray, wanted: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    sorted_ids = originals[order]
    pos = np.minimum(np.searchsorted(sorted_ids, wanted), len(sorted_ids) - 1)
    found = sorted_ids[pos] == wanted
    return order[pos].astype(np.int64), found


def _apply_policy(
    src: np.ndarray, dst: np.ndarray, n: int, policy: EdgePolicy, stats: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    loops = src == dst
    stats["self_loops"] = int(loops.sum())
    if policy.drop_self_loops and loops.any():
        src, dst = src[~loops], dst[~loops]
        stats["dropped_self_loops"] = stats["self_loops"]
    if policy.add_reverse_edges:
        src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
    key = src * n + dst
    _, first = np.unique(key, return_index=True)
    stats["duplicate_edges"] = int(len(key) - len(first))
    if policy.drop_duplicates and stats["duplicate_edges"]:
        keep = np.sort(first)
        src, dst = src[keep], dst[keep]
        stats["dropped_duplicate_edges"] = stats["duplicate_edges"]
    return src, dst


def _attach_node_columns(
    graph: GraphData | NodeType,
    spec: NodeInput,
    table: pa.Table,
    train_fraction: float,
    val_fraction: float,
    seed: int,
) -> None:
    graph.feat = _features(table, spec.feature_columns)
    if spec.label_column:
        graph.label = _labels(_column(table, spec.label_column, "label_column"))
    given = {k: v for k, v in spec.mask_columns.items() if v}
    masks: dict[str, np.ndarray] = {}
    for which, name in given.items():
        column = _column(table, name, f"{which}_mask_column")
        if not pa.types.is_boolean(column.type) and not pa.types.is_integer(column.type):
            raise InvalidArgument(
                f"mask column '{name}' must be boolean, got {column.type}", reason="BAD_MASK"
            )
        masks[which] = column.to_numpy().astype(bool)
    if graph.label is None and not masks:
        return
    labelled = graph.label >= 0 if graph.label is not None else None
    if not masks:
        graph.train_mask, graph.val_mask, graph.test_mask = random_split(
            graph.num_nodes, train_fraction, val_fraction, seed, labelled
        )
        graph.stats["random_split"] = 1
        return
    if "train" not in masks:
        raise InvalidArgument(
            "val/test mask columns were given without train_mask_column", reason="MISSING_MASK"
        )
    n = graph.num_nodes
    graph.train_mask = masks["train"]
    graph.val_mask = masks.get("val", np.zeros(n, bool))
    graph.test_mask = masks.get("test", ~graph.train_mask & ~graph.val_mask)
