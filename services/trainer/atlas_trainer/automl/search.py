"""The search loop: one Optuna study, ask/tell workers, budgets, events, cancellation.

Strategies:
- ``bohb``: multivariate grouped TPE + Hyperband over the fidelity rungs. Optuna narrows the
  sampler's view to the trial's own bracket whenever the study's pruner *is* a
  ``HyperbandPruner`` (so TPE pays start-up trials per bracket, optuna PR #828). Wrapping the
  Hyperband pruner in :class:`SharedHyperbandPruner` keeps the per-bracket successive-halving
  decisions but lets one TPE model learn from every trial of every bracket -- from the
  complete ones, as BOHB's model does (see :mod:`sampler`).
- ``tpe``: the same TPE, no pruning. ``random``: random search, no pruning.

Workers use ask/tell (not ``study.optimize``) so that no trial is created after the deadline,
failures are recorded with their reason, and interrupted trials are told PRUNED at the
fidelity they reached (FAIL with an ``INTERRUPTED`` error if they reached none).
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import pandas as pd
from optuna.pruners import BasePruner, HyperbandPruner, NopPruner
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from atlas_trainer.automl.evaluate import (
    MAX_RESOURCE,
    Interrupted,
    Outcome,
    Splits,
    evaluate_config,
)
from atlas_trainer.automl.sampler import ViewTPESampler
from atlas_trainer.automl.space import SpaceOptions, describe, sample_config
from atlas_trainer.automl.study_lock import StudyLock
from atlas_trainer.automl.task import PreparedTarget
from atlas_trainer.automl.transfer import PriorTPESampler
from atlas_trainer.gpu_accounting import GpuAccounting, TrialUsage

if TYPE_CHECKING:
    from atlas_trainer.parallel.dask_boosting import DaskBoosting

log = logging.getLogger(__name__)
# Error prefix of a trial cut short (deadline, per-trial limit, cancel) before any score.
INTERRUPTED = "interrupted: "
STRATEGIES = ("bohb", "tpe", "random")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# How often a worker whose budget is spent checks whether another worker's trial ended.
STALE_POLL_S = 1.0
# Optuna warns on every ask() with a heartbeat storage outside Study.optimize; the searcher
# records the heartbeats itself (Searcher._beat).
warnings.filterwarnings(
    "ignore", message="Heartbeat of storage is supposed to be used", category=UserWarning
)
# ... and fail_stale_trials, called on every ask, is marked experimental (since Optuna 2.9).
warnings.filterwarnings(
    "ignore",
    message=r".*fail_stale_trials is experimental",
    category=optuna.exceptions.ExperimentalWarning,
)


def charged_trials(study: optuna.Study) -> int:
    """Trials counted against a study-wide budget: finished or running, except a trial that
    was lost with its worker and queued again (the retry is charged instead)."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    charged = (*FINISHED, TrialState.RUNNING)
    return sum(1 for t in trials if t.state in charged and t.number not in retried)


class SharedHyperbandPruner(BasePruner):
    """Hyperband whose brackets do not partition the sampler's history (see module doc)."""

    def __init__(
        self, min_resource: int = 1, max_resource: int = MAX_RESOURCE, reduction_factor: int = 3
    ) -> None:
        self._hyperband = HyperbandPruner(min_resource, max_resource, reduction_factor)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return self._hyperband.prune(study, trial)


def make_sampler(
    strategy: str, seed: int, n_startup: int = 8, prior_trials: list[FrozenTrial] | None = None
) -> optuna.samplers.BaseSampler:
    """``prior_trials`` (a lineage parent's trials, see :mod:`transfer`) join TPE's history."""
    if strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    kwargs: dict[str, Any] = dict(
        seed=seed,
        multivariate=True,
        group=True,
        constant_liar=True,
        n_startup_trials=n_startup,
        complete_only=strategy == "bohb",  # see the sampler module
    )
    if prior_trials:
        return PriorTPESampler(prior_trials, **kwargs)
    return ViewTPESampler(**kwargs)


