"""``run_automl``: the one entry point of the AutoML engine (no gRPC, no job plumbing).

One :class:`AutoMLRequest` goes through five steps, each a function below: prepare
(validate, target, splits, meta-features) -> open the study with warm-start priors ->
search -> finalize (final models, ensemble, leaderboard) -> record (meta-store).

Budget policy: the search stops at 80% of the wall budget (trials in flight are interrupted
there, inside their fits); the rest is for final models, refitting on all data only when the
trial's measured fit time says it fits, else using the cross-validation fold bag. Setup
(validation, meta-features) counts against the budget too.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
import zlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import optuna
import pandas as pd
import sqlalchemy.exc
from optuna.trial import TrialState

from atlas_core.errors import InvalidArgument
from atlas_core.meta_features import (
    META_FEATURES_VERSION,
    MetaFeatures,
    meta_features_of_frame,
    similarity_vector,
)
from atlas_core.ml import (
    ColumnRole,
    ColumnRoleFeatures,
    ColumnRoleModel,
    ColumnSanitizer,
    FoldBag,
    StackEnsemble,
)
from atlas_trainer.automl import stack as stacking
from atlas_trainer.automl.ensemble import Selection, greedy_selection
from atlas_trainer.automl.evaluate import Splits, make_splits
from atlas_trainer.automl.finalize import (
    ENSEMBLE_NUMBER,
    FinalModels,
    FinalVersion,
    LeaderboardRow,
    assemble,
    build_ensemble,
    leaderboard,
)
from atlas_trainer.automl.latency import (
    batch_row_s,
    measure,
    measure_batch,
    row_latency_s,
    within_budget,
)
from atlas_trainer.automl.meta import (
    RECORDED_CONFIGS,
    MetaEntry,
    MetaStore,
    Prior,
    config_key,
    find_priors,
    other_version_studies,
)
from atlas_trainer.automl.resources import Parallelism, plan_parallelism
from atlas_trainer.automl.roles import fit_column_roles
from atlas_trainer.automl.search import (
    INTERRUPTED,
    STRATEGIES,
    Searcher,
    SearchSettings,
    SearchState,
    make_pruner,
    make_sampler,
)
from atlas_trainer.automl.space import SpaceOptions, portfolio, validate_families
from atlas_trainer.automl.study_lock import StudyLock, rdb_backend
from atlas_trainer.automl.task import PreparedTarget, constant_baseline, prepare_target
from atlas_trainer.automl.transfer import PARENT_SCORE, agreement, observations, prior_trials
from atlas_trainer.config import DaskSettings
from atlas_trainer.gpu_accounting import GpuAccounting, plan_gpus
from atlas_trainer.parallel.dask_boosting import BOOSTERS as DASK_BOOSTERS
from atlas_trainer.parallel.dask_boosting import DaskBoosting

log = logging.getLogger(__name__)
SEARCH_SHARE = 0.8
# Measuring the kept trials' single-row cost and batch throughput (automl.latency) after the
# search may use this share of the wall budget; trials not reached are left unmeasured.
MEASURE_SHARE = 0.03
# The final model's refit-full version is measured up to this share of the wall budget past
# its end (a job may overrun by 10%; the version's few models compile in well under that).
MEASURE_GRACE = 0.04
# "auto" validation under a wall budget: fewer folds when the budget is small, so the search
# completes enough trials (5-fold CV over a wide space finishes only a handful in ~1 min),
# and a holdout when even 3-fold CV of one configuration would eat much of the budget.
SMALL_BUDGET_WORKER_S = 600.0
SMALL_BUDGET_FOLDS = 3
# A lineage parent that supplies at least this many configurations replaces the default
# portfolio: the parent's study ran (and ranked) those defaults on the same data already.
LINEAGE_REPLACES_PORTFOLIO = 3
HOLDOUT_WORK_PER_WORKER_S = 10_000.0  # rows x columns x classes per worker-second
# Data this small (rows x columns x classes) keeps the requested folds whatever the budget:
# one configuration's CV takes well under a second, and on a few hundred rows the extra
# folds cut the validation noise that otherwise picks the winner among near-equal models.
TINY_WORK = 50_000
# With stacking forced on, stacked layers may run until this share of the wall budget is left.
STACK_FORCED_FINAL_SHARE = 0.1


def auto_folds(requested: int, wall_budget_s: float | None, cpus: int) -> int:
    """Folds for ``validation="auto"``: ``requested`` unless the wall budget gives the search
    fewer than ``SMALL_BUDGET_WORKER_S`` worker-seconds, then at most 3."""
    if wall_budget_s is None:
        return requested
    worker_s = wall_budget_s * SEARCH_SHARE * max(1, cpus)
    return min(requested, SMALL_BUDGET_FOLDS) if worker_s < SMALL_BUDGET_WORKER_S else requested


def auto_validation(
    requested: int, wall_budget_s: float | None, cpus: int, rows: int, cols: int, classes: int
) -> tuple[str, int]:
    """(method, folds) for ``validation="auto"`` (large data -> holdout in make_splits)."""
    work = rows * max(1, cols) * max(1, classes if classes > 2 else 1)
    if work <= TINY_WORK:
        return "auto", requested
    if wall_budget_s is not None:
        worker_s = wall_budget_s * SEARCH_SHARE * max(1, cpus)
        if work > HOLDOUT_WORK_PER_WORKER_S * worker_s:
            return "holdout", requested
    return "auto", auto_folds(requested, wall_budget_s, cpus)


@dataclass(frozen=True)
class ScorePoint:
    """One point of the score-over-time curve: ``series`` "search" (best CV score of the
    trials so far; ``trial`` reached it) or "ensemble" (the greedy ensemble over layers
    1..``stack_level``)."""

    elapsed_s: float
    score: float
    series: str
    stack_level: int = 1
    trial: int | None = None


@dataclass
class AutoMLResult:
    """Everything a job reports. ``model`` is the best leaderboard entry's fitted predictor
    (the ensemble when it scored best); ``best_model`` the best single trial's."""

    task: str
    metric: str
    higher_is_better: bool
    study_name: str
    leaderboard: list[LeaderboardRow]
    best_trial: int | None
    best_score: float | None
    best_model: Any | None
    best_model_kind: str  # "refit", "fold_bag" or "fold_bag_partial" (nothing completed)
    ensemble_model: Any | None
    ensemble_score: float | None
    ensemble_weights: dict[int, float]
    oof: dict[int, np.ndarray]  # trial number -> OOF scores on oof_index rows
    oof_index: np.ndarray
    classes: list[Any] | None
    warnings: list[str]
    dropped_columns: dict[str, str]
    priors: list[Prior]
    meta_features: dict[str, float]
    stop_reason: str
    elapsed_s: float
    baseline_score: float
    validation: str
    folds: int  # validation folds (1 for a holdout)
    trials_complete: int = 0
    trials_pruned: int = 0
    trials_failed: int = 0  # the model raised
    trials_interrupted: int = 0  # cut by the deadline, per-trial limit or cancel before a score
    trials_run_here: list[int] = field(default_factory=list)
    # What each input column was taken as (inferred or set by ``column_roles``).
    column_roles: list[ColumnRole] = field(default_factory=list)
    dask_fits: int = 0  # booster fits run on the Dask cluster (request.dask)
    # Versions of ``model`` by name: "fold_bag" and, when its members could be refit,
    # "refit_full" (see FinalVersion); empty when nothing completed.
    versions: dict[str, FinalVersion] = field(default_factory=dict)
    # Best score so far against seconds since the job started: the search's best trial
    # ("search") and the greedy ensemble over the layers fitted so far ("ensemble").
    score_curve: list[ScorePoint] = field(default_factory=list)
    # Layers of the final model (1: no stacked layer in it) and what stacking did.
    stack_levels: int = 1
    stacking: str = ""

    @property
    def model(self) -> Any | None:
        if (
            self.ensemble_model is not None
            and self.ensemble_score is not None
            and (
                self.best_score is None
                or (
                    self.ensemble_score > self.best_score
                    if self.higher_is_better
                    else self.ensemble_score < self.best_score
                )
            )
        ):
            return self.ensemble_model
        return self.best_model


