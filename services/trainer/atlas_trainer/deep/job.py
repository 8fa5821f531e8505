"""The body of a deep-learning job (run in the job subprocess, like an AutoML job).

Load and encode the data, measure activation memory with and without recomputation, train
(in this process, or in ``workers`` data-parallel processes), then write an ordinary signed
model bundle whose model is :class:`atlas_core.ml.TorchNetModel` (so serving serves it) and a
report with the per-epoch loss curve. Checkpoints go to the object store every
``checkpoint_every_epochs``; the job's own (JSON) checkpoint names the latest, so an attempt
after ``kill -9`` of the service resumes from it.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss

from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.bundles import BundleLineage, write_bundle
from atlas_core.jobs import JobContext
from atlas_core.ml import TorchNetModel
from atlas_core.storage import ArtifactRef
from atlas_trainer.data_access import load_training_data, split_target
from atlas_trainer.deep.inputs import Prepared, prepare
from atlas_trainer.deep.launch import torchrun_launch
from atlas_trainer.deep.params import DeepConfig, deep_config
from atlas_trainer.deep.plots import loss_curve_html
from atlas_trainer.runtime import TrainerRuntime

log = logging.getLogger("atlas.trainer.deep")
MEMORY_PROBE_ROWS = 256


def _ref(ref: ArtifactRef) -> dict[str, Any]:
    return {"uri": ref.uri, "sha256": ref.sha256, "size": ref.size}


class _Progress:
    """Epoch and checkpoint events of one job: reported, stored in the job's checkpoint."""

    def __init__(self, rt: TrainerRuntime, ctx: JobContext, cfg: DeepConfig) -> None:
        self.rt, self.ctx, self.cfg = rt, ctx, cfg
        saved = (ctx.last_checkpoint() or {}).get("deep") or {}
        self.checkpoints: list[dict[str, Any]] = list(saved.get("checkpoints") or [])
        self.resumed_from = int(saved.get("epoch") or 0)
        self.restarts = int(saved.get("restarts") or 0)
        self.work_files: dict[str, str] = {}  # data-parallel jobs: the workers' files
        # A sharded last layer: each worker's classes and weight elements (rank 0's report).
        self.classifier_shards: list[dict[str, int]] = []

    def resume_blob(self) -> bytes | None:
        if not self.checkpoints:
            return None
        uri = self.checkpoints[-1]["uri"]
        return self.rt.artifacts.get_bytes(self.rt.artifacts.key_for_uri(uri))

    def epoch(self, record: dict[str, float]) -> None:
        epoch = int(record["epoch"])
        metrics = {k: float(v) for k, v in record.items() if k != "epoch"}
        self.ctx.report(
            min(0.9, epoch / self.cfg.epochs * 0.9),
            f"epoch {epoch}/{self.cfg.epochs} train_loss={record['train_loss']:.4f} "
            f"val_accuracy={record['validation_accuracy']:.4f}",
            event={"type": "epoch_finished", "epoch": epoch, "metrics": metrics},
        )

    def checkpoint(self, blob: bytes, epoch: int) -> None:
        ref = self.rt.artifacts.put_bytes(
            f"models/{self.ctx.job_id}/checkpoints/epoch-{epoch:04d}.pt", blob
        )
        self.checkpoints.append({**_ref(ref), "epoch": epoch})
        self.save_state(epoch)
        self.ctx.report(
            None,
            f"checkpoint saved at epoch {epoch}",
            event={"type": "checkpoint_saved", "epoch": epoch, "uri": ref.uri},
        )

    def save_state(self, epoch: int | None = None) -> None:
        last = self.checkpoints[-1]["epoch"] if self.checkpoints else 0
        self.ctx.checkpoint(
            {
                "deep": {
                    "checkpoints": self.checkpoints,
                    "epoch": last if epoch is None else epoch,
                    "restarts": self.restarts,
                }
            }
        )


