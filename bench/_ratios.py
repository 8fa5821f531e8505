"""The Hyperband-TPE time ratio and the rule that decides which datasets it is judged on.

Shared by ``automl.py`` and ``automl_tpe_floor.py`` so that both measure the same thing.

The measure: the time a search takes to reach a reference search's final validation score,
over the time the reference took (never reached = the whole budget). Where one full evaluation
(a complete cross-validation of one configuration) is cheap, a pruned trial saves little and
the ratio is decided by which search first draws the luckiest of many near-equal scores: plain
TPE against itself scores about as "well" as Hyperband-TPE there. The target is therefore
judged on the *costly* datasets only: those whose full evaluation takes at least
``COSTLY_EVAL_S`` seconds, measured in plain TPE's own runs (it never prunes, so each of its
complete trials is one full evaluation). See bench/README.md, "The Hyperband-TPE target".
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

COSTLY_EVAL_S = 1.0

Events = Sequence[Mapping[str, Any]]


def time_to_reach(events: Events, target: float | None, higher: bool) -> float | None:
    """Seconds into the search at which the best score first reached ``target`` (None: never,
    or no target: the reference search completed no trial)."""
    if target is None:
        return None
    for e in events:
        if e["type"] == "trial_finished":
            b = e["best_score"]
            if (b >= target - 1e-12) if higher else (b <= target + 1e-12):
                return float(e["elapsed_s"])
    return None


def time_ratio(t_other: float | None, t_ref: float | None, budget: float) -> float | None:
    """The Hyperband measure: time for the other search to reach the reference search's final
    score over the time the reference took; never reached counts as the whole budget."""
    return (t_other if t_other is not None else budget) / t_ref if t_ref else None


def full_evaluation_s(*runs: Events) -> float | None:
    """What one full evaluation costs on a dataset: the median wall time, from start to
    finish, of the complete trials in plain-TPE runs' events (pooled over the runs given).
    Pruned, failed and unfinished trials are not full evaluations and are left out."""
    durations = []
    for events in runs:
        started = {e["trial"]: e["elapsed_s"] for e in events if e["type"] == "trial_started"}
        durations += [
            float(e["elapsed_s"]) - float(started[e["trial"]])
            for e in events
            if e["type"] == "trial_finished" and e.get("trial") in started
        ]
    return statistics.median(durations) if durations else None


def costly_datasets(
    eval_s: Mapping[str, float | None], threshold: float = COSTLY_EVAL_S
) -> list[str]:
    """Datasets whose full evaluation takes at least ``threshold`` seconds (unknown: not
    costly), in the order given."""
    return [name for name, s in eval_s.items() if s is not None and s >= threshold]


def median_of(ratios: Mapping[str, float | None], names: Iterable[str]) -> float | None:
    """Median of the known ratios of ``names`` (None when none is known)."""
    known = [r for name in names if (r := ratios.get(name)) is not None]
    return statistics.median(known) if known else None


def self_ratios(runs: Sequence[tuple[Events, float | None, bool]], budget: float) -> list[float]:
    """Plain TPE against itself: for every ordered pair of runs (A, B) on the same folds, the
    time B takes to reach A's final score over A's time. ``runs`` are (events, final score,
    higher is better; a run without a final score is no reference). This is the measure's
    chance level: equally good searches give it."""
    out = []
    for a, b in itertools.permutations(range(len(runs)), 2):
        events_a, target, higher = runs[a]
        ratio = time_ratio(
            time_to_reach(runs[b][0], target, higher),
            time_to_reach(events_a, target, higher),
            budget,
        )
        if ratio is not None:
            out.append(ratio)
    return out


def costly_summary(
    bohb: Mapping[str, float | None],
    tpe_self: Mapping[str, float | None],
    eval_s: Mapping[str, float | None],
    threshold: float = COSTLY_EVAL_S,
) -> dict[str, Any]:
    """The restated target and its chance level on the same datasets, from per-dataset
    figures: ``bohb`` (Hyperband-TPE vs plain TPE, the median over seeds), ``tpe_self``
    (plain TPE vs itself, the median over pairs) and ``eval_s`` (:func:`full_evaluation_s`)."""
    costly = costly_datasets(eval_s, threshold)
    return {
        "costly_eval_threshold_s": threshold,
        "full_evaluation_s": dict(eval_s),
        "costly_datasets": costly,
        "bohb_time_ratio_costly": median_of(bohb, costly),
        "tpe_self_ratio_costly": median_of(tpe_self, costly),
    }
