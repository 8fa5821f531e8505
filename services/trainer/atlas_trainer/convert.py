"""Proto <-> domain conversions for the trainer: the only module that knows both."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2

from atlas.common.v1 import common_pb2
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core import proto_convert as pc
from atlas_core.jobs import JobRecord

FAMILIES = {
    "xgboost": pb.MODEL_FAMILY_XGBOOST,
    "lightgbm": pb.MODEL_FAMILY_LIGHTGBM,
    "linear": pb.MODEL_FAMILY_LINEAR,
    "random_forest": pb.MODEL_FAMILY_RANDOM_FOREST,
    "extra_trees": pb.MODEL_FAMILY_EXTRA_TREES,
    "mlp": pb.MODEL_FAMILY_MLP,
}
FAMILIES_FROM_PB = {v: k for k, v in FAMILIES.items()}
TASKS = {
    "binary": pb.TASK_TYPE_BINARY,
    "multiclass": pb.TASK_TYPE_MULTICLASS,
    "regression": pb.TASK_TYPE_REGRESSION,
}
TASKS_FROM_PB = {v: k for k, v in TASKS.items()}
STRATEGIES_FROM_PB = {
    pb.SEARCH_STRATEGY_UNSPECIFIED: "bohb",
    pb.SEARCH_STRATEGY_HYPERBAND_TPE: "bohb",
    pb.SEARCH_STRATEGY_TPE: "tpe",
    pb.SEARCH_STRATEGY_RANDOM: "random",
}
STACKING_FROM_PB = {
    pb.STACKING_MODE_UNSPECIFIED: "auto",
    pb.STACKING_MODE_AUTO: "auto",
    pb.STACKING_MODE_OFF: "off",
    pb.STACKING_MODE_ON: "on",
}
TRIAL_STATES = {
    "RUNNING": pb.TRIAL_STATE_RUNNING,
    "COMPLETE": pb.TRIAL_STATE_COMPLETE,
    "PRUNED": pb.TRIAL_STATE_PRUNED,
    "FAIL": pb.TRIAL_STATE_FAILED,
    "WAITING": pb.TRIAL_STATE_WAITING,
}
TRIAL_STATES_FROM_PB = {v: k for k, v in TRIAL_STATES.items()}
REGISTRATION_STATES = {
    "REGISTERED": pb.REGISTRATION_STATE_REGISTERED,
    "FAILED": pb.REGISTRATION_STATE_FAILED,
}
EVENT_TYPES = {
    "trial_started": pb.TRAINING_EVENT_TYPE_TRIAL_STARTED,
    "trial_finished": pb.TRAINING_EVENT_TYPE_TRIAL_FINISHED,
    "trial_pruned": pb.TRAINING_EVENT_TYPE_TRIAL_PRUNED,
    "trial_failed": pb.TRAINING_EVENT_TYPE_TRIAL_FAILED,
    "new_best": pb.TRAINING_EVENT_TYPE_NEW_BEST,
}
# Deep-learning jobs' progress events.
EPOCH_EVENT_TYPES = {
    "epoch_finished": pb.TRAINING_EVENT_TYPE_EPOCH_FINISHED,
    "checkpoint_saved": pb.TRAINING_EVENT_TYPE_CHECKPOINT_SAVED,
}


def seconds(value: float | None) -> duration_pb2.Duration | None:
    if value is None or not math.isfinite(value):
        return None
    d = duration_pb2.Duration()
    d.FromMicroseconds(int(value * 1e6))
    return d


def _struct(values: dict[str, Any] | None) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    clean = {}
    for key, value in (values or {}).items():
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        elif not isinstance(value, (str, int, float, bool, type(None), list, dict)):
            value = str(value)
        clean[str(key)] = value
    s.update(clean)
    return s


def trial_to_pb(t: dict[str, Any]) -> pb.Trial:
    """A trial as the engine reports it (events, leaderboard rows, the stored study)."""
    msg = pb.Trial(
        number=int(t.get("trial", t.get("number", 0))),
        state=TRIAL_STATES.get(str(t.get("state", "")).upper(), pb.TRIAL_STATE_UNSPECIFIED),
        pipeline=str(t.get("pipeline") or ""),
        origin=str(t.get("origin") or ""),
        error=str(t.get("error") or ""),
        model_family=FAMILIES.get(
            str(t.get("family") or (t.get("params") or {}).get("family", "")),
            pb.MODEL_FAMILY_UNSPECIFIED,
        ),
        params=_struct(t.get("params")),
        fidelity=float(t.get("fidelity") or 0.0),
        device=str(t.get("device") or ""),
        gpu_utilization_percent=float(t.get("gpu_utilization_percent") or 0.0),
        gpu_memory_peak_bytes=int(t.get("gpu_memory_peak_bytes") or 0),
        batch_rows_per_s=float(t.get("batch_rows_per_s") or 0.0),
        # rows stored before stacking: trials are layer 1, the ensemble 0
        stack_level=int(
            t.get("stack_level", 1 if int(t.get("trial", t.get("number", 0))) >= 0 else 0)
        ),
    )
    for field, key in (("score", "score"), ("score_std", "score_std")):
        value = t.get(key)
        if value is not None and math.isfinite(float(value)):
            setattr(msg, field, float(value))
    durations = (
        ("fit_time", "fit_time_s"),
        ("predict_time_per_1k", "predict_time_per_1k_s"),
        ("row_latency", "row_latency_s"),
    )
    for field, key in durations:
        d = seconds(t.get(key))
        if d is not None:
            getattr(msg, field).CopyFrom(d)
    for key, value in (t.get("metrics") or {}).items():
        msg.metrics[key] = float(value)
    for member, weight in (t.get("ensemble_weights") or {}).items():
        msg.ensemble_weights[int(member)] = float(weight)
    if t.get("bundle"):
        b = t["bundle"]
        msg.bundle.CopyFrom(
            common_pb2.ArtifactRef(uri=b["uri"], sha256=b["sha256"], size_bytes=b["size"])
        )
    for field, key in (("start_time", "start_time"), ("end_time", "end_time")):
        if t.get(key):
            getattr(msg, field).CopyFrom(pc.dt_to_ts(datetime.fromisoformat(t[key])))
    return msg


def prior_to_pb(p: dict[str, Any]) -> pb.WarmStartPrior:
    msg = pb.WarmStartPrior(
        source_job_id=str(p.get("source_job_id") or p.get("study") or ""),
        reason=str(p.get("reason") or ""),
        distance=float(p.get("distance") or 0.0),
        configs_enqueued=int(p.get("configs_enqueued") or 0),
        best_rank=int(p.get("best_rank") or 0),
        trials_learned_from=int(p.get("trials_learned_from") or 0),
    )
    if p.get("rank_agreement") is not None:
        msg.rank_agreement = float(p["rank_agreement"])
    ds = p.get("dataset")
    if ds:
        msg.source_dataset.CopyFrom(common_pb2.DatasetRef(dataset_id=ds[0], version=ds[1]))
    return msg


def result_to_pb(result: dict[str, Any]) -> pb.TrainingResult:
    msg = pb.TrainingResult(
        task_type=TASKS.get(result.get("task", ""), pb.TASK_TYPE_UNSPECIFIED),
        metric=result.get("metric", ""),
        higher_is_better=bool(result.get("higher_is_better")),
        trials_complete=int(result.get("trials_complete", 0)),
        trials_pruned=int(result.get("trials_pruned", 0)),
        trials_failed=int(result.get("trials_failed", 0)),
        trials_interrupted=int(result.get("trials_interrupted", 0)),
        priors=[prior_to_pb(p) for p in result.get("priors", [])],
    )
    if result.get("best"):
        msg.best.CopyFrom(trial_to_pb(result["best"]))
    if result.get("bundle"):
        b = result["bundle"]
        msg.model_bundle.CopyFrom(
            common_pb2.ArtifactRef(
                uri=b["uri"],
                sha256=b["sha256"],
                size_bytes=b["size"],
                media_type="application/x-atlas-model-bundle",
            )
        )
    lineage = result.get("lineage") or {}
    msg.lineage.operation = "train"
    if lineage.get("dataset"):
        ds = lineage["dataset"]
        msg.lineage.parents.add(
            role="training_data", dataset=common_pb2.DatasetRef(dataset_id=ds[0], version=ds[1])
        )
    if lineage.get("artifact"):
        msg.lineage.parents.add(
            role="training_data", artifact=common_pb2.ArtifactRef(uri=lineage["artifact"])
        )
    if lineage.get("base_model"):
        base = lineage["base_model"]
        msg.lineage.parents.add(
            role="base_model",
            model=common_pb2.ModelRef(model_name=base["model_name"], version=base["version"]),
        )
    if lineage.get("job_id"):
        msg.lineage.produced_by.CopyFrom(
            common_pb2.JobRef(service="trainer", job_id=lineage["job_id"])
        )
    if result.get("registration"):
        msg.registration.CopyFrom(registration_to_pb(result["registration"]))
    for c in result.get("checkpoints") or []:
        msg.checkpoints.add(uri=c["uri"], sha256=c["sha256"], size_bytes=c["size"])
    if result.get("deep_learning"):
        msg.deep_learning.CopyFrom(deep_learning_to_pb(result["deep_learning"]))
    for v in result.get("model_versions") or []:
        version = msg.model_versions.add(
            name=str(v.get("name") or ""),
            description=str(v.get("description") or ""),
            models=int(v.get("models") or 0),
            batch_rows_per_s=float(v.get("batch_rows_per_s") or 0.0),
        )
        if v.get("score") is not None and math.isfinite(float(v["score"])):
            version.score = float(v["score"])
        latency = seconds(v.get("row_latency_s"))
        if latency is not None:
            version.row_latency.CopyFrom(latency)
    return msg


def epoch_to_pb(e: dict[str, Any]) -> pb.EpochMetrics:
    msg = pb.EpochMetrics(
        epoch=int(e["epoch"]),
        train_loss=float(e["train_loss"]),
        validation_loss=float(e["validation_loss"]),
        validation_accuracy=float(e["validation_accuracy"]),
    )
    d = seconds(e.get("seconds"))
    if d is not None:
        msg.duration.CopyFrom(d)
    return msg


def deep_learning_to_pb(d: dict[str, Any]) -> pb.DeepLearningResult:
    msg = pb.DeepLearningResult(
        architecture=str(d.get("architecture") or ""),
        parameters=int(d.get("parameters") or 0),
        workers=int(d.get("workers") or 0),
        epochs=[epoch_to_pb(e) for e in d.get("epochs") or []],
        resumed_from_epoch=int(d.get("resumed_from_epoch") or 0),
        restarts=int(d.get("restarts") or 0),
        torchrun_command=str(d.get("torchrun_command") or ""),
        rendezvous_config=str(d.get("rendezvous_config") or ""),
        classifier_shards=[
            pb.ClassifierShard(
                rank=int(s["rank"]),
                class_start=int(s["class_start"]),
                class_stop=int(s["class_stop"]),
                params=int(s["params"]),
            )
            for s in d.get("classifier_shards") or []
        ],
    )
    if d.get("nas"):
        msg.nas.CopyFrom(nas_result_to_pb(d["nas"]))
    memory = d.get("activation_memory")
    if memory:
        m = msg.activation_memory
        m.peak_bytes_with_checkpointing = int(memory["peak_bytes_with_checkpointing"])
        m.peak_bytes_without_checkpointing = int(memory["peak_bytes_without_checkpointing"])
        m.checkpointing = bool(memory["checkpointing"])
        m.method = str(memory["method"])
        m.checkpointing_mode = str(memory.get("checkpointing_mode") or "")
        for field, key in (
            ("step_time_with_checkpointing", "step_seconds_with_checkpointing"),
            ("step_time_without_checkpointing", "step_seconds_without_checkpointing"),
        ):
            value = seconds(memory.get(key))
            if value is not None:
                getattr(m, field).CopyFrom(value)
    return msg


def nas_candidate_to_pb(c: dict[str, Any]) -> pb.NasCandidate:
    return pb.NasCandidate(
        architecture=_struct(c["architecture"]),
        description=str(c["description"]),
        accuracy=float(c["accuracy"]),
        parameters=int(c["parameters"]),
        macs=int(c["macs"]),
    )


def nas_result_to_pb(n: dict[str, Any]) -> pb.NasResult:
    msg = pb.NasResult(
        architectures_evaluated=int(n["architectures_evaluated"]),
        generations=int(n["generations"]),
        pareto_front=[nas_candidate_to_pb(c) for c in n["pareto_front"]],
        best=nas_candidate_to_pb(n["best"]),
        fine_tuned_accuracy=float(n["fine_tuned_accuracy"]),
        supernet_parameters=int(n["supernet_parameters"]),
        max_parameters=int(n["max_parameters"]),
        max_macs=int(n["max_macs"]),
    )
    for field, key in (("supernet_time", "supernet_seconds"), ("search_time", "search_seconds")):
        value = seconds(n.get(key))
        if value is not None:
            getattr(msg, field).CopyFrom(value)
    return msg


def registration_to_pb(r: dict[str, Any]) -> pb.ModelRegistration:
    msg = pb.ModelRegistration(
        state=REGISTRATION_STATES.get(r.get("state", ""), pb.REGISTRATION_STATE_UNSPECIFIED),
        alias=str(r.get("alias") or ""),
        attempts=int(r.get("attempts") or 0),
        error=str(r.get("error") or ""),
    )
    msg.model_version.model_name = str(r.get("model_name") or "")
    if r.get("version"):
        msg.model_version.version = int(r["version"])
    return msg


def job_to_pb(
    record: JobRecord,
    best_so_far: dict[str, Any] | None = None,
    elapsed_s: float | None = None,
    remaining_s: float | None = None,
) -> pb.TrainingJob:
    job = pb.TrainingJob(
        status=pc.job_status(record), study_name=str(record.spec.get("_study_name", record.id))
    )
    spec = {k: v for k, v in record.spec.items() if not k.startswith("_")}
    json_format.ParseDict(spec, job.spec)
    if record.result:
        job.result.CopyFrom(result_to_pb(record.result))
        best_so_far = best_so_far or record.result.get("best")
    if best_so_far:
        job.best_so_far.CopyFrom(trial_to_pb(best_so_far))
    for field, value in (("elapsed", elapsed_s), ("remaining", remaining_s)):
        d = seconds(value)
        if d is not None:
            getattr(job, field).CopyFrom(d)
    return job


def score_point_to_pb(p: dict[str, Any]) -> pb.ScorePoint:
    msg = pb.ScorePoint(
        elapsed_seconds=float(p.get("elapsed_s") or 0.0),
        score=float(p.get("score") or 0.0),
        series=str(p.get("series") or ""),
        stack_level=int(p.get("stack_level") or 0),
    )
    if p.get("trial") is not None:
        msg.trial = int(p["trial"])
    return msg
