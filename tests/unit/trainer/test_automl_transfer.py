"""A lineage parent's trials join the derived study's TPE history (transfer.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from atlas_trainer.automl import AutoMLRequest, InMemoryMetaStore, run_automl
from atlas_trainer.automl import engine as engine_mod
from atlas_trainer.automl.space import SpaceOptions, portfolio
from atlas_trainer.automl.transfer import (
    PARENT_SCORE,
    PRIOR_HALF_LIFE,
    PriorTPESampler,
    agreement,
    prior_trials,
)
from atlas_trainer.convert import result_to_pb
from atlas_trainer.job_work import _result_dict
from tests.unit.trainer._automl_data import breast_cancer


def _sampled_x(sampler: optuna.samplers.BaseSampler, n: int) -> list[float]:
    study = optuna.create_study(direction="maximize", sampler=sampler)
    xs = []
    for _ in range(n):
        t = study.ask()
        x = t.suggest_float("x", 0.0, 10.0)
        study.tell(t, -((x - 7.0) ** 2))
        xs.append(x)
    return xs


def test_prior_trials_steer_tpe_from_its_first_sample() -> None:
    dist = {"x": FloatDistribution(0.0, 10.0)}
    priors = [
        optuna.trial.create_trial(params={"x": x}, distributions=dist, value=-((x - 7.0) ** 2))
        for x in [i / 4 for i in range(41)]
    ]
    kw: dict[str, Any] = dict(seed=3, multivariate=True, group=True, n_startup_trials=8)
    warm = _sampled_x(PriorTPESampler(priors, **kw), 6)
    cold = _sampled_x(optuna.samplers.TPESampler(**kw), 6)  # random start-up trials
    assert sum(abs(x - 7.0) for x in warm) / 6 < 0.5
    assert sum(abs(x - 7.0) for x in cold) / 6 > 1.0
    # Prior trials are older than any of the study's own, which alone the study holds.
    assert [t.number for t in priors[:2]] == [-41, -40] and priors[-1].number == -1
    study = optuna.create_study(sampler=PriorTPESampler(priors, **kw))
    study.optimize(lambda t: t.suggest_float("x", 0.0, 10.0), n_trials=2)
    assert [t.number for t in study.trials] == [0, 1]


def _scored_parent_configs(sign: float, n: int = 6, offset: float = 0.0) -> optuna.Study:
    """A study whose first ``n`` trials are a parent's configurations, scored here (best at
    x=2) in the parent's order (sign=1) or in reverse (sign=-1), the parent's scores
    ``offset`` above this study's."""
    study = optuna.create_study(direction="maximize")
    dist = {"x": FloatDistribution(0.0, 10.0)}
    for x in range(1, n + 1):
        value = -((x - 2.0) ** 2)
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": float(x)},
                distributions=dist,
                value=value,
                user_attrs={PARENT_SCORE: sign * value + offset},
            )
        )
    return study


def test_the_sampler_drops_a_parent_that_ranks_configurations_unlike_this_study() -> None:
    assert agreement(_scored_parent_configs(1.0)) == pytest.approx(1.0)
    assert agreement(_scored_parent_configs(-1.0)) == pytest.approx(-1.0)
    assert agreement(_scored_parent_configs(1.0, n=4)) is None  # too few to judge
    dist = {"x": FloatDistribution(0.0, 10.0)}
    priors = [  # the parent's landscape: best at x=7
        optuna.trial.create_trial(params={"x": x}, distributions=dist, value=-((x - 7.0) ** 2))
        for x in [i / 4 for i in range(41)]
    ]
    kw: dict[str, Any] = dict(seed=5, multivariate=True, group=True, n_startup_trials=4)

    def next_x(study: optuna.Study, sampler: optuna.samplers.BaseSampler) -> float:
        study.sampler = sampler
        return study.ask().suggest_float("x", 0.0, 10.0)

    def with_priors(sign: float) -> float:
        return next_x(_scored_parent_configs(sign), PriorTPESampler(list(priors), **kw))

    plain = next_x(_scored_parent_configs(-1.0), optuna.samplers.TPESampler(**kw))
    assert with_priors(-1.0) == plain  # disagreement: the study's own trials alone
    assert with_priors(1.0) != plain  # agreement: the parent's trials still count


