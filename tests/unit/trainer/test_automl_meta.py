"""Meta-learning: meta-features, the SQL meta-store, warm starts from similar/parent studies."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from atlas_core.db import apply_migrations
from atlas_core.meta_features import meta_features_of_frame, similarity_vector
from atlas_trainer.automl import (
    MIGRATIONS,
    AutoMLRequest,
    InMemoryMetaStore,
    MetaEntry,
    SqlMetaStore,
    run_automl,
)
from atlas_trainer.automl.meta import find_priors
from atlas_trainer.automl.space import resize_config
from tests.unit.trainer._automl_data import breast_cancer, hard_frame


@pytest.fixture
def store(db_engine: Engine) -> Iterator[SqlMetaStore]:
    apply_migrations(db_engine, MIGRATIONS)
    yield SqlMetaStore(db_engine)


def _entry(key: str, dataset: str, mf: dict[str, float], family: str = "linear") -> MetaEntry:
    params = {"family": family, "lin.C": 0.5, "lin.penalty": "l2", "pre.scaling": "standard"}
    return MetaEntry(
        key, dataset, "binary", "roc_auc", True, mf, [{"trial": 4, "score": 0.9, "params": params}]
    )


def test_sql_store_round_trip_and_nearest_first(store: SqlMetaStore) -> None:
    store.record(_entry("s-far", "far", {"log_rows": 6.0, "log_cols": 3.0}))
    store.record(_entry("s-near", "near", {"log_rows": 2.7, "log_cols": 1.5}))
    parent = _entry("s-parent", "parent", {"log_rows": 5.0, "log_cols": 0.1})
    parent.observations = [{"params": {"family": "linear", "lin.C": 2.0}, "score": 0.8}]
    store.record(parent)
    store.record(_entry("s-near", "near", {"log_rows": 2.75, "log_cols": 1.5}))  # replaces
    assert len(store.entries("binary")) == 3 and store.entries("regression") == []
    priors = find_priors(
        store, {"log_rows": 2.76, "log_cols": 1.48}, "binary", parent_keys=("parent",), k=1
    )
    assert [(p.source_dataset, p.reason) for p in priors] == [
        ("parent", "lineage_parent"),
        ("near", "similar_meta_features"),
    ]
    assert priors[0].distance == 0.0 and priors[1].configs[0]["trial"] == 4
    # The parent's trials travel only to a study scored with the same metric.
    assert priors[0].observations == [] and priors[1].observations == []
    (same,) = find_priors(
        store, {"log_rows": 2.76}, "binary", parent_keys=("parent",), k=0, metric="roc_auc"
    )
    assert same.observations == parent.observations


def test_similarity_vectors_are_finite_even_on_awkward_columns() -> None:
    for X, y in (breast_cancer(), hard_frame()):
        mf = similarity_vector(meta_features_of_frame(X, y))
        assert {"log_rows", "class_entropy_normalized", "landmark_decision_stump"} <= set(mf)
        assert all(math.isfinite(v) and abs(v) <= 100 for v in mf.values())


def test_warm_start_enqueues_priors_first_and_reports_rank() -> None:
    X, y = breast_cancer()
    store = InMemoryMetaStore()
    cold = run_automl(
        AutoMLRequest(
            X,
            y,
            max_trials=4,
            families=["linear", "lightgbm"],
            meta_store=store,
            dataset_key="bc-full",
            study_name="cold",
            seed=0,
        )
    )
    assert store.entries("binary")[0].dataset_key == "bc-full"
    half = X.sample(frac=0.5, random_state=0)
    warm = run_automl(
        AutoMLRequest(
            half,
            y.loc[half.index],
            max_trials=4,
            families=["linear", "lightgbm"],
            meta_store=store,
            dataset_key="bc-half",
            parent_dataset_ids=["bc-full"],
            study_name="warm",
            seed=0,
        )
    )
    assert warm.priors and warm.priors[0].reason == "lineage_parent"
    assert warm.priors[0].configs_enqueued >= 1 and warm.priors[0].best_rank >= 1
    first = next(r for r in warm.leaderboard if r.number == 0)
    assert first.origin.startswith("warm_start:cold#")
    best_cold = next(r for r in cold.leaderboard if r.state == "COMPLETE" and r.number >= 0)
    # Its best configuration, resized to half the rows (see the resize test below).
    assert first.params == resize_config(best_cold.params, len(half) / len(X))


def _cfg(trial: int, score: float, family: str, **params: float) -> dict:
    return {"trial": trial, "score": score, "params": {"family": family, **params}}


def test_lineage_parent_gives_more_family_diverse_configs_than_a_similar_dataset() -> None:
    from atlas_trainer.automl.meta import LINEAGE_CONFIGS, diverse_top

    # Best first: five lightgbm variants crowd the top, then linear and xgboost.
    top = [_cfg(i, 0.99 - i / 100, "lightgbm", **{"lgb.num_leaves": i}) for i in range(5)]
    top += [_cfg(5, 0.93, "linear"), _cfg(6, 0.92, "xgboost")]
    top += [_cfg(7, 0.91, "linear", **{"lin.C": 9.0})]
    top.insert(1, dict(top[0], trial=9))  # the same configuration again (deduplicated)
    assert [c["trial"] for c in diverse_top(top, 5, per_family=3)] == [0, 1, 2, 5, 6]
    assert [c["trial"] for c in diverse_top(top, 7, per_family=3)] == [0, 1, 2, 3, 5, 6, 7]
    store = InMemoryMetaStore()
    mf = {"log_rows": 3.0, "log_cols": 1.0}
    store.record(MetaEntry("s-parent", "parent", "binary", "roc_auc", True, mf, top))
    store.record(MetaEntry("s-other", "other", "binary", "roc_auc", True, mf, top))
    parent, other = find_priors(store, mf, "binary", parent_keys=("parent",), k=1)
    assert parent.reason == "lineage_parent" and other.reason == "similar_meta_features"
    assert len(parent.configs) == min(LINEAGE_CONFIGS, 8) > len(other.configs) == 3
    assert {c["params"]["family"] for c in parent.configs} == {"lightgbm", "linear", "xgboost"}
    assert [c["trial"] for c in other.configs] == [0, 9, 1]  # unchanged: plain top 3


def test_the_replaced_models_study_comes_first_even_when_newer_studies_share_its_dataset() -> None:
    store = InMemoryMetaStore()
    mf = {"log_rows": 3.0, "log_cols": 1.0}
    top = [_cfg(i, 0.99 - i / 100, "linear", **{"lin.C": float(i + 1)}) for i in range(4)]
    store.record(MetaEntry("s-base", "train@1", "binary", "roc_auc", True, mf, top))
    store.record(MetaEntry("s-newer", "train@1", "binary", "roc_auc", True, mf, top))  # same data
    store.record(MetaEntry("s-parent", "labels@1", "binary", "roc_auc", True, mf, top))
    store.record(MetaEntry("s-other", "other@1", "binary", "roc_auc", True, mf, top))
    priors = find_priors(
        store, mf, "binary", parent_keys=("labels@1",), base_studies=("s-base",), k=3
    )
    assert [(p.source_study, p.reason) for p in priors] == [
        ("s-base", "base_model"),
        ("s-parent", "lineage_parent"),
        ("s-other", "similar_meta_features"),  # never another study of the base's dataset
    ]
    assert len(priors[0].configs) == len(priors[1].configs) == 4  # the lineage allowance
    assert find_priors(store, mf, "binary", base_studies=("gone",), k=0) == []


def test_a_lineage_parents_configs_and_trials_are_resized_to_the_derived_rows() -> None:
    top = [_cfg(0, 0.99, "lightgbm", **{"lgb.num_leaves": 500}), _cfg(1, 0.98, "linear")]
    parent = MetaEntry(
        "s-parent", "parent", "binary", "roc_auc", True, {"log_rows": 4.0}, top,
        observations=[{"params": {"family": "lightgbm", "lgb.num_leaves": 6}, "score": 0.9}],
    )  # fmt: skip
    store = InMemoryMetaStore()
    store.record(parent)
    store.record(MetaEntry("s-other", "other", "binary", "roc_auc", True, {"log_rows": 4.0}, top))
    half = {"log_rows": 4.0 + math.log10(0.5)}
    lineage, similar = find_priors(
        store, half, "binary", parent_keys=("parent",), k=1, metric="roc_auc"
    )
    # Half the rows: half the leaves (rows per leaf kept), clamped to the space's minimum 4.
    assert [c["params"].get("lgb.num_leaves") for c in lineage.configs] == [250, None]
    assert lineage.configs[1]["params"] == top[1]["params"]  # other families as they were
    assert lineage.observations[0]["params"]["lgb.num_leaves"] == 4
    assert similar.configs[0]["params"]["lgb.num_leaves"] == 500  # only lineage is resized
    assert top[0]["params"]["lgb.num_leaves"] == 500  # the stored entry is not modified
    # A larger derived dataset (a merge, a new version) grows them, within the space's range.
    (grown,) = find_priors(store, {"log_rows": 4.5}, "binary", parent_keys=("parent",), k=0)
    assert grown.configs[0]["params"]["lgb.num_leaves"] == 1024
    (same,) = find_priors(store, {}, "binary", parent_keys=("parent",), k=0)
    assert same.configs[0]["params"]["lgb.num_leaves"] == 500  # row count unknown: unchanged


def test_lineage_priors_replace_the_portfolio_and_run_first() -> None:
    X, y = breast_cancer()
    fams = ["linear", "lightgbm"]  # a portfolio of 7 configurations
    store = InMemoryMetaStore()
    run_automl(
        AutoMLRequest(
            X, y, max_trials=4, families=fams, meta_store=store, dataset_key="full", seed=0
        )
    )
    entry = store.entries("binary")[0]
    assert len(entry.top_configs) == 4
    half = X.sample(frac=0.5, random_state=0)
    warm = run_automl(
        AutoMLRequest(
            half,
            y.loc[half.index],
            max_trials=6,
            families=fams,
            meta_store=store,
            dataset_key="half",
            parent_dataset_ids=["full"],
            seed=0,
        )
    )
    (prior,) = warm.priors
    assert prior.reason == "lineage_parent" and prior.trial_numbers == list(range(4))
    rows = sorted((r for r in warm.leaderboard if r.number >= 0), key=lambda r: r.number)
    # The parent's configurations, in its ranking, then TPE: no untried portfolio entries.
    assert [r.origin.split(":")[0] for r in rows] == ["warm_start"] * 4 + ["tpe"] * 2
    ratio = len(half) / len(X)
    assert [r.params for r in rows[:4]] == [
        resize_config(c["params"], ratio) for c in entry.top_configs
    ]
    # A study with priors from a merely similar dataset still runs the portfolio after them.
    other = run_automl(
        AutoMLRequest(
            half,
            y.loc[half.index],
            max_trials=5,
            families=fams,
            meta_store=store,
            warm_start_k=1,
            seed=0,
        )
    )
    assert [p.reason for p in other.priors] == ["similar_meta_features"]
    origins = [
        r.origin.split(":")[0]
        for r in sorted((r for r in other.leaderboard if r.number >= 0), key=lambda r: r.number)
    ]
    assert origins[:3] == ["warm_start"] * 3 and origins[3:] == ["portfolio"] * 2


def test_a_study_records_its_top_ten_and_the_best_of_every_other_family() -> None:
    from atlas_trainer.automl.engine import _top_configs
    from atlas_trainer.automl.finalize import LeaderboardRow

    def row(n: int, family: str, score: float, state: str = "COMPLETE") -> LeaderboardRow:
        return LeaderboardRow(n, state, "", family, {"family": family, "n": n}, score)

    board = [row(i, "lightgbm", 0.9 - i / 100) for i in range(12)]  # best first
    board += [row(12, "linear", 0.7), row(13, "linear", 0.6), row(14, "mlp", 0.9, "PRUNED")]
    assert [c["trial"] for c in _top_configs(board)] == [*range(10), 12]
