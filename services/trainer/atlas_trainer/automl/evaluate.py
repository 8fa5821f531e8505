"""Validation of one configuration with multi-fidelity growth and out-of-fold predictions.

Rungs (:func:`fidelity_plan`): the model is first *grown* (boosting rounds, trees, epochs)
on the first fold only, through 1/27, 1/9 and 1/3 of its full size, and scored there after
each rung so Hyperband can stop a poor configuration after a fraction of one fold; the last
rung then completes every fold at full size (out-of-fold predictions for all rows). Each
fold's preprocessing is fitted lazily, when the fold is first needed. Growth continues the
same model (XGBoost ``xgb_model``, LightGBM ``init_model``, forest ``warm_start``, MLP extra
epochs), so a configuration that survives every rung costs about one full cross-validation.
Boosters on enough rows refit their low rungs on row samples instead (:func:`booster_plan`).
``check()`` is called between folds/rungs and inside boosting iterations and epochs, so
deadlines and cancellation interrupt even a long fit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from atlas_core.ml import TabularModel
from atlas_trainer.automl.space import build_estimator, build_preprocessor, describe, total_units
from atlas_trainer.automl.task import PreparedTarget

if TYPE_CHECKING:
    from atlas_trainer.parallel.dask_boosting import DaskBoosting

RUNGS = (1, 3, 9, 27)  # fidelity steps reported to the pruner, out of MAX_RESOURCE
MAX_RESOURCE = 27
# Boosters on at least this many training rows (first fold) split a low rung's budget between
# rows and rounds (see :func:`booster_plan`).
ROW_RUNG_MIN_ROWS = 5_000
HOLDOUT_ROWS = 20_000  # above this, "auto" validation uses a holdout instead of k-fold
BOOSTERS = ("xgboost", "lightgbm")


class Interrupted(Exception):
    """Raised by ``check`` callbacks: ``reason`` is ``deadline``, ``trial_time_limit`` or
    ``cancelled``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Splits:
    """Train/validation index pairs shared by every trial; ``oof_index`` = rows that get an
    out-of-fold prediction (all rows for k-fold, the holdout rows otherwise)."""

    folds: list[tuple[np.ndarray, np.ndarray]]
    oof_index: np.ndarray
    method: str


def make_splits(
    prepared: PreparedTarget,
    *,
    method: str = "auto",
    folds: int | None = None,
    holdout_fraction: float = 0.2,
    seed: int = 0,
) -> Splits:
    n = len(prepared.y)
    stratify = prepared.y if prepared.task != "regression" else None
    if method == "auto":
        method = "holdout" if n > HOLDOUT_ROWS else "kfold"
    if method == "holdout":
        tr, va = train_test_split(
            np.arange(n), test_size=holdout_fraction, random_state=seed, stratify=stratify
        )
        return Splits([(np.sort(tr), np.sort(va))], np.sort(va), "holdout")
    k = folds or prepared.folds
    if stratify is not None:
        k = min(k, prepared.folds)
        it = StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(n), stratify)
    else:
        it = KFold(k, shuffle=True, random_state=seed).split(np.zeros(n))
    return Splits([(tr, va) for tr, va in it], np.arange(n), f"{k}-fold")


@dataclass
class Outcome:
    """What one evaluated configuration produced."""

    score: float
    score_std: float
    oof: np.ndarray  # scores on splits.oof_index rows: [m] or [m, C]
    fit_time_s: float
    predict_time_per_1k_s: float
    fold_models: list[TabularModel]
    fidelity: float  # fraction of the full size reached (1.0 when complete)
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def rung_targets(total: int) -> list[tuple[int, int]]:
    """(step, units) pairs: the rungs at which to report, with the model size at each."""
    if total <= 1:
        return [(MAX_RESOURCE, 1)]
    out: list[tuple[int, int]] = []
    for step in RUNGS:
        units = max(1, math.ceil(total * step / MAX_RESOURCE))
        if out and units <= out[-1][1]:
            continue
        out.append((step, units))
    if out[-1][0] != MAX_RESOURCE:
        out[-1] = (MAX_RESOURCE, total)
    return out


