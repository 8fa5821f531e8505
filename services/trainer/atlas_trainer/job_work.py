"""The body of a training job, run in a job subprocess with its own runtime.

The Optuna study (named after the job) lives in the metadata DB, so when the service is
killed and the job is re-queued, the next attempt continues the same study: completed
trials are kept and only the remaining budget is spent. Once the bundle and report are
written the result is checkpointed: an attempt after that (killed while registering the
bundle in serving) only registers, with the same request id, so the bundle is registered once.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
from typing import Any

from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.bundles import BundleLineage, write_bundle
from atlas_core.jobs import JobContext
from atlas_trainer.automl.engine import AutoMLRequest, AutoMLResult, run_automl
from atlas_trainer.convert import (
    FAMILIES_FROM_PB,
    STACKING_FROM_PB,
    STRATEGIES_FROM_PB,
    TASKS_FROM_PB,
)
from atlas_trainer.data_access import (
    conflicting_labels,
    dataset_pair,
    load_training_data,
    split_target,
)
from atlas_trainer.job_reports import build_report
from atlas_trainer.jsonable import to_jsonable
from atlas_trainer.model_registry import register_bundle
from atlas_trainer.runtime import TrainerRuntime

log = logging.getLogger("atlas.trainer.job")
_VALIDATION = {0: "auto", 1: "auto", 2: "kfold", 3: "holdout"}
# The report may use this share of the wall budget past its end: a job may overrun by 10%,
# and the rest covers the job process's start-up.
REPORT_GRACE = 0.07


def _budget(rt: TrainerRuntime, spec: pb.TrainingJobSpec) -> tuple[float | None, int | None]:
    wall = (
        spec.budget.wall_time.ToTimedelta().total_seconds()
        if spec.budget.HasField("wall_time")
        else None
    )
    trials = spec.budget.max_trials or None
    if wall is None and trials is None:
        wall = rt.settings.jobs.default_wall_budget_seconds
    return wall, trials


def train(
    rt: TrainerRuntime,
    ctx: JobContext,
    spec: pb.TrainingJobSpec,
    *,
    study_name: str = "",
    base_model: dict[str, Any] | None = None,
    started: float | None = None,
) -> dict[str, Any]:
    """Run the job, then register its bundle when the spec asks: ``study_name`` (the spec's
    extra; else the job id) names the Optuna study, ``base_model`` is the replaced model
    version resolved at submission, ``started`` is when the budget began (the job process's
    start; else now)."""
    trained = (ctx.last_checkpoint() or {}).get("trained")
    if trained is None and spec.WhichOneof("kind") == "deep_learning":
        from atlas_trainer.deep.job import train_deep

        trained = train_deep(
            rt, ctx, spec, time.monotonic() if started is None else started, base_model
        )
        ctx.checkpoint({"trained": trained})
    elif trained is None:
        trained = _train(rt, ctx, spec, study_name or ctx.job_id, base_model, started)
        ctx.checkpoint({"trained": trained})
    if spec.HasField("register") and not ctx.cancelled():
        ctx.report(0.99, f"registering the bundle as {spec.register.model_name} in serving")
        trained["registration"] = register_bundle(
            rt,
            ctx.job_id,
            spec.register,
            trained["bundle"],
            base_model,
            report=lambda message: ctx.report(None, message),
            should_stop=ctx.cancelled,
        )
    return dict(trained)


def _train(
    rt: TrainerRuntime,
    ctx: JobContext,
    spec: pb.TrainingJobSpec,
    study_name: str,
    base_model: dict[str, Any] | None,
    started: float | None,
) -> dict[str, Any]:
    started = time.monotonic() if started is None else started
    wall, max_trials = _budget(rt, spec)
    ctx.report(0.01, "loading training data")
    data = load_training_data(rt, spec, with_meta_features=True)
    X, y = split_target(data, spec)
    automl = spec.automl
    families = [FAMILIES_FROM_PB[f] for f in automl.search_space.model_families] or None
    remaining = None if wall is None else max(1.0, wall - (time.monotonic() - started))
    search_budget = (
        None
        if remaining is None
        else remaining * (1.0 - rt.settings.jobs.finalize_reserve_fraction)
    )
    deadline = None if remaining is None else time.monotonic() + remaining

    def on_event(event: dict[str, Any]) -> None:
        elapsed = time.monotonic() - started
        progress = min(0.95, elapsed / wall) if wall else 0.0
        kind = event.get("type", "")
        message = f"{kind} #{event.get('trial', '')}"
        if "best_score" in event:
            message += f" best={event['best_score']:.4f}"
        ctx.report(progress, message, event=to_jsonable(event))

    warm = automl.warm_start
    request = AutoMLRequest(
        X,
        y,
        task=TASKS_FROM_PB.get(spec.task_type),
        metric=spec.metric or None,
        wall_budget_s=search_budget,
        max_trials=max_trials,
        strategy=STRATEGIES_FROM_PB[automl.strategy],
        families=families,
        allow_crosses=automl.search_space.allow_feature_crosses,
        allow_selection=automl.search_space.allow_feature_selection,
        validation=_VALIDATION.get(automl.validation, "auto"),
        folds=automl.folds or 5,
        holdout_fraction=automl.holdout_fraction or 0.2,
        seed=spec.seed,
        n_jobs=max(1, int(spec.resources.cpus or 0)) if spec.resources.cpus else 1,
        gpus=spec.resources.gpus,
        parallel_trials=automl.parallel_trials,
        storage=rt.optuna_storage_url,
        study_name=study_name,
        meta_store=None if warm == pb.WARM_START_MODE_OFF else rt.meta_store,
        dataset_key=data.dataset_key,
        parent_dataset_ids=data.parent_keys,
        base_studies=[base_model["study_name"]] if base_model and base_model["study_name"] else [],
        meta_features=data.meta_features,
        warm_start_k=automl.warm_start_k or 3,
        ensemble=not automl.search_space.disable_ensemble,
        ensemble_size=automl.search_space.max_ensemble_size or 25,
        max_row_latency_ms=automl.max_row_latency_ms or None,
        min_batch_rows_per_s=automl.min_batch_rows_per_s or None,
        column_roles=dict(automl.column_roles),
        stacking=STACKING_FROM_PB[automl.stacking],
        stack_levels=automl.stack_levels,
        on_event=on_event,
        should_stop=ctx.cancelled,
        dask=rt.settings.dask,
        gpu_low_utilization_percent=rt.settings.jobs.gpu_low_utilization_percent,
        # a shared study's trials name the trainer and job that ran them
        worker=f"{rt.settings.jobs.runner_id or socket.gethostname()}/{ctx.job_id}",
    )
    result = run_automl(request)
    if result.model is None:
        raise RuntimeError(
            f"no trial completed within the budget ({result.stop_reason}); raise the wall budget"
        )
    ctx.report(0.96, "writing the model bundle")
    # the fold-bagged model is the bundle's model; its refit-full version goes beside it
    # (serving chooses between them, see atlas_serving.dataplane.variants)
    bagged = result.versions.get("fold_bag")
    refit = result.versions.get("refit_full")
    bundle = write_bundle(
        rt.artifacts,
        f"models/{ctx.job_id}/bundle.tar",
        signer=rt.signer,
        model=bagged.model if bagged is not None else result.model,
        variant=bagged.facts(result.higher_is_better) if bagged is not None else None,
        variants=(
            {"refit_full": (refit.model, refit.facts(result.higher_is_better))}
            if bagged is not None and refit is not None
            else None
        ),
        task=result.task,
        target=spec.target_column,
        classes=result.classes,
        X_train=X,
        y_train=y,
        unused_columns=[c for c in result.dropped_columns if c in X.columns],
        metrics={
            result.metric: float(
                (
                    result.ensemble_score
                    if result.model is result.ensemble_model
                    else result.best_score
                )
                or 0.0
            )
        },
        lineage=BundleLineage(
            dataset=(
                {"dataset_id": data.dataset[0], "version": data.dataset[1]}
                if data.dataset
                else {"uri": data.artifact_uri}
            ),
            study_name=study_name,
            trial_number=result.best_trial,
            job_id=ctx.job_id,
            extra={"base_model": base_model} if base_model else {},
            ensemble={
                "members": [{"trial": t, "weight": w} for t, w in result.ensemble_weights.items()]
            }
            if result.model is result.ensemble_model
            else None,
        ),
        seed=spec.seed,
    )
    if deadline is not None and time.monotonic() > deadline:
        log.warning("job finished past its budget", extra={"job_id": ctx.job_id})
    result.dropped_columns.update(data.key_columns)
    conflicts = conflicting_labels(data, spec.target_column)
    if conflicts:
        result.warnings.append(
            f"{conflicts} samples (same {' and '.join(data.key_columns)}) carry different "
            f"'{spec.target_column}' values, e.g. relabelled items exported with every label "
            "version: each row trained as it is; export or match only the latest labels"
        )
    if base_model and not any(p.reason == "base_model" for p in result.priors):
        result.warnings.append(_no_base_warm_start(base_model, warm))
    out = _result_dict(result, bundle, data, ctx.job_id, time.monotonic() - started)
    out["lineage"]["base_model"] = base_model
    for prior in out["priors"]:
        if prior["reason"] == "base_model" and base_model and base_model["job_id"]:
            prior["source_job_id"] = base_model["job_id"]  # the meta-store knows the study only
    if not ctx.cancelled():  # a cancelled job keeps its model but skips the slower report
        ctx.report(0.98, "computing the report")
        out["report"] = build_report(
            rt,
            ctx.job_id,
            spec,
            result,
            X,
            y,
            out["leaderboard"],
            study_name,
            None if deadline is None or wall is None else deadline + REPORT_GRACE * wall,
        )
    return out


def _no_base_warm_start(base_model: dict[str, Any], warm: int) -> str:
    name = f"{base_model['model_name']} v{base_model['version']}"
    if warm == pb.WARM_START_MODE_OFF:
        return f"no warm start from the replaced model {name}: warm_start is OFF"
    study = base_model["study_name"]
    if not study:
        return f"no warm start from the replaced model {name}: it records no trainer study"
    return (
        f"no warm start from the replaced model {name}: its study {study} is not in this "
        "trainer's meta-store"
    )


def _result_dict(
    result: AutoMLResult, bundle: Any, data: Any, job_id: str, elapsed: float
) -> dict[str, Any]:
    rows = [to_jsonable(r) for r in result.leaderboard]
    for row in rows:
        row["trial"] = row.get("number")
    best = rows[0] if rows else None
    if best is not None:
        best["bundle"] = {"uri": bundle.uri, "sha256": bundle.sha256, "size": bundle.size}
    return {
        "task": result.task,
        "metric": result.metric,
        "higher_is_better": result.higher_is_better,
        "best": best,
        "bundle": {"uri": bundle.uri, "sha256": bundle.sha256, "size": bundle.size},
        "trials_complete": result.trials_complete,
        "trials_pruned": result.trials_pruned,
        "trials_failed": result.trials_failed,
        "trials_interrupted": result.trials_interrupted,
        "priors": [
            {
                "study": p.source_study,
                "source_job_id": p.source_study,
                "dataset": dataset_pair(p.source_dataset),
                "reason": p.reason,
                "distance": p.distance,
                "configs_enqueued": p.configs_enqueued,
                "best_rank": p.best_rank,
                "trials_learned_from": p.trials_learned_from,
                "rank_agreement": p.rank_agreement,
            }
            for p in result.priors
        ],
        "leaderboard": rows,
        "warnings": list(result.warnings),
        "dropped_columns": dict(result.dropped_columns),
        "column_roles": [dataclasses.asdict(r) for r in result.column_roles],
        "score_curve": [dataclasses.asdict(p) for p in result.score_curve],
        "stacking": result.stacking,
        "stack_levels": result.stack_levels,
        "stop_reason": result.stop_reason,
        "elapsed_s": elapsed,
        "baseline_score": result.baseline_score,
        "model_versions": [v.facts(result.higher_is_better) for v in result.versions.values()],
        "lineage": {
            "dataset": list(data.dataset) if data.dataset else None,
            "artifact": data.artifact_uri,
            "job_id": job_id,
        },
    }
