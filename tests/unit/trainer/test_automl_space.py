"""Every model family samples to a valid, fittable, picklable pipeline."""

from __future__ import annotations

import pickle

import numpy as np
import optuna
import pytest

from atlas_trainer.automl.space import FAMILIES, SpaceOptions, build_model, describe, sample_config
from tests.unit.trainer._automl_data import hard_frame


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("task", ["binary", "regression"])
def test_every_family_builds_a_working_pipeline(family: str, task: str) -> None:
    X, y_raw = hard_frame(120)
    y = (y_raw == "yes").to_numpy().astype(int) if task == "binary" else X["x"].to_numpy() * 2
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(2):
        trial = study.ask()
        params = sample_config(trial, task, SpaceOptions(families=(family,)))
        assert params["family"] == family and family.split("_")[0] in describe(params)
        # Small fidelity keeps the test fast; every other sampled value is used as is.
        fixed = {k: 5 if k.endswith(("n_estimators", "epochs")) else v for k, v in params.items()}
        model = build_model(fixed, task, [0, 1] if task == "binary" else None, seed=0)
        model.fit(X, y)
        pred = pickle.loads(pickle.dumps(model)).predict(X.head(7))
        assert len(pred) == 7
        if task == "binary":
            proba = model.predict_proba(X.head(7))
            assert proba.shape == (7, 2) and np.allclose(proba.sum(axis=1), 1)
        study.tell(trial, 0.0)


def test_space_restricts_families_and_fixed_params() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    opts = SpaceOptions(families=("xgboost", "linear"), fixed={"pre.imputation": "mean"})
    for _ in range(10):
        p = sample_config(study.ask(), "binary", opts)
        assert p["family"] in {"xgboost", "linear"} and p["pre.imputation"] == "mean"


def test_portfolio_respects_families_fixed_values_and_optional_steps() -> None:
    from atlas_trainer.automl.space import portfolio

    opts = SpaceOptions(
        families=("lightgbm", "linear"),
        allow_crosses=False,
        fixed={"pre.imputation": "mean"},
    )
    configs = portfolio(opts)
    assert configs and {c["family"] for c in configs} == {"lightgbm", "linear"}
    assert all(c["pre.imputation"] == "mean" and "pre.crosses" not in c for c in configs)
    assert configs[0]["family"] == "linear"  # cheapest first
    study = optuna.create_study()
    for cfg in configs:
        study.enqueue_trial(cfg)
        params = sample_config(study.ask(), "binary", opts)
        assert params == {**params, **cfg}  # enqueued values are used as given
    assert not portfolio(SpaceOptions(fixed={"family": "mlp"}))


def test_lightgbm_histogram_resolution_is_searched_and_defaults_for_older_configs() -> None:
    from atlas_trainer.automl.space import LGB_MAX_BINS, build_estimator, portfolio

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    opts = SpaceOptions(families=("lightgbm",))
    seen = {sample_config(study.ask(), "binary", opts)["lgb.max_bin"] for _ in range(30)}
    assert seen == set(LGB_MAX_BINS)
    both = SpaceOptions(families=("lightgbm", "linear"))
    wide = [c for c in portfolio(both) if c.get("lgb.max_bin") == 1023]
    assert wide and wide[0]["lgb.colsample_bytree"] < 0.4 < wide[0]["lgb.num_leaves"]
    assert build_estimator(wide[0], "binary", seed=0).get_params()["max_bin"] == 1023
    older = {k: v for k, v in wide[0].items() if k != "lgb.max_bin"}  # recorded before it existed
    assert build_estimator(older, "binary", seed=0).get_params()["max_bin"] == 255


def test_fidelity_plan_scores_the_first_fold_before_all_folds() -> None:
    from atlas_trainer.automl.evaluate import MAX_RESOURCE, fidelity_plan

    plan = fidelity_plan(270, 3)
    assert [p[0] for p in plan] == [1, 3, 9, MAX_RESOURCE]
    assert [p[2] for p in plan] == [False, False, False, True] and plan[-1][1] == 270
    assert fidelity_plan(1, 3) == [(9, 1, False), (MAX_RESOURCE, 1, True)]
    assert fidelity_plan(1, 1) == [(MAX_RESOURCE, 1, True)]


def test_booster_plan_splits_low_rungs_between_rows_and_rounds() -> None:
    from atlas_trainer.automl.evaluate import MAX_RESOURCE, ROW_RUNG_MIN_ROWS, booster_plan

    assert booster_plan(900, ROW_RUNG_MIN_ROWS - 1) is None  # small data: rounds only
    assert booster_plan(1, ROW_RUNG_MIN_ROWS) is None
    plan = booster_plan(900, ROW_RUNG_MIN_ROWS)
    assert [p[0] for p in plan] == [1, 3, 9, MAX_RESOURCE]
    assert [p[2] for p in plan] == [False, False, False, True]
    for step, rounds, _, frac in plan[:-1]:
        # same cost as rounds alone (rows x rounds = step / 27), a sqrt(27/step)x longer horizon
        assert frac * rounds / 900 == pytest.approx(step / MAX_RESOURCE, rel=0.01)
        assert rounds / 900 == pytest.approx((step / MAX_RESOURCE) ** 0.5, rel=0.01)
    assert plan[-1] == (MAX_RESOURCE, 900, True, 1.0)


