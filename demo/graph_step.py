"""Demo step for the graph service: Zachary's karate club (real data shipped with networkx)
is imported under its members' string ids, partitioned into 2 parts with contiguous id
ranges, and a GraphSAGE model is trained by a DGL trainer against 2 graph servers; the
predicted club of every member comes back under the ORIGINAL ids."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from atlas.common.v1 import common_pb2
from atlas.graph.v1 import graph_service_pb2 as pb
from atlas_core.clients.graph import GraphClient
from atlas_core.config import S3Settings
from atlas_core.launcher import RunState, ensure_credentials
from atlas_core.rpc import ClientSettings
from atlas_core.storage import open_artifact_store


def _done(client: GraphClient, job: pb.GraphJob) -> pb.GraphJob:
    job = client.wait_job(job.status.job_id, timeout=300)
    if job.status.state != common_pb2.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"graph job failed: {job.status.error.message}")
    return job


def _upload(store: Any, key: str, table: pa.Table) -> pb.TableSource:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    ref = store.put_bytes(key, buf.getvalue())
    return pb.TableSource(
        artifacts=[common_pb2.ArtifactRef(uri=ref.uri, sha256=ref.sha256, size_bytes=ref.size)]
    )


def run(state: RunState, data_dir: Path, shared: dict[str, Any]) -> None:
    creds = ensure_credentials(data_dir)
    address = next(p.address for p in state.processes if p.name == "graph")
    client = GraphClient(ClientSettings(target=address, token=creds.admin_token))
    store = open_artifact_store(
        S3Settings(
            endpoint=state.s3_endpoint,
            access_key=creds.s3_access_key,
            secret_key=creds.s3_secret_key,
        )
    )
    karate = nx.karate_club_graph()
    members = [f"member-{i}" for i in karate.nodes]
    clubs = [karate.nodes[i]["club"] for i in karate.nodes]
    src, dst = zip(*karate.edges)
    edges = _upload(
        store,
        "demo/karate/edges.parquet",
        pa.table({"src": [members[i] for i in src], "dst": [members[i] for i in dst]}),
    )
    nodes = _upload(
        store,
        "demo/karate/members.parquet",
        pa.table(
            {
                "member": members,
                "club": clubs,
                "onehot": np.eye(len(members), dtype=np.float32).tolist(),
            }
        ),
    )
    graph = _done(
        client,
        client.import_graph(
            pb.ImportGraphSpec(
                name="karate-club",
                id_type=pb.ID_TYPE_STRING,
                edges=[pb.EdgeTableSpec(source=edges, src_column="src", dst_column="dst")],
                nodes=[
                    pb.NodeTableSpec(
                        source=nodes,
                        id_column="member",
                        feature_columns=["onehot"],
                        label_column="club",
                    )
                ],
                edge_policy=pb.EdgePolicy(add_reverse_edges=True),
                train_fraction=0.5,
                val_fraction=0.1,
                split_seed=0,
            )
        ),
    ).graph
    print(
        f"imported Zachary's karate club: {graph.num_nodes} members (string ids), "
        f"{graph.num_edges} directed edges, {graph.num_classes} clubs"
    )

    part = _done(
        client, client.partition(pb.PartitionGraphSpec(graph_id=graph.graph_id, num_partitions=2))
    ).partitioning
    one = client.translate(graph.graph_id, part.partitioning_id, ["member-0", "member-33"])
    print(
        f"METIS into 2 partitions: node id ranges {list(part.node_boundaries)}, edge cut "
        f"{part.edge_cut}; member-0 -> new id {one.new_ids[0]} (partition "
        f"{one.partitions[0]}), member-33 -> {one.new_ids[1]} (partition {one.partitions[1]})"
    )

    job = _done(
        client,
        client.train(
            pb.TrainGraphSpec(
                ref=common_pb2.GraphRef(
                    graph_id=graph.graph_id, partitioning_id=part.partitioning_id
                ),
                num_trainers=2,
                model=pb.GNN_MODEL_GRAPHSAGE,
                fan_outs=[10, 10],
                hidden_dims=16,
                epochs=30,
                batch_size=8,
                learning_rate=0.05,
                dropout=0.0,
                write_predictions=True,
                seed=0,
            )
        ),
    )
    result = job.train_result
    preds = pq.read_table(
        io.BytesIO(store.get_bytes(store.key_for_uri(result.predictions.uri)))
    ).to_pandas()
    names = sorted(set(clubs))
    truth = dict(zip(members, clubs))
    right = sum(names[label] == truth[member] for member, label in zip(preds["id"], preds["label"]))
    print(
        f"GraphSAGE, 2 trainers x 2 graph servers, 30 epochs: test accuracy "
        f"{result.metrics['test_accuracy']:.2f}; predicted club right for {right}/"
        f"{len(preds)} members (by original id, e.g. {preds['id'][0]} -> "
        f"{names[preds['label'][0]]})"
    )
    shared["graph_model_bundle"] = result.model_bundle
