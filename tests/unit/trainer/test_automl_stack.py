"""Multi-layer stacking (automl.stack, atlas_core.ml.StackEnsemble): stacked layers are
bagged with the search's folds, so a layer-2 model's out-of-fold score on pure noise stays at
chance (and a stack fed in-sample predictions, the leak it avoids, would not); the stack
columns line up with the rows; shapes, determinism, the predictor's parity (frame, float
matrix, pickle); the budget rules; and run_automl's leaderboard layers and score curve."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from atlas_core.errors import InvalidArgument
from atlas_core.ml import StackEnsemble, stack_columns, with_stack_columns
from atlas_trainer.automl import AutoMLRequest, run_automl
from atlas_trainer.automl import stack as stacking
from atlas_trainer.automl.evaluate import evaluate_config, make_splits
from atlas_trainer.automl.space import SpaceOptions, portfolio
from atlas_trainer.automl.task import prepare_target

from ._automl_data import breast_cancer


def _configs(*families: str) -> dict[int, dict]:
    found: dict[int, dict] = {}
    for cfg in portfolio(SpaceOptions(("linear", "lightgbm", "extra_trees"))):
        if cfg["family"] in families and cfg["family"] not in [c["family"] for c in found.values()]:
            cfg = {**cfg, "et.n_estimators": 40} if cfg["family"] == "extra_trees" else cfg
            found[len(found)] = (
                {**cfg, "lgb.n_estimators": 40} if "lgb.n_estimators" in cfg else cfg
            )
    return found


def _layer1(X, prepared, splits, configs):
    inputs = {}
    for n, cfg in configs.items():
        out = evaluate_config(cfg, X, prepared, splits, row_rungs=False)
        inputs[n] = (out.oof, out.fold_models)
    return inputs


def _noise(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 8)), columns=[f"n{i}" for i in range(8)])
    y = pd.Series(rng.choice(["a", "b"], size=n), name="label")
    prepared = prepare_target(y, "binary", None, 3)
    return X, prepared, make_splits(prepared, method="kfold", folds=3, seed=0)


def _fit(X, prepared, splits, inputs, configs, levels=1):
    return stacking.fit_stack(
        X,
        prepared,
        splits,
        inputs=inputs,
        configs=configs,
        chosen=list(configs),
        levels=levels,
        seed=0,
        threads=1,
        deadline=None,
    )


@pytest.mark.slow
def test_a_layer2_models_oof_score_on_noise_is_not_inflated():
    X, prepared, splits = _noise()
    configs = _configs("extra_trees", "linear")
    inputs = _layer1(X, prepared, splits, configs)
    stack = _fit(X, prepared, splits, inputs, configs)
    assert [m.level for m in stack.models] == [2, 2]
    for m in stack.models:
        auc = roc_auc_score(prepared.y, m.outcome.oof[:, 1])
        assert abs(auc - 0.5) < 0.1, (m.key, auc)
        assert m.outcome.score == pytest.approx(auc)  # the reported score is that OOF score

    # The leak the pair models avoid: the plain recipe (every fold reads the same layer-1 OOF
    # scores) lets a layer-2 forest score well above chance on the same noise.
    plain = with_stack_columns(X, {f"t{n}": oof for n, (oof, _) in inputs.items()}, "binary")
    cfg = stacking.stacked_config(configs[0])
    naive = stacking._cross_validate(cfg, [plain] * 3, prepared, splits, 0, 1, lambda: None)
    assert roc_auc_score(prepared.y, naive.oof[:, 1]) > 0.6


def test_each_fold_reads_scores_fitted_without_its_validation_rows():
    X, prepared, splits = _noise(n=90, seed=1)
    oof = np.full((90, 2), -1.0)
    pairs = {
        (i, j): np.full((len(splits.folds[j][1]), 2), 10.0 * i + j)
        for i in range(3)
        for j in range(3)
        if i != j
    }
    for fold, (_, va) in enumerate(splits.folds):
        seen = stacking.fold_inputs(oof, pairs, splits, fold)
        assert (seen[va] == -1.0).all()  # its validation rows: the ordinary OOF scores
        for j, (_, other) in enumerate(splits.folds):
            if j != fold:  # fitted without this fold and the rows' own fold
                assert (seen[other] == 10.0 * fold + j).all()
    # one pair model per pair of folds, scoring both folds' rows as unseen rows: a forest
    # that memorises its rows (min 1 per leaf) would score rows it was fitted on perfectly
    cfg = {**_configs("extra_trees")[0], "et.min_samples_leaf": 1, "et.max_depth": 0}
    got = stacking.pair_scores(X, prepared, splits, cfg, seed=0, threads=1, check=lambda: None)
    assert set(got) == {(i, j) for i in range(3) for j in range(3) if i != j}
    for (_, j), scores in got.items():
        va = splits.folds[j][1]
        assert scores.shape == (len(va), 2)
        assert roc_auc_score(prepared.y[va], scores[:, 1]) < 0.9


@pytest.mark.slow
def test_shapes_determinism_and_the_predictor():
    X, y = breast_cancer()
    X, y = X.iloc[:240].reset_index(drop=True), y.iloc[:240].reset_index(drop=True)
    prepared = prepare_target(y, "binary", None, 3)
    splits = make_splits(prepared, method="kfold", folds=3, seed=0)
    configs = _configs("linear", "lightgbm")
    inputs = _layer1(X, prepared, splits, configs)
    first = _fit(X, prepared, splits, inputs, configs)
    again = _fit(X, prepared, splits, inputs, configs)
    assert [m.number for m in first.models] == [-201, -202]
    assert [len(layer) for layer in first.layers] == [2, 2]
    for a, b in zip(first.models, again.models, strict=True):
        assert a.outcome.oof.shape == (240, 2) and len(a.outcome.fold_models) == 3
        np.testing.assert_array_equal(a.outcome.oof, b.outcome.oof)  # same seed, same stack
        assert a.outcome.score > 0.95  # the real signal survives stacking
    weights = {"L2.m1": 0.5, "L2.m2": 0.25, "t0": 0.25}
    model = StackEnsemble(first.layers, weights, task="binary", classes=prepared.classes)
    got = model.predict_scores(X.head(30))
    # by hand: layer-1 fold bags -> layer 2 on X + their stack columns
    out1 = {k: m.predict_scores(X.head(30)) for k, m in first.layers[0].items()}
    frame2 = with_stack_columns(X.head(30), out1, "binary")
    want = (
        0.5 * first.layers[1]["L2.m1"].predict_scores(frame2)
        + 0.25 * first.layers[1]["L2.m2"].predict_scores(frame2)
        + 0.25 * out1["t0"]
    )
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got.shape == (30, 2) and model.predict(X.head(30)).shape == (30,)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(model)).predict_scores(X.head(30)), got)
    scorer = model.matrix_scorer(list(X.columns))
    assert scorer is not None
    np.testing.assert_allclose(scorer(X.head(30).to_numpy(float)), got, rtol=1e-9)
    with pytest.raises(ValueError, match="missing"):
        StackEnsemble(first.layers, {"L9.m1": 1.0}, task="binary", classes=prepared.classes)


def test_stack_columns_per_task():
    assert list(stack_columns("t1", np.zeros((4, 2)), "binary")) == ["__stack__.t1"]
    multi = stack_columns("t1", np.zeros((4, 3)), "multiclass")
    assert list(multi) == ["__stack__.t1.c0", "__stack__.t1.c1", "__stack__.t1.c2"]
    assert stack_columns("L2.m1", np.ones(4), "regression")["__stack__.L2.m1"].shape == (4,)


def test_the_budget_decides_the_layers():
    # too small a budget: off with a reason naming the way out
    levels, why = stacking.wanted_levels("auto", 0, 30.0, 2.0, "3-fold")
    assert levels == 0 and "automl.stacking ON" in why
    # the layer's expected cost decides whether it fits in its share of the budget
    assert stacking.wanted_levels("auto", 0, 300.0, 80.0, "5-fold")[0] == 1
    levels, why = stacking.wanted_levels("auto", 0, 300.0, 200.0, "5-fold")
    assert levels == 0 and "200 s" in why
    assert stacking.wanted_levels("on", 0, 10.0, 200.0, "3-fold")[0] == 1
    assert stacking.wanted_levels("off", 0, 900.0, 1.0, "5-fold")[0] == 0
    assert stacking.wanted_levels("on", 0, 900.0, 1.0, "holdout")[0] == 0
    assert stacking.wanted_levels("on", 0, 900.0, 1.0, "2-fold")[0] == 0
    assert stacking.stack_reserve("auto", 0, 300.0, 40.0, "5-fold") == 40.0
    assert stacking.stack_reserve("auto", 0, 300.0, 100.0, "5-fold") == 100.0
    assert stacking.stack_reserve("on", 0, 30.0, 100.0, "5-fold") == pytest.approx(10.5)
    assert stacking.stack_reserve("on", 0, 30.0, 100.0, "5-fold", complete=1) == 0.0
    assert stacking.stack_reserve("auto", 0, 30.0, 1.0, "5-fold") == 0.0
    # the estimate: the chosen configurations' CV time + the inputs' pair models
    fit = {1: 10.0, 2: 20.0, 3: 4.0}
    assert stacking.layer_estimate_s([1, 2], fit, [1, 2, 3], folds=5) == pytest.approx(
        stacking.COST_FACTOR * (30.0 + 1.5 * 34.0)
    )
    assert stacking.level_of(-201) == 2 and stacking.level_of(-302) == 3
    assert stacking.level_of(-2) == 0 and stacking.level_of(7) == 1


@pytest.mark.slow
def test_run_automl_stacks_reports_layers_and_the_score_curve():
    X, y = breast_cancer()
    result = run_automl(
        AutoMLRequest(
            X.iloc[:300],
            y.iloc[:300],
            task="binary",
            max_trials=4,
            strategy="random",
            families=["linear", "lightgbm"],
            folds=3,
            seed=0,
            fixed_params={"lgb.n_estimators": 30},
            stacking="on",
            stack_levels=1,
        )
    )
    layered = [r for r in result.leaderboard if r.stack_level == 2]
    assert layered and all(r.number <= -201 and r.origin.startswith("stack:L2:") for r in layered)
    assert all(r.state == "COMPLETE" and r.score is not None for r in layered)
    assert result.trials_complete == 4  # stacked models are not trials
    assert "stacked 1 layer" in result.stacking
    series = {(p.series, p.stack_level) for p in result.score_curve}
    assert ("search", 1) in series and ("ensemble", 1) in series and ("ensemble", 2) in series
    times = [p.elapsed_s for p in result.score_curve]
    assert times == sorted(times)
    ens = next(r for r in result.leaderboard if r.number == -2)
    assert ens.stack_level == 0 and ens.score == result.ensemble_score
    if isinstance(result.ensemble_model, StackEnsemble):
        assert result.stack_levels == 2 and any(n < 0 for n in result.ensemble_weights)
    scores = result.model.predict_scores(X.iloc[300:340])
    assert scores.shape == (40, 2) and np.allclose(scores.sum(axis=1), 1.0)


@pytest.mark.slow
def test_auto_does_not_stack_without_a_wall_budget_and_bad_options_are_refused():
    X, y = breast_cancer()
    result = run_automl(
        AutoMLRequest(
            X.iloc[:200],
            y.iloc[:200],
            task="binary",
            max_trials=3,
            strategy="random",
            families=["linear"],
            folds=3,
            seed=0,
        )
    )
    assert all(r.stack_level in (0, 1) for r in result.leaderboard)
    assert "needs a wall budget" in result.stacking
    for kw, field in (
        ({"stacking": "sometimes"}, "stacking"),
        ({"stack_levels": 2}, "stack_levels"),
    ):
        with pytest.raises(InvalidArgument) as err:
            run_automl(AutoMLRequest(X, y, max_trials=1, **kw))
        assert err.value.reason == "BAD_STACKING" and field in str(err.value)


def test_inputs_and_models_expected_to_overrun_the_window_are_skipped():
    import time

    X, prepared, splits = _noise(n=150, seed=2)
    configs = _configs("extra_trees", "linear")
    inputs = _layer1(X, prepared, splits, configs)
    stack = stacking.fit_stack(
        X,
        prepared,
        splits,
        inputs=inputs,
        configs=configs,
        chosen=[0, 1],
        seed=0,
        threads=1,
        deadline=time.monotonic() + 120.0,
        fit_times={0: 1000.0, 1: 0.01},  # trial 0 took "1000 s" in the search
    )
    assert stack.input_trials == {"t1": 1} and list(stack.layers[0]) == ["t1"]
    assert [m.source for m in stack.models] == [1] and stack.models[0].key == "L2.m2"
    assert "1 layer-2 models skipped" in stack.stopped


def _interactions(n: int = 600, seed: int = 1) -> tuple[pd.DataFrame, pd.Series]:
    """A sign interaction, a linear and a square term (tests/grpc/trainer/test_stacking.py's
    table): a layer-2 model over the families' scores earns a place in the ensemble."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 6)), columns=[f"x{i}" for i in range(6)])
    logit = 2 * np.sign(X.x0 * X.x1) + 1.5 * X.x2 + X.x3**2 - 1
    return X, pd.Series(np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no"))


@pytest.mark.slow
def test_a_stacked_final_model_has_its_fold_bag_version_only():
    X, y = _interactions()
    result = run_automl(
        AutoMLRequest(
            X,
            y,
            task="binary",
            max_trials=5,
            strategy="random",
            families=["linear", "lightgbm", "extra_trees"],
            folds=3,
            seed=0,
            fixed_params={"lgb.n_estimators": 30},
            stacking="on",
        )
    )
    assert isinstance(result.model, StackEnsemble), result.stacking  # the table stacks
    # no refit-full stack: its layer 2 was fitted on out-of-fold scores, not on refits'
    assert list(result.versions) == ["fold_bag"]
    version = result.versions["fold_bag"]
    assert isinstance(version.model, StackEnsemble) and version.score == result.ensemble_score
    assert not any(  # members outside the stack are fold bags there too (refits in the model)
        type(m).__name__ != "FoldBag" for m in version.model.outside.values()
    )
    n_layer_models = sum(len(layer) for layer in version.model.layers)
    assert version.models >= 3 * n_layer_models  # every stack model is a 3-fold bag
    assert version.row_latency_s and version.batch_rows_per_s  # measured (no wall budget)
    ens = next(r for r in result.leaderboard if r.number == -2)
    assert ens.row_latency_s == version.row_latency_s
    assert ens.batch_rows_per_s == version.batch_rows_per_s
    rows = X.tail(20)
    np.testing.assert_allclose(  # the two differ only in the members outside the stack
        version.model.predict_scores(rows), result.model.predict_scores(rows), atol=0.2
    )


@pytest.mark.slow
def test_a_throughput_floor_skips_stacking_and_keeps_both_versions():
    X, y = breast_cancer()
    result = run_automl(
        AutoMLRequest(
            X.iloc[:300],
            y.iloc[:300],
            task="binary",
            max_trials=3,
            strategy="random",
            families=["linear"],
            folds=3,
            seed=0,
            stacking="on",
            min_batch_rows_per_s=1.0,  # any model meets it
        )
    )
    assert all(r.stack_level in (0, 1) for r in result.leaderboard)
    assert "batch throughput floor" in result.stacking
    assert any("batch throughput floor" in w for w in result.warnings)  # asked for: warned
    assert result.stack_levels == 1
    assert set(result.versions) == {"fold_bag", "refit_full"}
    assert all(r.batch_rows_per_s for r in result.leaderboard if r.number >= 0)