def _rdb_storage(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage; workers starting together race to create its tables (one
    gets "table already exists"), so creation is retried."""
    for attempt in range(attempts):
        try:
            # Heartbeats let a restarted worker fail (and retry once) trials of a killed one.
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=10,
                grace_period=30,
                heartbeat_stale_trial_callback=(
                    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
                ),
            )
        except sqlalchemy.exc.DatabaseError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _open_study(
    storage: str | optuna.storages.BaseStorage | None,
    study_name: str | None,
    direction: Literal["minimize", "maximize"],
    strategy: str,
    seed: int,
) -> tuple[optuna.Study, bool]:
    """(the study, whether this call created it). Of several workers opening one shared study
    at once, exactly one creates it (the study name is unique in the storage)."""
    if isinstance(storage, str):
        storage = _rdb_storage(storage)
    created = True
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=study_name,
            direction=direction,
            sampler=make_sampler(strategy, seed),
            pruner=make_pruner(strategy),
        )
    except optuna.exceptions.DuplicatedStudyError:
        if storage is None:  # an in-memory study is always new
            raise
        created = False
        study = optuna.load_study(
            storage=storage,
            study_name=str(study_name),
            sampler=make_sampler(strategy, seed),
            pruner=make_pruner(strategy),
        )
    if study.direction.name.lower() != direction:
        raise InvalidArgument(
            f"study {study_name!r} exists with direction {study.direction.name.lower()}, "
            f"this job needs {direction}",
            reason="STUDY_MISMATCH",
        )
    return study, created


def _check_joinable(study: optuna.Study, metric: str, dataset_key: str) -> None:
    """A shared study's trials are comparable only on one metric and one dataset:
    INVALID_ARGUMENT (STUDY_MISMATCH) for a worker that brings another."""
    attrs = study.user_attrs
    theirs = {"metric": attrs.get("metric"), "dataset": attrs.get("dataset_key")}
    ours = {"metric": metric, "dataset": dataset_key}
    for what in ("metric", "dataset"):
        if theirs[what] and ours[what] and theirs[what] != ours[what]:
            raise InvalidArgument(
                f"study {study.study_name!r} is searched on {what} {theirs[what]!r}, this "
                f"job's is {ours[what]!r}: give automl.study_name a new name, or join with "
                f"the same {what}",
                reason="STUDY_MISMATCH",
            )


def _sampler_seed(seed: int, created: bool, worker: str) -> int:
    """The creator of a study samples with the job's seed; a worker joining it (or resuming
    it) mixes its own name in, so two workers with one seed do not sample the same
    configurations in the same order."""
    if created:
        return seed
    mixed = zlib.crc32(f"{seed}:{worker or uuid.uuid4().hex}".encode())
    return mixed & 0x7FFFFFFF


def _enqueue_priors(study: optuna.Study, priors: list[Prior], families: tuple[str, ...]) -> None:
    with StudyLock(study).hold():  # another worker of the study may enqueue them too
        _enqueue_priors_locked(study, priors, families)


def _enqueue_priors_locked(
    study: optuna.Study, priors: list[Prior], families: tuple[str, ...]
) -> None:
    seen: set[str] = set()
    for prior in priors:
        for cfg in prior.configs:
            params = cfg["params"]
            key = config_key(params)
            if params.get("family") not in families or key in seen:
                continue
            seen.add(key)
            before = len(study.get_trials(deepcopy=False))
            attrs = {"origin": f"warm_start:{prior.source_study}#{cfg.get('trial', '?')}"}
            if prior.observations and cfg.get("score") is not None:  # same metric: comparable
                attrs[PARENT_SCORE] = cfg["score"]
            study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=True)
            if len(study.get_trials(deepcopy=False)) > before:
                prior.trial_numbers.append(before)


@dataclass
class AutoMLRequest:
    """What to search: ``X -> y`` and how.

    Budgets: ``wall_budget_s`` (never overrun by more than 10%) and/or ``max_trials``
    (study-wide: counts trials of earlier runs and other workers of the same study, so a
    resumed or distributed job shares one budget). At least one is required.
    ``storage`` + ``study_name`` make the study persistent: running again continues it
    (completed trials kept). Several workers may run one study at once (PostgreSQL): the
    budget check, the start of a trial and the enqueueing of curated configurations are
    serialised across them (``study_lock``), so the trial budget holds study-wide and no
    curated configuration runs twice; a worker that did not create the study samples with
    a seed of its own. ``should_stop`` is polled between fidelity steps and inside
    fits; on True the search stops within seconds and the result keeps the best model.
    ``on_event`` receives dicts with ``type`` in trial_started, trial_finished, trial_pruned,
    trial_failed, new_best, search_finished, gpu_low_utilization. ``gpus=None`` detects GPUs
    with NVML (0: CPU only); GPU trials lease one GPU each and are sampled while they run
    (``atlas_trainer.gpu_accounting``).
    ``meta_store`` enables warm starts (and records the finished study);
    ``meta_features`` are the table's (atlas_core.meta_features, e.g. from the data service)
    when known; else, or when of another definition version, they are computed from
    ``X`` and ``y``. ``max_row_latency_ms`` is a per-row inference budget: trials whose
    measured single-row cost on serving's compiled path exceeds it are left out of the final
    model, and the ensemble drops its lightest members until their summed cost fits;
    ``min_batch_rows_per_s`` is a batch throughput floor applied alike (the leaderboard's
    ``row_latency_s`` and ``batch_rows_per_s`` are measured after the search, best trials
    first, within ``MEASURE_SHARE`` of a wall budget).
    The result's ``versions`` hold the final model fold-bagged and refit on all rows.
    """

    X: pd.DataFrame
    y: pd.Series
    task: str | None = None
    metric: str | None = None
    wall_budget_s: float | None = None
    max_trials: int | None = None
    strategy: str = "bohb"
    families: Sequence[str] | None = None
    allow_crosses: bool = True
    allow_selection: bool = True
    fixed_params: dict[str, Any] | None = None
    validation: str = "auto"
    folds: int = 5
    holdout_fraction: float = 0.2
    seed: int = 0
    n_jobs: int = 1
    gpus: int | None = 0
    parallel_trials: int = 0
    storage: str | optuna.storages.BaseStorage | None = None
    study_name: str | None = None
    meta_store: MetaStore | None = None
    dataset_key: str = ""
    parent_dataset_ids: Sequence[str] = ()
    # Studies of the models this job replaces: warm-start sources like lineage parents.
    base_studies: Sequence[str] = ()
    meta_features: MetaFeatures | None = None
    warm_start_k: int = 3
    ensemble: bool = True
    ensemble_size: int = 25
    max_row_latency_ms: float | None = None
    min_batch_rows_per_s: float | None = None
    column_roles: dict[str, str] | None = None
    # Multi-layer stacking (automl.stack): "auto" (when the wall budget allows), "on", "off";
    # ``stack_levels`` stacked layers above the search's at most (0: the default, 1).
    stacking: str = "auto"
    stack_levels: int = 0
    on_event: Callable[[dict[str, Any]], None] | None = None
    should_stop: Callable[[], bool] | None = None
    # Distributed boosting: XGBoost/LightGBM fits on enough rows go to a Dask cluster
    # (atlas_trainer.parallel.dask_boosting); None: every fit in this process.
    dask: DaskSettings | None = None
    # A GPU trial whose mean utilisation stays below this is reported (event, log, report).
    gpu_low_utilization_percent: float = 20.0
    # Who runs this search, recorded on each of its trials (user attr "worker"); a worker
    # joining a shared study also mixes it into its sampler's seed.
    worker: str = ""


@dataclass
class _Prepared:
    """The validated request: target, kept rows, splits, search space and meta-features."""

    started: float
    hard_deadline: float | None
    families: tuple[str, ...]
    options: SpaceOptions
    target: PreparedTarget
    X: pd.DataFrame
    splits: Splits
    meta_features: dict[str, float]  # similarity_vector of the table's meta-features
    dropped: dict[str, str]
    warnings: list[str]
    roles: ColumnRoleFeatures
    # the roles' derived frame is what the search sees (else the raw columns are)
    roles_applied: bool


@dataclass
class _OpenStudy:
    study: optuna.Study
    priors: list[Prior]  # the ones enqueued in this run (none when resuming)
    fresh: bool  # no trials before this run


@dataclass
class _Finals:
    best_number: int | None
    best_score: float | None
    best_model: Any | None
    kind: str
    ensemble_model: Any | None
    ensemble_score: float | None
    weights: dict[int, float]
    oof: dict[int, np.ndarray]
    board: list[LeaderboardRow]
    done: dict[int, optuna.trial.FrozenTrial]
    versions: dict[str, FinalVersion] = field(default_factory=dict)
    curve: list[ScorePoint] = field(default_factory=list)
    stack_levels: int = 1
    stacking: str = ""


def run_automl(request: AutoMLRequest) -> AutoMLResult:
    """Search pipelines for ``request.X -> request.y`` and return the leaderboard and fitted
    models: prepare, open the study with warm-start priors, search, finalize, record.

    Raises InvalidArgument for a bad target/metric/task/family/strategy or no budget.
    """
    prep = _prepare(request)
    opened = _open_study_with_priors(request, prep)
    boosting = _open_boosting(request, prep)
    gpus = _gpu_accounting(request, prep)
    try:
        state, stop_reason, plan = _search(request, prep, opened, boosting, gpus)
        finals = _finalize(request, prep, opened, state, plan, stop_reason, boosting)
    finally:
        if boosting is not None:
            boosting.close()
    _record(request, prep, opened.study, finals)
    if prep.roles_applied:
        _behind_roles(prep.roles, finals)
    counts = _trial_counts(finals.board)
    return AutoMLResult(
        task=prep.target.task,
        metric=prep.target.metric.name,
        higher_is_better=prep.target.metric.higher_is_better,
        study_name=opened.study.study_name,
        leaderboard=finals.board,
        best_trial=finals.best_number,
        best_score=finals.best_score,
        best_model=finals.best_model,
        best_model_kind=finals.kind,
        ensemble_model=finals.ensemble_model,
        ensemble_score=finals.ensemble_score,
        ensemble_weights=finals.weights,
        oof=finals.oof,
        oof_index=prep.splits.oof_index,
        classes=None if prep.target.classes is None else prep.target.classes.tolist(),
        warnings=prep.warnings,
        dropped_columns=dict(prep.dropped),
        priors=opened.priors,
        meta_features=prep.meta_features,
        stop_reason=stop_reason,
        elapsed_s=time.monotonic() - prep.started,
        baseline_score=constant_baseline(prep.target),
        validation=prep.splits.method,
        folds=len(prep.splits.folds),
        trials_complete=counts["COMPLETE"],
        trials_pruned=counts["PRUNED"],
        trials_failed=counts["FAIL"],
        trials_interrupted=counts["INTERRUPTED"],
        trials_run_here=list(state.trials_run),
        column_roles=list(prep.roles.roles_),
        dask_fits=boosting.fits if boosting is not None else 0,
        versions=finals.versions,
        score_curve=_search_curve(state, prep.started) + finals.curve,
        stack_levels=finals.stack_levels,
        stacking=finals.stacking,
    )


def _gpu_accounting(req: AutoMLRequest, prep: _Prepared) -> GpuAccounting:
    """The job's GPUs (NVML discovery; ``gpus=None``: all of them) and their bookkeeping. A
    job that asked for GPUs on a host without any runs on CPU and its report says so."""
    accounting = GpuAccounting(
        plan_gpus(req.gpus, req.parallel_trials),
        low_utilization_percent=req.gpu_low_utilization_percent,
    )
    plan = accounting.plan
    if plan.uses_gpu:
        log.info("trials lease GPUs %s one at a time", list(plan.gpu_indices))
    else:
        log.info("trials run on CPU: %s", plan.note)
        if req.gpus != 0:
            prep.warnings.append(accounting.summary_line())
    return accounting


def _open_boosting(req: AutoMLRequest, prep: _Prepared) -> DaskBoosting | None:
    """The job's Dask cluster when boosters may fit there: a booster family is searched and
    the data reaches ``min_rows`` (or the engine is "always"). FAILED_PRECONDITION when the
    configured scheduler cannot be reached."""
    settings = req.dask
    if settings is None or settings.engine == "never":
        return None
    if not any(f in DASK_BOOSTERS for f in prep.families):
        return None
    if settings.engine == "auto" and len(prep.X) < settings.min_rows:
        return None
    boosting = DaskBoosting(settings).open()
    where = settings.scheduler_address or f"a local cluster of {settings.local_workers} workers"
    log.info("XGBoost/LightGBM fits (engine %s) go to Dask: %s", settings.engine, where)
    return boosting


def _behind_roles(roles: ColumnRoleFeatures, finals: _Finals) -> None:
    """Final models take raw columns (the fitted roles in front of them) and the leaderboard
    names the roles step."""
    if finals.best_model is not None:
        finals.best_model = ColumnRoleModel(roles, finals.best_model)
    if finals.ensemble_model is not None:
        finals.ensemble_model = ColumnRoleModel(roles, finals.ensemble_model)
    for version in finals.versions.values():
        version.model = ColumnRoleModel(roles, version.model)
    step = roles.summary()
    for row in finals.board:
        if row.pipeline and row.number != ENSEMBLE_NUMBER:  # its members name their steps
            row.pipeline = f"{step} > {row.pipeline}"


def _prepare(req: AutoMLRequest) -> _Prepared:
    """Validate the request, prepare the target, choose validation and meta-features."""
    t0 = time.monotonic()
    if req.wall_budget_s is None and req.max_trials is None:
        raise InvalidArgument("set wall_budget_s and/or max_trials", reason="NO_BUDGET")
    if req.strategy not in STRATEGIES:
        raise InvalidArgument(
            f"unknown strategy {req.strategy!r}; choose {STRATEGIES}", reason="BAD_STRATEGY"
        )
    if req.stacking not in stacking.MODES:
        raise InvalidArgument(
            f"stacking {req.stacking!r}: choose one of {stacking.MODES}",
            reason="BAD_STACKING",
            metadata={"field": "stacking"},
        )
    if not 0 <= req.stack_levels <= stacking.MAX_LEVELS:
        raise InvalidArgument(
            f"stack_levels {req.stack_levels}: stacked layers above the search's, "
            f"0 (the default) to {stacking.MAX_LEVELS}",
            reason="BAD_STACKING",
            metadata={"field": "stack_levels"},
        )
    fams = validate_families(req.families)
    prepared = prepare_target(req.y, req.task, req.metric, req.folds)
    X = req.X.loc[prepared.keep].reset_index(drop=True)
    warnings = list(prepared.warnings)
    roles, role_warnings = fit_column_roles(X, req.column_roles or {})
    applied = roles.changes_columns
    if applied:  # else the sanitizer sees the same columns and drops the same ones
        X = roles.transform(X)
    dropped = {**roles.dropped_, **ColumnSanitizer().fit(X).dropped_}
    details = {r.column: r.detail for r in roles.roles_}
    for col, why in dropped.items():
        more = details.get(col, "") if why == "id_like" else ""
        warnings.append(f"dropped column {col!r}: {why}" + (f" ({more})" if more else ""))
    warnings += role_warnings
    validation, folds = req.validation, req.folds
    if validation == "auto" and req.stacking == "on":
        # stacking forced on needs out-of-fold scores of every row: k-fold even on data
        # that "auto" would validate on a holdout (at least 3 folds: see automl.stack)
        validation = "kfold"
        folds = max(stacking.MIN_FOLDS, auto_folds(folds, req.wall_budget_s, req.n_jobs))
    elif validation == "auto":
        validation, folds = auto_validation(
            folds, req.wall_budget_s, req.n_jobs, len(X), X.shape[1], prepared.n_classes
        )
    splits = make_splits(
        prepared,
        method=validation,
        folds=folds,
        holdout_fraction=req.holdout_fraction,
        seed=req.seed,
    )
    meta = req.meta_features
    if meta is None or meta.version != META_FEATURES_VERSION:
        # Of the whole table, labelled or not, like the data service's.
        meta = meta_features_of_frame(req.X, req.y)
    return _Prepared(
        started=t0,
        hard_deadline=t0 + req.wall_budget_s if req.wall_budget_s else None,
        families=fams,
        options=SpaceOptions(fams, req.allow_crosses, req.allow_selection, req.fixed_params),
        target=prepared,
        X=X,
        splits=splits,
        meta_features=similarity_vector(meta),
        dropped=dropped,
        warnings=warnings,
        roles=roles,
        roles_applied=applied,
    )


def _open_study_with_priors(req: AutoMLRequest, prep: _Prepared) -> _OpenStudy:
    """Open (or resume) the study; on a fresh study enqueue the warm-start priors' configs,
    and in any case let the sampler learn from the lineage parents' trials."""
    target = prep.target
    study, created = _open_study(
        req.storage, req.study_name, target.metric.direction, req.strategy, req.seed
    )
    seed = _sampler_seed(req.seed, created, req.worker)
    if seed != req.seed:
        study.sampler = make_sampler(req.strategy, seed)
    if rdb_backend(study) is not None:  # trials of a killed worker: failed (and retried)
        optuna.storages.fail_stale_trials(study)
    _check_joinable(study, target.metric.name, req.dataset_key)
    study.set_user_attr("task", target.task)
    study.set_user_attr("metric", target.metric.name)
    if req.dataset_key:
        study.set_user_attr("dataset_key", req.dataset_key)
    fresh = not study.get_trials(deepcopy=False)
    priors: list[Prior] = []
    if req.meta_store is not None:
        found = find_priors(
            req.meta_store,
            prep.meta_features,
            target.task,
            parent_keys=tuple(req.parent_dataset_ids),
            base_studies=tuple(req.base_studies),
            exclude_study=study.study_name,
            k=req.warm_start_k,
            metric=target.metric.name,
        )
        skipped = other_version_studies(req.meta_store, target.task)
        if skipped:
            prep.warnings.append(
                f"{len(skipped)} past {target.task} studies in the meta-store have meta-features "
                f"of another definition than version {META_FEATURES_VERSION}: not compared, "
                "not used for the warm start"
            )
        if fresh:  # a resumed study enqueued them already; its sampler still learns from them
            priors = found
            _enqueue_priors(study, priors, prep.families)
        history = []
        for p in found:
            replayed = prior_trials(p.observations, target.task, prep.options)
            p.trials_learned_from = len(replayed)
            history += replayed
        if history and req.strategy != "random":
            study.sampler = make_sampler(req.strategy, seed, prior_trials=history)
    return _OpenStudy(study, priors, fresh)