def train_deep(
    rt: TrainerRuntime,
    ctx: JobContext,
    spec: pb.TrainingJobSpec,
    started: float,
    base_model: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The job; ``base_model`` (the replaced serving version, resolved at submission) is
    recorded as a lineage parent, not used to warm-start."""
    import torch

    cfg = deep_config(spec)
    # One thread per process unless the job asked for more cores: data-parallel workers are
    # how a job uses cores, and OpenMP threads spinning on a shared host only slow each other.
    torch.set_num_threads(max(1, int(spec.resources.cpus or 1)) if cfg.workers == 1 else 1)
    ctx.report(0.01, "loading training data")
    data = load_training_data(rt, spec)
    X, y = split_target(data, spec)
    prepared = prepare(
        X, y, cfg, target=spec.target_column, max_classes=rt.settings.jobs.deep_max_classes
    )
    tensors = tensor_data(prepared)
    if cfg.params.pretrain_epochs:
        from atlas_trainer.deep.pretrain import pretrain_embedding

        ctx.report(0.015, f"pretraining word vectors ({cfg.params.pretrain_epochs} epochs)")
        tensors.embedding = pretrain_embedding(
            tensors.train_inputs,
            prepared.info.vocab_size,
            cfg.params.embedding_dim,
            epochs=cfg.params.pretrain_epochs,
            seed=cfg.seed,
        ).numpy()
    progress = _Progress(rt, ctx, cfg)
    resume = progress.resume_blob()
    from atlas_trainer.deep.loop import new_model, train_loop
    from atlas_trainer.deep.memory import measure
    from atlas_trainer.deep.models import parameter_count, to_torchscript

    probe = np.asarray(prepared.train_rows[:MEMORY_PROBE_ROWS])
    probe_inputs = torch.from_numpy(prepared.inputs[probe])
    probe_labels = torch.from_numpy(prepared.labels[probe])
    fit_started = time.monotonic()
    deadline = _training_deadline(rt, spec, started)
    nas = None
    if cfg.nas is not None:
        from atlas_trainer.deep.nas_job import run_nas
        from atlas_trainer.deep.nas_space import check_nas_limits

        check_nas_limits(cfg.nas, cfg.architecture, prepared.info, len(prepared.classes))
        nas = run_nas(ctx, cfg, tensors, progress.epoch, deadline)
        model, history = nas.model, nas.history
        # The bundle's (extracted) net, on a copy: train-mode steps move batch-norm statistics.
        memory = measure(copy.deepcopy(model), probe_inputs, probe_labels)
    else:
        memory = measure(new_model(cfg, tensors), probe_inputs, probe_labels)
        ctx.report(
            0.02,
            f"training {cfg.architecture} on {len(prepared.train_rows)} rows"
            + (f", resuming after epoch {progress.resumed_from}" if resume else ""),
        )
        if cfg.workers > 1:
            from atlas_trainer.deep.workers import train_with_workers

            model, history = train_with_workers(rt, ctx, cfg, tensors, progress, resume, deadline)
        else:
            model, state = train_loop(
                cfg,
                tensors,
                resume=resume,
                on_epoch=progress.epoch,
                on_checkpoint=progress.checkpoint,
                should_stop=lambda: ctx.cancelled() or time.monotonic() > deadline,
            )
            history = state.history
    ctx.raise_if_cancelled()
    fit_seconds = time.monotonic() - fit_started
    planned = cfg.epochs + (cfg.nas.fine_tune_epochs if cfg.nas else 0)
    if len(history) < planned:
        if not history:
            raise RuntimeError(
                "no epoch finished within budget.wall_time: raise it, or train fewer rows"
            )
        prepared.warnings.append(
            f"the wall budget ended training after epoch {len(history)} of {planned}"
        )
    ctx.report(0.92, "writing the model bundle")
    example = torch.from_numpy(prepared.inputs[:2])
    served = TorchNetModel(
        columns=prepared.columns,
        classes=prepared.classes,
        encoding=prepared.encoding,
        script=to_torchscript(model, example),
    )
    metrics = _validation_metrics(served, prepared)
    labels = pd.Series(np.asarray(prepared.classes, dtype=object)[prepared.labels])
    bundle = write_bundle(
        rt.artifacts,
        f"models/{ctx.job_id}/bundle.tar",
        signer=rt.signer,
        model=served,
        task="binary" if len(prepared.classes) == 2 else "multiclass",
        target=spec.target_column,
        classes=prepared.classes,
        X_train=prepared.frame,
        y_train=labels,
        metrics=metrics,
        lineage=BundleLineage(
            dataset=(
                {"dataset_id": data.dataset[0], "version": data.dataset[1]}
                if data.dataset
                else {"uri": data.artifact_uri}
            ),
            trial_number=0,
            job_id=ctx.job_id,
            extra={"architecture": cfg.architecture}
            | ({"nas_architecture": nas.best.arch.to_json()} if nas else {})
            | ({"base_model": base_model} if base_model else {}),
        ),
        seed=cfg.seed,
    )
    launch = torchrun_launch(ctx.job_id, cfg.workers, progress.work_files)
    result = _result(
        cfg,
        prepared,
        metrics,
        bundle,
        history,
        fit_seconds,
        parameters=parameter_count(model),
        data=data,
        job_id=ctx.job_id,
        elapsed=time.monotonic() - started,
    )
    result["deep_learning"].update(
        activation_memory=memory.to_json(),
        resumed_from_epoch=progress.resumed_from,
        restarts=progress.restarts,
        torchrun_command=launch.command,
        rendezvous_config=launch.config,
        classifier_shards=progress.classifier_shards,
    )
    if nas is not None:
        from atlas_trainer.deep.nas_job import pareto_rows

        best = result["best"]
        best["pipeline"] = f"nas {nas.best.arch.describe(cfg.architecture)} (fine-tuned)"
        best["params"] = {"architecture": cfg.architecture, "nas": nas.best.arch.to_json()}
        best["metrics"] |= {
            "macs": float(nas.best.cost.macs),
            "parameters": float(nas.best.cost.parameters),
        }
        best["origin"] = "nas"
        result["leaderboard"] = [best, *pareto_rows(nas, cfg.architecture)]
        result["trials_complete"] = len(result["leaderboard"])
        result["stop_reason"] = "nas"
        result["deep_learning"]["nas"] = nas.result
    result["checkpoints"] = progress.checkpoints
    result["lineage"]["base_model"] = base_model
    result["report"] = _report(rt, ctx.job_id, cfg, history, prepared.warnings)
    return result


def _training_deadline(rt: TrainerRuntime, spec: pb.TrainingJobSpec, started: float) -> float:
    """When training stops (monotonic): the wall budget from the job process's start, less
    the share kept for the bundle and report (as AutoML keeps for its final models); never
    without a wall budget."""
    if not spec.budget.HasField("wall_time"):
        return math.inf
    wall = spec.budget.wall_time.ToTimedelta().total_seconds()
    return started + wall * (1.0 - rt.settings.jobs.finalize_reserve_fraction)


def tensor_data(prepared: Prepared) -> Any:
    from atlas_trainer.deep.loop import TensorData

    return TensorData(
        train_inputs=prepared.inputs[prepared.train_rows],
        train_labels=prepared.labels[prepared.train_rows],
        validation_inputs=prepared.inputs[prepared.validation_rows],
        validation_labels=prepared.labels[prepared.validation_rows],
        info=prepared.info,
        classes=len(prepared.classes),
    )


def _validation_metrics(model: TorchNetModel, prepared: Prepared) -> dict[str, float]:
    rows = prepared.validation_rows
    proba = model.predict_proba(prepared.frame.iloc[rows])
    truth = prepared.labels[rows]
    return {
        "accuracy": float((proba.argmax(axis=1) == truth).mean()),
        "log_loss": float(log_loss(truth, proba, labels=list(range(len(prepared.classes))))),
    }


def _result(
    cfg: DeepConfig,
    prepared: Prepared,
    metrics: dict[str, float],
    bundle: ArtifactRef,
    history: list[dict[str, float]],
    fit_seconds: float,
    *,
    parameters: int,
    data: Any,
    job_id: str,
    elapsed: float,
) -> dict[str, Any]:
    shape = prepared.encoding.get("image_shape")
    inputs = (
        f"{prepared.encoding['mode']} ids of '{prepared.encoding['column']}'"
        if prepared.info.kind == "text"
        else f"{'x'.join(map(str, shape))} images"
        if shape
        else f"{len(prepared.columns)} columns"
    )
    row = {
        "number": 0,
        "trial": 0,
        "state": "COMPLETE",
        "pipeline": f"{cfg.architecture} ({inputs})",
        "family": "mlp" if cfg.architecture == "mlp" else "",
        "params": {"architecture": cfg.architecture, **cfg.params.model_dump()},
        "score": metrics["accuracy"],
        "metrics": {
            "validation_log_loss": metrics["log_loss"],
            "train_loss": history[-1]["train_loss"] if history else float("nan"),
        },
        "fit_time_s": fit_seconds,
        "fidelity": float(len(history)),
        "origin": "deep_learning",
        "bundle": _ref(bundle),
    }
    return {
        "task": "binary" if len(prepared.classes) == 2 else "multiclass",
        "metric": "accuracy",
        "higher_is_better": True,
        "best": row,
        "bundle": _ref(bundle),
        "trials_complete": 1,
        "trials_pruned": 0,
        "trials_failed": 0,
        "trials_interrupted": 0,
        "priors": [],
        "leaderboard": [row],
        "warnings": list(prepared.warnings),
        "dropped_columns": {},
        "stop_reason": "epochs",
        "elapsed_s": elapsed,
        "lineage": {
            "dataset": list(data.dataset) if data.dataset else None,
            "artifact": data.artifact_uri,
            "job_id": job_id,
        },
        "deep_learning": {
            "architecture": cfg.architecture,
            "parameters": parameters,
            "workers": cfg.workers,
            "epochs": history,
        },
    }


def _report(
    rt: TrainerRuntime,
    job_id: str,
    cfg: DeepConfig,
    history: list[dict[str, float]],
    warnings: list[str],
) -> dict[str, Any]:
    report: dict[str, Any] = {"warnings": list(warnings), "dropped_columns": {}}
    try:
        page = loss_curve_html(history, title=f"{cfg.architecture}: loss per epoch")
        ref = rt.artifacts.put_bytes(
            f"reports/{job_id}/loss_curve.html", page.encode(), {"content-type": "text/html"}
        )
        report["plots"] = [{"name": "loss_curve", **_ref(ref)}]
    except Exception as exc:  # noqa: BLE001 - the model is fine; the report notes the gap
        log.warning("loss curve failed", exc_info=exc)
        report["warnings"].append(f"plots unavailable: {exc}")
    return report
