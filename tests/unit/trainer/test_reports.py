"""Trainer reports: importance (SHAP and permutation), explanations, bias metrics, plots."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from atlas_core.errors import InvalidArgument
from atlas_core.storage import LocalArtifactStore
from atlas_trainer.automl.search import INTERRUPTED
from atlas_trainer.reports import (
    PERMUTATION,
    SHAP,
    TrialPoint,
    bias_metrics,
    dashboard_command,
    dashboard_storage_url,
    explain_rows,
    global_importance,
    history_from_study,
    write_plots,
)
from atlas_trainer.reports.plots import leaderboard_html, optimization_history_html


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "signal": rng.normal(size=600),
            "weak": rng.normal(size=600),
            "noise": rng.normal(size=600),
        }
    )
    y = ((2 * X["signal"] + 0.5 * X["weak"] + rng.normal(0, 0.3, 600)) > 0).astype(int)
    return X, y


# ------------------------------------------------------------------------- importance


def test_shap_importance_ranks_the_signal_first(data: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = data
    model = xgb.XGBClassifier(n_estimators=30, max_depth=3, n_jobs=1).fit(X, y)
    result = global_importance(model, X, y, task="binary", classes=[0, 1])
    assert result.method == SHAP
    assert [f.feature for f in result.features] == ["signal", "weak", "noise"]
    expected = np.abs(model.get_booster().predict(xgb.DMatrix(X), pred_contribs=True))[:, 0]
    assert result.features[0].importance == pytest.approx(expected.mean(), rel=1e-5)


def test_permutation_importance_without_contributions(
    data: tuple[pd.DataFrame, pd.Series],
) -> None:
    X, y = data
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    result = global_importance(model, X, y, task="binary", classes=[0, 1], n_repeats=3)
    assert result.method == PERMUTATION and result.metric == "roc_auc"
    ranked = [f.feature for f in result.features]
    assert ranked[0] == "signal"
    assert result.features[0].importance > 0.2
    assert abs(next(f for f in result.features if f.feature == "noise").importance) < 0.02
    with pytest.raises(InvalidArgument, match="needs the labels"):
        global_importance(model, X, None, task="binary", classes=[0, 1])


def test_permutation_importance_batches_calls_and_agrees_with_sklearn(
    data: tuple[pd.DataFrame, pd.Series],
) -> None:
    """Shuffled copies are stacked into few predict calls (an ensemble's per-call cost
    must not scale with columns x repeats), with sklearn's answer; categoricals survive."""
    from sklearn.inspection import permutation_importance

    X, y = data
    X = X.assign(kind=pd.Categorical(np.where(X["weak"] > 0, "a", "b")))
    fitted = make_pipeline(StandardScaler(), LogisticRegression()).fit(X[["signal", "weak"]], y)

    class Counting:
        calls = 0

        def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
            Counting.calls += 1
            assert frame["kind"].dtype == X["kind"].dtype
            return fitted.predict_proba(frame[["signal", "weak"]])

    result = global_importance(Counting(), X, y, task="binary", classes=[0, 1], n_repeats=5)
    assert Counting.calls <= 3  # baseline + one stacked call (not 4 columns x 5 repeats)
    ours = {f.feature: f.importance for f in result.features}
    reference = permutation_importance(
        fitted, X[["signal", "weak"]], y, scoring="roc_auc", n_repeats=5, random_state=0
    )
    assert ours["signal"] == pytest.approx(reference.importances_mean[0], abs=0.03)
    assert ours["weak"] == pytest.approx(reference.importances_mean[1], abs=0.03)
    assert ours["noise"] == 0.0 and ours["kind"] == 0.0  # unused columns


def test_permutation_importance_for_regression(data: tuple[pd.DataFrame, pd.Series]) -> None:
    X, _ = data
    target = 3 * X["signal"] + 0.1 * X["noise"]
    model = Ridge().fit(X, target)
    result = global_importance(model, X, target, task="regression", n_repeats=2)
    assert result.metric == "rmse" and result.features[0].feature == "signal"


def test_shap_explanations_sum_to_the_margin(data: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = data
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1).fit(X, y)
    explanation = explain_rows(model, X.head(4), task="binary", classes=[0, 1])
    assert explanation.method == SHAP
    margin = model.predict(X.head(4), output_margin=True)
    for row, expected in zip(explanation.rows, margin):
        assert set(row.contributions) == {"signal", "weak", "noise"}
        total = sum(row.contributions.values()) + row.base_value
        assert total == pytest.approx(expected, abs=1e-4)
        assert row.prediction == pytest.approx(expected, abs=1e-4)


