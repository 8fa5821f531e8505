"""AutoML jobs through the real trainer service: submit, watch, leaderboard, bundle, report,
bad input and cancellation."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pandas as pd
import pytest
from google.protobuf import duration_pb2
from sklearn.datasets import load_breast_cancer

from atlas.common.v1 import common_pb2
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.bundles import load_bundle
from tests.support.signing import TEST_TRUST

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
TERMINAL = {
    common_pb2.JOB_STATE_SUCCEEDED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
}


def breast_cancer() -> pd.DataFrame:
    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.copy()
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    return frame


def spec_for(artifact, target="target", seconds=20.0, **kw) -> pb.TrainingJobSpec:
    budget = pb.Budget(wall_time=duration_pb2.Duration(seconds=int(seconds)))
    return pb.TrainingJobSpec(
        dataset_artifact=artifact,
        target_column=target,
        budget=budget,
        automl=pb.AutoMlSpec(**kw),
        seed=0,
    )


async def watch_until_done(stub, job_id, timeout=180):
    events = []

    async def follow():
        async for ev in stub.WatchTrainingJob(pb.WatchTrainingJobRequest(job_id=job_id)):
            events.append(ev)
            if ev.event_type == pb.TRAINING_EVENT_TYPE_STATUS and ev.status.state in TERMINAL:
                return

    await asyncio.wait_for(follow(), timeout)
    return events


async def test_automl_job_end_to_end(trainer_harness):
    h = trainer_harness
    with_site = breast_cancer().assign(site=1.0)  # constant: the trainer drops it
    artifact = await asyncio.to_thread(h.upload, "uploads/bc.parquet", with_site)
    job = (
        await h.stub.SubmitTrainingJob(
            pb.SubmitTrainingJobRequest(spec=spec_for(artifact, seconds=25))
        )
    ).job
    events = await watch_until_done(h.stub, job.status.job_id)
    done = (await h.stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job.status.job_id))).job
    assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message
    ran = done.status.end_time.ToDatetime() - done.status.start_time.ToDatetime()
    assert ran.total_seconds() <= 25 * 1.1 + 1.5  # the budget, + process start-up
    kinds = {ev.event_type for ev in events}
    assert pb.TRAINING_EVENT_TYPE_TRIAL_FINISHED in kinds
    assert pb.TRAINING_EVENT_TYPE_NEW_BEST in kinds
    result = done.result
    assert result.task_type == pb.TASK_TYPE_BINARY and result.higher_is_better
    assert result.best.score > 0.95 and result.trials_complete >= 3
    board = await h.stub.GetLeaderboard(pb.GetLeaderboardRequest(job_id=job.status.job_id))
    scores = [e.score for e in board.entries]
    assert scores == sorted(scores, reverse=True) and len(scores) >= 3
    bundle = await asyncio.to_thread(
        load_bundle,
        h.service.rt.artifacts,
        h.service.rt.artifacts.key_for_uri(result.model_bundle.uri),
        trust=TEST_TRUST,  # the trainer signed it with the key it was configured with
    )
    frame = with_site  # the model takes every column it was given, used or not
    proba = bundle.predictor.predict_proba(frame.drop(columns=["target"]).head(50))
    assert proba.shape == (50, 2)
    assert ((proba[:, 1] > 0.5) == frame["target"].head(50).astype(bool)).mean() > 0.9
    report = (
        await h.stub.GetTrainingReport(pb.GetTrainingReportRequest(job_id=job.status.job_id))
    ).report
    assert report.feature_importance, list(report.warnings)
    assert report.importance_method in ("shap", "permutation")
    assert "site" in report.dropped_columns
    assert "site" not in {f.feature for f in report.feature_importance}  # only used features
    assert {p.name for p in report.plots} >= {"optimization_history", "leaderboard"}, list(
        report.warnings
    )
    explained = await h.stub.ExplainPredictions(
        pb.ExplainPredictionsRequest(
            job_id=job.status.job_id,
            rows=[
                pb.FeatureRow(
                    values={
                        c: common_pb2.Value(double_value=float(v))
                        for c, v in frame.drop(columns=["target"]).iloc[0].items()
                    }
                )
            ],
        )
    )
    assert len(explained.rows) == 1 and explained.rows[0].contributions


async def test_bad_training_input(trainer_harness):
    h = trainer_harness
    frame = breast_cancer()
    good = await asyncio.to_thread(h.upload, "uploads/ok.parquet", frame)
    constant = await asyncio.to_thread(h.upload, "uploads/const.parquet", frame.assign(target=1))
    empty = await asyncio.to_thread(h.upload, "uploads/nan.parquet", frame.assign(target=np.nan))
    slow = spec_for(good)
    slow.automl.max_row_latency_ms = -1.0
    starved = spec_for(good)
    starved.automl.min_batch_rows_per_s = float("nan")
    cases = [
        (slow, grpc.StatusCode.INVALID_ARGUMENT, "max_row_latency_ms"),
        (starved, grpc.StatusCode.INVALID_ARGUMENT, "min_batch_rows_per_s"),
        (spec_for(good, target="nope"), grpc.StatusCode.INVALID_ARGUMENT, "nope"),
        (spec_for(constant), grpc.StatusCode.INVALID_ARGUMENT, "constant"),
        (spec_for(empty), grpc.StatusCode.INVALID_ARGUMENT, "all missing"),
        (
            pb.TrainingJobSpec(
                dataset=common_pb2.DatasetRef(dataset_id="no-such-ds"), target_column="y"
            ),
            grpc.StatusCode.NOT_FOUND,
            "no-such-ds",
        ),
    ]
    for spec, code, text in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await h.stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=spec))
        assert err.value.code() == code, err.value.details()
        assert text in err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await h.stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id="missing-job"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_cancel_keeps_completed_trials_and_best_model(trainer_harness):
    h = trainer_harness
    artifact = await asyncio.to_thread(h.upload, "uploads/bc2.parquet", breast_cancer())
    spec = spec_for(artifact, seconds=120)
    spec.automl.max_row_latency_ms = 1000.0  # generous: the leaderboard shows the cost
    job = (await h.stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=spec))).job
    job_id = job.status.job_id

    async def first_finished():
        async for ev in h.stub.WatchTrainingJob(pb.WatchTrainingJobRequest(job_id=job_id)):
            if ev.event_type == pb.TRAINING_EVENT_TYPE_TRIAL_FINISHED:
                return

    await asyncio.wait_for(first_finished(), 90)
    asked = asyncio.get_running_loop().time()
    await h.stub.CancelTrainingJob(pb.CancelTrainingJobRequest(job_id=job_id))
    await watch_until_done(h.stub, job_id, timeout=90)
    done = (await h.stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job_id))).job
    assert done.status.state == common_pb2.JOB_STATE_CANCELLED
    assert asyncio.get_running_loop().time() - asked < 60
    assert done.result.trials_complete >= 1 and done.result.model_bundle.uri
    trials = await h.stub.ListTrials(pb.ListTrialsRequest(job_id=job_id))
    assert any(t.state == pb.TRIAL_STATE_COMPLETE for t in trials.trials)
    # the kept trials' single-row cost on serving's compiled path
    assert any(t.row_latency.ToNanoseconds() > 0 for t in trials.trials)


async def test_refit_full_version_beside_the_fold_bagged_model(trainer_harness):
    """Both versions of the final model are reported with their estimates and measured
    costs; the bundle holds the fold-bagged model and, beside it, the refit-full one."""
    h = trainer_harness
    frame = breast_cancer()
    artifact = await asyncio.to_thread(h.upload, "uploads/bc-refit.parquet", frame)
    spec = pb.TrainingJobSpec(
        dataset_artifact=artifact,
        target_column="target",
        budget=pb.Budget(max_trials=4),
        automl=pb.AutoMlSpec(
            strategy=pb.SEARCH_STRATEGY_RANDOM,
            folds=3,
            validation=pb.VALIDATION_METHOD_KFOLD,
            search_space=pb.SearchSpaceOptions(
                model_families=[pb.MODEL_FAMILY_RANDOM_FOREST, pb.MODEL_FAMILY_LINEAR]
            ),
        ),
        seed=0,
    )
    job = (await h.stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=spec))).job
    await watch_until_done(h.stub, job.status.job_id, timeout=400)
    done = (await h.stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job.status.job_id))).job
    assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message
    result = done.result
    versions = {v.name: v for v in result.model_versions}
    assert set(versions) == {"fold_bag", "refit_full"}
    for v in versions.values():
        assert v.score > 0.9 and v.models >= 1 and v.description
        assert v.row_latency.ToNanoseconds() > 0 and v.batch_rows_per_s > 0
    # every member was refit (no wall budget): the same out-of-fold estimate, a k-th of the
    # models per row
    assert versions["refit_full"].score == pytest.approx(versions["fold_bag"].score)
    assert versions["fold_bag"].models == 3 * versions["refit_full"].models
    bundle = await asyncio.to_thread(
        load_bundle,
        h.service.rt.artifacts,
        h.service.rt.artifacts.key_for_uri(result.model_bundle.uri),
        trust=TEST_TRUST,
    )
    assert bundle.model_variant["name"] == "fold_bag"
    assert bundle.variants["refit_full"]["score"] == pytest.approx(versions["refit_full"].score)
    X = frame.drop(columns=["target"]).head(50)
    bagged = bundle.predictor.predict_proba(X)
    refit = bundle.variant_predictor("refit_full").predict_proba(X)
    assert refit.shape == bagged.shape == (50, 2)
    assert not np.allclose(refit, bagged)  # two different fitted versions
    assert ((refit[:, 1] > 0.5) == frame["target"].head(50).astype(bool)).mean() > 0.9
    # the leaderboard shows each completed trial's measured costs on the fast path
    board = await h.stub.GetLeaderboard(pb.GetLeaderboardRequest(job_id=job.status.job_id))
    complete = [e for e in board.entries if e.state == pb.TRIAL_STATE_COMPLETE]
    assert complete and all(
        e.row_latency.ToNanoseconds() > 0 and e.batch_rows_per_s > 0 for e in complete
    )
