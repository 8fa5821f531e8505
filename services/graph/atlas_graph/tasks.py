"""What a train job learns (``TrainGraphSpec.task``) and the link-prediction options with
their defaults: shared by submission checks and the job, without the training imports."""

from __future__ import annotations

from typing import Any

from atlas.graph.v1 import graph_service_pb2 as pb
from atlas_core.errors import InvalidArgument

NODE_CLASSIFICATION, LINK_PREDICTION = "node_classification", "link_prediction"
TASKS = {
    pb.GRAPH_TASK_UNSPECIFIED: NODE_CLASSIFICATION,
    pb.GRAPH_TASK_NODE_CLASSIFICATION: NODE_CLASSIFICATION,
    pb.GRAPH_TASK_LINK_PREDICTION: LINK_PREDICTION,
}
# Fewer held-out test (or training) edges than this give no meaningful AUC / MRR (or model).
MIN_LINK_EDGES = 10


def link_options(spec: pb.LinkPredictionSpec) -> dict[str, Any]:
    """The link-prediction options with their defaults filled in."""
    return {
        "test_fraction": spec.test_fraction or 0.1,
        "val_fraction": spec.val_fraction or 0.05,
        "negatives": spec.num_negatives or 1,
        "eval_negatives": spec.eval_negatives or 100,
        "target_edge_type": spec.target_edge_type,
    }


def target_type(spec: pb.TrainGraphSpec, part: dict[str, Any]) -> str:
    """The node type a heterogeneous train job classifies (named, or the only labelled one)."""
    info = {t["node_type"]: t for t in part["node_type_info"]}
    if spec.target_node_type:
        if spec.target_node_type not in info:
            raise InvalidArgument(
                f"train.target_node_type {spec.target_node_type!r} is not a node type of the "
                f"graph (node types: {sorted(info)})",
                reason="UNKNOWN_TARGET_TYPE",
            )
        return spec.target_node_type
    labelled = [t for t, i in info.items() if i["num_classes"]]
    if len(labelled) != 1:
        raise InvalidArgument(
            f"train.target_node_type is empty and the graph has {len(labelled)} labelled node "
            f"types ({labelled}): name the type to classify",
            reason="UNKNOWN_TARGET_TYPE",
        )
    return labelled[0]


def target_edge_type(spec: pb.TrainGraphSpec, part: dict[str, Any]) -> str:
    """The canonical edge type a heterogeneous link-prediction job scores (named, required)."""
    named = spec.link_prediction.target_edge_type
    etypes = sorted(part["edge_types"])
    if not named:
        raise InvalidArgument(
            "train.link_prediction.target_edge_type is empty: a heterogeneous graph scores "
            f"the edges of one type; name one of {etypes}",
            reason="UNKNOWN_EDGE_TYPE",
        )
    if named not in etypes:
        raise InvalidArgument(
            f"train.link_prediction.target_edge_type {named!r} is not an edge type of the "
            f"graph (canonical src:rel:dst; edge types: {etypes})",
            reason="UNKNOWN_EDGE_TYPE",
        )
    return named
