"""What a train job learns (``TrainGraphSpec.task``) and the link-prediction options with
their defaults: shared by submission checks and the job, without the training imports."""

from __future__ import annotations

from typing import Any

from atlas.graph.v1 import graph_service_pb2 as pb

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
    }
