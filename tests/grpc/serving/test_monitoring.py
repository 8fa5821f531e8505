"""Data capture to Parquet, the drift monitor job (alerts via API and metrics), scheduled
monitoring, and batch prediction over a Parquet artifact."""

from __future__ import annotations

import asyncio
import io
import time

import grpc
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.protobuf import duration_pb2

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as pb

from .conftest import ServingHarness, live, row, write_model

DONE = (common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_CANCELLED)


async def _capturing_endpoint(h: ServingHarness) -> None:
    await h.register("bc", write_model(h.settings.s3, "models/bc/v1.tar"))
    spec = pb.EndpointSpec(name="bc", variants=[live("blue", "bc", 1)])
    spec.capture.enabled, spec.capture.sample_fraction, spec.capture.flush_rows = True, 1.0, 50
    await h.stub.CreateEndpoint(pb.CreateEndpointRequest(spec=spec))


async def _wait_job(h: ServingHarness, job_id: str, timeout: float = 60) -> pb.MonitoringJob:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = (await h.stub.GetMonitoringJob(pb.GetMonitoringJobRequest(job_id=job_id))).job
        if job.status.state in DONE:
            return job
        await asyncio.sleep(0.2)
    raise AssertionError("monitoring job did not finish")


async def _captured_rows(h: ServingHarness, minimum: int = 1, timeout: float = 15) -> int:
    """Rows captured so far, waiting (capture is batched off the request path) until at
    least ``minimum`` are published or the timeout passes."""
    end = time.monotonic() + timeout
    rows = 0
    while time.monotonic() < end:
        files = (
            await h.stub.ListCaptureFiles(pb.ListCaptureFilesRequest(endpoint_name="bc"))
        ).files
        rows = sum(f.row_count for f in files)
        if rows >= minimum:
            return rows
        await asyncio.sleep(0.2)
    return rows


@pytest.mark.slow
async def test_drifted_traffic_raises_an_alert(
    serving: ServingHarness, features: pd.DataFrame
) -> None:
    await _capturing_endpoint(serving)
    shifted = features.iloc[:200] * 3.0  # a unit change upstream: every feature drifts
    for record in shifted.to_dict("records"):
        await serving.stub.Predict(pb.PredictRequest(endpoint_name="bc", row=row(record)))
    assert await _captured_rows(serving, minimum=150) >= 150
    files = (
        await serving.stub.ListCaptureFiles(pb.ListCaptureFilesRequest(endpoint_name="bc"))
    ).files
    frame = pq.read_table(
        io.BytesIO(
            serving.service.store.get_bytes(
                serving.service.store.key_for_uri(files[0].artifact.uri)
            )
        )
    ).to_pandas()
    assert {"f_mean_radius", "label", "prediction_id", "variant", "time_us"} <= set(frame)

    spec = pb.MonitoringSpec(endpoint=common_pb2.EndpointRef(endpoint_name="bc"))
    job = (await serving.stub.SubmitMonitoringJob(pb.SubmitMonitoringJobRequest(spec=spec))).job
    done = await _wait_job(serving, job.status.job_id)
    assert done.status.state == common_pb2.JOB_STATE_SUCCEEDED, done.status.error.message
    report = done.report
    assert report.drift_detected and report.rows >= 150
    assert report.features[0].drifted and report.features[0].psi > 0.2
    alerts = (await serving.stub.ListAlerts(pb.ListAlertsRequest(endpoint_name="bc"))).alerts
    drift = [a for a in alerts if a.kind == pb.ALERT_KIND_FEATURE_DRIFT]
    assert drift and drift[0].source_id == job.status.job_id and drift[0].feature
    # the same shifted rows, judged with a minimum sample they do not reach: no verdict, no alert
    spec.min_rows_per_feature = report.rows + 1
    small = (await serving.stub.SubmitMonitoringJob(pb.SubmitMonitoringJobRequest(spec=spec))).job
    small = await _wait_job(serving, small.status.job_id)
    assert not small.report.drift_detected
    assert all(f.not_enough_data and not f.drifted for f in small.report.features)
    assert small.report.features[0].rows == report.rows
    after = (await serving.stub.ListAlerts(pb.ListAlertsRequest(endpoint_name="bc"))).alerts
    assert not [a for a in after if a.source_id == small.status.job_id]
    spec.min_rows_per_feature = -1
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await serving.stub.SubmitMonitoringJob(pb.SubmitMonitoringJobRequest(spec=spec))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    spec.min_rows_per_feature = 0
    registry = serving.server.metrics.registry

    def gauges() -> tuple[float | None, float | None]:
        # Both gauges are refreshed by independent periodic tasks: wait for each.
        return (
            registry.get_sample_value(
                "atlas_serving_open_alerts", {"endpoint": "bc", "kind": "ALERT_KIND_FEATURE_DRIFT"}
            ),
            registry.get_sample_value(
                "atlas_serving_feature_psi", {"endpoint": "bc", "feature": drift[0].feature}
            ),
        )

    end = time.monotonic() + 15
    while time.monotonic() < end and None in gauges():
        await asyncio.sleep(0.2)
    open_alerts, psi = gauges()
    assert open_alerts and psi is not None and psi > 0.2
    acked = (
        await serving.stub.AcknowledgeAlert(pb.AcknowledgeAlertRequest(alert_id=drift[0].alert_id))
    ).alert
    assert acked.acknowledged


