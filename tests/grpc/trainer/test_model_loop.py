"""The model side of the loop over gRPC, with real data, serving and trainer services on port 0:
a labeling export is refused until matched, the matched dataset trains as it is (label column
as target, entity and time columns left out), the bundle is registered in serving under
"candidate" with its lineage, the next job warm-starts from the model it replaces, and
registration survives serving being down and a resumed job."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import optuna
import pyarrow as pa
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from grpc import aio
from pydantic import SecretStr

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as data_pb
from atlas.serving.v1 import serving_service_pb2 as serving_pb
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas.trainer.v1 import trainer_service_pb2_grpc as pb_grpc
from atlas_core.config import AuthSettings, DatabaseSettings, S3Settings, ServerSettings
from atlas_core.jobs import JobContext
from atlas_core.rpc import AtlasServer, ClientSettings, connect, create_server
from atlas_trainer.config import PeerSettings, TrainerJobSettings, TrainerSettings
from atlas_trainer.job_work import train as run_train_job
from atlas_trainer.model_registry import register_bundle
from atlas_trainer.service import TrainerService
from atlas_trainer.servicer import trainer_service_def
from tests.support.processes import free_port
from tests.support.signing import signing_settings

from ..data.conftest import TOKEN, DataHarness, running_data_service
from ..data.test_datasets import upload_parquet, wait_job
from ..data.test_feature_store import put
from ..serving.conftest import TOKEN as SERVING_TOKEN
from ..serving.conftest import ServingHarness, serving_settings, start_harness, stop_harness
from .test_training_jobs import breast_cancer, watch_until_done

pytestmark = pytest.mark.asyncio
GROUP, ROWS = "reviews", 200


@dataclass
class Loop:
    data: DataHarness
    trainer: TrainerService
    server: AtlasServer
    stub: pb_grpc.TrainerServiceStub


@asynccontextmanager
async def running_trainer(
    tmp_path: Path, s3: S3Settings, data: DataHarness, serving_target: str, **jobs: Any
) -> AsyncIterator[Loop]:
    settings = TrainerSettings(
        server=ServerSettings(auth=AuthSettings(tokens={TOKEN: ["*"]})),
        s3=s3,
        database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'trainer.db'}"),
        data_dir=tmp_path / "trainer",
        bundles=signing_settings(tmp_path),  # the serving harness trusts the test key
        data=PeerSettings(target=data.server.address, token=SecretStr(TOKEN)),
        serving=PeerSettings(target=serving_target, token=SecretStr(SERVING_TOKEN)),
        jobs=TrainerJobSettings(runner_id="trainer-loop-test", **jobs),
    )
    service = TrainerService.open(settings)
    service.start()
    server = create_server(settings.server, [trainer_service_def(service)])
    await server.start()
    channel: aio.Channel = connect(ClientSettings(target=server.address, token=TOKEN))
    try:
        yield Loop(data, service, server, pb_grpc.TrainerServiceStub(channel))
    finally:
        await channel.close()
        await server.stop(0)


def _serving_settings(tmp_path: Path, s3: S3Settings, port: int = 0):
    settings = serving_settings(tmp_path / "serving", s3, "")
    return settings.model_copy(update={"server": settings.server.model_copy(update={"port": port})})


def tiny_budget(spec: pb.TrainingJobSpec, trials: int = 4) -> pb.TrainingJobSpec:
    """A few linear/LightGBM trials; the wall limit only guards against a slow machine (the
    job process's imports count against it)."""
    spec.budget.CopyFrom(pb.Budget(wall_time=duration_pb2.Duration(seconds=60), max_trials=trials))
    spec.automl.search_space.model_families[:] = [pb.MODEL_FAMILY_LINEAR, pb.MODEL_FAMILY_LIGHTGBM]
    return spec


async def finished(stub, job_id: str) -> pb.TrainingJob:
    await watch_until_done(stub, job_id, timeout=120)
    job = (await stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job_id))).job
    assert job.status.state == common_pb2.JOB_STATE_SUCCEEDED, job.status.error.message
    return job