def test_row_subset_is_seeded_and_keeps_every_class() -> None:
    from atlas_trainer.automl.evaluate import row_subset

    y = np.array([0] * 995 + [1, 2, 2, 2, 2])
    sub = row_subset(y, 0.1, seed=3, classification=True)
    assert np.array_equal(sub, row_subset(y, 0.1, seed=3, classification=True))
    assert set(y[sub]) == {0, 1, 2} and np.all(np.diff(sub) > 0)
    assert len(row_subset(y, 0.1, seed=3, classification=False)) == 100


def test_boosters_on_enough_rows_score_low_rungs_on_a_row_sample(monkeypatch) -> None:
    from atlas_trainer.automl import evaluate as ev
    from atlas_trainer.automl.task import prepare_target
    from tests.unit.trainer._automl_data import breast_cancer

    X, y = breast_cancer()
    prepared = prepare_target(y)
    splits = ev.make_splits(prepared, folds=3)
    monkeypatch.setattr(ev, "ROW_RUNG_MIN_ROWS", 100)
    params = sample_config(
        optuna.create_study().ask(),
        prepared.task,
        SpaceOptions(fixed={"family": "xgboost", "xgb.n_estimators": 90}),
    )
    fitted: list[tuple[int, int]] = []  # (rows, rounds) of every grow() call
    real_grow = ev.grow

    def grow(est, family, Z, yy, done, target, check, boosting=None):  # noqa: ANN001, ANN202
        fitted.append((len(yy), target - done))
        return real_grow(est, family, Z, yy, done, target, check, boosting)

    monkeypatch.setattr(ev, "grow", grow)
    steps: list[int] = []
    out = ev.evaluate_config(
        params, X, prepared, splits, report=lambda score, step: steps.append(step) or False
    )
    fold_rows = len(splits.folds[0][0])
    assert steps == [1, 3, 9, ev.MAX_RESOURCE] and out.fidelity == 1.0
    for (rows, rounds), step in zip(fitted[:3], (1, 3, 9)):
        frac = (step / ev.MAX_RESOURCE) ** 0.5
        assert rows == pytest.approx(frac * fold_rows, abs=2)
        assert rounds == int(np.ceil(90 * frac))
    # the last rung fits every fold on all its rows, from scratch
    assert fitted[3:] == [(len(tr), 90) for tr, _ in splits.folds]
    assert len(out.fold_models) == 3 and out.oof.shape[0] == len(y)

    fitted.clear()
    pruned = ev.evaluate_config(params, X, prepared, splits, report=lambda score, step: True)
    assert pruned.fidelity == 1 / ev.MAX_RESOURCE and len(fitted) == 1
    assert len(pruned.fold_models) == 1  # the row-sample model, usable as a partial result
    assert pruned.fold_models[0].predict(X.iloc[:5]).shape == (5,)

    fitted.clear()
    steps.clear()  # a search that never prunes grows one model per fold through the rungs
    full = ev.evaluate_config(
        params,
        X,
        prepared,
        splits,
        row_rungs=False,
        report=lambda score, step: steps.append(step) or False,
    )
    assert steps == [1, 3, 9, ev.MAX_RESOURCE]
    n0 = len(splits.folds[0][0])
    assert fitted == [(n0, 4), (n0, 6), (n0, 20), (n0, 60)] + [
        (len(tr), 90) for tr, _ in splits.folds[1:]
    ]
    # the same configuration at full fidelity; grown in steps, so only up to XGBoost's
    # row/column sampling draws
    assert full.fidelity == 1.0 and full.score == pytest.approx(out.score, abs=0.01)


def test_mlp_epochs_on_large_inputs_take_a_bounded_number_of_steps() -> None:
    from atlas_core.ml import TorchMLP
    from atlas_core.ml._mlp import MAX_STEPS_PER_EPOCH

    rng = np.random.default_rng(0)
    X = rng.normal(size=(MAX_STEPS_PER_EPOCH * 40, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    small = TorchMLP(task="binary", hidden=(8,), batch_size=8, epochs=1, device="cpu")
    small.fit(X[:64], y[:64])  # small input: batch_size as given (8 steps)
    big = TorchMLP(task="binary", hidden=(8,), batch_size=8, epochs=1, device="cpu")
    big.fit(X, y)  # 5,120 rows of batch 8 would be 640 steps

    def steps(m: TorchMLP) -> int:
        return max(int(s["step"]) for s in m._optimizer.state.values())

    assert steps(small) == 8
    assert steps(big) == MAX_STEPS_PER_EPOCH
    assert (big.predict(X) == y).mean() > 0.75  # still learns (chance: 0.5)