def make_pruner(strategy: str) -> BasePruner:
    return SharedHyperbandPruner() if strategy == "bohb" else NopPruner()


@dataclass
class SearchSettings:
    """How one worker searches. Deadlines are ``time.monotonic()`` values (None = none)."""

    strategy: str = "bohb"
    seed: int = 0
    workers: int = 1  # trials run in parallel in this process
    threads: int = 1  # threads per trial (model n_jobs)
    devices: list[str] = field(default_factory=lambda: ["cpu"])  # one per worker slot
    max_trials: int | None = None  # study-wide count of finished + running trials
    search_deadline: float | None = None
    trial_time_limit_s: float | None = None
    started_at: float = field(default_factory=time.monotonic)
    hard_deadline: float | None = None  # the job's wall budget end (for "remaining")
    on_event: Callable[[dict[str, Any]], None] | None = None
    should_stop: Callable[[], bool] | None = None
    keep_models: int = 20  # fold models kept in memory for the best N trials
    # Configurations to try first (after any already-enqueued ones), enqueued one at a time
    # so that none is left WAITING in the study when a budget stops the search.
    initial: list[dict[str, Any]] = field(default_factory=list)
    # The job's Dask cluster: boosters on enough rows fit there (automl.evaluate.grow).
    boosting: DaskBoosting | None = None
    # GPU trials lease their GPU here and are sampled while they run (None: slot devices).
    gpus: GpuAccounting | None = None
    # Who runs these trials (a study shared by several workers): trial user attr "worker".
    worker: str = ""
    # Called after every completed trial (outside the state lock); the engine moves
    # ``search_deadline`` there to reserve time for stacked layers (automl.stack).
    after_trial: Callable[[], None] | None = None


class SearchState:
    """What this process remembers beyond the Optuna storage: OOF predictions and fold
    models of good trials (for ensembling and refit-free final models). Thread-safe."""

    def __init__(self, higher_is_better: bool) -> None:
        self.lock = threading.Lock()
        self.higher = higher_is_better
        self.oof: dict[int, np.ndarray] = {}
        self.scores: dict[int, float] = {}
        self.fold_models: dict[int, list[Any]] = {}
        self.fit_time: dict[int, float] = {}
        self.cancelled = False
        self.trials_run: list[int] = []
        self.best: tuple[int, float] | None = None
        self.partial: tuple[int, Outcome] | None = None
        self.families: dict[int, str] = {}
        self.configs: dict[int, dict[str, Any]] = {}
        # (monotonic time, trial, score) whenever this process's best trial improved
        self.curve: list[tuple[float, int, float]] = []

    def keep_partial(self, number: int, outcome: Outcome) -> None:
        """Remember the best interrupted (partial-fidelity) trial: the fallback final model
        when no trial completes within the budget."""
        with self.lock:
            old = self.partial
            if old is None or (
                outcome.score > old[1].score if self.higher else outcome.score < old[1].score
            ):
                self.partial = (number, outcome)

    def keep(
        self,
        number: int,
        outcome: Outcome,
        keep_models: int,
        params: dict[str, Any] | None = None,
    ) -> bool:
        """Store a completed trial; returns True when it is the new best of this process."""
        with self.lock:
            self.oof[number] = outcome.oof
            self.scores[number] = outcome.score
            self.fit_time[number] = outcome.fit_time_s
            if params is not None:
                self.configs[number] = dict(params)
                self.families[number] = str(params.get("family", ""))
            self.fold_models[number] = outcome.fold_models
            ranked = sorted(self.fold_models, key=lambda n: self.scores[n], reverse=self.higher)
            for n in ranked[keep_models:]:
                del self.fold_models[n]  # memory: only the best N keep their fitted folds
            new_best = self.best is None or (
                outcome.score > self.best[1] if self.higher else outcome.score < self.best[1]
            )
            if new_best:
                self.best = (number, outcome.score)
                self.curve.append((time.monotonic(), number, outcome.score))
            return new_best


