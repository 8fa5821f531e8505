"""TPE that also learns from a lineage parent's finished trials.

A derived dataset (a sample, split or new version of its parent) has nearly its parent's
objective landscape. Enqueuing the parent's best configurations (:mod:`meta`) transfers its
winners; this transfers what its whole study learned: the sampler sees the parent's complete
trials as older observations, so TPE's good/bad split and Parzen estimators start where the
parent's ended instead of from random start-up trials. Only the sampler sees them; the
study, its leaderboard, its budget and its storage hold this job's trials alone.

Prior trials get negative numbers, so they sort before the study's own trials. Two things
keep the parent from outweighing what this study learns on its own data:

- scale: a parent scores on other (usually more) rows, so its scores sit systematically above
  or below this study's (RMSE 53 on all of diabetes, 58 on half). Uncorrected, TPE's small
  "good" set would hold the parent's trials alone for the whole study. Once its enqueued
  configurations have scores here, the parent's scores are shifted by the median difference.
- mass: TPE weights the trials of its good set equally, so the sampler keeps a rank-stratified
  subset of the parent's trials that shrinks as the study's own complete trials accumulate
  (half of them at ``PRIOR_HALF_LIFE``).

A parent's landscape can also mislead: on a small sample another family may win (on half of
scikit-learn's diabetes, the parent's 40 best configurations score here in nearly reverse
order). The parent's enqueued configurations are scored here first, so the sampler checks
the transfer against them: once ``AGREEMENT_PAIRS`` have scores here, it learns from the
parent's trials only while their rank correlation with the parent's scores is positive.
"""

from __future__ import annotations

import copy
import math
import statistics
import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState
from scipy.stats import spearmanr

from atlas_trainer.automl.sampler import ViewTPESampler
from atlas_trainer.automl.space import SpaceOptions, sample_config

MAX_OBSERVATIONS = 300  # a study records at most its newest N complete trials
AGREEMENT_PAIRS = 5  # enqueued parent configurations scored here before transfer is judged
PARENT_SCORE = "parent_score"  # user attribute: the parent's score of an enqueued configuration
PRIOR_HALF_LIFE = 25  # the study's own complete trials at which half the parent's still count


def observations(study: optuna.Study, n: int = MAX_OBSERVATIONS) -> list[dict[str, Any]]:
    """What a finished study passes on to derived datasets: ``{"params", "score"}`` of its
    newest ``n`` complete (full-fidelity) trials."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [
        {"params": t.user_attrs.get("config", t.params), "score": float(t.value)}
        for t in done[-n:]
        if t.value is not None
    ]


def prior_trials(
    obs: Sequence[dict[str, Any]], task: str, options: SpaceOptions
) -> list[FrozenTrial]:
    """``obs`` replayed through this job's search space: each becomes a complete trial with
    this space's distributions. One the space cannot produce (a family or value outside it,
    a parameter missing) is skipped, so the sampler never sees a foreign distribution."""
    out: list[FrozenTrial] = []
    for o in obs:
        fixed = optuna.trial.FixedTrial(dict(o["params"]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FixedTrial warns on out-of-range values
            try:
                sample_config(fixed, task, options)
            except (ValueError, KeyError, TypeError):
                continue
        dists = fixed.distributions
        if not _inside(fixed.params, dists):
            continue
        out.append(
            optuna.trial.create_trial(
                params={k: fixed.params[k] for k in dists}, distributions=dists, value=o["score"]
            )
        )
    return out


def _pairs(own: Sequence[FrozenTrial]) -> list[tuple[float, float]]:
    """(parent's score, this study's score) of the parent's configurations completed here."""
    return [
        (float(t.user_attrs[PARENT_SCORE]), float(t.value))
        for t in own
        if PARENT_SCORE in t.user_attrs and t.value is not None
    ]


def _spearman(pairs: list[tuple[float, float]]) -> float | None:
    if len(pairs) < AGREEMENT_PAIRS:
        return None
    rho = spearmanr(*zip(*pairs)).statistic
    return None if math.isnan(rho) else float(rho)


def agreement(study: optuna.Study) -> float | None:
    """Spearman correlation between the parent's and this study's scores of the parent's
    enqueued configurations; None until ``AGREEMENT_PAIRS`` of them completed here."""
    return _spearman(_pairs(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))))


def _inside(params: dict[str, Any], dists: dict[str, BaseDistribution]) -> bool:
    try:
        return all(d._contains(d.to_internal_repr(params[k])) for k, d in dists.items())  # noqa: SLF001
    except (ValueError, TypeError):
        return False


def _rescored(t: FrozenTrial, shift: float) -> FrozenTrial:
    if not shift:
        return t
    out = copy.copy(t)
    out.value = float(t.value or 0.0) + shift  # priors are complete trials: value is set
    return out


class PriorTPESampler(ViewTPESampler):
    """TPE whose history starts with ``prior_trials`` (rescaled and thinned, see
    :meth:`priors_for`), unless the study's scores of the parent's configurations disagree with
    the parent's (:func:`agreement` ≤ 0): then it samples from the study's own trials alone."""

    def __init__(self, prior_trials: list[FrozenTrial], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for i, t in enumerate(prior_trials):
            t.number = i - len(prior_trials)  # -n .. -1: older than any trial of the study
        self.prior_trials = prior_trials
        # for thinning by rank; priors are complete trials, so every value is set
        self._by_value = sorted(prior_trials, key=lambda t: float(t.value or 0.0))
        # by trial number: priors_for() reads all of the study's trials, so once per trial
        self._seen: dict[int, list[FrozenTrial]] = {}

    def priors_for(self, study: optuna.Study, trial: FrozenTrial) -> list[FrozenTrial]:
        """The parent's trials as TPE sees them when sampling ``trial``: none if the parent
        ranks configurations unlike this study; otherwise shifted onto this study's scale by
        the median score difference of the parent's configurations scored here, and thinned
        to ``n * H / (H + own)`` of them (H = ``PRIOR_HALF_LIFE``), evenly over their ranks."""
        seen = self._seen.get(trial.number)
        if seen is not None:
            return seen
        own = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        pairs = _pairs(own)
        rho = _spearman(pairs)
        if rho is not None and rho <= 0:
            seen = []
        else:
            shift = statistics.median(v - p for p, v in pairs) if rho is not None else 0.0
            n = len(self.prior_trials)
            keep = max(math.ceil(n * PRIOR_HALF_LIFE / (PRIOR_HALF_LIFE + len(own))), min(n, 2))
            ranks = sorted({round(i * (n - 1) / max(keep - 1, 1)) for i in range(keep)})
            seen = sorted(
                (_rescored(self._by_value[r], shift) for r in ranks), key=lambda t: t.number
            )
        if len(self._seen) > 64:  # trials in flight are few; forget the oldest
            del self._seen[next(iter(self._seen))]
        self._seen[trial.number] = seen
        return seen