async def labeling_export(data: DataHarness) -> common_pb2.DatasetRef:
    """Reviews with two features, and a labeling export of them registered the way the
    labeling service registers one (its columns, roles and label_set parent); review r0 was
    relabelled (a second row, same event time, the other class)."""
    stub = data.stub
    await stub.CreateFeatureGroup(
        data_pb.CreateFeatureGroupRequest(
            spec=data_pb.FeatureGroupSpec(
                name=GROUP,
                entity_key="review_id",
                entity_key_type=data_pb.ENTITY_KEY_TYPE_STRING,
                event_time_column="ts",
                features=[
                    data_pb.FeatureSpec(name="f1", dtype=data_pb.FEATURE_TYPE_FLOAT32),
                    data_pb.FeatureSpec(name="f2", dtype=data_pb.FEATURE_TYPE_FLOAT32),
                ],
            )
        )
    )
    rng = np.random.default_rng(3)
    f = rng.normal(size=(ROWS, 2)).astype("float32")
    start = time.time() - 3600
    event = timestamp_pb2.Timestamp()
    event.FromMicroseconds(int(start * 1e6))
    records = [
        data_pb.FeatureRecord(
            entity_key=data_pb.EntityKey(string_key=f"r{k}"),
            event_time=event,
            float32_values=f[k].tobytes(),
        )
        for k in range(ROWS)
    ]
    await put(stub, records, name=GROUP)
    await asyncio.to_thread(data.service.flush_offline)
    labels = list(np.where(f[:, 0] + f[:, 1] > 0, "pos", "neg"))
    keys = list(range(ROWS)) + [0]
    labels.append("neg" if labels[0] == "pos" else "pos")
    n = len(keys)
    at = pa.array([int((start + 60) * 1e6)] * n, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    export = pa.table(
        {
            "entity_key": [f"r{k}" for k in keys],
            "label": labels,
            "value": [json.dumps({"classes": [str(v)]}) for v in labels],
            "event_time": at,
            "label_created_time": at,
            "label_version": pa.array([1] * ROWS + [2], pa.int32()),
            "annotators": [["ann-a", "ann-b"]] * n,
            "agreement": [1.0] * n,
            "source": ["consensus"] * ROWS + ["review"],
            "item_id": [f"item-{k}" for k in keys],
            "seq": list(range(1, n + 1)),
        }
    )
    part = upload_parquet(data, "exports/prj-1/exp-1/part-00000.parquet", export)
    registered = await stub.RegisterDataset(
        data_pb.RegisterDatasetRequest(
            name="review-labels",
            artifacts=[part],
            label_column="label",
            entity_column="entity_key",
            timestamp_column="event_time",
            parents=[
                common_pb2.LineageParent(
                    role="labels",
                    label_set=common_pb2.LabelSetRef(project_id="prj-1", export_id="exp-1"),
                )
            ],
        )
    )
    return registered.dataset.ref


async def match(data: DataHarness, export: common_pb2.DatasetRef) -> common_pb2.DatasetRef:
    spec = data_pb.MatchSamplesSpec(
        sample_source=data_pb.SampleSource(
            dataset=export,
            entity_column="entity_key",
            timestamp_column="event_time",
            label_column="label",
        ),
        features=[data_pb.FeatureSelection(feature_group=common_pb2.FeatureGroupRef(name=GROUP))],
        output_dataset_name="reviews-train",
    )
    job = (
        await data.stub.SubmitMatchSamplesJob(data_pb.SubmitMatchSamplesJobRequest(spec=spec))
    ).job
    done = await wait_job(data.stub, job.status.job_id, timeout=60)
    assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message
    return done.dataset_result.datasets[0].ref


def _parents(lineage: common_pb2.Lineage) -> dict[str, common_pb2.LineageParent]:
    return {p.role: p for p in lineage.parents}


@pytest.mark.slow
async def test_a_matched_export_trains_registers_as_candidate_and_the_next_job_warm_starts_from_it(
    tmp_path: Path, s3_settings: S3Settings
):
    serving = await start_harness(_serving_settings(tmp_path, s3_settings))
    try:
        async with (
            running_data_service(tmp_path / "data", s3_settings) as data,
            running_trainer(tmp_path, s3_settings, data, serving.server.address) as h,
        ):
            await _loop_turn(h, serving)
    finally:
        await stop_harness(serving)


async def _loop_turn(h: Loop, serving: ServingHarness) -> None:
    export = await labeling_export(h.data)
    # The export alone is labels without features: refused, pointing at the match step.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await h.stub.SubmitTrainingJob(
            pb.SubmitTrainingJobRequest(spec=tiny_budget(pb.TrainingJobSpec(dataset=export)))
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "SubmitMatchSamplesJob" in refused.value.details() and "exp-1" in refused.value.details()
    matched = await match(h.data, export)

    # v1: the matched dataset as it is (no target named, no columns ignored), registered.
    spec = tiny_budget(
        pb.TrainingJobSpec(dataset=matched, register=pb.RegisterModelOptions(model_name="reviews"))
    )
    first = await h.stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=spec))
    assert first.job.spec.target_column == "label"  # the dataset's label column
    v1_job = await finished(h.stub, first.job.status.job_id)
    result = v1_job.result
    assert result.task_type == pb.TASK_TYPE_BINARY and result.best.score > 0.8
    reg = result.registration
    assert reg.state == pb.REGISTRATION_STATE_REGISTERED and reg.attempts == 1
    assert (reg.model_version.model_name, reg.model_version.version, reg.alias) == (
        "reviews",
        1,
        "candidate",
    )
    report = (
        await h.stub.GetTrainingReport(pb.GetTrainingReportRequest(job_id=v1_job.status.job_id))
    ).report
    assert {"entity_key", "event_time"} <= set(report.dropped_columns)
    assert any(w.startswith("1 samples (same entity_key and event_time)") for w in report.warnings)
    v1 = (
        await serving.stub.GetModelVersion(
            serving_pb.GetModelVersionRequest(
                ref=common_pb2.ModelRef(model_name="reviews", alias="candidate")
            )
        )
    ).model_version
    assert v1.ref.version == 1 and sorted(v1.classes) == ["neg", "pos"]
    assert {c.name for c in v1.input_schema.columns} == {"f1", "f2"}  # no key or time column
    parents = _parents(v1.lineage)
    assert (
        parents["training_data"].dataset.dataset_id,
        parents["training_data"].dataset.version,
    ) == (
        matched.dataset_id,
        matched.version,
    )
    assert parents["trial"].trial.job_id == v1_job.status.job_id
    assert parents["trial"].trial.study_name == v1_job.study_name
    assert parents["bundle"].artifact.sha256 == result.model_bundle.sha256
    assert v1.lineage.produced_by.job_id == v1_job.status.job_id and "base_model" not in parents
    # ... and through the matched dataset, the export.
    got = await h.data.stub.GetDataset(data_pb.GetDatasetRequest(ref=matched))
    samples = _parents(got.dataset.lineage)["samples"].dataset
    assert (samples.dataset_id, samples.version) == (export.dataset_id, export.version)

    # v2 replaces the candidate: resolved (and pinned) at submission, warm-started from v1's
    # study, recorded as base_model, registered as the new candidate.
    spec = tiny_budget(
        pb.TrainingJobSpec(
            dataset=matched,
            replaces_model=common_pb2.ModelRef(model_name="reviews", alias="candidate"),
            register=pb.RegisterModelOptions(model_name="reviews"),
        )
    )
    second = await h.stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=spec))
    assert second.job.spec.replaces_model.version == 1
    v2_job = await finished(h.stub, second.job.status.job_id)
    priors = [p for p in v2_job.result.priors if p.reason == "base_model"]
    assert [p.source_job_id for p in priors] == [v1_job.status.job_id]
    assert priors[0].configs_enqueued >= 1
    origin = f"warm_start:{v1_job.study_name}#"
    trials = (await h.stub.ListTrials(pb.ListTrialsRequest(job_id=v2_job.status.job_id))).trials
    assert any(t.origin.startswith(origin) for t in trials), [t.origin for t in trials]
    board = await h.stub.GetLeaderboard(pb.GetLeaderboardRequest(job_id=v2_job.status.job_id))
    assert any(e.origin.startswith(origin) for e in board.entries)
    trainer_parents = _parents(v2_job.result.lineage)
    assert (
        trainer_parents["base_model"].model.model_name,
        trainer_parents["base_model"].model.version,
    ) == ("reviews", 1)
    assert v2_job.result.registration.model_version.version == 2
    v2 = (
        await serving.stub.GetModelVersion(
            serving_pb.GetModelVersionRequest(
                ref=common_pb2.ModelRef(model_name="reviews", alias="candidate")
            )
        )
    ).model_version
    base = _parents(v2.lineage)["base_model"].model
    assert v2.ref.version == 2 and (base.model_name, base.version) == ("reviews", 1)
    assert _parents(v2.lineage)["trial"].trial.job_id == v2_job.status.job_id


