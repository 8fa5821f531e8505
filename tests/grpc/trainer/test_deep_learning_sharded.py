"""A data-parallel deep-learning job whose last layer is sharded by class over its two
workers (params.sharded_classifier, model parallelism): it trains on digits, each worker held
half of the classes' weight rows, and the bundle holds the gathered, ordinary layer -- the
served predictions equal the bundle's local ones. Bad sharded settings are refused at
submission, naming the field."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pytest
from sklearn.datasets import load_digits

from atlas.serving.v1 import serving_service_pb2 as spb
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.bundles import load_bundle
from atlas_core.config import S3Settings
from atlas_core.rpc.status import error_from_rpc
from atlas_core.storage import ArtifactRef
from tests.grpc.serving.conftest import live, serving_settings, start_harness, stop_harness
from tests.support.signing import TEST_TRUST

from .test_deep_learning_jobs import _row, deep_spec, run_job

pytestmark = pytest.mark.slow
HIDDEN = 64


async def test_a_sharded_classifier_job_trains_on_two_workers_and_serves_an_ordinary_model(
    trainer_harness, tmp_path: Path, s3_settings: S3Settings
) -> None:
    # ArcFace: the served net also carries the feature normalisation and the scaled, normalised
    # weight (plain softmax is the same path without them; both passed when written, and the
    # layer's loss for both is checked in tests/unit/trainer/test_sharded_classifier.py).
    margin = "arcface"
    h = trainer_harness
    images = load_digits(as_frame=True).frame
    ref = await asyncio.to_thread(h.upload, "uploads/digits.parquet", images)
    params = {"hidden": [HIDDEN], "lr": 0.003, "sharded_classifier": True, "margin": margin}
    job, _ = await run_job(
        h, deep_spec(ref, "target", "mlp", epochs=4, batch_size=32, workers=2, params=params)
    )
    deep = job.result.deep_learning
    assert deep.workers == 2
    shards = [(s.rank, s.class_start, s.class_stop, s.params) for s in deep.classifier_shards]
    # 10 digits over 2 workers: each held the rows of 5 classes, half of the layer.
    assert shards == [(0, 0, 5, 5 * HIDDEN), (1, 5, 10, 5 * HIDDEN)]
    assert job.result.best.score > 0.85, job.result.best  # validation accuracy
    assert [e.epoch for e in deep.epochs] == [1, 2, 3, 4]

    store = h.service.rt.artifacts
    bundle = job.result.model_bundle
    loaded = load_bundle(store, store.key_for_uri(bundle.uri), trust=TEST_TRUST)
    pixels = images.drop(columns="target").iloc[:60]
    local = loaded.predictor.predict(pixels)
    assert (np.asarray(local).astype(int) == images.target.iloc[:60].to_numpy()).mean() > 0.85
    serving = await start_harness(serving_settings(tmp_path / "serving", s3_settings, ""))
    try:
        await serving.register(
            "digits",
            ArtifactRef(uri=bundle.uri, key="", sha256=bundle.sha256, size=bundle.size_bytes),
        )
        await serving.stub.CreateEndpoint(
            spb.CreateEndpointRequest(
                spec=spb.EndpointSpec(name="digits", variants=[live("blue", "digits", 1)])
            )
        )
        batch = await serving.stub.PredictBatch(
            spb.PredictBatchRequest(
                endpoint_name="digits", rows=[_row(r) for r in pixels.to_dict("records")]
            )
        )
    finally:
        await stop_harness(serving)
    served = np.array([int(p.label) for p in batch.predictions])
    np.testing.assert_array_equal(served, np.asarray(local).astype(int))


async def test_bad_sharded_classifier_settings_name_the_field(trainer_harness) -> None:
    h = trainer_harness
    images = load_digits(as_frame=True).frame
    ref = await asyncio.to_thread(h.upload, "uploads/digits.parquet", images)
    sharded = {"sharded_classifier": True}
    cases = [
        (dict(params=sharded), "BAD_DEEP_PARAMS", "deep_learning.workers"),
        (dict(params=sharded, workers=1), "BAD_DEEP_PARAMS", "deep_learning.workers"),
        (dict(params={"margin": "arcface"}, workers=2), "BAD_DEEP_PARAMS", "params.margin"),
        (
            dict(params={**sharded, "arcface_scale": 8.0}, workers=2),
            "BAD_DEEP_PARAMS",
            "deep_learning.params.arcface_scale: applies only with params.margin: arcface",
        ),
        (
            dict(params={**sharded, "margin": "cosface"}, workers=2),
            "BAD_DEEP_PARAMS",
            "deep_learning.params.margin",
        ),
        (  # the target has 10 classes; the layer was configured for 8
            dict(params={**sharded, "sharded_classes": 8}, workers=2),
            "TOO_MANY_CLASSES",
            "deep_learning.params.sharded_classes: target_column 'target' has 10 classes",
        ),
        (  # beyond jobs.deep_max_classes (1000)
            dict(params={**sharded, "sharded_classes": 5000}, workers=2),
            "TOO_MANY_CLASSES",
            "deep_learning.params.sharded_classes: 5000 classes",
        ),
    ]
    for kw, reason, text in cases:
        spec = deep_spec(ref, "target", "mlp", **kw)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await h.stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=spec))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (text, err.value.details())
        assert text in err.value.details(), (text, err.value.details())
        assert error_from_rpc(err.value).reason == reason, err.value.details()
    jobs = await h.stub.ListTrainingJobs(pb.ListTrainingJobsRequest())
    assert not jobs.jobs  # nothing was queued
