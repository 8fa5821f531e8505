"""A generated users x devices x merchants graph as Parquet tables in the object store, and the
ImportGraphSpec that imports it (one node table per type, one edge table per relation; the
reverse relations come from edge_policy.add_reverse_edges)."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from atlas.common.v1 import common_pb2
from atlas.graph.v1 import graph_service_pb2 as pb
from atlas_graph.hetero import HeteroGraphData
from atlas_graph.sbm import generate_hetero

from .conftest import GraphHarness


def upload(harness: GraphHarness, name: str, table: pa.Table) -> pb.TableSource:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    ref = harness.service.rt.artifacts.put_bytes(f"inputs/{name}.parquet", buf.getvalue())
    return pb.TableSource(
        artifacts=[common_pb2.ArtifactRef(uri=ref.uri, sha256=ref.sha256, size_bytes=ref.size)]
    )


def _ids(values: np.ndarray) -> pa.Array:
    return pa.array([v.decode() for v in values]) if values.dtype.kind == "S" else pa.array(values)


def hetero_import(harness: GraphHarness, graph: HeteroGraphData, name: str) -> pb.ImportGraphSpec:
    nodes = []
    for ntype, node in graph.nodes.items():
        columns: dict[str, pa.Array] = {"id": _ids(node.original_ids)}
        if node.feat is not None:
            columns["feat"] = pa.array(node.feat.tolist(), pa.list_(pa.float32()))
        if node.label is not None:
            columns["label"] = pa.array(node.label)
        nodes.append(
            pb.NodeTableSpec(
                source=upload(harness, f"{name}-{ntype}", pa.table(columns)),
                node_type=ntype,
                id_column="id",
                feature_columns=["feat"] if node.feat is not None else [],
                label_column="label" if node.label is not None else "",
            )
        )
    edges = []
    for (s, r, d), (src, dst) in graph.edges.items():
        if r in ("used_by", "paid_by"):  # made again by add_reverse_edges
            continue
        table = pa.table(
            {
                s: _ids(graph.nodes[s].original_ids[src]),
                d: _ids(graph.nodes[d].original_ids[dst]),
            }
        )
        edges.append(
            pb.EdgeTableSpec(
                source=upload(harness, f"{name}-{r}", table),
                edge_type=f"{s}:{r}:{d}",
                src_column=s,
                dst_column=d,
            )
        )
    return pb.ImportGraphSpec(
        name=name,
        nodes=nodes,
        edges=edges,
        edge_policy=pb.EdgePolicy(add_reverse_edges=True),
        split_seed=3,
    )


def small_graph(seed: int = 11) -> HeteroGraphData:
    return generate_hetero(1200, 600, 200, communities=4, feature_noise=1.5, seed=seed)