@pytest.mark.slow
async def test_scheduled_monitoring_runs_again(
    serving: ServingHarness, features: pd.DataFrame
) -> None:
    await _capturing_endpoint(serving)
    for record in features.iloc[:60].to_dict("records"):
        await serving.stub.Predict(pb.PredictRequest(endpoint_name="bc", row=row(record)))
    assert await _captured_rows(serving)
    spec = pb.MonitoringSpec(
        endpoint=common_pb2.EndpointRef(endpoint_name="bc"),
        repeat_every=duration_pb2.Duration(seconds=1),
    )
    first = (await serving.stub.SubmitMonitoringJob(pb.SubmitMonitoringJobRequest(spec=spec))).job
    await _wait_job(serving, first.status.job_id)
    end = time.monotonic() + 30
    jobs: list[pb.MonitoringJob] = []
    while time.monotonic() < end and len(jobs) < 2:
        jobs = list(
            (
                await serving.stub.ListMonitoringJobs(
                    pb.ListMonitoringJobsRequest(endpoint_name="bc")
                )
            ).jobs
        )
        await asyncio.sleep(0.3)
    assert len(jobs) >= 2
    second = next(j for j in jobs if j.status.job_id != first.status.job_id)
    assert second.spec.HasField("start_time")  # continues where the first run stopped
    await _wait_job(serving, second.status.job_id)


async def test_batch_from_a_parquet_artifact(
    serving: ServingHarness, features: pd.DataFrame
) -> None:
    await serving.register("bc", write_model(serving.settings.s3, "models/bc/v1.tar"))
    await serving.stub.CreateEndpoint(
        pb.CreateEndpointRequest(spec=pb.EndpointSpec(name="bc", variants=[live("blue", "bc", 1)]))
    )
    store = serving.service.store
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(features, preserve_index=False), buf)
    ref = store.put_bytes("uploads/bc.parquet", buf.getvalue())
    resp = await serving.stub.PredictBatch(
        pb.PredictBatchRequest(
            endpoint_name="bc",
            input_artifact=common_pb2.ArtifactRef(uri=ref.uri),
            options=pb.PredictOptions(return_all_scores=True),
        )
    )
    assert resp.variant == "blue" and resp.output_artifact.uri.endswith(".parquet")
    out = pq.read_table(
        io.BytesIO(store.get_bytes(store.key_for_uri(resp.output_artifact.uri)))
    ).to_pandas()
    assert len(out) == len(features) and list(out["row"][:3]) == [0, 1, 2]
    assert {"label", "value", "score_0", "score_1", "model_version"} <= set(out)
    inline = await serving.stub.PredictBatch(
        pb.PredictBatchRequest(
            endpoint_name="bc", rows=[row(r) for r in features.iloc[:5].to_dict("records")]
        )
    )
    assert [p.label for p in inline.predictions] == list(out["label"][:5])

    bad = features.drop(columns=["mean_radius"]).iloc[:10]
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(bad, preserve_index=False), buf)
    ref = store.put_bytes("uploads/bad.parquet", buf.getvalue())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await serving.stub.PredictBatch(
            pb.PredictBatchRequest(
                endpoint_name="bc", input_artifact=common_pb2.ArtifactRef(uri=ref.uri)
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "mean_radius" in err.value.details() and "row 0" in err.value.details()