async def test_replacing_an_unknown_model_or_an_unreachable_registry_is_refused_up_front(
    tmp_path: Path, s3_settings: S3Settings
):
    serving = await start_harness(_serving_settings(tmp_path, s3_settings))
    try:
        async with (
            running_data_service(tmp_path / "data", s3_settings) as data,
            running_trainer(tmp_path, s3_settings, data, serving.server.address) as h,
        ):
            table = await asyncio.to_thread(breast_cancer)
            artifact = upload_parquet(data, "uploads/bc.parquet", pa.Table.from_pandas(table))
            for ref, named in (
                (common_pb2.ModelRef(model_name="nobody", alias="production"), "nobody@production"),
                (common_pb2.ModelRef(model_name="nobody", version=3), "nobody:3"),
            ):
                spec = tiny_budget(
                    pb.TrainingJobSpec(
                        dataset_artifact=artifact, target_column="target", replaces_model=ref
                    )
                )
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await h.stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=spec))
                assert err.value.code() == grpc.StatusCode.NOT_FOUND
                assert named in err.value.details()
            bad = tiny_budget(
                pb.TrainingJobSpec(
                    dataset_artifact=artifact,
                    target_column="target",
                    register=pb.RegisterModelOptions(model_name="Bad Name"),
                )
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await h.stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=bad))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "register.model_name" in err.value.details()
            listed = await h.stub.ListTrainingJobs(pb.ListTrainingJobsRequest())
            assert not listed.jobs  # nothing stored
            # A bundle serving refuses is not retried: FAILED at once, with serving's reason.
            refused = await asyncio.to_thread(
                register_bundle,
                h.trainer.rt,
                "job-x",
                pb.RegisterModelOptions(model_name="bc"),
                {"uri": artifact.uri, "sha256": artifact.sha256, "size": artifact.size_bytes},
                None,
                report=lambda message: None,
                should_stop=lambda: False,
            )
            assert (refused["state"], refused["attempts"]) == ("FAILED", 1), refused
            assert not (await serving.stub.ListModels(serving_pb.ListModelsRequest())).models
        # The registry is down: UNAVAILABLE at submission, nothing stored.
        down = free_port()
        async with (
            running_data_service(tmp_path / "data2", s3_settings) as data,
            running_trainer(tmp_path / "t2", s3_settings, data, f"127.0.0.1:{down}") as h,
        ):
            spec = tiny_budget(
                pb.TrainingJobSpec(
                    dataset_artifact=artifact,
                    target_column="target",
                    replaces_model=common_pb2.ModelRef(model_name="bc", alias="production"),
                )
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await h.stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=spec))
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "bc@production" in err.value.details()
            assert not (await h.stub.ListTrainingJobs(pb.ListTrainingJobsRequest())).jobs
    finally:
        await stop_harness(serving)


