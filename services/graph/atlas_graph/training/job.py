"""A train (or infer) graph job inside its job subprocess: fetch the partitions, run the
local cluster, relay progress and checkpoints, then publish the model bundle, the serving
bundle (train jobs) and the embeddings/predictions mapped back to ORIGINAL node ids."""

from __future__ import annotations

import os
import shutil
import signal
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from atlas.graph.v1 import graph_service_pb2 as pb
from atlas_core.errors import FailedPrecondition, InvalidArgument
from atlas_core.jobs import JobCancelled, JobContext
from atlas_graph.embedding_features import write_embedding_features
from atlas_graph.idmap import IdTranslation, RangeMap, TypedRangeMap
from atlas_graph.packing import get_dir, ref_dict
from atlas_graph.partitioning import GRAPH_NAME
from atlas_graph.runtime import GraphRuntime
from atlas_graph.tasks import (
    LINK_PREDICTION,
    NODE_CLASSIFICATION,
    TASKS,
    link_options,
    target_type,
)
from atlas_graph.training.cluster import (
    ClusterFailed,
    LocalCluster,
    ip_config_text,
    launch_command,
)

MODELS = {
    pb.GNN_MODEL_UNSPECIFIED: "graphsage",
    pb.GNN_MODEL_GRAPHSAGE: "graphsage",
    pb.GNN_MODEL_GAT: "gat",
    pb.GNN_MODEL_RGCN: "rgcn",
}


def _model_config(spec: pb.TrainGraphSpec, part: dict[str, Any], task: str) -> dict[str, Any]:
    hidden = spec.hidden_dims or 64
    model = {
        "model": MODELS[spec.model],
        "in_dims": part["node_feature_dims"],
        "hidden": hidden,
        # Link prediction scores edges by the output layer's dot product: it is the embedding.
        "classes": hidden if task == LINK_PREDICTION else part["num_classes"],
        "layers": len(spec.fan_outs),
        "dropout": spec.dropout,
        "heads": spec.num_heads or 4,
    }
    if part.get("hetero"):
        link = task == LINK_PREDICTION  # an encoder of every type, no target node type
        target = None if link else target_type(spec, part)
        info = {t["node_type"]: t for t in part["node_type_info"]}
        model.update(
            hetero=True,
            in_dims={t: max(1, i["feature_dims"]) for t, i in info.items()},
            classes=hidden if link else info[str(target)]["num_classes"],
            relations=[e.split(":") for e in part["edge_types"]],
            target=target,
        )
    return model


def _output_type(target: str | None, link: dict[str, Any] | None) -> str | None:
    """The node type whose outputs are a job's predictions / ``embeddings``: the classified
    type, or for link prediction on a typed graph the target edge type's source type."""
    if target is None and link and link.get("target_edge_type"):
        return str(link["target_edge_type"].split(":")[0])
    return target


def _fetch_partitions(rt: GraphRuntime, part: dict[str, Any], work: Path) -> Path:
    parts_dir = work / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    rt.artifacts.download_to_file(
        rt.artifacts.key_for_uri(part["partition_config"]["uri"]), parts_dir / f"{GRAPH_NAME}.json"
    )
    for p in part["partitions"]:
        get_dir(rt.artifacts, p["artifact"]["uri"], parts_dir / f"part{p['index']}")
        get_dir(rt.artifacts, p["id_map"]["uri"], work / "idmap" / f"part{p['index']}")
    return parts_dir / f"{GRAPH_NAME}.json"


def _download(rt: GraphRuntime, uri: str, path: Path) -> Path:
    rt.artifacts.download_to_file(rt.artifacts.key_for_uri(uri), path)
    return path