def _emit(settings: SearchSettings, event: dict[str, Any]) -> None:
    if settings.on_event is None:
        return
    now = time.monotonic()
    event.setdefault("elapsed_s", now - settings.started_at)
    if settings.hard_deadline is not None:
        event.setdefault("remaining_s", max(0.0, settings.hard_deadline - now))
    try:
        settings.on_event(event)
    except Exception:  # a broken watcher must not break the search
        log.exception("on_event callback failed")


def _best_of_study(study: optuna.Study) -> tuple[int, float] | None:
    try:
        t = study.best_trial
    except ValueError:
        return None
    return t.number, float(t.value)  # type: ignore[arg-type]  # complete trials have a value


class Searcher:
    """Runs trials of ``study`` until a budget, cancellation or the trial limit stops it."""

    def __init__(
        self,
        study: optuna.Study,
        X: pd.DataFrame,
        prepared: PreparedTarget,
        splits: Splits,
        options: SpaceOptions,
        settings: SearchSettings,
        state: SearchState,
    ) -> None:
        self.study, self.X, self.prepared, self.splits = study, X, prepared, splits
        self.options, self.settings, self.state = options, settings, state
        # count-then-ask and enqueue-unless-present, one worker of the study at a time
        self._ask_lock = StudyLock(study)
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._running: set[int] = set()
        self._beater: threading.Thread | None = None

    # -- budget ------------------------------------------------------------------------------
    def _stop_reason(self) -> str | None:
        s = self.settings
        if self.state.cancelled or (s.should_stop is not None and s.should_stop()):
            self.state.cancelled = True
            return "cancelled"
        if s.search_deadline is not None and time.monotonic() >= s.search_deadline:
            return "deadline"
        return None

    def _ask(self) -> optuna.Trial | None:
        while True:
            with self._ask_lock.hold():
                if self._stop.is_set() or self._stop_reason() is not None:
                    self._stop.set()
                    return None
                # A killed worker's trials stop beating: fail them (the storage's callback
                # queues each for one retry) so the workers still running finish the study.
                optuna.storages.fail_stale_trials(self.study)
                if self.settings.max_trials is None or not self._budget_spent():
                    self._enqueue_next()
                    trial = self.study.ask()
                    self._beat(trial._trial_id)  # noqa: SLF001 - the heartbeat API takes the id
                    return trial
                if not self._others_running():
                    self._stop.set()
                    return None
            # The budget is spent but another worker's trial is in flight: it either ends
            # (and the study with it) or its worker died and it goes stale, to be run here.
            self._stop.wait(STALE_POLL_S)

    def _budget_spent(self) -> bool:
        assert self.settings.max_trials is not None
        return charged_trials(self.study) >= self.settings.max_trials

    def _others_running(self) -> bool:
        storage = self.study._storage  # noqa: SLF001
        if not isinstance(storage, BaseHeartbeat) or not is_heartbeat_enabled(storage):
            return False  # one process: nobody else's trial to wait for
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return any(t._trial_id not in self._running for t in running)  # noqa: SLF001

    def _enqueue_next(self) -> None:
        pending = self.settings.initial
        if not pending or self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return
        while pending:
            params = pending.pop(0)
            before = len(self.study.get_trials(deepcopy=False))
            self.study.enqueue_trial(
                params, user_attrs={"origin": "portfolio"}, skip_if_exists=True
            )
            if len(self.study.get_trials(deepcopy=False)) > before:
                return

    # -- heartbeats: let a restarted worker tell our trials from a killed worker's ------------
    def _beat(self, trial_id: int) -> None:
        storage = self.study._storage  # noqa: SLF001
        if not isinstance(storage, BaseHeartbeat) or not is_heartbeat_enabled(storage):
            return
        self._running.add(trial_id)
        storage.record_heartbeat(trial_id)
        if self._beater is None:
            interval = storage.get_heartbeat_interval() or 10
            self._beater = threading.Thread(
                target=self._beat_loop,
                args=(storage, interval),
                daemon=True,
                name="atlas-heartbeat",
            )
            self._beater.start()

    def _beat_loop(self, storage: BaseHeartbeat, interval: float) -> None:
        while not self._finished.wait(interval):
            for tid in list(self._running):
                try:
                    storage.record_heartbeat(tid)
                except Exception:  # a missed beat only risks a spurious retry
                    log.warning("heartbeat for trial %s failed", tid, exc_info=True)

    # -- one trial ---------------------------------------------------------------------------
    def _run_one(self, trial: optuna.Trial, device: str) -> None:
        s = self.settings
        t_start = time.monotonic()
        trial_deadline = t_start + s.trial_time_limit_s if s.trial_time_limit_s else None
        origin = trial.user_attrs.get("origin") or ("random" if s.strategy == "random" else "tpe")
        base: dict[str, Any] = {"trial": trial.number, "origin": origin}
        params: dict[str, Any] = {}

        def check() -> None:
            reason = self._stop_reason()
            if reason is not None:
                raise Interrupted(reason)
            if trial_deadline is not None and time.monotonic() >= trial_deadline:
                raise Interrupted("trial_time_limit")

        reported: list[int] = []
        # Curated configurations (portfolio, warm-start priors) run at full fidelity: they are
        # few, known to be good somewhere, and give the sampler complete observations.
        prunable = s.strategy == "bohb" and not origin.startswith(("portfolio", "warm_start"))

        def report(score: float, step: int) -> bool:
            trial.report(score, step)
            reported.append(step)
            trial.set_user_attr("fidelity", step / MAX_RESOURCE)
            # The last rung is never pruned, and asking there would enter a *full-fidelity*
            # score into every lower rung's competitors (Optuna's successive halving records
            # the value for each rung up to the step): one-step models (linear) and finished
            # trials would then make every booster look bad at 1/27 of its rounds.
            return prunable and step < MAX_RESOURCE and trial.should_prune()

        try:
            params = sample_config(trial, self.prepared.task, self.options)
            trial.set_user_attr("origin", origin)
            if s.worker:
                trial.set_user_attr("worker", s.worker)
            trial.set_user_attr("pipeline", describe(params))
            trial.set_user_attr("family", params["family"])
            trial.set_user_attr("config", params)  # includes fixed (not sampled) values
            _emit(
                s, {**base, "type": "trial_started", "params": params, "pipeline": describe(params)}
            )
            with warnings.catch_warnings(), self._device(trial, device, base) as run_on:
                warnings.simplefilter("ignore")  # convergence chatter from trial models
                out = evaluate_config(
                    params,
                    self.X,
                    self.prepared,
                    self.splits,
                    seed=s.seed,
                    threads=s.threads,
                    device=run_on,
                    report=report,
                    check=check,
                    # Row-sample rungs refit: worth it only where trials get pruned (bohb's
                    # curated trials still run them, as the pruner's competitors).
                    row_rungs=s.strategy == "bohb",
                    boosting=s.boosting,
                )
        except Interrupted as exc:
            self._tell_interrupted(
                trial, base, params, exc.reason, time.monotonic() - t_start, bool(reported)
            )
            return
        except Exception as exc:  # a failing model is recorded, the study goes on
            err = f"{type(exc).__name__}: {exc}"[:500]
            trial.set_user_attr("error", err)
            self.study.tell(trial, state=TrialState.FAIL)
            _emit(s, {**base, "type": "trial_failed", "error": err, "params": params})
            return
        self._tell_outcome(trial, base, params, out)

    @contextmanager
    def _device(self, trial: optuna.Trial, slot_device: str, base: dict[str, Any]) -> Iterator[str]:
        """The trial's device: a GPU leased for it and sampled while it runs (its usage kept
        as user attributes before the trial is told), else the worker slot's device."""
        accounting = self.settings.gpus
        if accounting is None or not accounting.plan.uses_gpu:
            yield slot_device
            return
        usage: TrialUsage | None = None
        try:
            with accounting.trial(trial.number) as usage:
                yield usage.device
        finally:
            if usage is not None:
                trial.set_user_attr("device", usage.device)
                trial.set_user_attr("gpu_utilization_percent", usage.gpu_utilization_percent)
                trial.set_user_attr("gpu_memory_peak_bytes", usage.gpu_memory_peak_bytes)
                if usage.low_utilization:
                    _emit(
                        self.settings,
                        {
                            **base,
                            "type": "gpu_low_utilization",
                            "device": usage.device,
                            "gpu_utilization_percent": usage.gpu_utilization_percent,
                            "threshold_percent": accounting.low_utilization_percent,
                        },
                    )

    def _tell_outcome(
        self, trial: optuna.Trial, base: dict[str, Any], params: dict[str, Any], out: Outcome
    ) -> None:
        s, st = self.settings, self.state
        for k, v in (
            ("score_std", out.score_std),
            ("fit_time_s", out.fit_time_s),
            ("predict_time_per_1k_s", out.predict_time_per_1k_s),
            ("fidelity", out.fidelity),
        ):
            trial.set_user_attr(k, float(v))
        event = {
            **base,
            "params": params,
            "pipeline": out.description,
            "score": out.score,
            "fit_time_s": out.fit_time_s,
            "predict_time_per_1k_s": out.predict_time_per_1k_s,
        }
        if out.fidelity < 1.0:
            reason = out.extra.get("interrupted", "")
            if reason:
                trial.set_user_attr("interrupted", reason)
                st.keep_partial(trial.number, out)
                if reason != "trial_time_limit":
                    self._stop.set()
            self.study.tell(trial, state=TrialState.PRUNED)
            _emit(
                s,
                {
                    **event,
                    "type": "trial_pruned",
                    "fidelity": out.fidelity,
                    "reason": reason or "pruned",
                },
            )
            return
        self.study.tell(trial, out.score)
        with st.lock:
            st.trials_run.append(trial.number)
        new_best = st.keep(trial.number, out, s.keep_models, params)
        if s.after_trial is not None:
            s.after_trial()
        best = _best_of_study(self.study) or (trial.number, out.score)
        _emit(s, {**event, "type": "trial_finished", "best_trial": best[0], "best_score": best[1]})
        if new_best and best[0] == trial.number:
            _emit(s, {**event, "type": "new_best", "best_trial": best[0], "best_score": best[1]})

    def _tell_interrupted(
        self,
        trial: optuna.Trial,
        base: dict[str, Any],
        params: dict[str, Any],
        reason: str,
        elapsed: float,
        has_intermediate: bool,
    ) -> None:
        trial.set_user_attr("interrupted", reason)
        trial.set_user_attr("fit_time_s", elapsed)
        if has_intermediate:  # told PRUNED, it keeps its last rung's score for TPE
            self.study.tell(trial, state=TrialState.PRUNED)
            _emit(
                self.settings, {**base, "type": "trial_pruned", "reason": reason, "params": params}
            )
        else:
            trial.set_user_attr("error", INTERRUPTED + reason)
            self.study.tell(trial, state=TrialState.FAIL)
            _emit(
                self.settings,
                {
                    **base,
                    "type": "trial_failed",
                    "error": INTERRUPTED + reason,
                    "params": params,
                },
            )
        if reason != "trial_time_limit":
            self._stop.set()

    # -- workers -----------------------------------------------------------------------------
    def _worker(self, slot: int) -> None:
        device = self.settings.devices[slot % len(self.settings.devices)]
        while True:
            trial = self._ask()
            if trial is None:
                return
            try:
                self._run_one(trial, device)
            finally:
                self._running.discard(trial._trial_id)  # noqa: SLF001

    def run(self) -> str:
        """Search until stopped; returns why: ``cancelled``, ``deadline`` or ``max_trials``."""
        n = max(1, self.settings.workers)
        try:
            if n == 1:
                self._worker(0)
            else:
                with ThreadPoolExecutor(n, thread_name_prefix="atlas-trial") as pool:
                    for f in [pool.submit(self._worker, i) for i in range(n)]:
                        f.result()
        finally:
            self._finished.set()
        reason = self._stop_reason() or "max_trials"
        _emit(self.settings, {"type": "search_finished", "reason": reason})
        return reason