def test_permutation_explanations_credit_the_signal(data: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = data
    model = LogisticRegression().fit(X, y)
    rows = pd.DataFrame({"signal": [3.0, -3.0], "weak": [0.0, 0.0], "noise": [0.0, 0.0]})
    explanation = explain_rows(
        model, rows, task="binary", classes=[0, 1], background=X, max_background=30
    )
    assert explanation.method == PERMUTATION
    high, low = explanation.rows
    assert high.contributions["signal"] > 0.3 and low.contributions["signal"] < -0.3
    assert abs(high.contributions["noise"]) < 0.05
    assert high.prediction == pytest.approx(model.predict_proba(rows)[0, 1])
    assert 0.3 < high.base_value < 0.7
    with pytest.raises(InvalidArgument, match="background"):
        explain_rows(model, rows, task="binary", classes=[0, 1])
    with pytest.raises(InvalidArgument, match="1..1000"):
        explain_rows(model, rows.head(0), task="binary", classes=[0, 1], background=X)


def test_multiclass_explanations_pick_the_target_class() -> None:
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    y = np.digitize(X["a"], [-0.5, 0.5])
    model = xgb.XGBClassifier(n_estimators=10, max_depth=2, n_jobs=1).fit(X, y)
    margins = model.predict(X.head(3), output_margin=True)
    explanation = explain_rows(
        model, X.head(3), task="multiclass", classes=[0, 1, 2], target_class=2
    )
    for row, margin in zip(explanation.rows, margins):
        assert row.prediction == pytest.approx(margin[2], abs=1e-4)
    with pytest.raises(InvalidArgument, match="target class"):
        explain_rows(model, X.head(3), task="multiclass", classes=[0, 1, 2], target_class="z")


# ------------------------------------------------------------------------- bias


def test_bias_metrics_match_hand_computed_values() -> None:
    # facet "f": 4 rows with labels 1,1,0,0 (q_d = 1/2); the rest: 6 rows, one positive.
    frame = pd.DataFrame(
        {
            "sex": ["f"] * 4 + ["m"] * 6,
            "label": [1, 1, 0, 0, 1, 0, 0, 0, 0, 0],
        }
    )
    metrics = {
        m.facet_value: m for m in bias_metrics(frame, facet_column="sex", label_column="label")
    }
    f = metrics["f"]
    assert f.rows == 4
    assert f.class_imbalance == pytest.approx((6 - 4) / 10)
    assert f.difference_in_proportions == pytest.approx(1 / 6 - 1 / 2)
    pa, pd_ = np.array([5 / 6, 1 / 6]), np.array([1 / 2, 1 / 2])
    assert f.kl_divergence == pytest.approx(np.sum(pa * np.log(pa / pd_)))
    mix = (pa + pd_) / 2
    js = 0.5 * (np.sum(pa * np.log(pa / mix)) + np.sum(pd_ * np.log(pd_ / mix)))
    assert f.js_divergence == pytest.approx(js)
    assert f.total_variation == pytest.approx(1 / 3)
    assert f.ks_distance == pytest.approx(1 / 3)
    m = metrics["m"]  # the mirror image
    assert m.class_imbalance == pytest.approx(-0.2)
    assert m.difference_in_proportions == pytest.approx(1 / 3)


def test_bias_metrics_multi_valued_numeric_and_positive_labels() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "region": rng.choice(["north", "south", "east"], size=400),
            "age": rng.integers(18, 80, size=400),
            "outcome": rng.choice(["approve", "deny", "review"], size=400),
        }
    )
    by_region = bias_metrics(
        frame, facet_column="region", label_column="outcome", positive_labels=["approve"]
    )
    assert sorted(m.facet_value for m in by_region) == ["east", "north", "south"]
    assert sum(m.rows for m in by_region) == 400
    east = next(m for m in by_region if m.facet_value == "east")
    in_east = frame["region"] == "east"
    q_d = (frame.loc[in_east, "outcome"] == "approve").mean()
    q_a = (frame.loc[~in_east, "outcome"] == "approve").mean()
    assert east.difference_in_proportions == pytest.approx(q_a - q_d)
    by_age = bias_metrics(frame, facet_column="age", label_column="outcome")
    assert 2 <= len(by_age) <= 4 and all("," in m.facet_value for m in by_age)
    only_south = bias_metrics(
        frame, facet_column="region", label_column="outcome", facet_values=["south"]
    )
    assert [m.facet_value for m in only_south] == ["south"]


