"""The Hyperband-TPE target's rule (bench/_ratios.py): which datasets count as costly, and the
medians reported on them."""

from __future__ import annotations

from typing import Any

import pytest

from bench._ratios import (
    COSTLY_EVAL_S,
    costly_datasets,
    costly_summary,
    full_evaluation_s,
    self_ratios,
    time_ratio,
    time_to_reach,
)


def _trial(number: int, start: float, end: float, kind: str = "trial_finished") -> list[dict]:
    done: dict[str, Any] = {"type": kind, "trial": number, "elapsed_s": end}
    if kind == "trial_finished":
        done["best_score"] = 0.0
    return [{"type": "trial_started", "trial": number, "elapsed_s": start}, done]


def _run(*trials: list[dict]) -> list[dict]:
    events = [e for t in trials for e in t]
    return sorted(events, key=lambda e: e["elapsed_s"])


def test_full_evaluation_is_the_median_complete_trial_pooled_over_runs() -> None:
    run_a = _run(_trial(0, 0.0, 2.0), _trial(1, 0.5, 1.0), _trial(2, 1.0, 40.0, "trial_pruned"))
    run_b = _run(_trial(0, 0.0, 3.0), _trial(1, 3.0, 3.1, "trial_failed"))
    # complete trials only: 2.0, 0.5 and 3.0 s -> median 2.0 (the pruned 39 s trial and the
    # failed one are not full evaluations)
    assert full_evaluation_s(run_a, run_b) == pytest.approx(2.0)
    assert full_evaluation_s(run_a) == pytest.approx(1.25)
    assert full_evaluation_s(_run(_trial(0, 0.0, 5.0, "trial_pruned"))) is None
    assert full_evaluation_s() is None


def test_costly_means_at_least_one_second_and_unknown_is_not_costly() -> None:
    assert COSTLY_EVAL_S == 1.0
    eval_s = {"wine": 0.3, "diabetes": 0.999, "CPS1988": 1.0, "InstEval": 9.0, "new": None}
    assert costly_datasets(eval_s) == ["CPS1988", "InstEval"]
    assert costly_datasets(eval_s, threshold=0.2) == ["wine", "diabetes", "CPS1988", "InstEval"]


def test_costly_summary_takes_medians_over_the_costly_datasets_only() -> None:
    eval_s = {"wine": 0.4, "digits": 0.8, "diamonds": 4.0, "nassCDS": 2.0, "TV16": 1.5}
    bohb = {"wine": 2.6, "digits": 1.7, "diamonds": 0.044, "nassCDS": 0.10, "TV16": 0.31}
    tpe_self = {"wine": 1.4, "digits": 0.9, "diamonds": 2.1, "nassCDS": 1.1, "TV16": None}
    out = costly_summary(bohb, tpe_self, eval_s)
    assert out["costly_datasets"] == ["diamonds", "nassCDS", "TV16"]
    assert out["bohb_time_ratio_costly"] == pytest.approx(0.10)  # not 0.31, the all-data median
    # TV16's chance level is unknown: the median of the two known ones
    assert out["tpe_self_ratio_costly"] == pytest.approx((2.1 + 1.1) / 2)
    assert out["costly_eval_threshold_s"] == 1.0
    assert out["full_evaluation_s"] == eval_s
    none = costly_summary(bohb, tpe_self, {"wine": 0.4})
    assert none["costly_datasets"] == [] and none["bohb_time_ratio_costly"] is None


def test_time_ratio_counts_never_reached_as_the_whole_budget() -> None:
    assert time_ratio(5.0, 20.0, 120.0) == pytest.approx(0.25)
    assert time_ratio(None, 20.0, 120.0) == pytest.approx(6.0)
    assert time_ratio(5.0, None, 120.0) is None


def test_self_ratios_compare_every_ordered_pair_of_runs() -> None:
    def run(*bests: tuple[float, float]) -> list[dict]:
        return [{"type": "trial_finished", "elapsed_s": t, "best_score": b} for t, b in bests]

    a = run((10.0, 0.80), (30.0, 0.90))  # final 0.90 at 30 s
    b = run((15.0, 0.90), (60.0, 0.95))  # reaches 0.90 at 15 s, final 0.95 at 60 s
    assert time_to_reach(b, 0.90, higher=True) == 15.0
    ratios = self_ratios([(a, 0.90, True), (b, 0.95, True)], budget=120.0)
    # B reaches A's 0.90 at 15 s over A's 30 s; A never reaches B's 0.95: 120 s over 60 s
    assert ratios == [pytest.approx(0.5), pytest.approx(2.0)]
    # a run that completed no trial has no final score: no pair takes it as the reference
    empty: list[dict] = []
    assert self_ratios([(a, 0.90, True), (empty, None, True)], budget=120.0) == [
        pytest.approx(4.0)  # the empty run never reaches 0.90: 120 s over 30 s
    ]
