"""After the search: final models (refit or fold bag), the ensemble, the leaderboard."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from atlas_core.ml import FoldBag, TabularModel, WeightedEnsemble
from atlas_trainer.automl.evaluate import Interrupted, grow
from atlas_trainer.automl.space import build_estimator, build_preprocessor, describe, total_units
from atlas_trainer.automl.task import PreparedTarget

if TYPE_CHECKING:
    from atlas_trainer.parallel.dask_boosting import DaskBoosting

ENSEMBLE_NUMBER = -2  # the ensemble's trial number on the leaderboard (proto contract)


@dataclass
class LeaderboardRow:
    """One trial (or the ensemble) as the service reports it."""

    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    pipeline: str
    family: str
    params: dict[str, Any]
    score: float | None
    score_std: float | None = None
    fit_time_s: float | None = None
    predict_time_per_1k_s: float | None = None
    # single-row prediction cost on serving's compiled path (one model; see automl.latency)
    row_latency_s: float | None = None
    # batch throughput on serving's compiled path (rows per second; see automl.latency)
    batch_rows_per_s: float | None = None
    fidelity: float | None = None
    origin: str = ""
    error: str = ""
    ensemble_weights: dict[int, float] = field(default_factory=dict)
    start_time: datetime | None = None
    end_time: datetime | None = None
    # What the trial ran on ("cpu", "cuda:N") and, on a GPU, its mean utilisation and peak
    # memory sampled while it ran.
    device: str = "cpu"
    gpu_utilization_percent: float = 0.0
    gpu_memory_peak_bytes: int = 0
    # 1: a search trial; 2, 3: a stacked layer's model (automl.stack); 0: the ensemble
    stack_level: int = 1


def row_of(t: FrozenTrial) -> LeaderboardRow:
    ua = t.user_attrs
    params = dict(ua.get("config") or t.params)
    score = t.value
    if t.state == TrialState.PRUNED and t.intermediate_values:
        score = t.intermediate_values[max(t.intermediate_values)]
    return LeaderboardRow(
        number=t.number,
        state=t.state.name,
        pipeline=ua.get("pipeline", ""),
        family=str(ua.get("family", params.get("family", ""))),
        params=params,
        score=score,
        score_std=ua.get("score_std"),
        fit_time_s=ua.get("fit_time_s"),
        predict_time_per_1k_s=ua.get("predict_time_per_1k_s"),
        fidelity=ua.get("fidelity"),
        origin=ua.get("origin", ""),
        error=ua.get("error", ""),
        start_time=t.datetime_start,
        end_time=t.datetime_complete,
        device=str(ua.get("device", "cpu")),
        gpu_utilization_percent=float(ua.get("gpu_utilization_percent", 0.0)),
        gpu_memory_peak_bytes=int(ua.get("gpu_memory_peak_bytes", 0)),
    )


def leaderboard(
    study: optuna.Study, higher_is_better: bool, extra: Sequence[LeaderboardRow] = ()
) -> list[LeaderboardRow]:
    """Complete trials (and the ensemble) by score, then pruned by score, then the rest."""
    rows = [row_of(t) for t in study.get_trials(deepcopy=False)] + list(extra)
    order = {"COMPLETE": 0, "PRUNED": 1, "RUNNING": 2, "WAITING": 3, "FAIL": 4}

    def key(r: LeaderboardRow) -> tuple[int, float]:
        s = r.score if r.score is not None and np.isfinite(r.score) else None
        v = 0.0 if s is None else (-s if higher_is_better else s)
        return order.get(r.state, 5), v if s is not None else float("inf")

    return sorted(rows, key=key)


def refit(
    params: Mapping[str, Any],
    X: pd.DataFrame,
    prepared: PreparedTarget,
    *,
    seed: int,
    threads: int,
    device: str,
    check: Callable[[], None],
    boosting: DaskBoosting | None = None,
) -> TabularModel:
    """Fit ``params`` on all rows (``check`` may raise Interrupted to abandon it); boosters
    on enough rows on the job's Dask cluster when ``boosting`` is given."""
    pre = build_preprocessor(params, prepared.task, seed)
    Z = pre.fit_transform(X, prepared.y)
    est = build_estimator(params, prepared.task, seed, threads=threads, device=device, units=1)
    est = grow(est, params["family"], Z, prepared.y, 0, total_units(params), check, boosting)
    return TabularModel(
        pre, est, prepared.task, prepared.classes, params["family"], describe(params)
    )


def predict_on(models: list[TabularModel], threads: int) -> None:
    """A trial's boosters fit and predict on one thread (trials run side by side); a final
    model predicts alone, so its boosters use all of the job's CPUs (``bench/final_predict.py``
    measures both). scikit-learn forests predict on one thread: their joblib start-up per call
    costs more than it saves on small batches."""
    for m in models:
        if type(m.estimator).__module__.split(".")[0] in ("lightgbm", "xgboost"):
            m.estimator.set_params(n_jobs=threads)
        elif "n_jobs" in m.estimator.get_params():
            m.estimator.set_params(n_jobs=1)


