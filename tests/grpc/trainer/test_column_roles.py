"""Column roles through the real trainer service: a table with an ISO timestamp string, free
text and an id trains, the report lists every column's role, an override is honoured, and
overrides naming a missing column or an unknown role are refused at submission."""

from __future__ import annotations

import asyncio

import grpc
import pandas as pd
import pytest

from atlas.common.v1 import common_pb2
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.bundles import load_bundle
from tests.support.signing import TEST_TRUST
from tests.unit.trainer.test_column_roles import _signal_frame

from .test_training_jobs import spec_for, watch_until_done

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]


async def test_roles_are_inferred_reported_and_overridable(trainer_harness):
    h = trainer_harness
    X, y = _signal_frame(300)
    frame = X.assign(label=y, shop_lat=40.7, shop_lon=-74.0)  # constant: dropped as before
    artifact = await asyncio.to_thread(h.upload, "uploads/tickets.parquet", frame)
    for roles, reason, named in (
        ({"created_at": "datetime"}, "UNKNOWN_COLUMN", "created_at"),
        ({"created": "timestamp"}, "UNKNOWN_ROLE", "timestamp"),
        ({"label": "text"}, "UNKNOWN_COLUMN", "label"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            bad = spec_for(artifact, target="label", column_roles=roles)
            await h.stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=bad))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert named in err.value.details() and reason in str(err.value.trailing_metadata())
    spec = spec_for(artifact, target="label", seconds=30, column_roles={"noise": "identifier"})
    job = (await h.stub.SubmitTrainingJob(pb.SubmitTrainingJobRequest(spec=spec))).job
    job_id = job.status.job_id
    await watch_until_done(h.stub, job_id)
    done = (await h.stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job_id))).job
    assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message
    assert done.result.best.score > 0.8  # the hour and a word carry the label
    report = (await h.stub.GetTrainingReport(pb.GetTrainingReportRequest(job_id=job_id))).report
    roles = {r.column: r for r in report.column_roles}
    assert [r.column for r in report.column_roles] == [c for c in frame.columns if c != "label"]
    assert roles["created"].role == "datetime" and "ISO8601" in roles["created"].detail
    assert "created.hour_sin" in roles["created"].features
    assert roles["body"].role == "text" and "body.words" in roles["body"].features
    assert roles["ticket"].role == "identifier" and not roles["ticket"].features
    assert roles["noise"].overridden and roles["noise"].role == "identifier"
    assert not roles["created"].overridden
    assert report.dropped_columns["ticket"] == "id_like"
    assert report.dropped_columns["shop_lat"] == "constant"
    assert any("dropped column 'ticket': id_like" in w for w in report.warnings)
    assert any("dropped column 'noise': identifier" in w for w in report.warnings)
    # every trial that ran names the roles step (a loaded host may complete none in time)
    trials = (await h.stub.ListTrials(pb.ListTrialsRequest(job_id=job_id))).trials
    ran = [t.pipeline for t in trials if t.pipeline]
    assert ran and all(p.startswith("roles(datetime:1,text:1,identifier:2) > ") for p in ran), ran
    bundle = await asyncio.to_thread(
        load_bundle,
        h.service.rt.artifacts,
        h.service.rt.artifacts.key_for_uri(done.result.model_bundle.uri),
        trust=TEST_TRUST,
    )
    raw = pd.DataFrame(
        {
            "created": ["2022-02-01T03:00:00", "2022-02-01T15:00:00"],
            "body": ["the fox is urgent", "a lazy dog"],
            "ticket": ["T99999", "T99998"],
            "noise": [0.0, 0.0],
            "shop_lat": [40.7, 40.7],
            "shop_lon": [-74.0, -74.0],
        }
    )
    assert bundle.predictor.predict(raw).tolist()[0] == "yes"
    explained = await h.stub.ExplainPredictions(
        pb.ExplainPredictionsRequest(
            job_id=job_id,
            rows=[
                pb.FeatureRow(
                    values={
                        c: common_pb2.Value(string_value=v)
                        if isinstance(v, str)
                        else common_pb2.Value(double_value=float(v))
                        for c, v in raw.iloc[0].items()
                    }
                )
            ],
        )
    )
    assert len(explained.rows) == 1 and explained.rows[0].contributions
