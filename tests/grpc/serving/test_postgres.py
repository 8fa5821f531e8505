"""Registry, endpoints, a rollout and predictions on SQLite and PostgreSQL metadata."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.config import S3Settings

from .conftest import live, row, serving_settings, start_harness, stop_harness, write_model
from .test_rollout import _wait_state


async def test_registry_and_rollout_on_each_database(
    tmp_path: Path, s3_settings: S3Settings, db_url: str, features: pd.DataFrame
) -> None:
    h = await start_harness(serving_settings(tmp_path, s3_settings, db_url))
    try:
        v1 = await h.register(
            "bc", write_model(s3_settings, "models/bc/v1.tar"), aliases=("production",)
        )
        v2 = await h.register("bc", write_model(s3_settings, "models/bc/v2.tar", trees=30))
        assert (v1.ref.version, v2.ref.version) == (1, 2)
        await h.stub.CreateEndpoint(
            pb.CreateEndpointRequest(
                spec=pb.EndpointSpec(name="bc", variants=[live("blue", "bc", alias="production")])
            )
        )
        dep = (
            await h.stub.SubmitDeployment(
                pb.SubmitDeploymentRequest(endpoint_name="bc", variants=[live("green", "bc", 2)])
            )
        ).deployment
        assert (await _wait_state(h, dep.deployment_id)).state == pb.DEPLOYMENT_STATE_SUCCEEDED
        await h.service.replica.sync()
        resp = await h.stub.Predict(
            pb.PredictRequest(endpoint_name="bc", row=row(features.iloc[0].to_dict()))
        )
        assert (resp.variant, resp.model.version) == ("green", 2)
        models = (await h.stub.ListModels(pb.ListModelsRequest())).models
        assert models[0].aliases == {"production": 1} and models[0].latest_version == 2
    finally:
        await stop_harness(h)