def test_bias_metrics_validate_input() -> None:
    frame = pd.DataFrame({"sex": ["f", "m", "m"], "label": [1, 0, 1], "one": [1, 1, 1]})
    with pytest.raises(InvalidArgument) as err:
        bias_metrics(frame, facet_column="gender", label_column="label")
    assert "'gender'" in err.value.message and err.value.metadata["column"] == "gender"
    with pytest.raises(InvalidArgument, match="label column 'target'"):
        bias_metrics(frame, facet_column="sex", label_column="target")
    with pytest.raises(InvalidArgument, match="no value x"):
        bias_metrics(frame, facet_column="sex", label_column="label", facet_values=["x"])
    with pytest.raises(InvalidArgument, match="only positive"):
        bias_metrics(frame, facet_column="sex", label_column="one")
    single = bias_metrics(frame.assign(sex="f"), facet_column="sex", label_column="label")
    assert single[0].class_imbalance == -1.0 and math.isnan(single[0].kl_divergence)


# ------------------------------------------------------------------------- plots, dashboard


def test_plots_are_written_to_the_store(
    tmp_path: Path, data: tuple[pd.DataFrame, pd.Series]
) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda t: -((t.suggest_float("x", -2, 2) - 1) ** 2), n_trials=8)
    history = history_from_study(study) + [TrialPoint(99, None, "PRUNED")]
    X, y = data
    importance = global_importance(
        xgb.XGBClassifier(n_estimators=5, n_jobs=1).fit(X, y), X, y, task="binary"
    )
    leaderboard = [
        {"rank": 1, "number": 3, "pipeline": "impute > xgboost", "score": 0.91, "score_std": 0.01},
        {"rank": 2, "number": 1, "pipeline": "scale > <linear>", "score": 0.88, "fit_seconds": 1.5},
        {"rank": 3, "number": 7, "pipeline": "mlp", "score": None, "state": "FAIL"},  # no score
    ]
    store = LocalArtifactStore(tmp_path / "store")
    plots = write_plots(
        store,
        "jobs/j1/report/plots",
        metric="roc_auc",
        higher_is_better=True,
        history=history,
        leaderboard=leaderboard,
        importance=importance,
    )
    assert [p.name for p in plots] == ["optimization_history", "leaderboard", "feature_importance"]
    pages = {p.name: store.get_bytes(p.ref).decode() for p in plots}
    assert plots[0].ref.key == "jobs/j1/report/plots/optimization_history.html"
    assert all(page.startswith("<!DOCTYPE html>") and "<svg" in page for page in pages.values())
    assert pages["optimization_history"].count("<circle") == 8
    assert "1 pruned" in pages["optimization_history"]
    assert "scale &gt; &lt;linear&gt;" in pages["leaderboard"]
    assert pages["leaderboard"].count("<tr>") == 4  # header + 3 rows; the failed one unplotted
    assert "signal" in pages["feature_importance"]
    empty = write_plots(store, "p", metric="rmse", higher_is_better=False, history=[])
    assert "no data yet" in store.get_bytes(empty[0].ref).decode()


def test_dashboard_url_hides_credentials(tmp_path: Path) -> None:
    url = dashboard_storage_url(
        "postgresql+psycopg://atlas:s3cret@db:5432/atlas?sslpassword=x&application_name=t"
    )
    assert "s3cret" not in url and "sslpassword" not in url
    assert url.startswith("postgresql+psycopg://atlas@db:5432/atlas")
    sqlite = dashboard_storage_url("sqlite:///meta/atlas.db", base_dir=tmp_path)
    assert sqlite == f"sqlite:///{tmp_path.resolve()}/meta/atlas.db"
    assert dashboard_command("sqlite:////abs/x.db") == "optuna-dashboard sqlite:////abs/x.db"
    with pytest.raises(InvalidArgument):
        dashboard_storage_url("not a url")


