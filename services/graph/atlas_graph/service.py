"""The graph service's domain facade (no grpc): what every front end (gRPC, CLI, tests) uses.

Submission validates what can be checked without running the job (so a malformed spec, an
unknown graph, too many partitions or a partitioning that cannot fit fail at once with the
right code), then queues the job on the shared runner.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

from atlas.graph.v1 import graph_service_pb2 as pb
from atlas_core import lineage as lin
from atlas_core.db import IdempotencyStore
from atlas_core.errors import FailedPrecondition, InvalidArgument
from atlas_core.jobs import JobRecord, JobRunner
from atlas_graph.config import GraphSettings
from atlas_graph.embedding_features import FEATURE_GROUP_NAME
from atlas_graph.hetero import check_types, is_typed
from atlas_graph.idmap import IdTranslation, RangeMap, TypedRangeMap
from atlas_graph.jobs import (
    JOBS,
    KIND_GENERATE,
    KIND_IMPORT,
    KIND_INFER,
    KIND_PARTITION,
    KIND_TRAIN,
)
from atlas_graph.lineage import GraphLineage
from atlas_graph.packing import get_dir
from atlas_graph.partitioning import (
    Estimate,
    estimate_record,
    memory_budget,
    refuse_if_too_big,
)
from atlas_graph.runtime import GraphRuntime, open_runtime
from atlas_graph.tables import idempotency
from atlas_graph.tasks import (
    LINK_PREDICTION,
    MIN_LINK_EDGES,
    TASKS,
    link_options,
    target_edge_type,
    target_type,
)


def _check_link(spec: pb.LinkPredictionSpec, num_edges: int) -> None:
    """Refuse link-prediction options that cannot give a model and a measured AUC / MRR."""
    for name in ("test_fraction", "val_fraction"):
        value = getattr(spec, name)
        if not 0 <= value < 1:
            raise InvalidArgument(
                f"train.link_prediction.{name} {value} must be in [0, 1) (0 means the default)",
                reason="BAD_LINK_SPLIT",
            )
    for name in ("num_negatives", "eval_negatives"):
        if getattr(spec, name) < 0:
            raise InvalidArgument(
                f"train.link_prediction.{name} must be >= 0 (0 means the default)",
                reason="BAD_SIZE",
            )
    options = link_options(spec)
    test, train = options["test_fraction"], 1 - options["test_fraction"] - options["val_fraction"]
    if train <= 0:
        raise InvalidArgument(
            "train.link_prediction.test_fraction + val_fraction must be below 1, leaving edges "
            "to train on",
            reason="BAD_LINK_SPLIT",
        )
    if num_edges * min(test, train) < MIN_LINK_EDGES:
        raise InvalidArgument(
            f"train.task link prediction: the graph has {num_edges} edges, so "
            f"train.link_prediction.test_fraction {test:g} leaves about "
            f"{num_edges * test:.0f} test and {num_edges * train:.0f} training edges; it "
            f"needs at least {MIN_LINK_EDGES} of each (import more edges or change the "
            "fractions)",
            reason="NOT_ENOUGH_EDGES",
        )


class GraphService:
    def __init__(self, runtime: GraphRuntime, runner: JobRunner) -> None:
        self.rt = runtime
        self.jobs = runner
        self.idempotency = IdempotencyStore(runtime.engine, idempotency)
        self.lineage_index = GraphLineage(runtime.engine, runtime.catalog, runner)
        self._translations: dict[str, IdTranslation] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, settings: GraphSettings) -> GraphService:
        runtime = open_runtime(settings)
        runtime.artifacts.exists("atlas-startup-probe")  # fail fast on wrong S3 credentials
        runner = JOBS.runner(runtime.engine, runtime.settings, settings.jobs)
        return cls(runtime, runner)

    def start(self) -> None:
        self.jobs.start()

    def stop(self) -> None:
        self.jobs.stop()
        self.rt.close()

    # ---- jobs -------------------------------------------------------------------------------

    def submit(self, kind: str, spec: Any, request_id: str = "") -> JobRecord:
        """Validate ``spec`` (a proto spec message) and queue it; returns the job."""
        {
            KIND_IMPORT: self._check_import,
            KIND_GENERATE: self._check_generate,
            KIND_PARTITION: self.check_partition,
            KIND_TRAIN: self._check_train,
            KIND_INFER: self._check_infer,
        }[kind](spec)
        job_id = JOBS.submit(self.jobs, kind, spec, request_id)
        return self.jobs.get(job_id)

    def _check_import(self, spec: pb.ImportGraphSpec) -> None:
        if not spec.edges:
            raise InvalidArgument("import_graph.edges is empty", reason="NO_EDGES")
        for i, e in enumerate(spec.edges):
            if not e.src_column or not e.dst_column:
                raise InvalidArgument(
                    f"import_graph.edges[{i}] needs src_column and dst_column",
                    reason="MISSING_COLUMN",
                )
            if not e.source.artifacts and not e.source.uri_prefix:
                raise InvalidArgument(f"import_graph.edges[{i}].source is empty", reason="NO_INPUT")
        for i, n in enumerate(spec.nodes):
            if not n.id_column:
                raise InvalidArgument(
                    f"import_graph.nodes[{i}].id_column is empty", reason="MISSING_COLUMN"
                )
        node_types = [n.node_type for n in spec.nodes]
        edge_types = [e.edge_type for e in spec.edges]
        if is_typed(node_types, edge_types):
            check_types(node_types, edge_types)

    def _check_generate(self, spec: pb.GenerateGraphSpec) -> None:
        if spec.nodes < 2:
            raise InvalidArgument("generate_graph.nodes must be at least 2", reason="BAD_NODES")
        if spec.communities < 0 or spec.communities > spec.nodes:
            raise InvalidArgument(
                "generate_graph.communities must be in 1..nodes", reason="BAD_COMMUNITIES"
            )

    def estimate(self, spec: pb.PartitionGraphSpec) -> Estimate:
        if not spec.graph_id:
            raise InvalidArgument("graph_id is empty", reason="EMPTY_ID")
        graph = self.rt.catalog.get_graph(spec.graph_id)
        limit = spec.max_memory_bytes or memory_budget(
            self.rt.settings.partition.memory_budget_bytes
        )
        return estimate_record(graph, spec.num_partitions, limit)

    def check_partition(self, spec: pb.PartitionGraphSpec) -> None:
        refuse_if_too_big(self.estimate(spec))

    def _check_train(self, spec: pb.TrainGraphSpec) -> None:
        part = self._partitioning(spec.ref)
        if not spec.fan_outs or any(f == 0 or f < -1 for f in spec.fan_outs):
            raise InvalidArgument(
                "train.fan_outs must list one positive fan-out (or -1 for "
                "all neighbours) per layer",
                reason="BAD_FAN_OUTS",
            )
        if spec.epochs < 0 or spec.batch_size < 0 or spec.num_trainers < 0:
            raise InvalidArgument(
                "train.epochs, batch_size and num_trainers must be >= 0", reason="BAD_SIZE"
            )
        if spec.backend not in ("", "gloo", "nccl"):
            raise InvalidArgument(
                f"train.backend {spec.backend!r} is not gloo or nccl", reason="BAD_BACKEND"
            )
        if spec.task not in TASKS:
            raise InvalidArgument(
                f"train.task {spec.task} is not a GraphTask: use GRAPH_TASK_NODE_CLASSIFICATION "
                "or GRAPH_TASK_LINK_PREDICTION",
                reason="UNKNOWN_TASK",
            )
        if part.get("hetero"):
            _check_hetero_train(spec, part)
        elif spec.target_node_type:
            raise InvalidArgument(
                f"train.target_node_type {spec.target_node_type!r}: the graph is homogeneous; "
                "leave it empty",
                reason="UNKNOWN_TARGET_TYPE",
            )
        elif spec.model == pb.GNN_MODEL_RGCN:
            raise InvalidArgument(
                "train.model GNN_MODEL_RGCN needs a heterogeneous graph; use GRAPHSAGE or GAT",
                reason="HETEROGENEOUS",
            )
        if TASKS[spec.task] == LINK_PREDICTION:
            edges = int(part["edge_boundaries"][-1])
            if part.get("hetero"):
                typed = part["type_boundaries"]["edge"][spec.link_prediction.target_edge_type]
                edges = int(typed[-1])
            elif spec.link_prediction.target_edge_type:
                raise InvalidArgument(
                    f"train.link_prediction.target_edge_type "
                    f"{spec.link_prediction.target_edge_type!r}: the graph is homogeneous; "
                    "leave it empty",
                    reason="UNKNOWN_EDGE_TYPE",
                )
            _check_link(spec.link_prediction, edges)
        elif spec.HasField("link_prediction"):
            raise InvalidArgument(
                "train.link_prediction is set but train.task is not GRAPH_TASK_LINK_PREDICTION",
                reason="UNKNOWN_TASK",
            )
        elif not part["num_classes"] and not part.get("hetero"):
            raise FailedPrecondition("the graph has no labels to train on", reason="NOT_TRAINABLE")
        if not part["node_feature_dims"] and not part.get("hetero"):
            raise FailedPrecondition("the graph has no node features", reason="NOT_TRAINABLE")
        if spec.embeddings_feature_group:
            if not FEATURE_GROUP_NAME.match(spec.embeddings_feature_group):
                raise InvalidArgument(
                    f"train.embeddings_feature_group {spec.embeddings_feature_group!r} must "
                    "match [a-z][a-z0-9_]*",
                    reason="BAD_FEATURE_GROUP",
                )
            if self.rt.settings.data is None:
                raise FailedPrecondition(
                    "train.embeddings_feature_group needs the data service: set "
                    "ATLAS_GRAPH_DATA__TARGET (atlas up sets it)",
                    reason="NO_DATA_SERVICE",
                )

    def _check_infer(self, spec: pb.InferGraphSpec) -> None:
        self._partitioning(spec.ref)
        if not spec.model_bundle.uri:
            raise InvalidArgument("infer.model_bundle.uri is empty", reason="NO_MODEL")
        if not spec.write_embeddings and not spec.write_predictions:
            raise InvalidArgument(
                "infer needs write_embeddings or write_predictions", reason="NO_OUTPUT"
            )

    def _partitioning(self, ref: Any) -> dict[str, Any]:
        if not ref.graph_id or not ref.partitioning_id:
            raise InvalidArgument("ref needs graph_id and partitioning_id", reason="EMPTY_ID")
        return self.rt.catalog.get_partitioning(ref.graph_id, ref.partitioning_id)

    def all_jobs(self, kind: str | None = None, state: str | None = None) -> list[JobRecord]:
        return self.jobs.list_all(kind=kind, state=state)

    def cancel(self, job_id: str) -> JobRecord:
        record = self.jobs.get(job_id)
        if not record.finished:
            self.jobs.cancel(job_id)
        return self.jobs.get(job_id)

    # ---- graphs -----------------------------------------------------------------------------

    def lineage(
        self, lineage_id: str, children_limit: int, ancestor_depth: int = 0
    ) -> lin.LineageView:
        return lin.answer(self.lineage_index.view, lineage_id, children_limit, ancestor_depth)

    def delete_graph(self, graph_id: str, request_id: str = "") -> int:
        seen = self.idempotency.recall("DeleteGraph", request_id)
        if seen is not None:
            return int(seen["deleted"])
        running = [
            j
            for state in ("QUEUED", "RUNNING")
            for j in self.all_jobs(state=state)
            if graph_id in json.dumps(j.spec)
        ]
        if running:
            raise FailedPrecondition(
                f"graph '{graph_id}' is used by running job {running[0].id}", reason="GRAPH_IN_USE"
            )
        deleted = self.rt.catalog.delete_graph(graph_id)
        for ref in list(self.rt.artifacts.list(f"graphs/{graph_id}/")):
            self.rt.artifacts.delete(ref.key)
        self.idempotency.remember("DeleteGraph", request_id, {"deleted": deleted})
        return deleted

    # ---- id translation ---------------------------------------------------------------------

    def translation(self, graph_id: str, partitioning_id: str) -> IdTranslation:
        """The memory-mapped translation of a partitioning, fetched once into data_dir."""
        part = self.rt.catalog.get_partitioning(graph_id, partitioning_id)
        with self._lock:
            if partitioning_id not in self._translations:
                root = self.rt.work_root / "idmaps" / partitioning_id
                if not (root / "complete").exists():
                    shutil.rmtree(root, ignore_errors=True)
                    for p in part["partitions"]:
                        get_dir(self.rt.artifacts, p["id_map"]["uri"], root / f"part{p['index']}")
                    Path(root / "complete").touch()
                ranges = {
                    kind: RangeMap(self.rt.catalog.boundaries(partitioning_id, kind))
                    for kind in ("node", "edge")
                }
                if part.get("hetero"):  # per type, in each type's own ids
                    ranges = TypedRangeMap(
                        part["type_boundaries"]["node"], part["type_boundaries"]["edge"]
                    ).kinds()
                self._translations[partitioning_id] = IdTranslation(root, ranges)
            return self._translations[partitioning_id]

    def translation_kind(self, graph_id: str, partitioning_id: str, kind: str, type_: str) -> str:
        """The :class:`IdTranslation` kind of a TranslateIds request's kind and type: the bare
        kind on homogeneous graphs, ``node:<type>`` / ``edge:<src:rel:dst>`` on typed ones."""
        part = self.rt.catalog.get_partitioning(graph_id, partitioning_id)
        if not part.get("hetero"):
            if type_ not in ("", "_N", "_N:_E:_N", "_E"):
                raise InvalidArgument(
                    f"type {type_!r}: the graph is homogeneous", reason="BAD_TYPE"
                )
            return kind
        types = part["type_boundaries"][kind]
        if type_ not in types:
            raise InvalidArgument(
                f"type {type_!r}: the graph is heterogeneous; give one of its {kind} types "
                f"{sorted(types)}",
                reason="BAD_TYPE",
            )
        return f"{kind}:{type_}"


def _check_hetero_train(spec: pb.TrainGraphSpec, part: dict[str, Any]) -> None:
    if TASKS.get(spec.task) == LINK_PREDICTION:
        if spec.target_node_type:
            raise InvalidArgument(
                "train.target_node_type: link prediction scores edges of "
                "train.link_prediction.target_edge_type; leave target_node_type empty",
                reason="UNKNOWN_TARGET_TYPE",
            )
        target_edge_type(spec, part)
        return
    target = target_type(spec, part)
    info = {t["node_type"]: t for t in part["node_type_info"]}[target]
    if not info["num_classes"]:
        raise InvalidArgument(
            f"train.target_node_type {target!r} has no labels: its node table was imported "
            "without a label_column (import_graph.nodes[].label_column); pick a labelled type "
            "or re-import the table with labels",
            reason="NO_TARGET_LABELS",
        )
    if not info["has_masks"]:
        raise FailedPrecondition(
            f"node type {target!r} has no train/val/test masks", reason="NOT_TRAINABLE"
        )
