"""The body of each graph job, run in a job subprocess with its own runtime.

Outputs are uploaded first and registered last, so a failed or cancelled job leaves no
visible graph or partitioning.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from atlas.graph.v1 import graph_service_pb2 as pb
from atlas_core.errors import InvalidArgument
from atlas_core.jobs import JobContext
from atlas_graph import ingest as ing
from atlas_graph.catalog import new_id
from atlas_graph.graph_data import ID_INT64, ID_STRING, GraphData
from atlas_graph.hetero import HeteroGraphData, build_hetero_graph, is_typed
from atlas_graph.packing import put_dir, ref_dict
from atlas_graph.partitioning import (
    GRAPH_NAME,
    estimate_record,
    memory_budget,
    refuse_if_too_big,
    run_hetero_partitioning,
    run_partitioning,
)
from atlas_graph.runtime import GraphRuntime
from atlas_graph.sbm import generate_sbm

METHODS = {
    pb.PARTITION_METHOD_UNSPECIFIED: "metis",
    pb.PARTITION_METHOD_METIS: "metis",
    pb.PARTITION_METHOD_RANDOM: "random",
}
ID_TYPES = {pb.ID_TYPE_UNSPECIFIED: "", pb.ID_TYPE_INT64: ID_INT64, pb.ID_TYPE_STRING: ID_STRING}


def _graph_fields(graph: GraphData | HeteroGraphData) -> dict[str, Any]:
    if isinstance(graph, GraphData):
        return {
            "id_type": graph.id_type,
            "node_feature_dims": graph.feature_dims,
            "num_classes": graph.num_classes,
            "has_masks": graph.has_masks,
        }
    info = graph.type_info()
    id_types = {t["id_type"] for t in info}
    labelled = [t for t in info if t["num_classes"]]
    return {
        "hetero": True,
        "node_types": list(graph.nodes),
        "edge_types": list(graph.edge_counts()),
        "node_type_info": info,
        "edge_type_counts": graph.edge_counts(),
        # Graph-wide fields only where every type agrees (per type: node_type_info).
        "id_type": id_types.pop() if len(id_types) == 1 else "",
        "node_feature_dims": 0,
        "num_classes": labelled[0]["num_classes"] if len(labelled) == 1 else 0,
        "has_masks": any(t["has_masks"] for t in info),
    }


def _publish_graph(
    rt: GraphRuntime,
    ctx: JobContext,
    graph: GraphData | HeteroGraphData,
    name: str,
    operation: str,
    parents: list[dict[str, Any]],
) -> dict[str, Any]:
    graph_id = new_id("g")
    ctx.report(0.8, f"uploading graph {graph_id}")
    with tempfile.TemporaryDirectory(dir=rt.work_root) as tmp:
        path = Path(tmp) / "graph.npz"
        graph.save(path)
        ref = rt.artifacts.put_file(f"graphs/{graph_id}/graph.npz", path)
    record = {
        "graph_id": graph_id,
        "name": name or graph_id,
        "num_nodes": graph.num_nodes,
        "num_edges": graph.num_edges,
        **_graph_fields(graph),
        "artifacts": [ref_dict(ref)],
        "import_stats": graph.stats,
        "lineage": {"operation": operation, "parents": parents, "job_id": ctx.job_id},
    }
    ctx.raise_if_cancelled()
    return {"graph": rt.catalog.add_graph(record)}


def generate(rt: GraphRuntime, ctx: JobContext, spec: pb.GenerateGraphSpec) -> dict[str, Any]:
    ctx.report(0.1, f"generating an SBM graph of {spec.nodes} nodes")
    graph = generate_sbm(
        spec.nodes,
        spec.communities or 8,
        spec.average_degree or 10.0,
        spec.intra_fraction or 0.8,
        spec.feature_dims or 16,
        spec.feature_noise or 1.0,
        spec.train_fraction,
        spec.val_fraction,
        spec.seed,
    )
    op = f"sbm(nodes={spec.nodes}, communities={spec.communities or 8}, seed={spec.seed})"
    return _publish_graph(rt, ctx, graph, spec.name, op, [])


def _table_input(rt: GraphRuntime, source: pb.TableSource, what: str) -> ing.TableInput:
    keys = [rt.artifacts.key_for_uri(a.uri) for a in source.artifacts]
    if source.uri_prefix:
        prefix = rt.artifacts.key_for_uri(source.uri_prefix)
        keys += sorted(r.key for r in rt.artifacts.list(prefix))
    if not keys:
        raise InvalidArgument(f"{what} source lists no files", reason="NO_INPUT")
    return ing.TableInput(keys, source.format)


def import_graph(rt: GraphRuntime, ctx: JobContext, spec: pb.ImportGraphSpec) -> dict[str, Any]:
    edges = []
    for i, e in enumerate(spec.edges):
        ctx.report(0.1, f"reading edge table {i + 1}/{len(spec.edges)}")
        source = _table_input(rt, e.source, f"edges[{i}]")
        edges.append(
            (
                ing.EdgeInput(source, e.src_column, e.dst_column, e.edge_type),
                ing.read_table(rt.artifacts, source),
            )
        )
    nodes = []
    for i, n in enumerate(spec.nodes):
        ctx.report(0.3, f"reading node table {i + 1}/{len(spec.nodes)}")
        source = _table_input(rt, n.source, f"nodes[{i}]")
        masks = {"train": n.train_mask_column, "val": n.val_mask_column, "test": n.test_mask_column}
        nodes.append(
            (
                ing.NodeInput(
                    source,
                    n.id_column,
                    list(n.feature_columns),
                    n.label_column,
                    masks,
                    node_type=n.node_type,
                    id_type=ID_TYPES[n.id_type],
                ),
                ing.read_table(rt.artifacts, source),
            )
        )
    ctx.raise_if_cancelled()
    p = spec.edge_policy
    typed = is_typed([n.node_type for n in spec.nodes], [e.edge_type for e in spec.edges])
    build = build_hetero_graph if typed else ing.build_graph
    graph = build(
        edges,
        nodes,
        id_type=ID_TYPES[spec.id_type],
        policy=ing.EdgePolicy(
            p.drop_duplicates, p.drop_self_loops, p.add_reverse_edges, p.drop_dangling_edges
        ),
        train_fraction=spec.train_fraction,
        val_fraction=spec.val_fraction,
        split_seed=spec.split_seed,
    )
    parents = [
        {"role": "edges", "uri": a.uri, "sha256": a.sha256}
        for e in spec.edges
        for a in e.source.artifacts
    ]
    return _publish_graph(rt, ctx, graph, spec.name, "import", parents)


def load_graph(
    rt: GraphRuntime, record: dict[str, Any], directory: Path
) -> GraphData | HeteroGraphData:
    path = directory / "graph.npz"
    rt.artifacts.download_to_file(rt.artifacts.key_for_uri(record["artifacts"][0]["uri"]), path)
    return HeteroGraphData.load(path) if record.get("hetero") else GraphData.load(path)


def partition(rt: GraphRuntime, ctx: JobContext, spec: pb.PartitionGraphSpec) -> dict[str, Any]:
    record = rt.catalog.get_graph(spec.graph_id)
    limit = spec.max_memory_bytes or memory_budget(rt.settings.partition.memory_budget_bytes)
    est = estimate_record(record, spec.num_partitions, limit)
    ctx.report(
        0.05,
        f"estimated peak memory {est.peak_memory_bytes / 2**20:.0f} MiB "
        f"(limit {limit / 2**20:.0f} MiB)",
        estimate=est.__dict__,
    )
    refuse_if_too_big(est)
    pid = new_id("p")
    base = f"graphs/{spec.graph_id}/partitionings/{pid}"
    work = Path(tempfile.mkdtemp(prefix=f"{pid}-", dir=rt.work_root))
    try:
        graph = load_graph(rt, record, work)
        ctx.report(0.1, f"partitioning into {spec.num_partitions} parts ({METHODS[spec.method]})")
        out = work / "out"
        if isinstance(graph, HeteroGraphData):
            outcome = run_hetero_partitioning(
                graph,
                out,
                spec.num_partitions,
                METHODS[spec.method],
                spec.num_hops,
                spec.balance_edges,
            )
        else:
            outcome = run_partitioning(
                graph,
                out,
                spec.num_partitions,
                METHODS[spec.method],
                spec.num_hops,
                spec.balance_train,
                spec.balance_edges,
            )
        ctx.raise_if_cancelled()
        ctx.report(0.7, "uploading partitions")
        config = rt.artifacts.put_file(f"{base}/{GRAPH_NAME}.json", out / f"{GRAPH_NAME}.json")
        parts = []
        for p in range(spec.num_partitions):
            part_ref = put_dir(rt.artifacts, f"{base}/part{p}.tar", out / f"part{p}", work)
            map_ref = put_dir(
                rt.artifacts, f"{base}/idmap{p}.tar", out / "idmap" / f"part{p}", work
            )
            nb, eb = outcome.node_boundaries, outcome.edge_boundaries
            node_ranges = {"_N": {"start": nb[p], "end": nb[p + 1]}}
            edge_ranges = {"_N:_E:_N": {"start": eb[p], "end": eb[p + 1]}}
            if outcome.type_boundaries is not None:  # each type's own ids
                node_ranges, edge_ranges = (
                    {t: {"start": b[p], "end": b[p + 1]} for t, b in per_type.items()}
                    for per_type in (
                        outcome.type_boundaries["node"],
                        outcome.type_boundaries["edge"],
                    )
                )
            parts.append(
                {
                    "index": p,
                    "node_ranges": node_ranges,
                    "edge_ranges": edge_ranges,
                    "num_nodes": outcome.part_nodes[p],
                    "num_edges": outcome.part_edges[p],
                    "artifact": ref_dict(part_ref),
                    "id_map": ref_dict(map_ref),
                }
            )
        ctx.raise_if_cancelled()
        body = {
            "partitioning_id": pid,
            "graph_id": spec.graph_id,
            "spec": {
                "num_partitions": spec.num_partitions,
                "method": METHODS[spec.method],
                "num_hops": max(1, spec.num_hops),
                "balance_train": spec.balance_train,
                "balance_edges": spec.balance_edges,
            },
            "partitions": parts,
            "node_boundaries": outcome.node_boundaries,
            "edge_boundaries": outcome.edge_boundaries,
            "partition_config": ref_dict(config, "application/json"),
            "edge_cut": outcome.edge_cut,
            "balance": outcome.balance,
            "estimate": {**est.__dict__, "fits": est.fits},
            "elapsed_s": outcome.elapsed_s,
            "peak_memory_bytes": outcome.peak_rss_bytes,
            "num_classes": record["num_classes"],
            "node_feature_dims": record["node_feature_dims"],
            "job_id": ctx.job_id,
        }
        if record.get("hetero"):
            body.update(
                hetero=True,
                type_boundaries=outcome.type_boundaries,
                node_type_info=record["node_type_info"],
                edge_types=record["edge_types"],
            )
        return {"partitioning": rt.catalog.add_partitioning(body)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def train(rt: GraphRuntime, ctx: JobContext, spec: pb.TrainGraphSpec) -> dict[str, Any]:
    from atlas_graph.training.job import run_train_job

    return run_train_job(rt, ctx, spec, infer=None)


def infer(rt: GraphRuntime, ctx: JobContext, spec: pb.InferGraphSpec) -> dict[str, Any]:
    from atlas_graph.training.job import run_train_job

    return run_train_job(rt, ctx, None, infer=spec)