def grow(
    est: Any,
    family: str,
    Z: np.ndarray,
    y: np.ndarray,
    done: int,
    target: int,
    check: Callable[[], None],
    boosting: DaskBoosting | None = None,
) -> Any:
    """Grow ``est`` from ``done`` to ``target`` units (0 = unfitted); returns the fitted
    estimator: ``est`` itself, or for a booster fitted on the Dask cluster (``boosting``
    says when) an ordinary estimator of the same class."""
    if boosting is not None and boosting.applies(family, len(y)):
        return boosting.grow(est, family, Z, y, done, target, check)
    delta = target - done
    if family == "xgboost":
        import xgboost as xgb

        class _Check(xgb.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                check()
                return False

        est.set_params(n_estimators=delta, callbacks=[_Check()])
        try:
            est.fit(Z, y, xgb_model=est.get_booster() if done else None)
        finally:
            est.set_params(callbacks=None)  # keeps the fitted model picklable
    elif family == "lightgbm":
        est.set_params(n_estimators=delta)
        est.fit(Z, y, init_model=est.booster_ if done else None, callbacks=[lambda env: check()])
    elif family in ("random_forest", "extra_trees"):
        step = max(10, delta // 4)  # in chunks so a deadline can interrupt a big forest
        size = done
        while size < target:
            size = min(target, size + step)
            est.set_params(n_estimators=size, warm_start=True)
            est.fit(Z, y)
            check()
        est.set_params(warm_start=False)
    elif family == "mlp":

        def on_epoch(_: int) -> bool:
            check()
            return False

        est.fit(Z, y, epochs=delta, warm_start=done > 0, on_epoch=on_epoch)
    else:
        est.fit(Z, y)
    return est


def fidelity_plan(total: int, n_folds: int) -> list[tuple[int, int, bool]]:
    """(step, units, all_folds) rungs. Low rungs grow and score the *first fold only* (the
    same rows for every trial, so scores compare), the last rung completes every fold at full
    size. A one-step model (linear, total = 1) gets one low rung: its first fold, fitted in
    full (step 9 ~ one fold of three). So a pruned trial costs a fraction of one fold, and
    a completed one still costs about one full cross-validation."""
    low = [(step, units, False) for step, units in rung_targets(total) if step < MAX_RESOURCE]
    if n_folds > 1 and not low:
        low = [(9, total, False)]
    return [*low, (MAX_RESOURCE, total, True)]


def booster_plan(total: int, n_rows: int) -> list[tuple[int, int, bool, float]] | None:
    """(step, rounds, all_folds, row_fraction) rungs for a booster with ``total`` rounds on
    ``n_rows`` first-fold training rows, or None to use :func:`fidelity_plan`.

    With rounds alone as the fidelity, a rung at 1/27 of the rounds favours high learning
    rates (short-horizon bias): low-rate configurations -- the winners of plain TPE on medium
    data -- look bad there and are pruned. On enough rows a low rung at step s instead fits a
    fresh model on sqrt(s/27) of the rows for sqrt(s/27) of the rounds (same cost), so the
    horizon is 5x longer at the first rung. Such rungs refit rather than grow; a surviving
    configuration costs ~1.2 full cross-validations instead of ~1."""
    if n_rows < ROW_RUNG_MIN_ROWS or total <= 1:
        return None
    plan = []
    for step in RUNGS[:-1]:
        frac = math.sqrt(step / MAX_RESOURCE)
        plan.append((step, max(1, math.ceil(total * frac)), False, frac))
    return [*plan, (MAX_RESOURCE, total, True, 1.0)]


def row_subset(y: np.ndarray, fraction: float, seed: int, classification: bool) -> np.ndarray:
    """Sorted positions of a seeded ``fraction`` of ``y``'s rows (the same for every trial, so
    rung scores compare), plus one row of any class the draw missed."""
    k = max(2, round(fraction * len(y)))
    sub = np.random.default_rng(seed).permutation(len(y))[:k]
    if classification:
        missing = np.setdiff1d(np.unique(y), np.unique(y[sub]))
        if missing.size:
            sub = np.concatenate([sub, [np.flatnonzero(y == c)[0] for c in missing]])
    return np.sort(sub)


def evaluate_config(
    params: Mapping[str, Any],
    X: pd.DataFrame,
    prepared: PreparedTarget,
    splits: Splits,
    *,
    seed: int = 0,
    threads: int = 1,
    device: str = "cpu",
    report: Callable[[float, int], bool] | None = None,
    check: Callable[[], None] = lambda: None,
    row_rungs: bool = True,
    boosting: DaskBoosting | None = None,
) -> Outcome:
    """Cross-validate ``params`` along :func:`fidelity_plan` (:func:`booster_plan` for
    boosters on enough rows, unless ``row_rungs`` is False: searches that never prune keep
    the growth rungs, which cost nothing extra). ``report(score, step)`` is called after each
    rung and returns True to stop; this function then returns the partial outcome with
    ``fidelity < 1`` (its models: the first fold's). ``check()`` raises
    ``Interrupted``, which propagates before the first rung completes; after it, the outcome
    of the last complete rung is returned with ``extra["interrupted"]`` = the reason.
    Exceptions from fitting propagate (the trial is recorded as failed). ``boosting``: the
    job's Dask cluster, which fits the boosters on enough rows (see :func:`grow`)."""
    task, metric, y = prepared.task, prepared.metric, prepared.y
    family = params["family"]
    t_fit = 0.0
    folds: list[dict[str, Any]] = []

    def fold(i: int) -> dict[str, Any]:  # preprocessing fitted lazily: pruned trials skip it
        nonlocal t_fit
        while len(folds) <= i:
            check()
            tr, va = splits.folds[len(folds)]
            t0 = time.perf_counter()
            pre = build_preprocessor(params, task, seed)
            Ztr = pre.fit_transform(X.iloc[tr], y[tr])
            Zva = pre.transform(X.iloc[va])
            t_fit += time.perf_counter() - t0
            est = build_estimator(params, task, seed, threads=threads, device=device, units=1)
            folds.append(
                {"pre": pre, "est": est, "Ztr": Ztr, "ytr": y[tr], "Zva": Zva, "va": va, "done": 0}
            )
        return folds[i]

    pos = {int(r): i for i, r in enumerate(splits.oof_index)}
    total = total_units(params)
    fidelity = 0.0
    score, std, oof, t_pred, n_pred = float("nan"), float("nan"), np.empty(0), 0.0, 1
    kept: list[tuple[Any, Any]] = []
    interrupted = ""
    desc = describe(params)
    plan = None
    if row_rungs and family in BOOSTERS:
        plan = booster_plan(total, len(splits.folds[0][0]))
    if plan is None:
        plan = [(*rung, 1.0) for rung in fidelity_plan(total, len(splits.folds))]
    for step, units, every, frac in plan:
        idx = range(len(splits.folds)) if every else range(1)
        shape = (len(splits.oof_index),) + (() if task == "regression" else (prepared.n_classes,))
        rung_oof = np.zeros(shape)
        fold_scores: list[float] = []
        rung_pred = 0.0
        try:
            for i in idx:
                f = fold(i)
                t0 = time.perf_counter()
                try:
                    if frac < 1.0:  # a fresh model on a row sample (see booster_plan)
                        sample = row_subset(f["ytr"], frac, seed, task != "regression")
                        est = build_estimator(
                            params, task, seed, threads=threads, device=device, units=1
                        )
                        f["model_est"] = grow(
                            est,
                            family,
                            f["Ztr"][sample],
                            f["ytr"][sample],
                            0,
                            units,
                            check,
                            boosting,
                        )
                    else:
                        if f["done"] < units:
                            f["est"] = grow(
                                f["est"],
                                family,
                                f["Ztr"],
                                f["ytr"],
                                f["done"],
                                units,
                                check,
                                boosting,
                            )
                            f["done"] = units
                        f["model_est"] = f["est"]
                finally:
                    t_fit += time.perf_counter() - t0
                model = TabularModel(f["pre"], f["model_est"], task, prepared.classes, family, desc)
                t0 = time.perf_counter()
                s = model.scores_from_features(f["Zva"])
                rung_pred += time.perf_counter() - t0
                rung_oof[[pos[int(r)] for r in f["va"]]] = s
                try:
                    fold_scores.append(metric.score(y[f["va"]], s, prepared.n_classes))
                except ValueError:  # e.g. AUC on a fold with one class
                    pass
        except Interrupted as exc:
            if fidelity == 0.0:
                raise
            # Keep the last complete rung: a usable (partial-fidelity) result, e.g. the only
            # model available when every trial outgrows a tiny budget.
            interrupted = exc.reason
            break
        rows = (
            splits.oof_index
            if every
            else np.asarray([pos[int(r)] for r in folds[0]["va"]], dtype=np.int64)
        )
        sub = rung_oof if every else rung_oof[rows]
        try:
            rung_score = metric.score(
                y[splits.oof_index[rows]] if not every else y[rows], sub, prepared.n_classes
            )
        except ValueError:
            if not every:
                continue  # an unscorable first fold: skip this low rung
            raise
        if not math.isfinite(rung_score):
            raise ValueError(f"non-finite validation score {rung_score}")
        fidelity, score, t_pred, n_pred = step / MAX_RESOURCE, rung_score, rung_pred, len(rows)
        oof = sub
        kept = [(f["pre"], f["model_est"]) for f in (fold(i) for i in idx)]
        std = float(np.std(fold_scores)) if fold_scores else 0.0
        if report is not None and report(score, step) and step != MAX_RESOURCE:
            break
    fold_models = [
        TabularModel(pre, est, task, prepared.classes, family, desc) for pre, est in kept
    ]
    extra = {"interrupted": interrupted} if interrupted else {}
    return Outcome(
        score,
        std,
        oof,
        t_fit,
        t_pred / max(1, n_pred) * 1000.0,
        fold_models,
        fidelity,
        desc,
        extra,
    )
