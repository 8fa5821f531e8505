"""Greedy ensemble selection (Caruana et al., 2004) over out-of-fold predictions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from atlas_trainer.automl.task import Metric


@dataclass(frozen=True)
class Selection:
    """Chosen members (trial number -> weight, summing to 1) and the ensemble's OOF score."""

    weights: dict[int, float]
    score: float
    best_single: tuple[int, float]
    history: list[float]


def greedy_selection(
    oof: Mapping[int, np.ndarray],
    y: np.ndarray,
    metric: Metric,
    n_classes: int = 0,
    *,
    rounds: int = 25,
    max_candidates: int = 20,
) -> Selection:
    """Forward selection *with replacement*: each round adds the candidate whose inclusion
    gives the best average-score ensemble; the best prefix of rounds is returned. The first
    round picks the best single model, so the result's score is never worse than it.
    Candidates are the ``max_candidates`` best individual models (pruning the pool first is
    what keeps selection from overfitting the OOF predictions)."""
    if not oof:
        raise ValueError("no out-of-fold predictions to ensemble")
    single = {n: metric.score(y, p, n_classes) for n, p in oof.items()}
    ranked = sorted(single, key=single.__getitem__, reverse=metric.higher_is_better)
    pool = ranked[:max_candidates]
    total: np.ndarray | None = None
    chosen: list[int] = []
    history: list[float] = []
    best_len, best_score = 0, float("nan")
    for r in range(1, rounds + 1):
        round_best: tuple[int, float, np.ndarray] | None = None
        for n in pool:
            cand = oof[n] if total is None else total + oof[n]
            s = metric.score(y, cand / r, n_classes)
            if round_best is None or metric.better(s, round_best[1]):
                round_best = (n, s, cand)
        assert round_best is not None
        n, s, total = round_best
        chosen.append(n)
        history.append(s)
        if best_len == 0 or metric.better(s, best_score):
            best_len, best_score = r, s
    counts = Counter(chosen[:best_len])
    weights = {n: c / best_len for n, c in counts.items()}
    return Selection(weights, best_score, (ranked[0], single[ranked[0]]), history)
