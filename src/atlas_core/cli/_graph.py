"""`atlas graph ...`: graphs, partitionings, id translation and graph jobs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from google.protobuf import json_format
from google.protobuf.message import Message

from atlas.common.v1 import common_pb2
from atlas.graph.v1 import graph_service_pb2 as pb
from atlas_core.cli._connect import add_connection_args, client_settings
from atlas_core.cli._output import show, structured
from atlas_core.clients.graph import GraphClient

_MODELS = {"graphsage": pb.GNN_MODEL_GRAPHSAGE, "gat": pb.GNN_MODEL_GAT, "rgcn": pb.GNN_MODEL_RGCN}
_TASKS = {
    "node_classification": pb.GRAPH_TASK_NODE_CLASSIFICATION,
    "link_prediction": pb.GRAPH_TASK_LINK_PREDICTION,
}
_METHODS = {"metis": pb.PARTITION_METHOD_METIS, "random": pb.PARTITION_METHOD_RANDOM}


def _client(args: argparse.Namespace) -> GraphClient:
    return GraphClient(client_settings(args, "graph"))


def _print(args: argparse.Namespace, message: Message) -> None:
    show(args, message, default="json")


def _submitted(client: GraphClient, job: pb.GraphJob, wait: bool) -> int:
    print(f"submitted job {job.status.job_id}")
    return _follow(client, job.status.job_id) if wait else 0


def _follow(client: GraphClient, job_id: str) -> int:
    job = None
    for event in client.watch(job_id):
        job = event.job
        state = common_pb2.JobState.Name(job.status.state).removeprefix("JOB_STATE_")
        print(f"{state:<10} {job.status.progress.fraction:6.1%}  {job.status.progress.message}")
    if job is None:
        return 1
    if job.status.state != common_pb2.JOB_STATE_SUCCEEDED:
        print(f"error: {job.status.error.code}: {job.status.error.message}", file=sys.stderr)
        return 1
    result = job.WhichOneof("result")
    if result == "graph":
        print(
            f"graph {job.graph.graph_id}: {job.graph.num_nodes} nodes, {job.graph.num_edges} edges"
        )
    elif result == "partitioning":
        print(
            f"partitioning {job.partitioning.partitioning_id}: node boundaries "
            f"{list(job.partitioning.node_boundaries)}"
        )
    elif result == "train_result":
        r = job.train_result
        print("metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(r.metrics.items())))
        for name in ("model_bundle", "predictions", "embeddings", "serving_bundle"):
            if getattr(r, name).uri:
                print(f"{name}: {getattr(r, name).uri}")
        if r.embeddings_feature_group.name:
            group = r.embeddings_feature_group
            print(f"embeddings_feature_group: {group.name} v{group.version}")
    return 0


def cmd_graphs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        graphs = list(client.list_graphs(args.prefix))
        if structured(args, graphs):
            return 0
        for g in graphs:
            print(
                f"{g.graph_id:<20} {g.name:<20} {g.num_nodes:>11} nodes {g.num_edges:>12} "
                f"edges  {g.num_classes} classes"
            )
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print(args, client.get_graph(args.graph_id))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    spec = pb.GenerateGraphSpec(
        name=args.name,
        nodes=args.nodes,
        communities=args.communities,
        average_degree=args.degree,
        feature_dims=args.feature_dims,
        seed=args.seed,
    )
    with _client(args) as client:
        return _submitted(client, client.generate(spec), args.wait)


def cmd_import(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    spec = json_format.Parse(text, pb.ImportGraphSpec())
    with _client(args) as client:
        return _submitted(client, client.import_graph(spec), args.wait)


def _partition_spec(args: argparse.Namespace) -> pb.PartitionGraphSpec:
    return pb.PartitionGraphSpec(
        graph_id=args.graph_id,
        num_partitions=args.parts,
        method=_METHODS[args.method],
        max_memory_bytes=args.max_memory_bytes,
    )


def cmd_estimate(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print(args, client.estimate_partitioning(_partition_spec(args)))
    return 0


def cmd_partition(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _submitted(client, client.partition(_partition_spec(args)), args.wait)


def cmd_partitionings(args: argparse.Namespace) -> int:
    with _client(args) as client:
        partitionings = list(client.list_partitionings(args.graph_id))
        if structured(args, partitionings):
            return 0
        for p in partitionings:
            print(
                f"{p.partitioning_id:<20} {len(p.partitions)} parts  nodes "
                f"{list(p.node_boundaries)}  edge cut {p.edge_cut}"
            )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    spec = pb.TrainGraphSpec(
        ref=common_pb2.GraphRef(graph_id=args.graph_id, partitioning_id=args.partitioning_id),
        num_trainers=args.trainers,
        model=_MODELS[args.model],
        fan_outs=[int(f) for f in args.fan_outs.split(",")],
        hidden_dims=args.hidden,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        write_predictions=True,
        write_embeddings=args.embeddings,
        skip_serving_bundle=args.no_serving_bundle,
        embeddings_feature_group=args.embeddings_group,
        seed=args.seed,
        task=_TASKS[args.task],
        target_node_type=args.target_type,
    )
    if args.task == "link_prediction":
        spec.link_prediction.CopyFrom(
            pb.LinkPredictionSpec(
                test_fraction=args.test_fraction,
                num_negatives=args.negatives,
                target_edge_type=args.target_edge_type,
            )
        )
    with _client(args) as client:
        return _submitted(client, client.train(spec), args.wait)


def cmd_translate(args: argparse.Namespace) -> int:
    ids: list[int] | list[str]
    try:
        ids = [int(v) for v in args.ids]
    except ValueError:
        ids = list(args.ids)
    with _client(args) as client:
        got = client.translate(
            args.graph_id,
            args.partitioning_id,
            ids,
            kind="edge" if args.edges else "node",
            to_original=args.to_original,
        )
    for i in range(len(ids)):
        print(
            f"original {got.originals[i]!s:<20} new {got.new_ids[i]:<12} "
            f"partition {got.partitions[i]:<4} local {got.local_ids[i]}"
        )
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        jobs = list(client.list_jobs(args.graph))
        if structured(args, jobs):
            return 0
        for j in jobs:
            state = common_pb2.JobState.Name(j.status.state).removeprefix("JOB_STATE_")
            kind = pb.GraphJobKind.Name(j.kind).removeprefix("GRAPH_JOB_KIND_").lower()
            print(f"{j.status.job_id:<36} {kind:<10} {state:<10} {j.status.progress.message}")
    return 0


def cmd_job(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.watch:
            return _follow(client, args.job_id)
        _print(args, client.get_job(args.job_id))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(common_pb2.JobState.Name(client.cancel_job(args.job_id).status.state))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(f"deleted {args.graph_id} and {client.delete_graph(args.graph_id)} partitionings")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    graph = sub.add_parser("graph", help="graphs, partitionings, distributed GNN jobs")
    cmds = graph.add_subparsers(dest="graph_command", metavar="<graph command>", required=True)

    def add(name: str, fn, help_text: str, wait: bool = False) -> argparse.ArgumentParser:
        p = cmds.add_parser(name, help=help_text, description=help_text)
        add_connection_args(p)
        p.set_defaults(func=fn)
        if wait:
            p.add_argument("--wait", action="store_true", help="follow the job until it ends")
        return p

    add("list", cmd_graphs, "list graphs").add_argument("--prefix", default="")
    add("describe", cmd_describe, "show a graph").add_argument("graph_id")
    p = add("generate", cmd_generate, "generate a stochastic-block-model graph", wait=True)
    p.add_argument("--name", default="sbm")
    p.add_argument("--nodes", type=int, default=10_000)
    p.add_argument("--communities", type=int, default=8)
    p.add_argument("--degree", type=float, default=10.0)
    p.add_argument("--feature-dims", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    add(
        "import", cmd_import, "import a graph from a JSON ImportGraphSpec (file or -)", wait=True
    ).add_argument("file")
    for name, fn, text in (
        ("estimate", cmd_estimate, "estimate a partitioning's memory"),
        ("partition", cmd_partition, "partition a graph into P parts"),
    ):
        p = add(name, fn, text, wait=name == "partition")
        p.add_argument("graph_id")
        p.add_argument("--parts", type=int, default=2)
        p.add_argument("--method", choices=sorted(_METHODS), default="metis")
        p.add_argument("--max-memory-bytes", type=int, default=0)
    add("partitionings", cmd_partitionings, "list a graph's partitionings").add_argument("graph_id")
    p = add("train", cmd_train, "train a GNN on a partitioning (DGL distributed)", wait=True)
    p.add_argument("graph_id")
    p.add_argument("partitioning_id")
    p.add_argument("--trainers", type=int, default=1)
    p.add_argument("--model", choices=sorted(_MODELS), default="graphsage")
    p.add_argument("--task", choices=sorted(_TASKS), default="node_classification")
    p.add_argument(
        "--target-type", default="", help="heterogeneous graphs: the node type to classify"
    )
    p.add_argument(
        "--test-fraction", type=float, default=0.0, help="link prediction: held-out pairs"
    )
    p.add_argument("--negatives", type=int, default=0, help="link prediction: negatives per edge")
    p.add_argument(
        "--target-edge-type",
        default="",
        help="link prediction on heterogeneous graphs: the edge type to score, src:rel:dst",
    )
    p.add_argument("--fan-outs", default="10,10", help="per layer, comma-separated")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=512, help="global: split over the trainers")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--embeddings", action="store_true", help="also write node embeddings")
    p.add_argument(
        "--no-serving-bundle", action="store_true", help="do not write the serving bundle"
    )
    p.add_argument(
        "--embeddings-group", default="", help="also write node embeddings into this feature group"
    )
    p = add("translate", cmd_translate, "translate original <-> new ids")
    p.add_argument("graph_id")
    p.add_argument("partitioning_id")
    p.add_argument("ids", nargs="+")
    p.add_argument("--to-original", action="store_true", help="the ids are new ids")
    p.add_argument("--edges", action="store_true", help="edge ids instead of node ids")
    add("jobs", cmd_jobs, "list graph jobs").add_argument("--graph", default="")
    p = add("job", cmd_job, "show (or --watch) a graph job")
    p.add_argument("job_id")
    p.add_argument("--watch", action="store_true")
    add("cancel", cmd_cancel, "cancel a graph job").add_argument("job_id")
    add("delete", cmd_delete, "delete a graph and its partitionings").add_argument("graph_id")