def test_the_parents_trials_are_rescaled_to_this_study_and_thinned_as_its_own_accumulate() -> None:
    dist = {"x": FloatDistribution(0.0, 10.0)}
    priors = [  # the parent scored on more rows: every score 100 above this study's
        optuna.trial.create_trial(params={"x": x}, distributions=dist, value=100 - (x - 7.0) ** 2)
        for x in [i / 4 for i in range(41)]
    ]
    sampler = PriorTPESampler(list(priors), seed=1)
    original = {t.number: t.value for t in priors}

    def seen(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
        return sampler.priors_for(study, study.ask())

    # Before enough of the parent's configurations have scores here: as the parent scored them.
    few = seen(_scored_parent_configs(1.0, n=4, offset=100.0))
    assert len(few) == math.ceil(41 * PRIOR_HALF_LIFE / (PRIOR_HALF_LIFE + 4))
    assert all(t.value == original[t.number] for t in few)
    # Six scored here, 100 below the parent: shifted onto this study's scale, the parent's
    # best (99.9.. -> -0.0..) no longer hides this study's own best (0 at x=2) from TPE.
    study = _scored_parent_configs(1.0, offset=100.0)
    rescored = seen(study)
    assert len(rescored) == math.ceil(41 * PRIOR_HALF_LIFE / (PRIOR_HALF_LIFE + 6))
    assert all(t.value == pytest.approx(original[t.number] - 100.0) for t in rescored)
    assert max(t.value for t in rescored) == pytest.approx(0.0)  # the best is kept ...
    assert min(t.value for t in rescored) == pytest.approx(-49.0)  # ... and the worst
    assert [t.number for t in rescored] == sorted(t.number for t in rescored)
    assert [t.value for t in priors] == list(original.values())  # the priors are untouched
    # As the study's own trials accumulate, fewer of the parent's count.
    for x in range(50):
        study.add_trial(
            optuna.trial.create_trial(params={"x": x / 5}, distributions=dist, value=-1.0)
        )
    assert len(seen(study)) == math.ceil(41 * PRIOR_HALF_LIFE / (PRIOR_HALF_LIFE + 56)) < 20


def test_observations_are_replayed_through_this_jobs_space() -> None:
    options = SpaceOptions(("linear", "lightgbm"), True, True, None)
    lgb = next(c for c in portfolio(options) if c["family"] == "lightgbm")
    obs = [
        {"params": lgb, "score": 0.9},
        {"params": {**lgb, "family": "rf"}, "score": 0.95},  # family outside this space
        {"params": {**lgb, "lgb.num_leaves": 5000}, "score": 0.95},  # value outside it
        {"params": {k: v for k, v in lgb.items() if k != "lgb.max_bin"}, "score": 0.9},
        {"params": {**lgb, "lgb.learning_rate": 0.05}, "score": 0.8},
    ]
    trials = prior_trials(obs, "binary", options)
    assert [t.value for t in trials] == [0.9, 0.8]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert trials[1].params["lgb.learning_rate"] == 0.05
    assert set(trials[0].distributions) == set(trials[0].params) and "family" in trials[0].params


def test_a_derived_study_samples_with_its_parents_trials(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = breast_cancer()
    fams = ["linear", "lightgbm"]
    store = InMemoryMetaStore()
    run_automl(
        AutoMLRequest(
            X, y, max_trials=5, families=fams, meta_store=store, dataset_key="full", seed=0
        )
    )
    (entry,) = store.entries("binary")
    assert len(entry.observations) == 5
    assert all(o["params"]["family"] in fams for o in entry.observations)
    handed: list[Any] = []
    real = engine_mod.make_sampler

    def spy(*args: Any, **kwargs: Any) -> optuna.samplers.BaseSampler:
        sampler = real(*args, **kwargs)
        handed.append(sampler)
        return sampler

    monkeypatch.setattr(engine_mod, "make_sampler", spy)
    half = X.sample(frac=0.5, random_state=0)
    kw: dict[str, Any] = dict(max_trials=6, families=fams, meta_store=store, seed=0)
    yh = y.loc[half.index]
    warm = run_automl(
        AutoMLRequest(half, yh, dataset_key="half", parent_dataset_ids=["full"], **kw)
    )
    assert len(warm.priors[0].observations) == warm.priors[0].trials_learned_from == 5
    sampler = handed[-1]
    assert isinstance(sampler, PriorTPESampler)
    assert [t.value for t in sampler.prior_trials] == [o["score"] for o in entry.observations]
    # The parent's enqueued configurations carry its scores, so transfer can be judged.
    parent_scores = {c["trial"]: c["score"] for c in warm.priors[0].configs}
    enqueued = [r for r in warm.leaderboard if r.origin.startswith("warm_start:")]
    assert len(enqueued) == warm.priors[0].configs_enqueued == 5
    assert warm.priors[0].rank_agreement is not None
    assert -1.0 <= warm.priors[0].rank_agreement <= 1.0
    assert all(int(r.origin.rsplit("#", 1)[1]) in parent_scores for r in enqueued)
    # The job reports it: WarmStartPrior.trials_learned_from.
    bundle = SimpleNamespace(uri="s3://b/m", sha256="0" * 64, size=1)
    data = SimpleNamespace(dataset=None, artifact_uri="s3://b/d.parquet")
    reported = result_to_pb(_result_dict(warm, bundle, data, "job-1", 1.0))
    assert reported.priors[0].reason == "lineage_parent"
    assert reported.priors[0].trials_learned_from == 5
    assert reported.priors[0].rank_agreement == pytest.approx(warm.priors[0].rank_agreement)
    # A dataset that is merely similar lends configurations, not its history (other scale).
    handed.clear()
    run_automl(AutoMLRequest(half, yh, warm_start_k=1, **kw))
    assert not any(isinstance(s, PriorTPESampler) for s in handed)
