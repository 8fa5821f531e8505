"""Stacking after the search (AutoGluon's ``num_stack_levels``), without label leakage.

Layer 1 is the search's trials. The stacked layer (layer 2) re-fits the best configuration of
each of the best model families on the input features *plus* the scores of the best layer-1
trials (:func:`atlas_core.ml.with_stack_columns`), bagged with the *same* fold split as the
search, and greedy ensemble selection then runs over both layers.

Leakage, and how it is avoided: the plain recipe feeds layer 2 the layer-1 out-of-fold (OOF)
scores of every row. When a layer-2 model is validated on fold i, the scores of its
*training* rows (in fold j) came from the layer-1 model that left out fold j but was fitted
on fold i, labels included: a layer-2 model then scores well above chance on pure noise
(``tests/unit/trainer/test_automl_stack.py`` shows it). Here the training rows of layer-2
fold i read scores from a layer-1 model fitted without folds i *and* j (one "pair model" per
pair of folds, k(k-1)/2 per input trial, each on (k-2)/k of the rows), and the validation rows
of fold i read the ordinary OOF scores (the model without fold i): nothing a layer-2 fold sees
was fitted on its validation labels, so its OOF score is honest and the ensemble can weigh
it against layer 1. This needs at least 3 folds. A third layer would need models fitted
without three folds each (for every triple): not offered.

Budget (dynamic stacking): the layer costs about its configurations' CV fit times in the
search plus the pair models ((k-2)/2 of each input trial's CV fit time), so the search reserves
that much of the wall budget (:func:`stack_reserve`, re-estimated after every completed trial).
``auto`` stacks only under a wall budget of at least ``MIN_WALL_S`` whose reserve share fits;
``on`` stacks whatever the budget (a layer the deadline cuts keeps the models it completed);
``off`` never.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from atlas_core.ml import FoldBag, TabularModel, with_stack_columns
from atlas_trainer.automl.evaluate import Interrupted, Outcome, Splits, grow
from atlas_trainer.automl.space import build_estimator, build_preprocessor, describe, total_units
from atlas_trainer.automl.task import PreparedTarget

MODES = ("auto", "on", "off")
MAX_LEVELS = 1  # stacked layers above the search's (layer 2; see the module doc)
MODELS_PER_LAYER = 3  # the best configuration of each of the best families
INPUTS = 5  # best layer-1 trials whose scores feed layer 2
MIN_FOLDS = 3  # pair models leave two folds out
PAIR_SHARE = 0.4  # of the layer's time window, at most, for the inputs after the best one
MIN_WALL_S = 60.0  # "auto" stacks only under at least this wall budget
MAX_SHARE = 0.35  # of the wall budget, at most, reserved for stacked layers
COST_FACTOR = 1.3  # a stacked layer's cost / its configurations' CV fit time in the search


def stack_number(level: int, index: int) -> int:
    """Leaderboard number of stacked model ``index`` (1-based) of layer ``level``:
    -(100 * level + index), e.g. -201 (the ensemble is -2, trials are >= 0)."""
    return -(100 * level + index)


def level_of(number: int) -> int:
    """The stack layer of a leaderboard number (1 for trials, 0 for the ensemble)."""
    if number >= 0:
        return 1
    return -number // 100 if number <= -100 else 0


def choose_configs(
    scores: Mapping[int, float],
    configs: Mapping[int, Mapping[str, Any]],
    higher_is_better: bool,
    n: int = MODELS_PER_LAYER,
) -> list[int]:
    """Trials whose configurations a stacked layer re-fits: the best trial of each of the
    ``n`` best families, best first."""
    ranked = sorted(scores, key=scores.__getitem__, reverse=higher_is_better)
    chosen: list[int] = []
    families: set[str] = set()
    for t in ranked:
        family = str(configs[t].get("family", ""))
        if family in families:
            continue
        families.add(family)
        chosen.append(t)
        if len(chosen) == n:
            break
    return chosen


def stacked_config(params: Mapping[str, Any]) -> dict[str, Any]:
    """A layer-1 configuration as a stacked layer re-fits it: the model and its tuned
    hyperparameters, without feature crosses or selection (ranked by correlation with the
    target, they would spend themselves on the strong stack columns and drop the input
    features' own crosses), scaled when linear (the stack columns are probabilities)."""
    out = dict(params)
    out["pre.crosses"] = 0
    out["pre.selection"] = "none"
    out.pop("pre.sel_pct", None)
    if out.get("family") == "linear" and out.get("pre.scaling", "none") == "none":
        out["pre.scaling"] = "standard"
    return out


def layer_estimate_s(
    chosen: Sequence[int],
    fit_times: Mapping[int, float],
    inputs: Sequence[int] = (),
    folds: int = MIN_FOLDS,
) -> float:
    """Expected seconds of the stacked layer: its configurations' CV fit times in the
    search plus the inputs' pair models ((k-2)/2 of their CV fit time), times ``COST_FACTOR``."""
    own = sum(float(fit_times.get(t, 0.0)) for t in chosen)
    pairs = max(0, folds - 2) / 2 * sum(float(fit_times.get(t, 0.0)) for t in inputs)
    return COST_FACTOR * (own + pairs)


def wanted_levels(
    mode: str, max_levels: int, wall_s: float | None, layer_s: float, validation: str
) -> tuple[int, str]:
    """(stacked layers to plan for, why): 0 with the reason when stacking is off."""
    if mode == "off":
        return 0, "stacking is off (automl.stacking)"
    if validation == "holdout":
        return 0, "stacking needs k-fold validation (this job validated on a holdout)"
    if validation.endswith("-fold") and int(validation.split("-")[0]) < MIN_FOLDS:
        return 0, f"stacking needs at least {MIN_FOLDS} folds (this job used {validation})"
    top = max_levels or MAX_LEVELS
    if mode == "on" or wall_s is None:
        if mode == "auto":
            return 0, "stacking (auto) needs a wall budget; set automl.stacking ON to force it"
        return top, ""
    if wall_s < MIN_WALL_S:
        return 0, (
            f"stacking skipped: the wall budget ({wall_s:.0f} s of search and final models) "
            f"is under {MIN_WALL_S:.0f} s; raise it or set automl.stacking ON"
        )
    fits = int(MAX_SHARE * wall_s // layer_s) if layer_s > 0 else top
    if fits < 1:
        return 0, (
            f"stacking skipped: one stacked layer would take about {layer_s:.0f} s, more than "
            f"{MAX_SHARE:.0%} of the wall budget; raise it or set automl.stacking ON"
        )
    return min(top, fits), ""


def stack_reserve(
    mode: str,
    max_levels: int,
    wall_s: float,
    layer_s: float,
    validation: str,
    complete: int = 2,
) -> float:
    """Seconds of the wall budget the search leaves for stacked layers: none before 2 trials
    completed (nothing to stack yet), at most ``MAX_SHARE`` of it."""
    if complete < 2:
        return 0.0
    levels, _ = wanted_levels(mode, max_levels, wall_s, layer_s, validation)
    if levels == 0:
        return 0.0
    return min(MAX_SHARE * wall_s, levels * layer_s)


@dataclass
class StackedModel:
    """One model of a stacked layer: its leaderboard number, key, configuration (from
    trial ``source``) and cross-validation outcome on the stacked features."""

    number: int
    key: str
    level: int
    source: int
    params: dict[str, Any]
    outcome: Outcome
    started: float
    finished: float

    @property
    def description(self) -> str:
        return f"L{self.level}[{describe(self.params)}]"


@dataclass
class Stack:
    """What stacking produced: ``layers[0]`` the layer-1 inputs (key -> fold bag),
    ``layers[i]`` the stacked models of layer i + 1; their OOF scores by leaderboard number;
    when each layer finished (monotonic)."""

    layers: list[dict[str, Any]]
    models: list[StackedModel] = field(default_factory=list)
    input_trials: dict[str, int] = field(default_factory=dict)  # key -> trial number
    layer_finished: list[float] = field(default_factory=list)
    stopped: str = ""  # why fewer layers than planned ran

    @property
    def oof(self) -> dict[int, np.ndarray]:
        return {m.number: m.outcome.oof for m in self.models}

    @property
    def levels(self) -> int:
        return len(self.layers)


def input_key(trial: int) -> str:
    return f"t{trial}"


def _fit_rows(
    params: Mapping[str, Any],
    X: pd.DataFrame,
    y: np.ndarray,
    rows: np.ndarray,
    prepared: PreparedTarget,
    *,
    seed: int,
    threads: int,
    check: Callable[[], None],
) -> TabularModel:
    """``params`` fitted on ``rows`` of ``X`` at full size."""
    pre = build_preprocessor(params, prepared.task, seed)
    Z = pre.fit_transform(X.iloc[rows], y[rows])
    est = build_estimator(params, prepared.task, seed, threads=threads, device="cpu", units=1)
    est = grow(est, params["family"], Z, y[rows], 0, total_units(params), check)
    return TabularModel(
        pre, est, prepared.task, prepared.classes, params["family"], describe(params)
    )


def pair_scores(
    X: pd.DataFrame,
    prepared: PreparedTarget,
    splits: Splits,
    params: Mapping[str, Any],
    *,
    seed: int,
    threads: int,
    check: Callable[[], None],
) -> dict[tuple[int, int], np.ndarray]:
    """(i, j) -> scores of the rows of fold j from ``params`` fitted without folds i and j
    (one fit per pair serves (i, j) and (j, i))."""
    val = [va for _, va in splits.folds]
    k = len(val)
    out: dict[tuple[int, int], np.ndarray] = {}
    for i in range(k):
        for j in range(i + 1, k):
            rows = np.sort(np.concatenate([val[f] for f in range(k) if f not in (i, j)]))
            model = _fit_rows(
                params, X, prepared.y, rows, prepared, seed=seed, threads=threads, check=check
            )
            scores = model.predict_scores(X.iloc[np.concatenate([val[i], val[j]])])
            out[(j, i)] = scores[: len(val[i])]  # fold i's rows, seen by layer-2 fold j
            out[(i, j)] = scores[len(val[i]) :]
    return out


def fold_inputs(
    oof: np.ndarray, pairs: Mapping[tuple[int, int], np.ndarray], splits: Splits, fold: int
) -> np.ndarray:
    """One input trial's scores as layer-2 fold ``fold`` sees them: its validation rows the
    ordinary OOF scores, every other fold's rows the pair model's without ``fold``."""
    out = np.array(oof, copy=True)
    for j, (_, va) in enumerate(splits.folds):
        if j != fold:
            out[va] = pairs[(fold, j)]
    return out


def fit_stack(
    X: pd.DataFrame,
    prepared: PreparedTarget,
    splits: Splits,
    *,
    inputs: Mapping[int, tuple[np.ndarray, list[Any]]],
    configs: Mapping[int, Mapping[str, Any]],
    chosen: Sequence[int],
    levels: int = 1,
    seed: int,
    threads: int,
    deadline: float | None,
    should_stop: Callable[[], bool] | None = None,
    on_layer: Callable[[int, Stack], None] | None = None,
    fit_times: Mapping[int, float] | None = None,
) -> Stack:
    """Fit the stacked layer above ``inputs`` (trial -> (OOF scores on every row, fitted fold
    models), best first); its models re-fit the configurations of the ``chosen`` trials, with
    the same ``splits`` (see the module doc for the pair models that keep it honest).
    ``deadline`` or ``should_stop`` cut it: the models completed by then are kept. With
    ``fit_times`` (trial -> CV fit seconds in the search), an input or a model expected to
    overrun the time left is skipped, so a slow best trial does not take the window from
    cheaper ones."""
    costs = dict(fit_times or {})
    k = len(splits.folds)
    if splits.method == "holdout" or len(splits.oof_index) != len(X) or k < MIN_FOLDS:
        raise ValueError(f"stacking needs k-fold ({MIN_FOLDS}+) OOF predictions for every row")
    if levels != 1:
        raise ValueError(f"one stacked layer is supported (got {levels})")
    task = prepared.task
    stack = Stack(layers=[{input_key(t): FoldBag(models) for t, (_, models) in inputs.items()}])
    stack.input_trials = {input_key(t): t for t in inputs}

    def check() -> None:
        if should_stop is not None and should_stop():
            raise Interrupted("cancelled")
        if deadline is not None and time.monotonic() >= deadline:
            raise Interrupted("deadline")

    pairs = _input_pairs(
        X, prepared, splits, inputs, configs, seed, threads, deadline, check, costs
    )
    if not pairs:
        stack.stopped = "layer 2 not fitted: the pair models of its best input did not fit in time"
        return stack
    if len(pairs) < len(inputs):  # the rest did not fit in their share of the window
        inputs = {t: inputs[t] for t in pairs}
        stack.layers[0] = {input_key(t): FoldBag(models) for t, (_, models) in inputs.items()}
        stack.input_trials = {input_key(t): t for t in inputs}
    frames = [
        with_stack_columns(
            X,
            {input_key(t): fold_inputs(oof, pairs[t], splits, i) for t, (oof, _) in inputs.items()},
            task,
        )
        for i in range(k)
    ]
    layer: dict[str, Any] = {}
    skipped = 0
    for index, t in enumerate(chosen, start=1):
        params = stacked_config(configs[t])
        t0 = time.monotonic()
        if deadline is not None and t0 + COST_FACTOR * costs.get(t, 0.0) > deadline:
            skipped += 1  # expected to overrun: leave the time to the next (cheaper) one
            continue
        try:
            out = _cross_validate(params, frames, prepared, splits, seed, threads, check)
        except Interrupted as exc:
            stack.stopped = f"layer 2 cut by the {exc.reason} after {len(layer)} models"
            break
        key = f"L2.m{index}"
        model = StackedModel(stack_number(2, index), key, 2, t, params, out, t0, time.monotonic())
        stack.models.append(model)
        layer[key] = FoldBag(out.fold_models, description=f"fold-bag[{k}]({model.description})")
    if skipped and not stack.stopped:
        stack.stopped = f"{skipped} layer-2 models skipped: expected to overrun the budget"
    if layer:
        stack.layers.append(layer)
        stack.layer_finished.append(time.monotonic())
        if on_layer is not None:
            on_layer(2, stack)
    return stack


def _input_pairs(
    X: pd.DataFrame,
    prepared: PreparedTarget,
    splits: Splits,
    inputs: Mapping[int, tuple[np.ndarray, list[Any]]],
    configs: Mapping[int, Mapping[str, Any]],
    seed: int,
    threads: int,
    deadline: float | None,
    check: Callable[[], None],
    costs: Mapping[int, float],
) -> dict[int, dict[tuple[int, int], np.ndarray]]:
    """Pair models of the inputs, best first, while they fit: the first may use the whole
    window, the others only ``PAIR_SHARE`` of it (the layer's own models need the rest); an
    input whose expected pair cost (``costs``: its CV fit time, times (k-2)/2) would overrun
    what it may use is skipped."""
    pair_cost = max(0, len(splits.folds) - 2) / 2
    share_end = (
        None if deadline is None else time.monotonic() + PAIR_SHARE * (deadline - time.monotonic())
    )
    out: dict[int, dict[tuple[int, int], np.ndarray]] = {}
    took = 0.0

    def within_share() -> None:
        check()
        if share_end is not None and time.monotonic() >= share_end:
            raise Interrupted("deadline")

    for t in inputs:
        now = time.monotonic()
        end = share_end if out else deadline
        if end is not None and now + COST_FACTOR * pair_cost * costs.get(t, 0.0) > end:
            continue
        if out and share_end is not None and now + took > share_end:
            break
        started = now
        try:
            out[t] = pair_scores(
                X,
                prepared,
                splits,
                configs[t],
                seed=seed,
                threads=threads,
                check=within_share if out else check,
            )
        except Interrupted as exc:
            if exc.reason == "cancelled":
                return {}
            break
        took = time.monotonic() - started
    return out


def _cross_validate(
    params: Mapping[str, Any],
    frames: Sequence[pd.DataFrame],
    prepared: PreparedTarget,
    splits: Splits,
    seed: int,
    threads: int,
    check: Callable[[], None],
) -> Outcome:
    """k-fold CV of ``params`` where fold i trains and validates on ``frames[i]``."""
    y, metric = prepared.y, prepared.metric
    shape = (len(y),) + (() if prepared.task == "regression" else (prepared.n_classes,))
    oof = np.zeros(shape)
    models, fold_scores = [], []
    fit_s = pred_s = 0.0
    for i, (tr, va) in enumerate(splits.folds):
        t0 = time.perf_counter()
        model = _fit_rows(
            params, frames[i], y, tr, prepared, seed=seed, threads=threads, check=check
        )
        t1 = time.perf_counter()
        oof[va] = model.predict_scores(frames[i].iloc[va])
        pred_s += time.perf_counter() - t1
        fit_s += t1 - t0
        models.append(model)
        try:
            fold_scores.append(metric.score(y[va], oof[va], prepared.n_classes))
        except ValueError:  # e.g. AUC on a fold with one class
            pass
    score = metric.score(y, oof, prepared.n_classes)
    return Outcome(
        score,
        float(np.std(fold_scores)) if fold_scores else 0.0,
        oof,
        fit_s,
        pred_s / max(1, len(y)) * 1000.0,
        models,
        1.0,
        describe(params),
    )