class FinalModels:
    """Produces one final model per trial: refit on all data while the budget allows
    (estimated from the trial's CV fit time), else the trial's fold bag, so the wall budget
    holds. Final models are built one at a time, so a refit fits, and every final model's
    boosters predict, on ``threads`` (the job's CPUs). Models are cached by trial number."""

    def __init__(
        self,
        X: pd.DataFrame,
        prepared: PreparedTarget,
        fold_models: dict[int, list],
        fit_times: dict[int, float],
        n_folds: int,
        *,
        seed: int,
        threads: int,
        device: str,
        deadline: float | None,
        allow_refit: bool,
        boosting: DaskBoosting | None = None,
    ) -> None:
        self.X, self.prepared, self.fold_models = X, prepared, fold_models
        self.fit_times, self.n_folds = fit_times, max(1, n_folds)
        self.seed, self.threads, self.device = seed, threads, device
        self.deadline, self.allow_refit = deadline, allow_refit
        self.boosting = boosting
        self.cache: dict[int, Any] = {}
        self.kind: dict[int, str] = {}

    def _time_left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def get(self, trial: FrozenTrial) -> Any | None:
        n = trial.number
        if n in self.cache:
            return self.cache[n]
        params = dict(trial.user_attrs.get("config") or trial.params)
        bag = self.fold_models.get(n)
        # CV fit time (one thread) covers every fold; one fit on all rows costs about a fold
        # and a bit (on more threads usually less: the estimate errs on the safe side).
        estimate = self.fit_times.get(n, trial.user_attrs.get("fit_time_s", 0.0)) / self.n_folds
        if self.allow_refit and (bag is None or 2.0 * estimate + 1.0 < self._time_left()):

            def check() -> None:
                if self.deadline is not None and time.monotonic() > self.deadline:
                    raise Interrupted("deadline")

            try:
                model = refit(
                    params,
                    self.X,
                    self.prepared,
                    seed=self.seed,
                    threads=self.threads,
                    device=self.device,
                    check=check,
                    boosting=self.boosting,
                )
                predict_on([model], self.threads)
                self.cache[n], self.kind[n] = model, "refit"
                return model
            except Interrupted:
                pass
        if bag is None:
            return None
        predict_on(bag, self.threads)
        bagged = self.bag(trial)
        self.cache[n], self.kind[n] = bagged, "fold_bag"
        return bagged

    def bag(self, trial: FrozenTrial) -> FoldBag | None:
        """The trial's fold bag (its cross-validation fold models, averaged), whether or not
        its final model is a refit; None when its fold models were not kept."""
        n = trial.number
        if self.kind.get(n) == "fold_bag":
            return self.cache[n]
        bag = self.fold_models.get(n)
        if not bag:
            return None
        params = dict(trial.user_attrs.get("config") or trial.params)
        predict_on(bag, self.threads)
        return FoldBag(bag, description=f"fold-bag[{len(bag)}]({describe(params)})")

    def refitted(self, number: int) -> TabularModel | None:
        """The trial's refit on all rows when its final model is one (see :meth:`get`)."""
        return self.cache[number] if self.kind.get(number) == "refit" else None


@dataclass
class FinalVersion:
    """One version of the job's final model: ``fold_bag`` (each selected trial's fold models
    averaged) or ``refit_full`` (each selected trial refit once on all rows), with its
    cross-validated quality estimate and measured costs on serving's compiled path."""

    name: str
    model: Any
    score: float | None
    models: int  # fitted models scored per row
    row_latency_s: float | None = None
    batch_rows_per_s: float | None = None

    @property
    def description(self) -> str:
        return str(getattr(self.model, "description", ""))

    def facts(self, higher_is_better: bool) -> dict[str, Any]:
        """What a bundle records about this version (``write_bundle``'s variant facts)."""
        return {
            "name": self.name,
            "score": self.score,
            "higher_is_better": higher_is_better,
            "models": self.models,
            "row_latency_s": self.row_latency_s,
            "batch_rows_per_s": self.batch_rows_per_s,
            "description": self.description,
        }


def assemble(weights: Mapping[int, float], models: Mapping[int, Any]) -> Any:
    """One model from members' models: the model itself for one member, else the weighted
    ensemble (heaviest first)."""
    if len(weights) == 1:
        return models[next(iter(weights))]
    order = sorted(weights, key=lambda n: -weights[n])
    return WeightedEnsemble([models[n] for n in order], [weights[n] for n in order], order)


def build_ensemble(
    weights: dict[int, float], trials: dict[int, FrozenTrial], finals: FinalModels
) -> WeightedEnsemble | None:
    """The greedy-selection ensemble from members' final models (a member with no model is
    dropped and the rest renormalised); None for fewer than two members."""
    members, ws, ids = [], [], []
    for n, w in sorted(weights.items(), key=lambda kv: -kv[1]):
        model = finals.get(trials[n])
        if model is not None:
            members.append(model)
            ws.append(w)
            ids.append(n)
    if len(members) < 2:
        return None
    return WeightedEnsemble(members, ws, ids)
