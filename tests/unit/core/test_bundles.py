"""Model bundles: round trip, checksums, schema enforcement, contributions, drift baselines."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from atlas_core.bundles import (
    CHECKSUM_REASON,
    MANIFEST_NAME,
    MODEL_MEMBER,
    SIGNATURE_NAME,
    BundleLineage,
    ColumnSpec,
    InputSchema,
    load_bundle,
    read_manifest,
    write_bundle,
)
from atlas_core.bundles.drift import drift_report, ks, prediction_frame, psi
from atlas_core.errors import DataLoss, FailedPrecondition, InvalidArgument, NotFound
from atlas_core.storage import ArtifactStore, LocalArtifactStore
from tests.support.signing import TEST_SIGNER, TEST_TRUST, signing_settings

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Case:
    """A fitted model with the data and arguments write_bundle needs."""

    task: str
    model: Any
    X: pd.DataFrame
    y: pd.Series
    classes: list[Any] | None

    def write(self, store: ArtifactStore, key: str, **overrides: Any) -> Any:
        arguments: dict[str, Any] = dict(
            signer=TEST_SIGNER,
            model=self.model,
            task=self.task,
            target="target",
            classes=self.classes,
            X_train=self.X,
            y_train=self.y,
            metrics={"score": 0.9, "undefined": float("nan")},
            lineage=BundleLineage(
                dataset={"name": "demo", "version": 3},
                study_name="study-1",
                trial_number=7,
                job_id="job-1",
                ensemble={"members": [{"trial": 7, "weight": 1.0}]},
            ),
        )
        arguments.update(overrides)
        return write_bundle(store, key, **arguments)


def binary_case() -> Case:
    """XGBoost on breast cancer plus a string categorical column, one-hot encoded."""
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :8].copy()
    X["grade"] = np.where(X["mean radius"] > 14, "high", "low")
    X.loc[X.index[::17], "mean texture"] = np.nan
    numeric = [c for c in X.columns if c != "grade"]
    prep = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["grade"]),
        ],
        verbose_feature_names_out=False,
    )
    model = Pipeline(
        [("prep", prep), ("xgb", xgb.XGBClassifier(n_estimators=15, max_depth=3, n_jobs=1))]
    )
    model.fit(X, y)
    return Case("binary", model, X, y, [0, 1])


def multiclass_case() -> Case:
    X, y = load_wine(return_X_y=True, as_frame=True)
    model = make_pipeline(
        StandardScaler().set_output(transform="pandas"),
        xgb.XGBClassifier(n_estimators=10, max_depth=2, n_jobs=1),
    ).fit(X, y)
    return Case("multiclass", model, X, y, [0, 1, 2])


def regression_case() -> Case:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = lgb.LGBMRegressor(n_estimators=20, num_leaves=7, verbose=-1, n_jobs=1).fit(X, y)
    return Case("regression", model, X, y, None)


def linear_case() -> Case:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    return Case("binary", model, X, y, [0, 1])


CASES = {
    "binary": binary_case,
    "multiclass": multiclass_case,
    "regression": regression_case,
    "linear": linear_case,
}


@pytest.fixture(scope="module")
def cases() -> dict[str, Case]:
    return {name: build() for name, build in CASES.items()}


@pytest.fixture
def store(tmp_path_factory: pytest.TempPathFactory) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path_factory.mktemp("store"))


# ------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("name", ["binary", "multiclass", "regression", "linear"])
def test_round_trip_predicts_identically(
    store: LocalArtifactStore, cases: dict[str, Case], name: str
) -> None:
    case = cases[name]
    ref = case.write(store, f"models/{name}.bundle")
    bundle = load_bundle(store, ref, trust=TEST_TRUST)
    predictor = bundle.predictor
    np.testing.assert_array_equal(predictor.predict(case.X), case.model.predict(case.X))
    proba = predictor.predict_proba(case.X)
    if case.task == "regression":
        assert proba is None
    else:
        np.testing.assert_allclose(proba, case.model.predict_proba(case.X))
    assert bundle.task == case.task
    assert bundle.classes == (case.classes or [])
    assert bundle.input_schema.names == list(case.X.columns)
    assert bundle.size_bytes == ref.size and bundle.memory_bytes > 0
    assert bundle.load_seconds > 0
    assert bundle.metrics == {"score": 0.9, "undefined": None}
    assert bundle.lineage["trial_number"] == 7
    assert bundle.lineage["dataset"] == {"name": "demo", "version": 3}
    assert bundle.manifest["members"][MODEL_MEMBER]["size"] > 0
    assert "sklearn" in bundle.manifest["libraries"] and not bundle.warnings
    assert set(bundle.training_stats) == set(case.X.columns)
    assert bundle.manifest["training_stats"]["rows"] == len(case.X)
    expected_outputs = {"value"} if case.task == "regression" else {"label", "score"}
    assert set(bundle.prediction_stats) == expected_outputs


def test_manifest_and_artifact_are_deterministic(
    store: LocalArtifactStore, cases: dict[str, Case]
) -> None:
    first = cases["binary"].write(store, "a.bundle")
    second = cases["binary"].write(store, "b.bundle")
    assert first.sha256 == second.sha256
    assert read_manifest(store, "a.bundle") == read_manifest(store, first)


def test_layout_is_a_tar_with_manifest_first(
    store: LocalArtifactStore, cases: dict[str, Case]
) -> None:
    ref = cases["binary"].write(store, "m.bundle", extra_files={"notes.txt": b"hello"})
    with tarfile.open(fileobj=io.BytesIO(store.get_bytes(ref))) as archive:
        names = archive.getnames()
    assert names == [MANIFEST_NAME, SIGNATURE_NAME, "extra/notes.txt", MODEL_MEMBER]
    bundle = load_bundle(store, ref, trust=TEST_TRUST)
    assert bundle.extra_files == {"notes.txt": b"hello"}


def test_training_statistics_hold_drift_baselines(
    store: LocalArtifactStore, cases: dict[str, Case]
) -> None:
    bundle = load_bundle(store, cases["binary"].write(store, "s.bundle"), trust=TEST_TRUST)
    texture = bundle.training_stats["mean texture"]
    assert texture["kind"] == "numeric"
    assert texture["missing_ratio"] == pytest.approx(34 / 569)
    assert sum(texture["bin_fractions"]) + texture["missing_ratio"] == pytest.approx(1.0)
    assert len(texture["bin_fractions"]) == len(texture["bin_edges"]) + 1
    assert 0 < len(texture["sample"]) <= 1000
    assert texture["sample"] == sorted(texture["sample"])
    grade = bundle.training_stats["grade"]
    assert grade["kind"] == "categorical"
    assert set(grade["frequencies"]) == {"high", "low"}
    assert sum(grade["frequencies"].values()) == pytest.approx(1.0)
    target = bundle.manifest["training_stats"]["target"]
    assert target["frequencies"]["1"] == pytest.approx(357 / 569)


def test_wide_frames_keep_the_manifest_bounded(store: LocalArtifactStore) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(100, 1000)), columns=[f"f{i}" for i in range(1000)])
    y = (X["f0"] > 0).astype(int)
    model = LogisticRegression(max_iter=200).fit(X, y)
    ref = write_bundle(
        store,
        "wide.bundle",
        signer=TEST_SIGNER,
        model=model,
        task="binary",
        target="y",
        classes=[0, 1],
        X_train=X,
        y_train=y,
        metrics={},
        lineage=None,
    )
    manifest = read_manifest(store, ref)
    samples = sum(len(s["sample"]) for s in manifest["training_stats"]["features"].values())
    assert samples <= 200_000


# ------------------------------------------------------------------------- contributions


def test_xgboost_binary_contributions_sum_to_the_margin(
    store: LocalArtifactStore, cases: dict[str, Case]
) -> None:
    case = cases["binary"]
    predictor = load_bundle(store, case.write(store, "c.bundle"), trust=TEST_TRUST).predictor
    result = predictor.contributions(case.X.head(5))
    assert result is not None
    values, names = result
    assert values.shape == (5, len(names) + 1)
    assert "grade_high" in names and "mean radius" in names
    features = case.model[:-1].transform(case.X.head(5))
    margin = case.model[-1].predict(features, output_margin=True)
    np.testing.assert_allclose(values.sum(axis=1), margin, rtol=1e-4, atol=1e-4)


def test_multiclass_contributions_explain_the_chosen_class(
    store: LocalArtifactStore, cases: dict[str, Case]
) -> None:
    case = cases["multiclass"]
    predictor = load_bundle(store, case.write(store, "mc.bundle"), trust=TEST_TRUST).predictor
    rows = case.X.iloc[[0, 70, 140]]
    margins = case.model[-1].predict(case.model[:-1].transform(rows), output_margin=True)
    values, _ = predictor.contributions(rows)  # type: ignore[misc]
    predicted = margins.argmax(axis=1)
    np.testing.assert_allclose(values.sum(axis=1), margins[np.arange(3), predicted], atol=1e-4)
    values_2, _ = predictor.contributions(rows, target_class=2)  # type: ignore[misc]
    np.testing.assert_allclose(values_2.sum(axis=1), margins[:, 2], atol=1e-4)
    with pytest.raises(InvalidArgument, match="target class 9"):
        predictor.contributions(rows, target_class=9)


def test_lightgbm_contributions_sum_to_the_raw_prediction(
    store: LocalArtifactStore, cases: dict[str, Case]
) -> None:
    case = cases["regression"]
    predictor = load_bundle(store, case.write(store, "r.bundle"), trust=TEST_TRUST).predictor
    values, names = predictor.contributions(case.X.head(4))  # type: ignore[misc]
    assert names == list(case.X.columns)
    np.testing.assert_allclose(values.sum(axis=1), case.model.predict(case.X.head(4)), atol=1e-6)


def test_models_without_contributions_return_none(
    store: LocalArtifactStore, cases: dict[str, Case]
) -> None:
    bundle = load_bundle(store, cases["linear"].write(store, "l.bundle"), trust=TEST_TRUST)
    assert bundle.manifest["model"]["has_contributions"] is False
    assert bundle.predictor.contributions(cases["linear"].X.head(2)) is None


class DuckModel:
    """The AutoML engine's duck type: predict/predict_proba/contributions."""

    classes_ = np.array([0, 1])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (X["a"] > 0).astype(int).to_numpy()

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = 1 / (1 + np.exp(-X["a"].to_numpy()))
        return np.column_stack([1 - p, p])

    def contributions(self, X: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
        values = np.column_stack([X["a"].to_numpy(), np.zeros(len(X)), np.full(len(X), 0.5)])
        return values, ["a", "b", "bias"]


def test_a_models_own_contributions_take_precedence(store: LocalArtifactStore) -> None:
    X = pd.DataFrame({"a": [-1.0, 2.0, 3.0], "b": [1, 2, 3]})
    ref = write_bundle(
        store,
        "duck.bundle",
        signer=TEST_SIGNER,
        model=DuckModel(),
        task="binary",
        target="y",
        classes=[0, 1],
        X_train=X,
        y_train=[0, 1, 1],
        metrics={},
        lineage={"job_id": "j"},
    )
    values, names = load_bundle(store, ref, trust=TEST_TRUST).predictor.contributions(X)  # type: ignore[misc]
    assert names == ["a", "b"]
    np.testing.assert_allclose(values[:, 0], [-1.0, 2.0, 3.0])


# ------------------------------------------------------------------------- integrity


def _rewrite_tar(data: bytes, change: dict[str, bytes | None]) -> bytes:
    """The tar with members replaced (bytes), removed (None) or added, manifest untouched."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(data)) as source,
        tarfile.open(fileobj=out, mode="w") as target,
    ):
        for info in source.getmembers():
            content = source.extractfile(info).read()  # type: ignore[union-attr]
            if info.name in change:
                if change[info.name] is None:
                    continue
                content = change[info.name]  # type: ignore[assignment]
                info.size = len(content)
            target.addfile(info, io.BytesIO(content))
        for name, content in change.items():
            if content is not None and name not in source.getnames():
                info = tarfile.TarInfo(name)
                info.size = len(content)
                target.addfile(info, io.BytesIO(content))
    return out.getvalue()


@pytest.mark.parametrize(
    "change",
    [
        {MODEL_MEMBER: b"not the model"},
        {MODEL_MEMBER: None},
        {"extra/evil.py": b"import os"},
        {"extra/notes.txt": b"HELLO"},
    ],
    ids=["member-replaced", "member-removed", "member-added", "extra-changed"],
)
def test_a_tampered_member_is_refused(
    store: LocalArtifactStore, cases: dict[str, Case], change: dict[str, bytes | None]
) -> None:
    ref = cases["linear"].write(store, "t.bundle", extra_files={"notes.txt": b"hello"})
    # Republished through the store: the artifact checksum is valid, the member's is not.
    store.put_bytes("t.bundle", _rewrite_tar(store.get_bytes(ref), change))
    with pytest.raises(DataLoss) as err:
        load_bundle(store, "t.bundle", trust=TEST_TRUST)
    assert err.value.reason == CHECKSUM_REASON
    assert "refusing to load" in err.value.message


def test_a_tampered_artifact_is_refused(store: LocalArtifactStore, cases: dict[str, Case]) -> None:
    ref = cases["linear"].write(store, "x.bundle")
    path = store.path_for(ref.key)
    data = bytearray(path.read_bytes())
    data[ref.size // 2] ^= 0xFF  # inside the pickled model, past the manifest
    path.write_bytes(bytes(data))
    for target in (ref, ref.key):
        with pytest.raises(DataLoss) as err:
            load_bundle(store, target, trust=TEST_TRUST)
        assert err.value.reason == CHECKSUM_REASON
        assert err.value.metadata["store_reason"] == "CHECKSUM_MISMATCH"


def test_a_replaced_artifact_is_refused_when_loading_by_ref(
    store: LocalArtifactStore, cases: dict[str, Case]
) -> None:
    old = cases["linear"].write(store, "v.bundle")
    cases["binary"].write(store, "v.bundle")
    with pytest.raises(DataLoss) as err:
        load_bundle(store, old, trust=TEST_TRUST)
    assert err.value.reason == CHECKSUM_REASON
    assert err.value.metadata["store_reason"] == "ARTIFACT_REPLACED"


def test_missing_and_malformed_bundles(store: LocalArtifactStore) -> None:
    with pytest.raises(NotFound):
        load_bundle(store, "nope.bundle", trust=TEST_TRUST)
    store.put_bytes("junk.bundle", b"definitely not a tar archive" * 40)
    with pytest.raises(DataLoss) as err:
        load_bundle(store, "junk.bundle", trust=TEST_TRUST)
    assert err.value.reason == "BUNDLE_MALFORMED"


def test_a_newer_format_is_refused_clearly(store: LocalArtifactStore) -> None:
    manifest = json.dumps({"format": "atlas-model-bundle", "format_version": 99}).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size = len(manifest)
        archive.addfile(info, io.BytesIO(manifest))
    store.put_bytes("future.bundle", out.getvalue())
    with pytest.raises(FailedPrecondition, match="format version 99"):
        load_bundle(store, "future.bundle", trust=TEST_TRUST)


def test_a_fresh_process_importing_only_atlas_core_predicts_identically(
    store: LocalArtifactStore, cases: dict[str, Case], tmp_path: Path
) -> None:
    case = cases["binary"]
    ref = case.write(store, "fresh.bundle")
    (tmp_path / "X.pkl").write_bytes(pickle.dumps(case.X))
    public_key = signing_settings(tmp_path).trusted_keys[0]
    script = f"""
import pickle, sys
import numpy as np
from atlas_core.bundles import BundleTrust, load_bundle
from atlas_core.storage import LocalArtifactStore
X = pickle.loads(open({str(tmp_path / "X.pkl")!r}, 'rb').read())
trust = BundleTrust.from_files([{str(public_key)!r}])
bundle = load_bundle(LocalArtifactStore({str(store.root)!r}), {ref.key!r}, trust=trust)
np.save({str(tmp_path / "proba.npy")!r}, bundle.predictor.predict_proba(X))
services = [m for m in sys.modules if m.split('.')[0] in
            ('atlas_trainer', 'atlas_serving', 'atlas_data', 'atlas_graph')]
assert not services, services
"""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / "proba.npy"), case.model.predict_proba(case.X))


# ------------------------------------------------------------------------- input schema


def test_validate_input_names_missing_and_mistyped_columns(
    store: LocalArtifactStore, cases: dict[str, Case]
) -> None:
    predictor = load_bundle(
        store, cases["binary"].write(store, "v.bundle"), trust=TEST_TRUST
    ).predictor
    X = cases["binary"].X.head(3)
    with pytest.raises(InvalidArgument) as err:
        predictor.predict(X.drop(columns=["mean radius", "grade"]))
    assert err.value.reason == "MISSING_FEATURES"
    assert "mean radius" in err.value.message and "grade" in err.value.message
    bad = X.assign(**{"mean area": ["big", "small", "tiny"], "grade": [1, 2, 3]})
    with pytest.raises(InvalidArgument) as err:
        predictor.predict(bad)
    assert err.value.reason == "MISTYPED_FEATURES"
    assert "mean area" in err.value.message and "'big'" in err.value.message
    assert err.value.metadata["mistyped"] == "mean area,grade"
    with pytest.raises(InvalidArgument) as err:
        predictor.predict(bad.drop(columns=["mean radius"]))
    assert err.value.reason == "INVALID_FEATURES"


def test_validate_input_ignores_extras_and_normalises_order_and_dtypes(
    store: LocalArtifactStore, cases: dict[str, Case]
) -> None:
    case = cases["binary"]
    predictor = load_bundle(store, case.write(store, "n.bundle"), trust=TEST_TRUST).predictor
    X = case.X.head(20)
    shuffled = X[list(reversed(X.columns))].assign(extra=1)
    # Rows from a request: object columns, ints where floats were trained, None for missing.
    as_objects = pd.DataFrame(shuffled.astype(object).where(shuffled.notna(), None))
    normalised = predictor.validate_input(as_objects)
    assert list(normalised.columns) == list(X.columns)
    assert normalised["mean radius"].dtype == np.float64
    np.testing.assert_array_equal(predictor.predict(as_objects), case.model.predict(X))


def test_category_columns_keep_their_training_categories(store: LocalArtifactStore) -> None:
    X = pd.DataFrame({"city": pd.Categorical(["a", "b", "c", "a"] * 10), "x": np.arange(40.0)})
    y = (X["x"] % 2).astype(int)
    model = xgb.XGBClassifier(n_estimators=5, enable_categorical=True, tree_method="hist")
    model.fit(X, y)
    ref = write_bundle(
        store,
        "cat.bundle",
        signer=TEST_SIGNER,
        model=model,
        task="binary",
        target="y",
        classes=[0, 1],
        X_train=X,
        y_train=y,
        metrics={},
        lineage={},
    )
    predictor = load_bundle(store, ref, trust=TEST_TRUST).predictor
    request = pd.DataFrame({"x": [1.0, 2.0], "city": ["c", "unseen"]})
    normalised = predictor.validate_input(request)
    assert list(normalised["city"].cat.categories) == ["a", "b", "c"]
    assert normalised["city"].isna().tolist() == [False, True]
    assert predictor.predict(request).shape == (2,)


def test_check_schema_compatible(store: LocalArtifactStore, cases: dict[str, Case]) -> None:
    bundle = load_bundle(store, cases["binary"].write(store, "k.bundle"), trust=TEST_TRUST)
    good = {name: "float32" for name in cases["binary"].X.columns} | {"grade": "string"}
    bundle.predictor.check_schema_compatible(good)
    bundle.predictor.check_schema_compatible(list(good.items()))
    bad = dict(good) | {"grade": "float32"}
    del bad["mean radius"]
    with pytest.raises(FailedPrecondition) as err:
        bundle.predictor.check_schema_compatible(bad)
    assert err.value.reason == "SCHEMA_INCOMPATIBLE"
    assert "'mean radius'" in err.value.message and "'grade'" in err.value.message


def test_write_rejects_inconsistent_arguments(
    store: LocalArtifactStore, cases: dict[str, Case]
) -> None:
    case = cases["binary"]
    for overrides, text in [
        ({"task": "ranking"}, "task must be one of"),
        ({"classes": [0, 1, 2]}, "exactly 2"),
        ({"classes": ["no", "yes"]}, "differ from the model's classes_"),
        ({"task": "regression"}, "takes no classes"),
        ({"y_train": case.y.head(3)}, "y_train has 3 rows"),
        ({"metrics": {"m": object()}}, "cannot store a object"),
    ]:
        with pytest.raises(InvalidArgument, match=text):
            case.write(store, "bad.bundle", **overrides)
    assert not store.exists("bad.bundle")


# ------------------------------------------------------------------------- drift


def test_psi_and_ks_are_near_zero_for_the_same_distribution_and_large_for_a_shift(
    store: LocalArtifactStore,
) -> None:
    rng = np.random.default_rng(1)
    X = pd.DataFrame(
        {"x": rng.normal(size=5000), "c": rng.choice(["a", "b", "c"], size=5000, p=[0.6, 0.3, 0.1])}
    )
    y = (X["x"] > 0).astype(int)
    model = make_pipeline(
        ColumnTransformer(
            [("oh", OneHotEncoder(handle_unknown="ignore"), ["c"])], remainder="passthrough"
        ),
        LogisticRegression(),
    ).fit(X, y)
    ref = write_bundle(
        store,
        "d.bundle",
        signer=TEST_SIGNER,
        model=model,
        task="binary",
        target="y",
        classes=[0, 1],
        X_train=X,
        y_train=y,
        metrics={},
        lineage={},
    )
    bundle = load_bundle(store, ref, trust=TEST_TRUST)
    stats = bundle.training_stats
    same = pd.DataFrame(
        {"x": rng.normal(size=2000), "c": rng.choice(["a", "b", "c"], size=2000, p=[0.6, 0.3, 0.1])}
    )
    shifted = pd.DataFrame(
        {"x": rng.normal(1.0, 1.0, size=2000), "c": rng.choice(["a", "b", "d"], size=2000)}
    )
    assert psi(stats["x"], same["x"]) < 0.02
    assert psi(stats["c"], same["c"]) < 0.01
    assert psi(stats["x"], shifted["x"]) > 0.5
    assert psi(stats["c"], shifted["c"]) > 0.5
    assert ks(stats["x"]["sample"], same["x"]).statistic < 0.06
    shifted_ks = ks(stats["x"]["sample"], shifted["x"])
    assert shifted_ks.statistic > 0.3 and shifted_ks.pvalue < 1e-6

    quiet = drift_report(stats, same.assign(extra=1))
    assert not quiet.drifted and quiet.max_psi < 0.05
    loud = drift_report(stats, shifted[["x"]])
    assert loud.drifted_features == ["x"] and loud.missing_features == ["c"]
    assert loud.to_dict()["features"]["x"]["ks_statistic"] > 0.3

    all_missing = drift_report(stats, pd.DataFrame({"x": [None] * 50, "c": [None] * 50}))
    assert sorted(all_missing.drifted_features) == ["c", "x"]

    outputs = prediction_frame(
        "binary", bundle.predictor.predict(same), bundle.predictor.predict_proba(same)
    )
    assert not drift_report(bundle.prediction_stats, outputs).drifted
    shifted_outputs = prediction_frame(
        "binary", bundle.predictor.predict(shifted), bundle.predictor.predict_proba(shifted)
    )
    assert drift_report(bundle.prediction_stats, shifted_outputs).drifted


def test_psi_of_no_values_is_nan() -> None:
    stats = {
        "kind": "numeric",
        "bin_edges": [0.0],
        "bin_fractions": [0.5, 0.5],
        "missing_ratio": 0.0,
    }
    assert np.isnan(psi(stats, []))
    assert np.isnan(ks([1.0, 2.0], []).statistic)


def test_columns_the_model_drops_may_be_left_out_of_requests() -> None:
    schema = InputSchema(
        (ColumnSpec("rownames", "numeric", "int64"), ColumnSpec("x", "numeric", "float64"))
    ).with_unused(["rownames"])
    assert schema.unused == {"rownames"}
    assert InputSchema.from_dict(schema.to_dict()) == schema
    assert "used" not in schema.to_dict()["columns"][1]  # unchanged manifests stay identical
    frame = schema.normalise(pd.DataFrame({"x": [1.0]}))
    assert list(frame.columns) == ["rownames", "x"] and frame["rownames"].isna().all()
    with pytest.raises(InvalidArgument, match="missing features: x"):
        schema.normalise(pd.DataFrame({"rownames": [1]}))
    assert schema.problems_with({"x": "float"}) == []
    with pytest.raises(InvalidArgument, match="not training columns: nope"):
        schema.with_unused(["nope"])


def test_a_variant_travels_beside_the_model_and_is_verified(
    store: LocalArtifactStore, cases: dict[str, Case]
) -> None:
    case = cases["linear"]
    other = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=500))
    other.fit(case.X, case.y)
    facts = {"name": "refit_full", "score": 0.97, "higher_is_better": True, "models": 1}
    ref = case.write(
        store,
        "v.bundle",
        variant={"name": "fold_bag", "score": 0.98, "higher_is_better": True},
        variants={"refit_full": (other, facts)},
    )
    loaded = load_bundle(store, ref, trust=TEST_TRUST)
    assert loaded.model_variant["name"] == "fold_bag"
    assert loaded.variants["refit_full"]["score"] == 0.97
    assert loaded.variants["refit_full"]["member"] == "variants/refit_full.joblib"
    np.testing.assert_allclose(
        loaded.variant_predictor("refit_full").predict_proba(case.X), other.predict_proba(case.X)
    )
    np.testing.assert_allclose(
        loaded.predictor.predict_proba(case.X), case.model.predict_proba(case.X)
    )
    with pytest.raises(NotFound) as missing:
        loaded.variant_predictor("nope")
    assert missing.value.reason == "BUNDLE_VARIANT_NOT_FOUND"
    # the variant is a member like the model: tampering with it is refused
    store.put_bytes(
        "v.bundle",
        _rewrite_tar(store.get_bytes(ref), {"variants/refit_full.joblib": b"tampered"}),
    )
    with pytest.raises(DataLoss) as err:
        load_bundle(store, "v.bundle", trust=TEST_TRUST)
    assert err.value.reason == CHECKSUM_REASON
    with pytest.raises(InvalidArgument):
        case.write(store, "bad.bundle", variants={"../x": (other, {})})