def test_report_importance_fits_the_jobs_remaining_budget() -> None:
    import time

    from atlas_trainer.job_reports import IMPORTANCE_ROWS, importance_rows

    X = pd.DataFrame(
        np.random.default_rng(0).normal(size=(1000, 10)), columns=[f"x{i}" for i in range(10)]
    )

    class Slow:  # 1 ms per row, no booster contributions: permutation importance only
        def predict_scores(self, frame: pd.DataFrame) -> np.ndarray:
            time.sleep(1e-3 * len(frame))
            return np.zeros(len(frame))

    assert importance_rows(Slow(), X, None) == IMPORTANCE_ROWS  # no wall budget
    assert importance_rows(Slow(), X, time.monotonic() + 600) == IMPORTANCE_ROWS
    # 21 passes x 1 ms per row in ~3 s left (0.5 s kept for plots): ~110 rows, not 500
    assert 50 <= importance_rows(Slow(), X, time.monotonic() + 3.1) < 200
    assert importance_rows(Slow(), X, time.monotonic() + 0.4) == 0  # skipped
    booster = xgb.XGBClassifier(n_estimators=5, n_jobs=1).fit(X, np.arange(1000) % 2)
    assert importance_rows(booster, X, time.monotonic()) == IMPORTANCE_ROWS  # SHAP: cheap


def test_the_history_plots_complete_trials_only_and_names_the_ensemble(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize")
    study.enqueue_trial({"x": 3.0})
    study.optimize(lambda t: t.suggest_float("x", 2, 4), n_trials=1)  # complete: 3.0

    def pruned(trial: optuna.Trial) -> float:
        trial.report(0.5, step=0)  # a first fold's score, better than any complete trial
        raise optuna.TrialPruned

    study.optimize(pruned, n_trials=1)
    cut = study.ask()
    cut.set_user_attr("error", INTERRUPTED + "wall budget reached")
    study.tell(cut, state=optuna.trial.TrialState.FAIL)
    history = history_from_study(study)
    assert [(p.value, p.state) for p in history] == [
        (3.0, "COMPLETE"),
        (None, "PRUNED"),
        (None, "INTERRUPTED"),
    ]
    page = optimization_history_html(history, metric="rmse", higher_is_better=False)
    assert "best rmse: 3" in page and "1 interrupted" in page and "fail" not in page
    board = [{"number": -2, "pipeline": "ensemble(1*a > b)", "score": 0.9}]
    plot = leaderboard_html(board, metric="auc", higher_is_better=True)
    assert "ensemble ensemble(1*a &gt; b)" in plot and "#-2" not in plot
    stacked = [{"number": -201, "pipeline": "extra-trees on the features", "score": 0.9}]
    plot = leaderboard_html(stacked, metric="auc", higher_is_better=True)
    assert "L2 m1 extra-trees" in plot and "ensemble" not in plot


def test_the_score_over_time_plot_shows_the_search_and_the_layers(tmp_path: Path) -> None:
    curve = [
        {"elapsed_s": 3.0, "score": 0.90, "series": "search", "stack_level": 1, "trial": 0},
        {"elapsed_s": 9.0, "score": 0.92, "series": "search", "stack_level": 1, "trial": 4},
        {"elapsed_s": 50.0, "score": 0.93, "series": "ensemble", "stack_level": 1, "trial": None},
        {"elapsed_s": 70.0, "score": 0.94, "series": "ensemble", "stack_level": 2, "trial": None},
    ]
    store = LocalArtifactStore(tmp_path / "store")
    (plot,) = write_plots(
        store, "r", metric="roc_auc", higher_is_better=True, score_curve=curve, elapsed_s=100.0
    )
    page = store.get_bytes(plot.ref).decode()
    assert plot.name == "score_over_time" and plot.ref.key == "r/score_over_time.html"
    # the search as a step line (held at 0.90 until 9 s, then to the first layer's time) and
    # one dot per point of each series
    assert page.count("<circle") == 4 + 2
    assert "search: best trial so far" in page and "ensemble after each layer" in page
    assert "<td>70</td><td>ensemble</td><td>2</td><td></td><td>0.94</td>" in page
    assert "last improvement came at 9 s of 100 s (9%)" in page and "levelled off" in page
    assert write_plots(store, "r", metric="rmse", higher_is_better=False, score_curve=[]) == []
