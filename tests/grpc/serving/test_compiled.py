"""An AutoML ensemble (forests, LightGBM, linear members) served through the compiled path
over gRPC: every member compiled, the same answers as the model in process."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.ml import WeightedEnsemble

from .conftest import ServingHarness, breast_cancer, live, row, write_model


@pytest.fixture(scope="module")
def automl_ensemble() -> WeightedEnsemble:
    from atlas_trainer.automl import AutoMLRequest, run_automl

    X, y = breast_cancer()
    result = run_automl(
        AutoMLRequest(
            X,
            y,
            task="binary",
            max_trials=4,
            strategy="tpe",
            families=["random_forest", "extra_trees", "lightgbm", "linear"],
            folds=3,
            seed=0,
            fixed_params={"rf.n_estimators": 20, "et.n_estimators": 20, "lgb.n_estimators": 30},
        )
    )
    assert isinstance(result.model, WeightedEnsemble)
    return result.model


async def test_an_automl_ensemble_is_served_compiled(
    serving: ServingHarness, features: pd.DataFrame, automl_ensemble: WeightedEnsemble
) -> None:
    ref = write_model(serving.settings.s3, "models/auto/v1.tar", model=automl_ensemble)
    await serving.register("auto", ref)
    await serving.stub.CreateEndpoint(
        pb.CreateEndpointRequest(
            spec=pb.EndpointSpec(name="auto", variants=[live("blue", "auto", 1)])
        )
    )
    rows = features.iloc[:40].copy()
    rows.iloc[3, 2] = np.nan  # a missing value on the wire (each member imputes it)
    first = await serving.stub.Predict(
        pb.PredictRequest(
            endpoint_name="auto",
            row=row(features.iloc[0].to_dict()),
            options=pb.PredictOptions(return_all_scores=True),
        )
    )
    loaded = serving.service.models.peek(("auto", 1))
    assert loaded is not None and loaded.fast
    assert loaded.single_row_seconds is not None  # every member compiled
    batch = await serving.stub.PredictBatch(
        pb.PredictBatchRequest(
            endpoint_name="auto",
            rows=[row(r) for r in rows.to_dict("records")],
            options=pb.PredictOptions(return_all_scores=True),
        )
    )
    expected = automl_ensemble.predict_proba(rows)
    got = np.array([[p.scores["0"], p.scores["1"]] for p in batch.predictions])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert first.prediction.scores["1"] == pytest.approx(
        automl_ensemble.predict_proba(features.iloc[:1])[0, 1], rel=1e-5, abs=1e-6
    )
