"""AutoML models with column roles served over gRPC: raw rows with an ISO timestamp string
and free text, and a coordinates model whose roles are plain arithmetic (rotations), are
answered by the verified matrix path with the model's own answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.bundles import write_bundle
from atlas_core.ml import ColumnRoleModel
from atlas_core.storage import open_artifact_store
from tests.support.signing import TEST_SIGNER
from tests.unit.trainer.test_column_roles import _signal_frame

from .conftest import ServingHarness, live, row

pytestmark = pytest.mark.slow


def _automl(X: pd.DataFrame, y: pd.Series) -> ColumnRoleModel:
    from atlas_trainer.automl import AutoMLRequest, run_automl

    result = run_automl(
        AutoMLRequest(
            X,
            y,
            task="binary",
            max_trials=3,
            strategy="random",
            families=["lightgbm", "linear"],
            folds=3,
            seed=0,
            fixed_params={"lgb.n_estimators": 40},
        )
    )
    assert isinstance(result.model, ColumnRoleModel)
    return result.model


async def _serve(h: ServingHarness, name: str, model, X: pd.DataFrame, y: pd.Series) -> None:
    ref = write_bundle(
        open_artifact_store(h.settings.s3),
        f"models/{name}/v1.tar",
        model=model,
        task="binary",
        target="label",
        classes=list(model.classes_),
        X_train=X,
        y_train=y,
        metrics={"roc_auc": 0.9},
        lineage={"dataset": {"name": name, "version": 1}},
        signer=TEST_SIGNER,
    )
    await h.register(name, ref)
    await h.stub.CreateEndpoint(
        pb.CreateEndpointRequest(spec=pb.EndpointSpec(name=name, variants=[live("a", name, 1)]))
    )


async def test_raw_dates_and_text_are_served(serving: ServingHarness) -> None:
    X, y = _signal_frame(300)
    model = _automl(X, y)
    await _serve(serving, "tickets", model, X, y)
    raw = {
        "created": "2022-02-01T03:15:00",  # night: "yes"
        "body": "the quick fox says this is urgent",
        "ticket": "T77777",
        "noise": 0.3,
    }
    got = await serving.stub.Predict(
        pb.PredictRequest(
            endpoint_name="tickets", row=row(raw), options=pb.PredictOptions(return_all_scores=True)
        )
    )
    assert got.prediction.label == "yes"
    expected = model.predict_proba(pd.DataFrame([raw]))[0]
    assert got.prediction.scores["yes"] == pytest.approx(expected[1], rel=1e-5, abs=1e-6)
    loaded = serving.service.models.peek(("tickets", 1))
    assert loaded is not None and loaded.fast  # dates and text parsed on the matrix path
    rows = X.head(20).to_dict("records")
    rows[0]["created"] = "whenever"  # does not parse: missing, still answered
    batch = await serving.stub.PredictBatch(
        pb.PredictBatchRequest(
            endpoint_name="tickets",
            rows=[row(r) for r in rows],
            options=pb.PredictOptions(return_all_scores=True),
        )
    )
    want = model.predict_proba(pd.DataFrame(rows))[:, 1]
    np.testing.assert_allclose(
        [p.scores["yes"] for p in batch.predictions], want, rtol=1e-5, atol=1e-6
    )


async def test_coordinates_roles_take_the_compiled_fast_path(serving: ServingHarness) -> None:
    rng = np.random.default_rng(3)
    n = 400
    X = pd.DataFrame(
        {
            "pickup_lat": rng.uniform(40.5, 41.0, n),
            "size": rng.normal(size=n),
            "pickup_lon": rng.uniform(-74.1, -73.6, n),
        }
    )
    diagonal = (X["pickup_lat"] - 40.5) + (X["pickup_lon"] + 74.1) > 0.45
    y = pd.Series(np.where(diagonal ^ (rng.random(n) < 0.05), "in", "out"), name="label")
    model = _automl(X, y)
    assert any(f.endswith("rot45_x") for f in model.features.feature_names_out_)
    await _serve(serving, "zones", model, X, y)
    first = X.iloc[0].to_dict()
    got = await serving.stub.Predict(
        pb.PredictRequest(
            endpoint_name="zones", row=row(first), options=pb.PredictOptions(return_all_scores=True)
        )
    )
    loaded = serving.service.models.peek(("zones", 1))
    assert loaded is not None and loaded.fast  # verified against the model's own answers
    expected = model.predict_proba(X.head(1))[0]
    assert got.prediction.scores["in"] == pytest.approx(expected[0], rel=1e-5, abs=1e-6)


def test_new_dates_and_texts_are_not_unseen_categories(tmp_path) -> None:
    from atlas_core.bundles import load_bundle
    from atlas_core.storage import LocalArtifactStore
    from atlas_serving.dataplane.inference import ServableModel
    from tests.support.signing import TEST_TRUST

    X, y = _signal_frame(60)  # few distinct values: the bundle keeps every one
    X = X.assign(shop=np.where(np.arange(60) % 2, "north", "south"))
    model = _automl(X, y)
    store = LocalArtifactStore(tmp_path)
    ref = write_bundle(
        store,
        "m/bundle.tar",
        model=model,
        task="binary",
        target="label",
        classes=list(model.classes_),
        X_train=X,
        y_train=y,
        metrics={},
        lineage={},
        signer=TEST_SIGNER,
    )
    served = ServableModel(load_bundle(store, ref, trust=TEST_TRUST))
    raw = {"created": "2023-05-05T05:05:05", "body": "a brand new text", "ticket": "T1"}
    (result,) = served.predict([{**raw, "noise": 0.0, "shop": "east"}])
    assert result.unseen == ["shop"]  # a real category is still checked