def _job_config(
    rt: GraphRuntime,
    ctx: JobContext,
    spec: pb.TrainGraphSpec | None,
    infer: pb.InferGraphSpec | None,
    part: dict[str, Any],
    work: Path,
    part_config: Path,
) -> dict[str, Any]:
    import torch

    out = work / "out"
    out.mkdir(exist_ok=True)
    cfg: dict[str, Any] = {
        "graph_name": GRAPH_NAME,
        "part_config": str(part_config),
        "ip_config": str(work / "ip_config.txt"),
        "work_dir": str(work),
        "out_dir": str(out),
        "num_partitions": len(part["partitions"]),
        "shm_tag": f"atl{ctx.job_id[-8:]}",
        "infer_batch_size": 512,
        "seed": 0,
    }
    if infer is not None:
        bundle = _download(rt, infer.model_bundle.uri, work / "bundle.pt")
        state = torch.load(bundle, map_location="cpu")
        extra = state.get("train", {})
        task = extra.get("task", NODE_CLASSIFICATION)
        if task == LINK_PREDICTION and infer.write_predictions:
            raise InvalidArgument(
                "infer.write_predictions: the model bundle is a link-prediction model, which "
                "has no class predictions; ask for write_embeddings",
                reason="NO_OUTPUT",
            )
        cfg.update(
            target_ntype=_output_type(state["config"].get("target"), extra.get("link")),
            task=task,
            link=extra.get("link"),
            split_seed=extra.get("split_seed", 0),
            num_servers=1,
            num_trainers=1,
            backend="gloo",
            model=state["config"],
            fan_outs=extra.get("fan_outs", [10, 10]),
            epochs=int(state["epoch"]),
            batch_size=1024,
            learning_rate=0.01,
            checkpoint_every_epochs=1,
            resume_path=str(bundle),
            write_embeddings=infer.write_embeddings,
        )
        return cfg
    assert spec is not None
    task = TASKS[spec.task]
    model = _model_config(spec, part, task)
    link = link_options(spec.link_prediction) if task == LINK_PREDICTION else None
    cfg.update(
        target_ntype=_output_type(model.get("target"), link),
        task=task,
        link=link,
        split_seed=spec.link_prediction.split_seed,
        num_servers=spec.num_servers or 1,
        num_trainers=spec.num_trainers or 1,
        backend=spec.backend or ("nccl" if torch.cuda.is_available() else "gloo"),
        model=model,
        fan_outs=list(spec.fan_outs),
        epochs=spec.epochs or 1,
        batch_size=spec.batch_size or 1024,
        learning_rate=spec.learning_rate or 0.01,
        checkpoint_every_epochs=spec.checkpoint_every_epochs or 1,
        write_embeddings=spec.write_embeddings or bool(spec.embeddings_feature_group),
        embeddings_feature_group=spec.embeddings_feature_group,
        write_serving_bundle=not spec.skip_serving_bundle and task == NODE_CLASSIFICATION,
        seed=spec.seed,
    )
    resume = ctx.last_checkpoint()
    if resume:
        cfg["resume_path"] = str(_download(rt, resume["uri"], work / "resume.pt"))
    elif spec.resume_from.uri:
        cfg["resume_path"] = str(_download(rt, spec.resume_from.uri, work / "resume.pt"))
    return cfg


