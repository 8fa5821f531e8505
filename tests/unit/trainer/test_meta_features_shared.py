"""One meta-feature definition (atlas_core.meta_features) for the data service and the
trainer: the same table gives the same values both ways, warm starts find the right past
study from the data service's values, and studies of another version are never compared."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sqlalchemy import Engine, text

from atlas.data.v1 import data_service_pb2 as data_pb
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.db import MigrationSet, apply_migrations
from atlas_core.meta_features import (
    META_FEATURES_VERSION,
    STATS_MAX_ROWS,
    MetaFeatures,
    meta_features_of_frame,
    similarity_vector,
)
from atlas_data import convert as data_convert
from atlas_data.builds import describe_table
from atlas_trainer.automl import (
    MIGRATIONS,
    AutoMLRequest,
    InMemoryMetaStore,
    MetaEntry,
    SqlMetaStore,
    run_automl,
)
from atlas_trainer.automl.meta import find_priors
from atlas_trainer.data_access import job_meta_features, meta_features_from_pb

LINEAR = {"family": "linear", "lin.C": 0.5, "lin.penalty": "l2", "pre.scaling": "standard"}


def _table(n: int, seed: int, *, vectors: bool = False) -> pa.Table:
    """Numeric (with NaN and nulls), integer, string (with nulls) and bool features."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = y + rng.normal(0, 1.0, n)
    x[rng.random(n) < 0.05] = np.nan
    columns = {
        "x": pa.array(x),
        "skewed": pa.array(np.exp(rng.normal(size=n))),
        "count": pa.array(rng.poisson(3, n)),
        "city": pa.array(
            [None if v == "none" else str(v) for v in rng.choice(["a", "b", "c", "none"], n)]
        ),
        "flag": pa.array(rng.random(n) < 0.3),
        "label": pa.array(y),
    }
    if vectors:
        flat = rng.normal(size=n * 4).astype(np.float32)
        columns["emb"] = pa.FixedSizeListArray.from_arrays(pa.array(flat), 4)
    return pa.table(columns)


def _via_data_service(table: pa.Table, target: str) -> MetaFeatures:
    """What the data service records for ``table``, as the trainer reads it off the wire."""
    _, record = describe_table(table, target, skip_meta=False)
    wire = data_convert.meta_to_pb(record).SerializeToString()
    return meta_features_from_pb(data_pb.MetaFeatures.FromString(wire))


def _spec(target: str = "label", **kw: object) -> pb.TrainingJobSpec:
    return pb.TrainingJobSpec(target_column=target, **kw)


# ---------------------------------------------------------------- (a) identical both ways


def test_the_same_table_gives_identical_meta_features_in_both_services() -> None:
    table = _table(STATS_MAX_ROWS + 20_000, seed=0)  # large enough to be sampled
    served = _via_data_service(table, "label")
    assert served.version == META_FEATURES_VERSION
    assert served.extra["sampled_rows"] == STATS_MAX_ROWS
    assert served.rows == table.num_rows and served.classes == 2

    # The trainer's job path computes them itself when the dataset has none.
    computed = job_meta_features(table, _spec(), None)
    assert computed == served
    # run_automl's own fallback works on the pandas frame the job trains on.
    frame = table.to_pandas()
    from_frame = meta_features_of_frame(frame.drop(columns="label"), frame["label"])
    assert from_frame == served
    assert similarity_vector(from_frame) == similarity_vector(served)


def test_vector_columns_are_identical_too_and_dropped_features_are_recomputed() -> None:
    table = _table(3_000, seed=1, vectors=True)
    served = _via_data_service(table, "label")
    assert served.extra["vector_columns"] == 1.0
    assert job_meta_features(table, _spec(), None) == served
    # The job trains on the data service's features: its record is used as is.
    recorded = data_convert.meta_to_pb(describe_table(table, "label", skip_meta=False)[1])
    assert job_meta_features(table, _spec(), recorded) == served
    # Leaving a column out changes the feature set: computed for what the job trains on.
    narrower = job_meta_features(table, _spec(ignore_columns=["emb"]), recorded)
    assert narrower is not None and narrower.columns == served.columns - 1
    assert narrower == _via_data_service(table.drop_columns(["emb"]), "label")


# ---------------------------------------------------------------- (b) warm start picks right


