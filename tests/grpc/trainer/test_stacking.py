"""A stacked AutoML job end to end through real trainer and serving services: bad stacking
options are refused at submission naming the field, a job with stacking ON shows its layers
on the leaderboard and its score-over-time curve in the report, its bundle holds the whole
stack (its fold-bag version only: no refit-full variant of a stack), and serving (gRPC)
answers rows exactly as the bundle loaded locally does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
from google.protobuf import duration_pb2

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as serving_pb
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.bundles import load_bundle
from atlas_core.config import S3Settings
from atlas_core.ml import StackEnsemble
from tests.support.signing import TEST_TRUST

from ..serving.conftest import live, row, start_harness, stop_harness
from .test_model_loop import _serving_settings
from .test_training_jobs import watch_until_done

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


def interactions(n: int = 600, seed: int = 1) -> pd.DataFrame:
    """A sign interaction, a linear and a square term: families see different parts, and
    a layer-2 model over their scores earns a place in the ensemble (seeded, so the job
    below stacks the same way every time)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 6)), columns=[f"x{i}" for i in range(6)])
    logit = 2 * np.sign(X.x0 * X.x1) + 1.5 * X.x2 + X.x3**2 - 1
    label = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return X.assign(label=label)


def stacked_spec(artifact: common_pb2.ArtifactRef, **automl) -> pb.TrainingJobSpec:
    spec = pb.TrainingJobSpec(
        dataset_artifact=artifact,
        target_column="label",
        budget=pb.Budget(wall_time=duration_pb2.Duration(seconds=150), max_trials=5),
        automl=pb.AutoMlSpec(folds=3, **automl),
        seed=0,
    )
    spec.automl.search_space.model_families[:] = [
        pb.MODEL_FAMILY_LINEAR,
        pb.MODEL_FAMILY_LIGHTGBM,
        pb.MODEL_FAMILY_EXTRA_TREES,
    ]
    return spec


async def test_a_stacked_job_is_served_as_it_predicts_locally(
    trainer_harness, tmp_path: Path, s3_settings: S3Settings
):
    h = trainer_harness
    frame = interactions()
    artifact = await asyncio.to_thread(h.upload, "uploads/interactions.parquet", frame)
    for automl, field in (
        ({"stacking": 7}, "automl.stacking"),
        ({"stack_levels": 2}, "automl.stack_levels"),
        ({"stack_levels": -1}, "automl.stack_levels"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await h.stub.SubmitTrainingJob(
                pb.SubmitTrainingJobRequest(spec=stacked_spec(artifact, **automl))
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in err.value.details()
        assert "BAD_STACKING" in str(err.value.trailing_metadata())
    listed = await h.stub.ListTrainingJobs(pb.ListTrainingJobsRequest())
    assert not listed.jobs  # nothing stored on a refusal

    spec = stacked_spec(artifact, stacking=pb.STACKING_MODE_ON)
    job_id = (
        await h.stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=spec))
    ).job.status.job_id
    await watch_until_done(h.stub, job_id, timeout=400)
    done = (await h.stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job_id))).job
    assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message

    board = (await h.stub.GetLeaderboard(pb.GetLeaderboardRequest(job_id=job_id))).entries
    layer2 = [e for e in board if e.stack_level == 2]
    assert layer2 and all(e.number <= -201 and e.origin.startswith("stack:L2:") for e in layer2)
    assert {e.stack_level for e in board if e.number >= 0} == {1}
    ensemble = next(e for e in board if e.number == -2)
    assert ensemble.stack_level == 0 and ensemble.pipeline.startswith("stack[")
    assert any(n <= -201 for n in ensemble.ensemble_weights)  # a layer-2 model is in it
    assert done.result.best.number == -2
    # a stacked final model has its fold-bag version only (no honest refit-full stack), and
    # the ensemble's row shows that version's measured cost
    assert [v.name for v in done.result.model_versions] == ["fold_bag"]
    (version,) = done.result.model_versions
    assert version.description.startswith("stack[") and version.models > 0
    assert version.score == pytest.approx(ensemble.score)
    if version.batch_rows_per_s:  # measured before the budget's end
        assert ensemble.batch_rows_per_s == pytest.approx(version.batch_rows_per_s)
        assert ensemble.row_latency.ToTimedelta() == version.row_latency.ToTimedelta()

    report = (await h.stub.GetTrainingReport(pb.GetTrainingReportRequest(job_id=job_id))).report
    assert report.stack_levels == 2 and "stacked 1 layer" in report.stacking
    search = [p for p in report.score_curve if p.series == "search"]
    layers = [p for p in report.score_curve if p.series == "ensemble"]
    assert search and [p.stack_level for p in layers] == [1, 2]
    assert all(p.HasField("trial") for p in search)
    best = [p.score for p in search]
    assert best == sorted(best)  # ROC AUC: the best so far only rises
    assert "score_over_time" in {p.name for p in report.plots}

    bundle = await asyncio.to_thread(
        load_bundle,
        h.service.rt.artifacts,
        h.service.rt.artifacts.key_for_uri(done.result.model_bundle.uri),
        trust=TEST_TRUST,
    )
    assert isinstance(bundle.predictor.model, StackEnsemble)
    assert not bundle.variants and bundle.model_variant["name"] == "fold_bag"
    rows = frame.drop(columns="label").tail(25)
    local = bundle.predictor.predict_proba(rows)

    serving = await start_harness(_serving_settings(tmp_path, s3_settings))
    try:
        await serving.stub.RegisterModelVersion(
            serving_pb.RegisterModelVersionRequest(
                model_name="stacked", bundle=done.result.model_bundle
            )
        )
        await serving.stub.CreateEndpoint(
            serving_pb.CreateEndpointRequest(
                spec=serving_pb.EndpointSpec(name="stacked", variants=[live("a", "stacked", 1)])
            )
        )
        options = serving_pb.PredictOptions(return_all_scores=True)
        one = await serving.stub.Predict(
            serving_pb.PredictRequest(
                endpoint_name="stacked", row=row(rows.iloc[0].to_dict()), options=options
            )
        )
        assert one.prediction.scores["yes"] == pytest.approx(local[0][1], rel=1e-6, abs=1e-9)
        batch = await serving.stub.PredictBatch(
            serving_pb.PredictBatchRequest(
                endpoint_name="stacked",
                rows=[row(r) for r in rows.to_dict("records")],
                options=options,
            )
        )
        served = [p.scores["yes"] for p in batch.predictions]
        np.testing.assert_allclose(served, local[:, 1], rtol=1e-6, atol=1e-9)
        labels = [p.label for p in batch.predictions]
        assert labels == bundle.predictor.predict(rows).tolist()
    finally:
        await stop_harness(serving)