def run_train_job(
    rt: GraphRuntime,
    ctx: JobContext,
    spec: pb.TrainGraphSpec | None,
    infer: pb.InferGraphSpec | None,
) -> dict[str, Any]:
    assert spec is not None or infer is not None  # a train or an infer job
    ref = spec.ref if spec is not None else infer.ref  # type: ignore[union-attr]  # asserted above
    part = rt.catalog.get_partitioning(ref.graph_id, ref.partitioning_id)
    if not part["node_feature_dims"] and not part.get("hetero"):
        raise FailedPrecondition("the graph has no node features", reason="NOT_TRAINABLE")
    work = rt.work_root / "jobs" / ctx.job_id
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        ctx.report(0.01, "fetching partitions")
        part_config = _fetch_partitions(rt, part, work)
        cfg = _job_config(rt, ctx, spec, infer, part, work, part_config)
        if cfg["task"] == NODE_CLASSIFICATION and not cfg["model"]["classes"]:
            raise FailedPrecondition(
                "the graph has no labels to classify nodes by", reason="NOT_TRAINABLE"
            )
        hosts = list(spec.hosts) if spec is not None else []
        (work / "ip_config.txt").write_text(ip_config_text([], cfg["num_partitions"]))
        threads = max(1, (os.cpu_count() or 1) // cfg["num_trainers"])
        cluster = LocalCluster(cfg, work, omp_threads=threads)
        relay = _Relay(rt, ctx, cfg)

        def _terminate(*_: object) -> None:  # the job is cancelled: take the cluster with us
            cluster.kill()
            os._exit(143)

        previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            cluster.start()
            ctx.report(
                0.02,
                f"started {len(cluster.servers)} graph servers and "
                f"{len(cluster.trainers)} trainers",
                pids=cluster.pids,
            )
            cluster.run(relay.on_event, ctx.cancelled, rt.settings.train.server_exit_grace_s)
        finally:
            cluster.kill()
            signal.signal(signal.SIGTERM, previous)
        if ctx.cancelled():
            raise JobCancelled("cancelled by request; every server and trainer was stopped")
        ctx.report(0.95, "writing outputs mapped to original ids")
        result = _publish(rt, ctx, cfg, part, work, relay, infer)
        result["ip_config"] = (
            ip_config_text(hosts, 0) if hosts else (work / "ip_config.txt").read_text()
        )
        result["launch_command"] = launch_command(cfg, cfg["num_trainers"])
    except JobCancelled:
        shutil.rmtree(work, ignore_errors=True)
        raise
    except ClusterFailed as exc:
        _keep_logs(work)
        raise ClusterFailed(f"{exc} (logs kept in {work})") from exc
    except BaseException:
        _keep_logs(work)
        raise
    shutil.rmtree(work, ignore_errors=True)
    return {"train_result": result}


def _keep_logs(work: Path) -> None:
    """A failed job keeps its logs, job.json and ip_config for diagnosis; the partition and
    id-map copies (the bulk, re-downloadable) are removed."""
    for bulky in ("parts", "idmap"):
        shutil.rmtree(work / bulky, ignore_errors=True)


class _Relay:
    """Turns rank 0's events into job progress, checkpoints and final metrics."""

    def __init__(self, rt: GraphRuntime, ctx: JobContext, cfg: dict[str, Any]) -> None:
        self.rt, self.ctx, self.cfg = rt, ctx, cfg
        self.metrics: dict[str, float] = {}
        self.epoch_seconds: list[float] = []
        self.checkpoints: list[dict[str, Any]] = []

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.pop("event")
        epochs = max(1, self.cfg["epochs"])
        if kind == "epoch":
            self.epoch_seconds.append(event["seconds"])
            self.metrics.update({k: event[k] for k in ("loss", "train_accuracy") if k in event})
            self.ctx.report(
                min(0.9, 0.05 + 0.85 * event["epoch"] / epochs),
                f"epoch {event['epoch']}/{epochs}: loss {event['loss']:.4f}",
                **event,
            )
        elif kind == "batch":
            self.ctx.report(None, f"epoch {event['epoch']} batch {event['batch']}", **event)
        elif kind == "checkpoint":
            key = f"graph-jobs/{self.ctx.job_id}/checkpoint-epoch{event['epoch']}.pt"
            ref = self.rt.artifacts.put_file(key, event["path"])
            self.checkpoints.append(ref_dict(ref))
            self.ctx.checkpoint({"epoch": event["epoch"], "uri": ref.uri, "sha256": ref.sha256})
        elif kind == "metrics":
            self.metrics.update(event)
            self.ctx.report(
                0.93,
                "final metrics: " + ", ".join(f"{k} {v:.3f}" for k, v in event.items()),
                **event,
            )


def _publish(
    rt: GraphRuntime,
    ctx: JobContext,
    cfg: dict[str, Any],
    part: dict[str, Any],
    work: Path,
    relay: _Relay,
    infer: pb.InferGraphSpec | None,
) -> dict[str, Any]:
    import torch

    out = Path(cfg["out_dir"])
    ranks = range(cfg["num_trainers"])
    link = cfg.get("task") == LINK_PREDICTION
    new_ids = np.concatenate([np.load(out / f"rank{r}-ids.npy") for r in ranks])
    scores = None if link else np.concatenate([np.load(out / f"rank{r}-scores.npy") for r in ranks])
    ranges = {"node": RangeMap(part["node_boundaries"]), "edge": RangeMap(part["edge_boundaries"])}
    node_kind = "node"
    if part.get("hetero"):  # the target type's own ids
        bounds = part["type_boundaries"]
        ranges = TypedRangeMap(bounds["node"], bounds["edge"]).kinds()
        node_kind = f"node:{cfg['target_ntype']}"
    translation = IdTranslation(work / "idmap", ranges)
    originals, _, _ = translation.new_to_original(node_kind, new_ids)
    keep = np.ones(len(new_ids), bool)
    if infer is not None and (infer.node_int64_ids or infer.node_string_ids):
        wanted = list(infer.node_int64_ids) or [s.encode() for s in infer.node_string_ids]
        wanted_new, _, _ = translation.original_to_new(node_kind, np.asarray(wanted))
        keep = np.isin(new_ids, wanted_new)
    ids = originals[keep]
    id_column = pa.array(ids.astype(str).tolist() if ids.dtype.kind == "S" else ids)
    if ids.dtype.kind == "S":
        id_column = pa.array([v.decode() for v in ids])
    result: dict[str, Any] = {
        "metrics": relay.metrics,
        "checkpoints": relay.checkpoints,
        "epoch_time_s": float(np.mean(relay.epoch_seconds)) if relay.epoch_seconds else 0.0,
    }
    base = f"graph-jobs/{ctx.job_id}"
    want_pred = infer.write_predictions if infer is not None else not link
    if want_pred and scores is not None:
        kept = scores[keep]
        table = pa.table(
            {
                "id": id_column,
                "label": pa.array(kept.argmax(1).astype(np.int64)),
                "scores": pa.FixedSizeListArray.from_arrays(
                    pa.array(kept.reshape(-1)), kept.shape[1]
                ),
            }
        )
        pq.write_table(table, out / "predictions.parquet")
        result["predictions"] = ref_dict(
            rt.artifacts.put_file(f"{base}/predictions.parquet", out / "predictions.parquet"),
            "application/vnd.apache.parquet",
        )
    if cfg.get("write_embeddings"):
        emb = np.concatenate([np.load(out / f"rank{r}-emb.npy") for r in ranks])[keep]
        table = pa.table(
            {
                "id": id_column,
                "embedding": pa.FixedSizeListArray.from_arrays(
                    pa.array(emb.reshape(-1)), max(1, emb.shape[1])
                ),
            }
        )
        pq.write_table(table, out / "embeddings.parquet")
        result["embeddings"] = ref_dict(
            rt.artifacts.put_file(f"{base}/embeddings.parquet", out / "embeddings.parquet"),
            "application/vnd.apache.parquet",
        )
    if infer is None:
        bundle = {
            "epoch": cfg["epochs"],
            "model": torch.load(out / "model.pt"),
            "config": cfg["model"],
            "train": {
                "fan_outs": cfg["fan_outs"],
                "task": cfg["task"],
                "link": cfg["link"],
                "split_seed": cfg["split_seed"],
            },
            "graph_id": part["graph_id"],
            "partitioning_id": part["partitioning_id"],
        }
        torch.save(bundle, out / "model_bundle.pt")
        result["model_bundle"] = ref_dict(
            rt.artifacts.put_file(f"{base}/model_bundle.pt", out / "model_bundle.pt"),
            "application/x-pytorch",
        )
    else:
        result["model_bundle"] = {
            "uri": infer.model_bundle.uri,
            "sha256": infer.model_bundle.sha256,
            "size_bytes": infer.model_bundle.size_bytes,
        }
    if cfg.get("write_serving_bundle") and scores is not None and scores.shape[1] >= 2:
        labels = np.concatenate([np.load(out / f"rank{r}-labels.npy") for r in ranks])
        result["serving_bundle"] = _serving_bundle(rt, ctx, part, originals, scores, labels, result)
    if not len(ids) and infer is not None:
        raise InvalidArgument("no node ids selected", reason="NO_NODES")
    typed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if cfg.get("write_embeddings") and part.get("hetero"):
        typed = _typed_embeddings(out, ranks, translation, part)
        result["embeddings_by_type"] = {
            ntype: _put_embeddings(rt, f"{base}/embeddings-{ntype}.parquet", out, originals, emb)
            for ntype, (originals, emb) in typed.items()
        }
    if cfg.get("embeddings_feature_group"):  # last: the one write others can see at once
        group = cfg["embeddings_feature_group"]
        assert rt.settings.data is not None  # checked when the job was submitted
        when = datetime.now(timezone.utc)
        if not typed:
            ctx.report(0.97, f"writing embeddings into feature group {group}")
            result["embeddings_feature_group"] = write_embedding_features(
                rt.settings.data,
                group,
                ids,
                emb,
                event_time=when,
                description=f"node embeddings of graph {part['graph_id']} (graph job {ctx.job_id})",
                request_id=f"{ctx.job_id}-embeddings",
            )
            return result
        groups = {}
        for ntype, (originals, vectors) in typed.items():
            name = type_group_name(group, ntype)
            ctx.report(0.97, f"writing {ntype} embeddings into feature group {name}")
            groups[ntype] = write_embedding_features(
                rt.settings.data,
                name,
                originals,
                vectors,
                event_time=when,
                description=f"{ntype} node embeddings of graph {part['graph_id']} "
                f"(graph job {ctx.job_id})",
                request_id=f"{ctx.job_id}-embeddings-{ntype}",
            )
        result["embeddings_feature_groups_by_type"] = groups
        result["embeddings_feature_group"] = groups[str(cfg["target_ntype"])]
    return result


def type_group_name(group: str, ntype: str) -> str:
    """The feature group of one node type's embeddings: ``<group>_<node type, lower-case>``
    (node type names are [A-Za-z_][A-Za-z0-9_]*, so the name is a valid group name)."""
    return f"{group}_{ntype.lower()}"


def _typed_embeddings(
    out: Path, ranks: range, translation: IdTranslation, part: dict[str, Any]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every node type's (original ids, embeddings), merged from the trainers' files."""
    typed = {}
    for info in part["node_type_info"]:
        ntype = info["node_type"]
        new_ids = np.concatenate([np.load(out / f"rank{r}-ids-{ntype}.npy") for r in ranks])
        emb = np.concatenate([np.load(out / f"rank{r}-emb-{ntype}.npy") for r in ranks])
        originals, _, _ = translation.new_to_original(f"node:{ntype}", new_ids)
        typed[ntype] = (originals, emb)
    return typed


def _put_embeddings(
    rt: GraphRuntime, key: str, out: Path, originals: np.ndarray, emb: np.ndarray
) -> dict[str, Any]:
    ids = pa.array([v.decode() for v in originals]) if originals.dtype.kind == "S" else originals
    table = pa.table(
        {
            "id": ids,
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(emb.reshape(-1)), max(1, emb.shape[1])
            ),
        }
    )
    path = out / Path(key).name
    pq.write_table(table, path)
    return ref_dict(rt.artifacts.put_file(key, path), "application/vnd.apache.parquet")


def _serving_bundle(
    rt: GraphRuntime,
    ctx: JobContext,
    part: dict[str, Any],
    originals: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    result: dict[str, Any],
) -> dict[str, Any]:
    """Every node's class probabilities as a bundle serving registers (by original id)."""
    from atlas_core.bundles.node_lookup import write_node_lookup_bundle

    ref = write_node_lookup_bundle(
        rt.artifacts,
        f"graph-jobs/{ctx.job_id}/serving_bundle.tar",
        node_ids=originals,
        probabilities=scores,
        labels=labels,
        metrics=result["metrics"],
        lineage={
            "graph_id": part["graph_id"],
            "partitioning_id": part["partitioning_id"],
            "graph_job_id": ctx.job_id,
            "model_bundle": result["model_bundle"],
        },
        signer=rt.signer,
    )
    return ref_dict(ref, "application/x-tar")