def _numeric(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({f"f{i}": rng.normal(size=n) for i in range(10)})
    y = pd.Series((X["f0"] + 0.5 * X["f1"] + rng.normal(0, 0.5, n) > 0).astype(int), name="y")
    return X, y


def _wide_categorical(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({f"c{i}": rng.choice(list("abcdefgh"), n) for i in range(30)})
    y = pd.Series((X["c0"] < "d").astype(int), name="y")
    return X, y


def _imbalanced_missing(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({f"m{i}": np.exp(rng.normal(size=n)) for i in range(4)})
    X = X.mask(rng.random(X.shape) < 0.4)
    y = pd.Series((rng.random(n) < 0.04).astype(int), name="y")
    return X, y


def _served(X: pd.DataFrame, y: pd.Series) -> MetaFeatures:
    return _via_data_service(pa.Table.from_pandas(X.assign(y=y), preserve_index=False), "y")


def test_warm_start_picks_the_most_similar_past_study_from_the_data_services_values() -> None:
    store = InMemoryMetaStore()
    past = {
        "wide-categorical": _wide_categorical(300, seed=1),
        "numeric": _numeric(2_000, seed=2),
        "imbalanced-missing": _imbalanced_missing(8_000, seed=3),
    }
    for name, (X, y) in past.items():
        vector = similarity_vector(_served(X, y))
        config = {"trial": 0, "score": 0.9, "params": LINEAR}
        store.record(MetaEntry(f"s-{name}", name, "binary", "roc_auc", True, vector, [config]))

    X, y = _numeric(1_500, seed=7)  # another draw of the numeric kind
    served = _served(X, y)
    result = run_automl(
        AutoMLRequest(
            X,
            y,
            max_trials=2,
            families=["linear"],
            meta_store=store,
            meta_features=served,
            warm_start_k=1,
            study_name="new",
        )
    )
    assert [(p.source_dataset, p.reason) for p in result.priors] == [
        ("numeric", "similar_meta_features")
    ]
    # The data service's values were compared, not ones recomputed by the trainer.
    assert result.meta_features == similarity_vector(served)
    # ... and the ranking is by the shared definition: the other two are farther.
    ranked = find_priors(store, similarity_vector(served), "binary", k=3, exclude_study="new")
    assert [p.source_dataset for p in ranked][0] == "numeric"
    assert ranked[0].distance < min(p.distance for p in ranked[1:])
    # The new study is recorded with the version it used.
    assert store.entries("binary")[0].meta_features_version == META_FEATURES_VERSION


# ---------------------------------------------------------------- (c) no cross-version match


def _entry(key: str, vector: dict[str, float], version: int) -> MetaEntry:
    return MetaEntry(
        f"s-{key}",
        key,
        "binary",
        "roc_auc",
        True,
        vector,
        [{"trial": 0, "score": 0.9, "params": LINEAR}],
        meta_features_version=version,
    )


def test_studies_of_another_version_are_not_candidates() -> None:
    X, y = _numeric(500, seed=0)
    vector = similarity_vector(meta_features_of_frame(X, y))
    far = {k: v + 3.0 for k, v in vector.items()}
    store = InMemoryMetaStore()
    store.record(_entry("old-identical", vector, version=1))
    store.record(_entry("current-far", far, version=META_FEATURES_VERSION))
    (prior,) = find_priors(store, vector, "binary", k=3)
    assert prior.source_dataset == "current-far"
    # Lineage does not bypass it: an old-version parent is not compared either.
    assert [
        p.source_dataset
        for p in find_priors(store, vector, "binary", parent_keys=("old-identical",))
    ] == ["current-far"]

    only_old = InMemoryMetaStore()
    only_old.record(_entry("old-identical", vector, version=1))
    assert find_priors(only_old, vector, "binary") == []
    result = run_automl(
        AutoMLRequest(X, y, max_trials=1, families=["linear"], meta_store=only_old, ensemble=False)
    )
    assert result.priors == [] and result.best_model is not None
    assert any("another definition" in w for w in result.warnings)


def test_meta_features_of_another_version_given_to_the_engine_are_recomputed() -> None:
    X, y = _numeric(400, seed=4)
    stale = dataclasses.replace(meta_features_of_frame(X, y), rows=1, version=1)
    result = run_automl(
        AutoMLRequest(X, y, max_trials=1, families=["linear"], meta_features=stale, ensemble=False)
    )
    assert result.meta_features == similarity_vector(meta_features_of_frame(X, y))


@pytest.fixture
def legacy_store(db_engine: Engine) -> Iterator[tuple[Engine, SqlMetaStore]]:
    """A meta-store created before the version column existed, holding one study."""
    apply_migrations(db_engine, MigrationSet("trainer_meta", [MIGRATIONS.migrations[0]]))
    with db_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO trainer_meta_studies (study_key, dataset_key, task, body, created_at)"
                " VALUES ('s-legacy', 'legacy', 'binary', :body, :created)"
            ),
            {
                "body": (
                    '{"metric": "roc_auc", "higher_is_better": true, '
                    '"meta_features": {"log_rows": 2.7}, "top_configs": '
                    '[{"trial": 0, "score": 0.9, "params": {"family": "linear"}}]}'
                ),
                "created": pd.Timestamp("2026-01-01", tz="UTC").to_pydatetime(),
            },
        )
    apply_migrations(db_engine, MIGRATIONS)
    yield db_engine, SqlMetaStore(db_engine)


def test_a_migrated_store_keeps_old_studies_as_version_1_and_never_compares_them(
    legacy_store: tuple[Engine, SqlMetaStore],
) -> None:
    _, store = legacy_store
    (legacy,) = store.entries("binary")
    assert legacy.meta_features_version == 1
    assert find_priors(store, {"log_rows": 2.7}, "binary") == []
    store.record(_entry("current", {"log_rows": 5.0}, META_FEATURES_VERSION))
    versions = {e.dataset_key: e.meta_features_version for e in store.entries("binary")}
    assert versions == {"legacy": 1, "current": META_FEATURES_VERSION}
    assert [p.source_dataset for p in find_priors(store, {"log_rows": 2.7}, "binary")] == [
        "current"
    ]
