"""An AutoML model of a table with string columns served over gRPC on the compiled path:
its encoders (one-hot, ordinal, target) and column roles (frequency of a high-cardinality
column) run as lookups on an encoded matrix, the answers equal the model's own in process
(categories training never saw and missing values included), and every response says which
version of the bundle's model answered, why, and how it was scored."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.bundles import write_bundle
from atlas_core.cli import main
from atlas_core.storage import open_artifact_store
from tests.support.signing import TEST_SIGNER

from .conftest import TOKEN, ServingHarness, breast_cancer, live

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


def _table() -> tuple[pd.DataFrame, pd.Series]:
    X, y = breast_cancer()
    X = X.iloc[:, :8].copy()
    rng = np.random.default_rng(0)
    n = len(X)
    # informative string columns: a few, some dozens and many distinct values
    X["band"] = np.where(X["mean_radius"] > X["mean_radius"].median(), "wide", "narrow")
    X["band"] = X["band"].where(rng.random(n) > 0.2, "mid").astype(object)
    X["lab"] = np.array([f"lab{(i * 7) % 40}" for i in range(n)], dtype=object)
    X["clinic"] = np.array([f"c{v}" for v in rng.integers(0, 90, n)], dtype=object)
    X.loc[X.index[::10], "band"] = None
    X.loc[X.index[::13], "clinic"] = None
    return X, y


@pytest.fixture(scope="module")
def versions() -> dict[str, Any]:
    from atlas_trainer.automl import AutoMLRequest, run_automl

    X, y = _table()
    result = run_automl(
        AutoMLRequest(
            X,
            y,
            task="binary",
            max_trials=4,
            strategy="random",
            families=["random_forest", "lightgbm", "linear"],
            folds=3,
            seed=0,
            fixed_params={"rf.n_estimators": 20, "lgb.n_estimators": 30},
        )
    )
    assert set(result.versions) == {"fold_bag", "refit_full"}
    return dict(result.versions)


def _value(v: Any) -> common_pb2.Value:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return common_pb2.Value()  # unset: missing
    if isinstance(v, str):
        return common_pb2.Value(string_value=v)
    return common_pb2.Value(double_value=float(v))


def _row(values: dict[str, Any]) -> pb.PredictRow:
    return pb.PredictRow(
        features=pb.InlineFeatures(values={k: _value(v) for k, v in values.items()})
    )


async def test_string_columns_are_served_compiled_and_say_which_version(
    serving: ServingHarness, versions: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = _table()
    bagged, refit = versions["fold_bag"], versions["refit_full"]
    ref = write_bundle(
        open_artifact_store(serving.settings.s3),
        "models/cat/v1.tar",
        model=bagged.model,
        task="binary",
        target="target",
        classes=[0, 1],
        X_train=X,
        y_train=y,
        metrics={"roc_auc": bagged.score},
        lineage={},
        signer=TEST_SIGNER,
        variant=bagged.facts(True),
        variants={"refit_full": (refit.model, {**refit.facts(True), "score": bagged.score})},
    )
    await serving.register("cat", ref)
    await serving.stub.CreateEndpoint(
        pb.CreateEndpointRequest(spec=pb.EndpointSpec(name="cat", variants=[live("a", "cat", 1)]))
    )
    rows = X.iloc[:50].astype(object).where(X.iloc[:50].notna(), None)
    rows.iloc[0, rows.columns.get_loc("band")] = "very wide"  # never seen in training
    rows.iloc[1, rows.columns.get_loc("lab")] = "lab-new"
    rows.iloc[2, rows.columns.get_loc("clinic")] = "c-new"
    rows.iloc[3, rows.columns.get_loc("lab")] = None
    records = rows.to_dict("records")
    single = await serving.stub.Predict(
        pb.PredictRequest(
            endpoint_name="cat",
            row=_row(records[0]),
            options=pb.PredictOptions(return_all_scores=True),
        )
    )
    batch = await serving.stub.PredictBatch(
        pb.PredictBatchRequest(
            endpoint_name="cat",
            rows=[_row(r) for r in records],
            options=pb.PredictOptions(return_all_scores=True),
        )
    )
    expected = refit.model.predict_proba(pd.DataFrame(records, columns=X.columns))
    got = np.array([[p.scores["0"], p.scores["1"]] for p in batch.predictions])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert single.prediction.scores["1"] == pytest.approx(expected[0, 1], rel=1e-6, abs=1e-7)
    for served in (single.served_version, batch.served_version):
        assert (served.name, served.scoring) == ("refit_full", "compiled")
        assert "within the tolerance 0.005" in served.reason
    loaded = serving.service.models.peek(("cat", 1))
    assert loaded is not None and loaded.fast and loaded.single_row_seconds is not None
    # the CLI shows it too
    conn = ["--address", serving.server.address, "--token", TOKEN, "--output", "json"]
    features = json.dumps(records[1])  # "lab" never seen in training
    argv = ["predict", "row", "cat", "--features", features, *conn]
    assert await asyncio.to_thread(main, argv) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["served_version"], shown["scoring"]) == ("refit_full", "compiled")
    assert "within the tolerance" in shown["served_because"]