def _search(
    req: AutoMLRequest,
    prep: _Prepared,
    opened: _OpenStudy,
    boosting: DaskBoosting | None,
    gpus: GpuAccounting,
) -> tuple[SearchState, str, Parallelism]:
    """Run trials until the budget, the trial limit or a stop request: (state, stop reason,
    the parallelism plan)."""
    t0, wall = prep.started, req.wall_budget_s
    from_lineage = sum(
        p.configs_enqueued for p in opened.priors if p.reason in ("lineage_parent", "base_model")
    )
    if gpus.plan.uses_gpu:  # one trial per GPU, leased per trial (gpu_accounting)
        workers = gpus.plan.max_parallel_trials
        plan = Parallelism(
            workers,
            max(1, req.n_jobs // workers),
            [f"cuda:{i}" for i in gpus.plan.gpu_indices[:workers]],
        )
    else:
        plan = plan_parallelism(req.n_jobs, 0, req.parallel_trials)
    settings = SearchSettings(
        strategy=req.strategy,
        seed=req.seed,
        workers=plan.workers,
        threads=plan.threads,
        devices=plan.devices,
        max_trials=req.max_trials,
        search_deadline=t0 + SEARCH_SHARE * wall if wall else None,
        trial_time_limit_s=max(5.0, 0.4 * wall) if wall else None,
        started_at=t0,
        hard_deadline=prep.hard_deadline,
        on_event=req.on_event,
        should_stop=req.should_stop,
        # The default strategy tries a portfolio of strong defaults first (after any priors),
        # unless a lineage parent's ranked configurations replace it; "tpe" and "random"
        # stay plain, for comparison.
        initial=(
            portfolio(prep.options)
            if opened.fresh and req.strategy == "bohb" and from_lineage < LINEAGE_REPLACES_PORTFOLIO
            else []
        ),
        boosting=boosting,
        gpus=gpus,
        worker=req.worker,
    )
    state = SearchState(prep.target.metric.higher_is_better)
    if wall and _may_stack(req, prep) and settings.search_deadline is not None:
        settings.after_trial = _reserve_for_stacking(req, prep, settings, state)
    if "mlp" in prep.families:
        import torch  # MLP trials: same one-thread-per-trial policy as the boosters

        torch.set_num_threads(plan.threads)
    stop_reason = Searcher(
        opened.study, prep.X, prep.target, prep.splits, prep.options, settings, state
    ).run()
    if gpus.plan.uses_gpu and gpus.alerts:
        prep.warnings.append(gpus.summary_line())
    return state, stop_reason, plan


def _finalize(
    req: AutoMLRequest,
    prep: _Prepared,
    opened: _OpenStudy,
    state: SearchState,
    plan: Parallelism,
    stop_reason: str,
    boosting: DaskBoosting | None = None,
) -> _Finals:
    """Final models (refit or fold bag), the ensemble, the leaderboard, and how the priors
    fared. Appends to ``prep.warnings``."""
    study, target, wall = opened.study, prep.target, req.wall_budget_s
    higher = target.metric.higher_is_better
    finals = FinalModels(
        prep.X,
        target,
        state.fold_models,
        state.fit_time,
        len(prep.splits.folds),
        seed=req.seed,
        threads=plan.workers * plan.threads,
        device=plan.devices[0],
        deadline=prep.hard_deadline - 0.03 * wall if prep.hard_deadline and wall else None,
        allow_refit=stop_reason != "cancelled",
        boosting=boosting,
    )
    done = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    ranked = sorted(done, key=lambda n: float(done[n].value or 0.0), reverse=higher)
    # measuring compiles each kept trial's model, best first, within a slice of the budget
    until = time.monotonic() + MEASURE_SHARE * wall if wall else None
    latency = measure(state.fold_models, prep.X, ranked, until)
    per_row = measure_batch(state.fold_models, prep.X, [n for n in ranked if n in latency], until)
    # a served model pays the roles' features once per row, however many members it has
    features_s, features_batch_s = (
        (
            row_latency_s(_RolesOnly(prep.roles), req.X),
            batch_row_s(_RolesOnly(prep.roles), req.X),
        )
        if latency and prep.roles_applied
        else (0.0, 0.0)
    )
    single = {n: s + features_s for n, s in latency.items()}
    batch = {n: s + features_batch_s for n, s in per_row.items()}
    allowed = _within_latency(req, done, single, batch, prep.warnings)
    best_number, best_score, best_model, kind = _best(study, allowed, state, finals, prep.warnings)
    oof = {n: a for n, a in state.oof.items() if n in allowed}
    ens_model: Any | None = None
    ens_score: float | None = None
    weights: dict[int, float] = {}
    extra: list[LeaderboardRow] = []
    curve: list[ScorePoint] = []
    first: Selection | None = None
    if req.ensemble and len(oof) >= 2:
        # layer 1's greedy selection: a point of the score curve, and the plain ensemble's
        first = _select(req, prep, oof)
        curve.append(ScorePoint(time.monotonic() - prep.started, first.score, "ensemble", 1))
    stack, note = _fit_stack(req, prep, state, allowed, plan, oof, curve, stop_reason)
    levels = 1
    if stack is not None:
        extra += _stack_rows(stack)
        ens_model, ens_score, weights, top = _stack_ensemble(req, prep, oof, allowed, finals, stack)
        extra += top
        if ens_model is not None:
            levels = max(stacking.level_of(n) for n in weights)
    if ens_model is None and req.ensemble and len(oof) >= 2:
        ens_model, ens_score, weights, rows = _ensemble(
            req, prep, oof, allowed, finals, latency, features_s, per_row, features_batch_s, first
        )
        extra += rows
    board = leaderboard(study, target.metric.higher_is_better, extra)
    for row in board:
        if row.number in single:
            row.row_latency_s = single[row.number]
        if batch.get(row.number):
            row.batch_rows_per_s = 1.0 / batch[row.number]
    _assess_priors(opened.priors, board, study, prep.warnings)
    versions = _versions(
        prep,
        finals,
        done,
        (best_number, best_score, kind),
        (ens_model, ens_score, weights),
        oof,
        (features_s, features_batch_s),
    )
    chosen = versions.get("fold_bag")
    if chosen is not None and isinstance(chosen.model, StackEnsemble):
        # a stacked ensemble's cost is not its members' sum (layer 2 needs every input's
        # scores): its leaderboard row shows the version measured as a whole
        for row in board:
            if row.number == ENSEMBLE_NUMBER:
                row.row_latency_s = chosen.row_latency_s
                row.batch_rows_per_s = chosen.batch_rows_per_s
    return _Finals(
        best_number,
        best_score,
        best_model,
        kind,
        ens_model,
        ens_score,
        weights,
        oof,
        board,
        done,
        versions,
        curve,
        levels,
        note,
    )


def _versions(
    prep: _Prepared,
    finals: FinalModels,
    done: dict[int, optuna.trial.FrozenTrial],
    best: tuple[int | None, float | None, str],
    ensemble: tuple[Any | None, float | None, dict[int, float]],
    oof: dict[int, np.ndarray],
    features: tuple[float, float],
) -> dict[str, FinalVersion]:
    """The chosen final model (the ensemble when it scored better, else the best trial) as
    a fold bag and refit on all rows (the members that were refit; their out-of-fold blend
    estimates its quality), each measured on serving's compiled path while the wall budget
    allows (see MEASURE_GRACE; else unmeasured). A stacked ensemble has its fold-bag version
    only (see below)."""
    target = prep.target
    higher = target.metric.higher_is_better
    best_number, best_score, kind = best
    ens_model, ens_score, weights = ensemble
    score: float | None
    stacked_final = False
    if (
        ens_model is not None
        and ens_score is not None
        and (best_score is None or (ens_score > best_score if higher else ens_score < best_score))
    ):
        members, score = dict(weights), ens_score
        stacked_final = isinstance(ens_model, StackEnsemble)
    elif best_number is not None and kind in ("refit", "fold_bag"):
        members, score = {best_number: 1.0}, best_score
    else:
        return {}
    out: dict[str, FinalVersion]
    refits: dict[int, Any] = {}
    if isinstance(ens_model, StackEnsemble) and stacked_final:
        # A stacked final model has its fold-bag version only: its layer-2 models were fitted
        # on (pair-model) out-of-fold scores of layer 1, and a refit-full stack would serve
        # them the scores of layer-1 refits instead — inputs the CV estimate says nothing
        # about — besides refitting every input and layer-2 model. No "refit_full" variant.
        stacked = _stack_fold_bag(ens_model, weights, done, finals)
        if stacked is None:
            return {}
        out = {"fold_bag": FinalVersion("fold_bag", stacked[0], score, stacked[1])}
    else:
        bags = {n: finals.bag(done[n]) for n in members}
        if any(b is None for b in bags.values()):
            return {}
        out = {
            "fold_bag": FinalVersion(
                "fold_bag",
                assemble(members, bags),
                score,
                sum(len(b.members) for b in bags.values() if b is not None),
            )
        }
        refits = {n: m for n in members if (m := finals.refitted(n)) is not None}
    if refits:
        total = sum(members[n] for n in refits)
        kept = {n: members[n] / total for n in refits}
        refit_score = score
        if len(kept) < len(members) and all(n in oof for n in kept):
            blend = np.sum([w * oof[n] for n, w in kept.items()], axis=0)
            y = target.y[prep.splits.oof_index]
            refit_score = target.metric.score(y, blend, target.n_classes)
        out["refit_full"] = FinalVersion(
            "refit_full", assemble(kept, refits), refit_score, len(refits)
        )
    features_s, features_batch_s = features
    wall = prep.hard_deadline - prep.started if prep.hard_deadline is not None else None
    # measuring compiles every model of a version: the refit-full one (a k-th of the models)
    # first and within MEASURE_GRACE of the budget's end (a job may overrun by 10%), the fold
    # bag only before the end
    for name, grace in (("refit_full", MEASURE_GRACE), ("fold_bag", 0.0)):
        version = out.get(name)
        if version is None:
            continue
        if wall is not None and time.monotonic() > prep.started + wall * (1.0 + grace):
            continue
        version.row_latency_s = row_latency_s(version.model, prep.X) + features_s
        version.batch_rows_per_s = 1.0 / (batch_row_s(version.model, prep.X) + features_batch_s)
    return out


def _may_stack(req: AutoMLRequest, prep: _Prepared) -> bool:
    return (
        req.stacking != "off"
        and req.ensemble
        # a stacked model's cost is every layer-1 input's plus layer 2's: it is not trimmed
        # to a latency budget or a throughput floor member by member, so none is stacked
        and not req.max_row_latency_ms
        and not req.min_batch_rows_per_s
        and prep.splits.method != "holdout"
    )


def _layer_estimate(
    state: SearchState, folds: int, allowed: Collection[int] | None = None
) -> tuple[list[int], list[int], float]:
    """(trials whose configurations the stacked layer re-fits, trials whose scores feed it,
    its expected seconds)."""
    with state.lock:
        scores = {
            n: s
            for n, s in state.scores.items()
            if n in state.configs and (allowed is None or n in allowed)
        }
        configs = dict(state.configs)
        fit_times = dict(state.fit_time)
        kept = set(state.fold_models)
    chosen = stacking.choose_configs(scores, configs, state.higher)
    inputs = sorted((n for n in scores if n in kept), key=scores.__getitem__, reverse=state.higher)[
        : stacking.INPUTS
    ]
    return chosen, inputs, stacking.layer_estimate_s(chosen, fit_times, inputs, folds)


def _reserve_for_stacking(
    req: AutoMLRequest, prep: _Prepared, settings: SearchSettings, state: SearchState
) -> Callable[[], None]:
    """After each completed trial: move the search's deadline so that the stacked layers
    the budget allows (from what one layer of the current best configurations costs) fit
    between the search and the final models."""
    base = settings.search_deadline
    wall = req.wall_budget_s
    assert base is not None and wall is not None

    def after_trial() -> None:
        _, _, layer_s = _layer_estimate(state, len(prep.splits.folds))
        with state.lock:
            complete = len(state.scores)
        reserve = stacking.stack_reserve(
            req.stacking, req.stack_levels, wall, layer_s, prep.splits.method, complete
        )
        settings.search_deadline = base - reserve

    return after_trial


def _fit_stack(
    req: AutoMLRequest,
    prep: _Prepared,
    state: SearchState,
    allowed: dict[int, optuna.trial.FrozenTrial],
    plan: Parallelism,
    oof: dict[int, np.ndarray],
    curve: list[ScorePoint],
    stop_reason: str,
) -> tuple[stacking.Stack | None, str]:
    """The stacked layers the budget allows (None with why not), each followed by a point
    of the ensemble's score-over-time curve."""
    if req.stacking == "off":
        return None, "stacking is off (automl.stacking)"
    if not _may_stack(req, prep):
        why = (
            "stacking needs k-fold validation (this job validated on a holdout)"
            if prep.splits.method == "holdout"
            else "stacking is not combined with a per-row latency budget, a batch throughput "
            "floor or a disabled ensemble"
        )
        return None, _noted(req, prep, why)
    if stop_reason == "cancelled":
        return None, "stacking skipped: the job was cancelled"
    chosen, inputs, layer_s = _layer_estimate(state, len(prep.splits.folds), allowed)
    if len(inputs) < 2 or not chosen:
        return None, _noted(req, prep, "stacking skipped: fewer than 2 complete trials")
    wall = req.wall_budget_s
    levels, why = stacking.wanted_levels(
        req.stacking, req.stack_levels, wall, layer_s, prep.splits.method
    )
    if levels == 0:
        return None, _noted(req, prep, why)
    # the stacked layers use the reserved window (up to where the search had to stop); the
    # final models keep the rest of the budget
    deadline = prep.started + SEARCH_SHARE * wall if wall else None
    if wall and deadline is not None and prep.hard_deadline is not None and req.stacking == "on":
        # forced on: a layer may run into the final models' time (they fall back to fold bags)
        deadline = max(deadline, prep.hard_deadline - STACK_FORCED_FINAL_SHARE * wall)

    def on_layer(level: int, stack: stacking.Stack) -> None:
        sel = _select(req, prep, {**oof, **stack.oof})
        curve.append(ScorePoint(time.monotonic() - prep.started, sel.score, "ensemble", level))
        log.info("stacked layer %d: ensemble %s %.5f", level, prep.target.metric.name, sel.score)

    stack = stacking.fit_stack(
        prep.X,
        prep.target,
        prep.splits,
        inputs={n: (oof[n], state.fold_models[n]) for n in inputs},
        configs=state.configs,
        chosen=chosen,
        levels=levels,
        seed=req.seed,
        threads=plan.workers * plan.threads,
        deadline=deadline,
        should_stop=req.should_stop,
        on_layer=on_layer,
        fit_times=dict(state.fit_time),
    )
    if not stack.models:
        return None, _noted(req, prep, f"stacking ran no model: {stack.stopped or 'no time'}")
    note = (
        f"stacked 1 layer: {len(stack.models)} models on the features + the scores of "
        f"{len(inputs)} trials (pair models per input: no label leakage)"
    )
    if stack.stopped:
        note += f"; {stack.stopped}"
        if req.stacking == "on":
            prep.warnings.append(note)
    return stack, note


def _noted(req: AutoMLRequest, prep: _Prepared, why: str) -> str:
    """A reason stacking did not run; a warning when the spec asked for it."""
    if req.stacking == "on":
        prep.warnings.append(why)
    return why


def _select(req: AutoMLRequest, prep: _Prepared, oof: dict[int, np.ndarray]) -> Selection:
    target = prep.target
    return greedy_selection(
        oof,
        target.y[prep.splits.oof_index],
        target.metric,
        target.n_classes,
        rounds=req.ensemble_size,
    )


def _stack_rows(stack: stacking.Stack) -> list[LeaderboardRow]:
    rows = []
    for m in stack.models:
        below = len(stack.layers[m.level - 2])
        rows.append(
            LeaderboardRow(
                number=m.number,
                state="COMPLETE",
                pipeline=f"{m.description} on the features + {below} layer-{m.level - 1} scores",
                family=str(m.params.get("family", "")),
                params=m.params,
                score=m.outcome.score,
                score_std=m.outcome.score_std,
                fit_time_s=m.outcome.fit_time_s,
                predict_time_per_1k_s=m.outcome.predict_time_per_1k_s,
                fidelity=1.0,
                origin=f"stack:L{m.level}:trial#{m.source}",
                stack_level=m.level,
            )
        )
    return rows


def _stack_ensemble(
    req: AutoMLRequest,
    prep: _Prepared,
    oof: dict[int, np.ndarray],
    done: dict[int, optuna.trial.FrozenTrial],
    finals: FinalModels,
    stack: stacking.Stack,
) -> tuple[Any | None, float | None, dict[int, float], list[LeaderboardRow]]:
    """Greedy selection over every layer's OOF scores; a :class:`StackEnsemble` holding the
    whole stack when it picks a stacked model (else nothing: the plain ensemble follows)."""
    sel = _select(req, prep, {**oof, **stack.oof})
    if not any(n < 0 for n in sel.weights):
        return None, None, {}, []
    by_number = {m.number: m for m in stack.models}
    keys: dict[int, str] = {}
    outside: dict[str, Any] = {}
    for n in sel.weights:
        if n < 0:
            keys[n] = by_number[n].key
        elif stacking.input_key(n) in stack.layers[0]:
            keys[n] = stacking.input_key(n)  # its fold bag, already in the stack
        else:
            model = finals.get(done[n])
            if model is None:
                continue
            keys[n] = _outside_key(n)
            outside[keys[n]] = model
    weights = {n: w for n, w in sel.weights.items() if n in keys}
    model = StackEnsemble(
        stack.layers,
        {keys[n]: w for n, w in weights.items()},
        outside=outside,
        task=prep.target.task,
        classes=prep.target.classes,
    )
    fit_s = sum(done[n].user_attrs.get("fit_time_s", 0.0) for n in stack.input_trials.values())
    fit_s += sum(m.outcome.fit_time_s for m in stack.models)
    row = LeaderboardRow(
        number=ENSEMBLE_NUMBER,
        state="COMPLETE",
        pipeline=model.description,
        family="ensemble",
        params={"members": weights},
        score=sel.score,
        origin="ensemble",
        ensemble_weights=weights,
        fit_time_s=fit_s,
        predict_time_per_1k_s=None,
        fidelity=1.0,
        stack_level=0,
    )
    return model, sel.score, weights, [row]


def _search_curve(state: SearchState, started: float) -> list[ScorePoint]:
    """The search's best-so-far points (this process's trials), in time order."""
    with state.lock:
        points = sorted(state.curve)
    return [ScorePoint(t - started, s, "search", 1, n) for t, n, s in points]


def _models_in(model: Any) -> int:
    """Fitted models a member scores per row (a fold bag: each of its folds)."""
    return len(getattr(model, "members", [model]))


def _stack_fold_bag(
    model: StackEnsemble,
    weights: dict[int, float],
    done: dict[int, optuna.trial.FrozenTrial],
    finals: FinalModels,
) -> tuple[StackEnsemble, int] | None:
    """The stacked final model with its members outside the stack as fold bags (they may be
    refits in ``model``), and the fitted models it scores per row; None when one of them has
    no fold bag."""
    outside: dict[str, Any] = {}
    for n in weights:
        key = _outside_key(n)
        if key in model.outside:
            bag = finals.bag(done[n])
            if bag is None:
                return None
            outside[key] = bag
    bagged = StackEnsemble(
        model.layers, model.weights, outside=outside, task=model.task, classes=model.classes_
    )
    count = sum(_models_in(m) for layer in bagged.layers[: bagged.depth] for m in layer.values())
    return bagged, count + sum(_models_in(m) for m in outside.values())


def _outside_key(trial: int) -> str:
    """A stacked ensemble's key for a layer-1 member that is not one of the stack's inputs."""
    return f"outside.t{trial}"


class _RolesOnly:
    """The column roles' transform as a "model", to time what it adds to every row."""

    def __init__(self, roles: ColumnRoleFeatures) -> None:
        self.roles = roles

    def matrix_scorer(self, columns: Sequence[str], compile_estimator: Any = None) -> Any:
        found = self.roles.matrix_transform(columns)
        return None if found is None else found[0]

    def predict_scores(self, X: pd.DataFrame) -> Any:
        return self.roles.transform(X)


def _best(
    study: optuna.Study,
    done: dict[int, optuna.trial.FrozenTrial],
    state: SearchState,
    finals: FinalModels,
    warnings: list[str],
) -> tuple[int | None, float | None, Any | None, str]:
    """(trial, score, fitted model, its kind) of the best trial; when none completed, the
    best partial-fidelity fold bag (with a warning)."""
    if done:
        values = [t for t in done.values() if t.value is not None]
        pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
        bt = pick(values, key=lambda t: float(t.value))  # type: ignore[arg-type]  # filtered above
        return bt.number, bt.value, finals.get(bt), finals.kind.get(bt.number, "")
    if state.partial is None:
        return None, None, None, ""
    number, out = state.partial
    warnings.append(
        f"no trial completed within the budget; the model is trial {number} at "
        f"fidelity {out.fidelity:.2f} (raise the budget for better models)"
    )
    return number, out.score, FoldBag(out.fold_models), "fold_bag_partial"


def _assess_priors(
    priors: list[Prior], board: list[LeaderboardRow], study: optuna.Study, warnings: list[str]
) -> None:
    """How each prior fared here: its best rank and, for lineage parents whose trials the
    sampler learned from, the rank agreement (a warning when they disagree)."""
    _rank_priors(priors, board)
    rho = agreement(study)
    for p in priors:
        if p.observations:
            p.rank_agreement = rho
            if rho is not None and rho <= 0 and p.trials_learned_from:
                warnings.append(
                    f"lineage parent {p.source_dataset!r} ranks configurations unlike this "
                    f"dataset (rank correlation {rho:.2f}): the search stopped learning from "
                    "its trials once its configurations were scored here"
                )


def _ensemble(
    req: AutoMLRequest,
    prep: _Prepared,
    oof: dict[int, np.ndarray],
    done: dict[int, optuna.trial.FrozenTrial],
    finals: FinalModels,
    latency: dict[int, float],
    features_s: float = 0.0,
    per_row: dict[int, float] | None = None,
    features_batch_s: float = 0.0,
    sel: Selection | None = None,
) -> tuple[Any | None, float | None, dict[int, float], list[LeaderboardRow]]:
    """Greedy ensemble of the completed trials: (model, score, weights, its leaderboard row);
    within the per-row latency budget and over the batch throughput floor when there are
    (``features_s``, ``features_batch_s``: the column roles' costs, paid once). ``sel``: the
    greedy selection over ``oof`` when already made (it takes about a second on small data)."""
    per_row = per_row or {}
    target = prep.target
    if sel is None:
        sel = _select(req, prep, oof)
    if len(sel.weights) < 2:
        return None, None, {}, []
    model = build_ensemble(sel.weights, done, finals)
    if model is None:
        return None, None, {}, []
    score = sel.score

    def folds(n: int) -> int:  # a fold bag pays for each of its folds
        member = finals.get(done[n])
        return len(getattr(member, "members", [member]))

    def cost(n: int) -> float:
        return latency.get(n, 0.0) * folds(n)

    def batch_cost(n: int) -> float:
        return per_row.get(n, 0.0) * folds(n)

    budgets = []
    if req.max_row_latency_ms:
        budgets.append((cost, req.max_row_latency_ms / 1000 - features_s))
    if req.min_batch_rows_per_s:
        budgets.append((batch_cost, 1.0 / req.min_batch_rows_per_s - features_batch_s))
    if budgets:
        kept = dict(zip(model.member_ids, model.weights.tolist()))
        for member_cost, budget in budgets:
            kept = within_budget(kept, member_cost, budget)
        if len(kept) < 2:
            return None, None, {}, []
        if len(kept) < len(model.member_ids):
            model = build_ensemble(kept, done, finals)
            if model is None:
                return None, None, {}, []
            blend = np.sum([w * oof[n] for n, w in kept.items()], axis=0)
            score = target.metric.score(target.y[prep.splits.oof_index], blend, target.n_classes)
    weights = dict(zip(model.member_ids, model.weights.tolist()))
    row = LeaderboardRow(
        number=ENSEMBLE_NUMBER,
        state="COMPLETE",
        pipeline=model.description,
        family="ensemble",
        params={"members": weights},
        score=score,
        origin="ensemble",
        ensemble_weights=weights,
        # Members are fitted and evaluated anyway: their costs add up.
        fit_time_s=sum(done[n].user_attrs.get("fit_time_s", 0.0) for n in weights),
        predict_time_per_1k_s=sum(
            done[n].user_attrs.get("predict_time_per_1k_s", 0.0) for n in weights
        ),
        fidelity=1.0,
        row_latency_s=sum(cost(n) for n in weights) + features_s if latency else None,
        batch_rows_per_s=(
            1.0 / (sum(batch_cost(n) for n in weights) + features_batch_s)
            if per_row and all(n in per_row for n in weights)
            else None
        ),
        stack_level=0,
    )
    return model, score, weights, [row]


def _within_latency(
    req: AutoMLRequest,
    done: dict[int, optuna.trial.FrozenTrial],
    latency: dict[int, float],
    batch: dict[int, float],
    warnings: list[str],
) -> dict[int, optuna.trial.FrozenTrial]:
    """The completed trials the final model may use: under a latency budget and/or a batch
    throughput floor, those measured within them (the fastest measured one when none is,
    with a warning)."""
    if not (req.max_row_latency_ms or req.min_batch_rows_per_s) or not done:
        return done
    budget = (req.max_row_latency_ms or math.inf) / 1000
    floor_s = 1.0 / req.min_batch_rows_per_s if req.min_batch_rows_per_s else math.inf

    def ok(n: int) -> bool:
        single = latency.get(n, math.inf) if req.max_row_latency_ms else 0.0
        per_row = batch.get(n, math.inf) if req.min_batch_rows_per_s else 0.0
        return single <= budget and per_row <= floor_s

    parts = []
    if req.max_row_latency_ms:
        parts.append(f"{req.max_row_latency_ms:g} ms per row")
    if req.min_batch_rows_per_s:
        parts.append(f"{req.min_batch_rows_per_s:g} rows/s in batches")
    limits = " and ".join(parts)
    fits = {n: t for n, t in done.items() if ok(n)}
    left_out = len(done) - len(fits)
    measured = [n for n in done if n in latency and (n in batch or not req.min_batch_rows_per_s)]
    if not fits and measured:
        by = batch if req.min_batch_rows_per_s and not req.max_row_latency_ms else latency
        fastest = min(measured, key=by.__getitem__)
        fits = {fastest: done[fastest]}
        warnings.append(
            f"no trial predicts within {limits}; the final model is the fastest measured one "
            f"({latency[fastest] * 1000:.3g} ms per row"
            + (f", {1.0 / batch[fastest]:.4g} rows/s)" if fastest in batch else ")")
        )
    elif left_out:
        warnings.append(
            f"{left_out} completed trials are left out of the final model: outside {limits} "
            "(or not measured)"
        )
    return fits


def _record(req: AutoMLRequest, prep: _Prepared, study: optuna.Study, finals: _Finals) -> None:
    """Keep the finished study in the meta-store (when one is given and a trial completed)."""
    if req.meta_store is None or not finals.done:
        return
    req.meta_store.record(
        MetaEntry(
            study.study_name,
            req.dataset_key or study.study_name,
            prep.target.task,
            prep.target.metric.name,
            prep.target.metric.higher_is_better,
            prep.meta_features,
            _top_configs(finals.board),
            list(req.parent_dataset_ids),
            observations=observations(study),
            meta_features_version=META_FEATURES_VERSION,
        )
    )


def _trial_counts(board: list[LeaderboardRow]) -> dict[str, int]:
    counts = {s: 0 for s in ("COMPLETE", "PRUNED", "FAIL", "INTERRUPTED")}
    for r in board:
        if r.number >= 0 and r.state in counts:
            # a trial cut before its first score is the budget's doing, not a model error
            counts["INTERRUPTED" if r.error.startswith(INTERRUPTED) else r.state] += 1
    return counts


def _top_configs(board: list[LeaderboardRow], n: int = RECORDED_CONFIGS) -> list[dict[str, Any]]:
    """What the meta-store keeps of a study: its best ``n`` complete trials plus the best
    trial of every other family (so a derived dataset can try the runner-up families),
    best first."""
    complete = [r for r in board if r.state == "COMPLETE" and r.number >= 0]  # best first
    keep = complete[:n]
    families = {r.family for r in keep}
    for r in complete[n:]:
        if r.family not in families:
            families.add(r.family)
            keep.append(r)
    out, seen = [], set()
    for r in keep:
        key = config_key(r.params)
        if key not in seen:
            seen.add(key)
            out.append({"trial": r.number, "score": r.score, "params": r.params})
    return out


def _rank_priors(priors: list[Prior], board: list[LeaderboardRow]) -> None:
    ranks = {
        r.number: i + 1
        for i, r in enumerate([r for r in board if r.state == "COMPLETE" and r.number >= 0])
    }
    for p in priors:
        got = [ranks[n] for n in p.trial_numbers if n in ranks]
        p.best_rank = min(got) if got else 0
