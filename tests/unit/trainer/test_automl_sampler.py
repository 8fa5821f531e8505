"""Hyperband-TPE learns from complete trials only; plain TPE sees the study as stored."""

from __future__ import annotations

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from atlas_trainer.automl.sampler import StudyView
from atlas_trainer.automl.search import make_sampler

X = {"x": FloatDistribution(0.0, 1.0)}


def _study_with_pruned_optimum(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """20 complete trials, best at x = 0.8, and 60 trials pruned (by chance) around it."""
    study = optuna.create_study(sampler=sampler)
    for x in np.linspace(0.0, 1.0, 20):
        study.add_trial(create_trial(params={"x": x}, distributions=X, value=(x - 0.8) ** 2))
    for x in np.linspace(0.7, 0.9, 60):
        study.add_trial(
            create_trial(
                params={"x": x},
                distributions=X,
                state=TrialState.PRUNED,
                intermediate_values={1: 1.0},
            )
        )
    return study


def _distance_of_draws(strategy: str) -> float:
    study = _study_with_pruned_optimum(make_sampler(strategy, seed=0))
    xs = []
    for _ in range(10):
        t = study.ask()
        xs.append(t.suggest_float("x", 0.0, 1.0))
        study.tell(t, state=TrialState.FAIL)  # not history: every draw sees the same study
    return float(np.mean(np.abs(np.array(xs) - 0.8)))


def test_hyperband_tpe_samples_near_the_best_complete_trials_despite_pruned_ones() -> None:
    # Optuna's TPE ranks every pruned trial below every complete one: plain TPE avoids the
    # region; Hyperband-TPE, like BOHB's model, does not count pruned trials against it.
    hyperband = _distance_of_draws("bohb")
    plain = _distance_of_draws("tpe")
    assert hyperband < 0.05
    assert plain > 2 * hyperband + 0.05


def test_the_view_puts_priors_first_and_hides_pruned_trials_when_asked() -> None:
    study = _study_with_pruned_optimum(optuna.samplers.RandomSampler(seed=0))
    prior = create_trial(params={"x": 0.5}, distributions=X, value=0.09)
    prior.number = -1
    states = (TrialState.COMPLETE, TrialState.PRUNED)
    seen = StudyView(study, [prior], complete_only=True).get_trials(states=states)
    assert seen[0] is prior
    assert [t.state for t in seen[1:]] == [TrialState.COMPLETE] * 20
    everything = StudyView(study, [], complete_only=False).get_trials(states=states)
    assert len(everything) == 80
    assert study.get_trials(states=(TrialState.PRUNED,))  # the study itself is unchanged
