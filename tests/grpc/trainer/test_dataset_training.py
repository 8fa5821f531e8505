"""A training job on a data-service dataset, end to end over gRPC: feature group -> ingest ->
point-in-time match -> dataset -> trainer job -> bundle and leaderboard; then the bundle's
lineage as the trainer and the serving registry report it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as data_pb
from atlas.serving.v1 import serving_service_pb2 as serving_pb
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.bundles import load_bundle
from atlas_core.config import S3Settings
from tests.support.signing import TEST_TRUST

from ..data.test_datasets import upload_parquet, wait_job
from ..data.test_feature_store import put
from ..serving.conftest import serving_settings, start_harness, stop_harness
from .test_training_jobs import watch_until_done

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
GROUP, DATASET, ROWS = "customers", "churn-train", 240


def customer_record(key: int, event_s: float, f1: float, f2: float) -> data_pb.FeatureRecord:
    event = timestamp_pb2.Timestamp()
    event.FromMicroseconds(int(event_s * 1e6))
    return data_pb.FeatureRecord(
        entity_key=data_pb.EntityKey(int64_key=key),
        event_time=event,
        float32_values=np.array([f1, f2], "<f4").tobytes(),
    )


async def build_dataset(h) -> data_pb.Dataset:
    """A learnable dataset (label = f1 + f2 > 0) made by the data service from its own
    feature history and uploaded samples."""
    stub = h.data.stub
    await stub.CreateFeatureGroup(
        data_pb.CreateFeatureGroupRequest(
            spec=data_pb.FeatureGroupSpec(
                name=GROUP,
                entity_key="customer_id",
                entity_key_type=data_pb.ENTITY_KEY_TYPE_INT64,
                event_time_column="ts",
                features=[
                    data_pb.FeatureSpec(name="f1", dtype=data_pb.FEATURE_TYPE_FLOAT32),
                    data_pb.FeatureSpec(name="f2", dtype=data_pb.FEATURE_TYPE_FLOAT32),
                ],
            )
        )
    )
    rng = np.random.default_rng(7)
    f = rng.normal(size=(ROWS, 2)).astype("float32")
    start = time.time() - 3600
    await put(stub, [customer_record(k, start, *f[k]) for k in range(ROWS)], name=GROUP)
    await asyncio.to_thread(h.data.service.flush_offline)
    when = pa.array([int((start + 60) * 1e6)] * ROWS, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    labels = (f[:, 0] + f[:, 1] > 0).astype("int64")
    samples = upload_parquet(
        h.data,
        "uploads/churn-samples.parquet",
        pa.table({"customer_id": np.arange(ROWS), "when": when, "churned": labels}),
    )
    spec = data_pb.MatchSamplesSpec(
        sample_source=data_pb.SampleSource(
            artifact=samples,
            entity_column="customer_id",
            timestamp_column="when",
            label_column="churned",
        ),
        features=[data_pb.FeatureSelection(feature_group=common_pb2.FeatureGroupRef(name=GROUP))],
        output_dataset_name=DATASET,
    )
    job = (await stub.SubmitMatchSamplesJob(data_pb.SubmitMatchSamplesJobRequest(spec=spec))).job
    done = await wait_job(stub, job.status.job_id, timeout=60)
    assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message
    dataset = done.dataset_result.datasets[0]
    assert dataset.row_count == ROWS
    return dataset


def small_spec(
    *,
    dataset: common_pb2.DatasetRef | None = None,
    dataset_artifact: common_pb2.ArtifactRef | None = None,
    target: str = "churned",
    ignore: tuple[str, ...] = ("customer_id", "when"),
) -> pb.TrainingJobSpec:
    """A tiny AutoML budget: a few linear/LightGBM trials, no warm start."""
    return pb.TrainingJobSpec(
        dataset=dataset,
        dataset_artifact=dataset_artifact,
        target_column=target,
        ignore_columns=list(ignore),
        budget=pb.Budget(wall_time=duration_pb2.Duration(seconds=20), max_trials=4),
        automl=pb.AutoMlSpec(
            search_space=pb.SearchSpaceOptions(
                model_families=[pb.MODEL_FAMILY_LINEAR, pb.MODEL_FAMILY_LIGHTGBM]
            ),
            warm_start=pb.WARM_START_MODE_OFF,
        ),
        seed=0,
    )


async def train(h, spec: pb.TrainingJobSpec) -> pb.TrainingJob:
    submitted = await h.stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=spec))
    job_id = submitted.job.status.job_id
    await watch_until_done(h.stub, job_id, timeout=120)
    done = (await h.stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job_id))).job
    assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message
    return done


async def test_training_job_on_a_dataset_records_its_lineage(
    trainer_harness, tmp_path: Path, s3_settings: S3Settings
):
    h = trainer_harness
    dataset = await build_dataset(h)
    ds_ref = common_pb2.DatasetRef(dataset_id=dataset.ref.dataset_id, version=dataset.ref.version)
    done = await train(h, small_spec(dataset=ds_ref))
    job_id = done.status.job_id

    # The bundle and the leaderboard.
    result = done.result
    assert result.model_bundle.uri and result.model_bundle.sha256
    assert result.task_type == pb.TASK_TYPE_BINARY and result.trials_complete >= 1
    board = await h.stub.GetLeaderboard(pb.GetLeaderboardRequest(job_id=job_id))
    scores = [e.score for e in board.entries]
    assert scores and scores == sorted(scores, reverse=board.higher_is_better)
    assert board.page.total_size == len(board.entries)
    assert result.best.score > 0.8, result.best  # label = f1 + f2 > 0: easy to learn
    artifacts = h.service.rt.artifacts
    bundle = await asyncio.to_thread(
        load_bundle, artifacts, artifacts.key_for_uri(result.model_bundle.uri), trust=TEST_TRUST
    )
    probe = {"f1": [2.0, -2.0], "f2": [1.0, -1.0]}
    proba = bundle.predictor.predict_proba(pd.DataFrame(probe, dtype="float32"))
    assert proba[0, 1] > 0.5 > proba[1, 1]

    # Lineage as the trainer reports it: the dataset version, produced by this job.
    parents = [p for p in result.lineage.parents if p.HasField("dataset")]
    assert [(p.role, p.dataset.dataset_id, p.dataset.version) for p in parents] == [
        ("training_data", DATASET, 1)
    ]
    assert result.lineage.produced_by.service == "trainer"
    assert result.lineage.produced_by.job_id == job_id
    listed = await h.stub.ListTrainingJobs(pb.ListTrainingJobsRequest(dataset=ds_ref))
    assert [j.status.job_id for j in listed.jobs] == [job_id] and listed.page.total_size == 1

    # Lineage as the serving registry records it when the bundle is registered.
    serving = await start_harness(serving_settings(tmp_path / "serving", s3_settings, ""))
    try:
        registered = (
            await serving.stub.RegisterModelVersion(
                serving_pb.RegisterModelVersionRequest(
                    model_name="churn",
                    bundle=result.model_bundle,
                    parents=[
                        common_pb2.LineageParent(
                            role="features",
                            feature_group=common_pb2.FeatureGroupRef(name=GROUP, version=1),
                        )
                    ],
                )
            )
        ).model_version
        fetched = (
            await serving.stub.GetModelVersion(
                serving_pb.GetModelVersionRequest(ref=registered.ref)
            )
        ).model_version
    finally:
        await stop_harness(serving)
    lineage = fetched.lineage
    by_role = {p.role: p for p in lineage.parents}
    assert by_role["bundle"].artifact.sha256 == result.model_bundle.sha256
    assert (
        by_role["training_data"].dataset.dataset_id,
        by_role["training_data"].dataset.version,
    ) == (
        DATASET,
        1,
    )
    assert by_role["trial"].trial.job_id == job_id
    assert by_role["trial"].trial.study_name  # the Optuna study the best trial belongs to
    assert by_role["features"].feature_group.name == GROUP
    assert lineage.produced_by.service == "trainer" and lineage.produced_by.job_id == job_id
    # ... and one step further up: the dataset came from the feature group.
    got = await h.data.stub.GetDataset(data_pb.GetDatasetRequest(ref=ds_ref))
    assert {
        p.feature_group.name for p in got.dataset.lineage.parents if p.HasField("feature_group")
    } == {GROUP}