@pytest.mark.slow
async def test_serving_down_at_registration_is_retried_then_registered_once_also_on_resume(
    tmp_path: Path, s3_settings: S3Settings
):
    port = free_port()  # nothing listens there until the job has failed a few calls
    async with (
        running_data_service(tmp_path / "data", s3_settings) as data,
        running_trainer(
            tmp_path,
            s3_settings,
            data,
            f"127.0.0.1:{port}",
            register_retry_seconds=120.0,
            register_backoff_max_seconds=1.0,
        ) as h,
    ):
        table = await asyncio.to_thread(breast_cancer)
        artifact = upload_parquet(data, "uploads/bc.parquet", pa.Table.from_pandas(table))
        spec = tiny_budget(
            pb.TrainingJobSpec(
                dataset_artifact=artifact,
                target_column="target",
                register=pb.RegisterModelOptions(model_name="bc", alias="next"),
            )
        )
        job_id = (
            await h.stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=spec))
        ).job.status.job_id
        runner = h.trainer.jobs
        deadline = time.monotonic() + 90
        while not _failed_attempts(runner, job_id) >= 2:
            assert time.monotonic() < deadline, "the job never tried to register"
            await asyncio.sleep(0.3)
        assert (runner.get(job_id).checkpoint or {}).get("trained")  # the bundle is kept
        serving = await start_harness(_serving_settings(tmp_path, s3_settings, port))
        try:
            job = await finished(h.stub, job_id)
            reg = job.result.registration
            assert reg.state == pb.REGISTRATION_STATE_REGISTERED and reg.attempts >= 3
            assert (reg.model_version.version, reg.alias) == (1, "next")
            versions = (
                await serving.stub.ListModelVersions(
                    serving_pb.ListModelVersionsRequest(model_name="bc")
                )
            ).model_versions
            assert [v.ref.version for v in versions] == [1] and versions[0].aliases == ["next"]
            assert versions[0].bundle.sha256 == job.result.model_bundle.sha256

            # A later attempt of the same job (the trainer killed after the bundle was
            # checkpointed, before or after serving answered) registers nothing new, trains
            # nothing new.
            record = runner.get(job_id)
            trials = len(
                optuna.load_study(
                    study_name=job.study_name, storage=h.trainer.rt.optuna_storage_url
                ).trials
            )
            replay = await asyncio.to_thread(
                _second_attempt, h.trainer, record, spec, job.study_name
            )
            assert replay["registration"]["state"] == "REGISTERED"
            assert replay["registration"]["version"] == 1
            assert replay["bundle"] == record.result["bundle"]
            assert (
                len(
                    optuna.load_study(
                        study_name=job.study_name, storage=h.trainer.rt.optuna_storage_url
                    ).trials
                )
                == trials
            )
            versions = (
                await serving.stub.ListModelVersions(
                    serving_pb.ListModelVersionsRequest(model_name="bc")
                )
            ).model_versions
            assert [v.ref.version for v in versions] == [1]
        finally:
            await stop_harness(serving)


def _failed_attempts(runner, job_id: str) -> int:
    return sum(
        "registering in serving: attempt" in str(e.payload.get("message", ""))
        for e in runner.events(job_id)
    )


def _second_attempt(trainer: TrainerService, record, spec: pb.TrainingJobSpec, study: str) -> dict:
    """The job body as the runner would start it again, from the recorded checkpoint."""
    ours, theirs = multiprocessing.Pipe()
    ctx = JobContext(
        ours, job_id=record.id, kind=record.kind, attempt=2, checkpoint=record.checkpoint
    )
    try:
        return run_train_job(trainer.rt, ctx, spec, study_name=study)
    finally:
        ours.close()
        theirs.close()
