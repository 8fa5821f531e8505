"""Proto <-> domain conversions for the graph service: the only module that knows both.

Graphs, partitionings and job results are stored as JSON-ready dicts (see
:mod:`atlas_graph.catalog` and :mod:`atlas_graph.job_work`); this module turns them into the
messages of ``atlas.graph.v1``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import duration_pb2, json_format

from atlas.common.v1 import common_pb2
from atlas.graph.v1 import graph_service_pb2 as pb
from atlas_core.errors import InvalidArgument
from atlas_core.jobs import JobRecord
from atlas_core.proto_convert import dt_to_ts, job_status
from atlas_graph.jobs import KIND_GENERATE, KIND_IMPORT, KIND_INFER, KIND_PARTITION, KIND_TRAIN

SERVICE = "graph"
JOB_KINDS = {
    KIND_IMPORT: pb.GRAPH_JOB_KIND_IMPORT,
    KIND_GENERATE: pb.GRAPH_JOB_KIND_GENERATE,
    KIND_PARTITION: pb.GRAPH_JOB_KIND_PARTITION,
    KIND_TRAIN: pb.GRAPH_JOB_KIND_TRAIN,
    KIND_INFER: pb.GRAPH_JOB_KIND_INFER,
}
JOB_KINDS_FROM_PB = {v: k for k, v in JOB_KINDS.items()}
_ID_TYPES = {"int64": pb.ID_TYPE_INT64, "string": pb.ID_TYPE_STRING}
_METHODS = {"metis": pb.PARTITION_METHOD_METIS, "random": pb.PARTITION_METHOD_RANDOM}
KINDS = {pb.ID_KIND_NODE: "node", pb.ID_KIND_EDGE: "edge"}


def _ts(iso: str | None) -> Any:
    return dt_to_ts(datetime.fromisoformat(iso)) if iso else None


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def artifact(raw: dict[str, Any] | None) -> common_pb2.ArtifactRef:
    raw = raw or {}
    return common_pb2.ArtifactRef(
        uri=raw.get("uri", ""),
        sha256=raw.get("sha256", ""),
        size_bytes=int(raw.get("size_bytes", 0)),
        media_type=raw.get("media_type", ""),
    )


def _lineage(raw: dict[str, Any], create_time: Any) -> common_pb2.Lineage:
    lineage = common_pb2.Lineage(operation=raw.get("operation", ""))
    for parent in raw.get("parents", []):
        entry = lineage.parents.add(role=parent.get("role", ""))
        if "graph_id" in parent:
            entry.graph.CopyFrom(common_pb2.GraphRef(graph_id=parent["graph_id"]))
        else:
            entry.artifact.CopyFrom(artifact(parent))
    if raw.get("job_id"):
        lineage.produced_by.CopyFrom(common_pb2.JobRef(service=SERVICE, job_id=raw["job_id"]))
    if create_time is not None:
        lineage.create_time.CopyFrom(create_time)
    return lineage


# -- graphs and partitionings ----------------------------------------------------------------


def graph_to_pb(raw: dict[str, Any]) -> pb.Graph:
    created = _ts(raw.get("create_time"))
    msg = pb.Graph(
        graph_id=raw["graph_id"],
        name=raw["name"],
        num_nodes=raw["num_nodes"],
        num_edges=raw["num_edges"],
        node_types=raw.get("node_types", ["_N"]),
        edge_types=raw.get("edge_types", ["_N:_E:_N"]),
        id_type=_ID_TYPES.get(raw.get("id_type", ""), pb.ID_TYPE_UNSPECIFIED),
        node_feature_dims=raw.get("node_feature_dims", 0),
        num_classes=raw.get("num_classes", 0),
        has_masks=bool(raw.get("has_masks")),
        artifacts=[artifact(a) for a in raw.get("artifacts", [])],
        lineage=_lineage(raw.get("lineage", {}), created),
        import_stats={k: int(v) for k, v in raw.get("import_stats", {}).items()},
        node_type_info=[
            pb.NodeTypeInfo(
                node_type=t["node_type"],
                num_nodes=t["num_nodes"],
                id_type=_ID_TYPES.get(t["id_type"], pb.ID_TYPE_UNSPECIFIED),
                feature_dims=t["feature_dims"],
                num_classes=t["num_classes"],
                has_masks=t["has_masks"],
            )
            for t in raw.get("node_type_info", [])
        ],
        edge_type_counts={k: int(v) for k, v in raw.get("edge_type_counts", {}).items()},
    )
    if created is not None:
        msg.create_time.CopyFrom(created)
    return msg


def estimate_to_pb(raw: dict[str, Any]) -> pb.PartitionEstimate:
    return pb.PartitionEstimate(
        peak_memory_bytes=raw["peak_memory_bytes"],
        disk_bytes=raw["disk_bytes"],
        memory_limit_bytes=raw["memory_limit_bytes"],
        fits=raw["peak_memory_bytes"] <= raw["memory_limit_bytes"],
        range_map_bytes=raw["range_map_bytes"],
    )


def partitioning_to_pb(raw: dict[str, Any]) -> pb.Partitioning:
    spec = raw["spec"]
    created = _ts(raw.get("create_time"))
    msg = pb.Partitioning(
        partitioning_id=raw["partitioning_id"],
        graph_id=raw["graph_id"],
        spec=pb.PartitionGraphSpec(
            graph_id=raw["graph_id"],
            num_partitions=spec["num_partitions"],
            method=_METHODS.get(spec["method"], pb.PARTITION_METHOD_UNSPECIFIED),
            num_hops=spec["num_hops"],
            balance_train=spec["balance_train"],
            balance_edges=spec["balance_edges"],
        ),
        node_boundaries=raw["node_boundaries"],
        edge_boundaries=raw["edge_boundaries"],
        partition_config=artifact(raw["partition_config"]),
        edge_cut=raw["edge_cut"],
        balance=raw["balance"],
        estimate=estimate_to_pb(raw["estimate"]),
        elapsed=_duration(raw["elapsed_s"]),
        peak_memory_bytes=raw["peak_memory_bytes"],
        lineage=_lineage(
            {
                "operation": f"partition({spec['method']}, {spec['num_partitions']})",
                "parents": [{"role": "graph", "graph_id": raw["graph_id"]}],
                "job_id": raw.get("job_id"),
            },
            created,
        ),
    )
    for p in raw["partitions"]:
        msg.partitions.append(
            pb.Partition(
                index=p["index"],
                num_nodes=p["num_nodes"],
                num_edges=p["num_edges"],
                node_ranges={k: pb.IdRange(**v) for k, v in p["node_ranges"].items()},
                edge_ranges={k: pb.IdRange(**v) for k, v in p["edge_ranges"].items()},
                artifact=artifact(p["artifact"]),
                id_map=artifact(p["id_map"]),
            )
        )
    if created is not None:
        msg.create_time.CopyFrom(created)
    return msg


# -- jobs ------------------------------------------------------------------------------------


def train_result_to_pb(raw: dict[str, Any]) -> pb.TrainGraphResult:
    msg = pb.TrainGraphResult(
        metrics={k: float(v) for k, v in raw.get("metrics", {}).items()},
        epoch_time=_duration(raw.get("epoch_time_s", 0.0)),
        checkpoints=[artifact(c) for c in raw.get("checkpoints", [])],
        ip_config=raw.get("ip_config", ""),
        launch_command=raw.get("launch_command", ""),
    )
    for name in ("model_bundle", "embeddings", "predictions", "serving_bundle"):
        if raw.get(name):
            getattr(msg, name).CopyFrom(artifact(raw[name]))
    group = raw.get("embeddings_feature_group")
    if group:
        msg.embeddings_feature_group.CopyFrom(
            common_pb2.FeatureGroupRef(name=group["name"], version=group["version"])
        )
    for ntype, ref in raw.get("embeddings_by_type", {}).items():
        msg.embeddings_by_type[ntype].CopyFrom(artifact(ref))
    for ntype, typed in raw.get("embeddings_feature_groups_by_type", {}).items():
        msg.embeddings_feature_groups_by_type[ntype].CopyFrom(
            common_pb2.FeatureGroupRef(name=typed["name"], version=typed["version"])
        )
    return msg


def job_to_pb(record: JobRecord) -> pb.GraphJob:
    job = pb.GraphJob(
        status=job_status(record), kind=JOB_KINDS.get(record.kind, pb.GRAPH_JOB_KIND_UNSPECIFIED)
    )
    if record.kind in JOB_KINDS:
        json_format.ParseDict(record.spec, getattr(job, record.kind), ignore_unknown_fields=True)
    result = record.result or {}
    if "graph" in result:
        job.graph.CopyFrom(graph_to_pb(result["graph"]))
    elif "partitioning" in result:
        job.partitioning.CopyFrom(partitioning_to_pb(result["partitioning"]))
    elif "train_result" in result:
        job.train_result.CopyFrom(train_result_to_pb(result["train_result"]))
    return job


def job_graph_id(record: JobRecord) -> str:
    """The graph a job works on (or produced)."""
    spec = record.spec or {}
    graph_id = spec.get("graph_id") or spec.get("ref", {}).get("graph_id", "")
    if not graph_id and record.result and "graph" in record.result:
        graph_id = record.result["graph"]["graph_id"]
    return str(graph_id)


def event_epoch_metrics(payload: dict[str, Any]) -> tuple[int, dict[str, float]]:
    """(epoch, numeric metrics) of a job progress event."""
    skip = {"progress", "epoch", "epochs", "batch"}
    metrics = {
        k: float(v)
        for k, v in payload.items()
        if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    return int(payload.get("epoch", 0) or 0), metrics


def submit_spec(request: pb.SubmitGraphJobRequest) -> tuple[str, Any]:
    """(job kind, spec message) of a submit request."""
    which = request.WhichOneof("spec")
    if which is None:
        raise InvalidArgument(
            "give one of import_graph, generate_graph, partition_graph, train, infer",
            reason="NO_SPEC",
        )
    return which, getattr(request, which)
