"""Bad cases from serving to labeling and their human labels back as ground truth, with a real
serving service, a real labeling service and SeaweedFS: selection by each reason checked
against the prediction index, reasons kept on the items, reruns and retries adding nothing
twice, labeling down during a job, exports attaching labels once, and bad input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pandas as pd
import pytest
from sqlalchemy import select
from xgboost import XGBClassifier

from atlas.common.v1 import common_pb2
from atlas.labeling.v1 import labeling_service_pb2 as lpb
from atlas.labeling.v1 import labeling_service_pb2_grpc as lpb_grpc
from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.cli import main
from atlas_core.config import S3Settings
from atlas_core.rpc import AtlasServer, ClientSettings, connect, create_server, error_from_rpc
from atlas_labeling.service import LabelingService
from atlas_labeling.servicer import labeling_service_def
from atlas_serving.config import ServingSettings
from atlas_serving.tables import ground_truth, predictions
from tests.grpc.labeling.conftest import TOKEN as LABELING_TOKEN
from tests.grpc.labeling.conftest import labeling_settings
from tests.grpc.labeling.test_labeling_jobs import succeeded
from tests.support.processes import free_port

from .conftest import (
    TOKEN,
    ServingHarness,
    breast_cancer,
    row,
    serving_settings,
    start_harness,
    stop_harness,
    write_model,
)

R = pb.BadCaseReason
TERMINAL = {common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED}
BATCH_ROWS = 60
LABELED_ROWS = 30  # rows of the batch given ground truth up front
DRIFTED = 3


@dataclass
class Labeling:
    server: AtlasServer
    service: LabelingService
    stub: lpb_grpc.LabelingServiceStub
    channel: grpc.aio.Channel

    async def stop(self) -> None:
        await self.channel.close()
        await self.server.stop(0)


async def start_labeling(tmp: Path, s3: S3Settings, port: int, serving_port: int) -> Labeling:
    settings = labeling_settings(
        tmp, s3, serving_target=f"127.0.0.1:{serving_port}", serving_token=TOKEN
    )
    settings = settings.model_copy(
        update={"server": settings.server.model_copy(update={"port": port})}
    )
    service = LabelingService.open(settings)
    service.start()
    server = create_server(settings.server, [labeling_service_def(service)])
    await server.start()
    channel = connect(ClientSettings(target=server.address, token=LABELING_TOKEN))
    return Labeling(server, service, lpb_grpc.LabelingServiceStub(channel), channel)


def serving_with_labeling(
    tmp: Path, s3: S3Settings, port: int, labeling_port: int
) -> ServingSettings:
    settings = serving_settings(tmp / "serving", s3, "")
    return settings.model_copy(
        update={
            "server": settings.server.model_copy(update={"port": port}),
            "labeling": ClientSettings(target=f"127.0.0.1:{labeling_port}", token=LABELING_TOKEN),
            "labeling_retry_seconds": 60.0,
        }
    )


@dataclass
class Loop:
    serving: ServingHarness
    labeling: Labeling
    labeling_port: int
    prediction_id: str  # the batch's
    batch: pb.PredictBatchResponse
    singles: list[pb.PredictResponse]  # the drifted rows
    y: pd.Series


@asynccontextmanager
async def loop_services(tmp: Path, s3: S3Settings) -> AsyncIterator[Loop]:
    """Serving (a weak live model, a strong shadow, capture and the prediction index) and
    labeling calling each other; traffic captured and indexed; ground truth for some rows."""
    serving_port, labeling_port = free_port(), free_port()
    serving = await start_harness(serving_with_labeling(tmp, s3, serving_port, labeling_port))
    labeling = await start_labeling(tmp / "labeling", s3, labeling_port, serving_port)
    try:
        X, y = breast_cancer()
        weak = XGBClassifier(n_estimators=2, max_depth=1, n_jobs=1).fit(X, y)
        await serving.register("bc", write_model(s3, "models/bc/v1.tar", model=weak))
        await serving.register("bc", write_model(s3, "models/bc/v2.tar"))
        spec = pb.EndpointSpec(
            name="bc",
            variants=[
                pb.Variant(
                    name="blue",
                    model=common_pb2.ModelRef(model_name="bc", version=1),
                    role=pb.VARIANT_ROLE_LIVE,
                    weight=100,
                ),
                pb.Variant(
                    name="green",
                    model=common_pb2.ModelRef(model_name="bc", version=2),
                    role=pb.VARIANT_ROLE_SHADOW,
                ),
            ],
        )
        spec.capture.enabled, spec.capture.sample_fraction = True, 1.0
        spec.capture.flush_rows = 10
        spec.capture.flush_interval.FromMilliseconds(300)
        spec.quality.enabled = True
        await serving.stub.CreateEndpoint(pb.CreateEndpointRequest(spec=spec))
        rows = X.iloc[:BATCH_ROWS].to_dict("records")
        batch = await serving.stub.PredictBatch(
            pb.PredictBatchRequest(endpoint_name="bc", rows=[row(r) for r in rows])
        )
        singles = []
        for i in range(DRIFTED):  # far outside the training range of mean_radius
            far = {**X.iloc[100 + i].to_dict(), "mean_radius": 1e4 + i}
            singles.append(
                await serving.stub.Predict(pb.PredictRequest(endpoint_name="bc", row=row(far)))
            )
        await _settle(serving)
        truth = [
            pb.GroundTruth(
                prediction=pb.PredictionTarget(prediction_id=batch.prediction_id, row=i),
                outcome=common_pb2.Value(int64_value=int(y.iloc[i])),
            )
            for i in range(LABELED_ROWS)
        ]
        await serving.stub.AttachGroundTruth(
            pb.AttachGroundTruthRequest(endpoint_name="bc", items=truth)
        )
        loop = Loop(serving, labeling, labeling_port, batch.prediction_id, batch, singles, y)
        yield loop
        # the test may have replaced either service (a restart): stop what runs now
        serving, labeling = loop.serving, loop.labeling
    finally:
        await labeling.stop()
        await stop_harness(serving)


async def _settle(serving: ServingHarness) -> None:
    """Until every row is captured and the shadow's answers are indexed."""
    deadline = asyncio.get_running_loop().time() + 30
    engine = serving.service.engine
    while True:
        files = (
            await serving.stub.ListCaptureFiles(pb.ListCaptureFilesRequest(endpoint_name="bc"))
        ).files
        with engine.connect() as conn:
            shadows = conn.execute(select(predictions.c.row).where(predictions.c.shadow)).all()
        rows = BATCH_ROWS + DRIFTED
        if sum(f.row_count for f in files) >= rows and len(shadows) == rows:
            return
        assert asyncio.get_running_loop().time() < deadline, "capture or index never settled"
        await asyncio.sleep(0.2)


def expected(loop: Loop, reason: int, max_confidence: float = 0.8) -> set[tuple[str, int]]:
    """The bad cases of one reason, from the responses and the prediction index."""
    if reason == R.BAD_CASE_REASON_LOW_CONFIDENCE:
        batch = loop.batch.predictions
        return {
            (loop.prediction_id, i) for i, a in enumerate(batch) if a.value < max_confidence
        } | {(s.prediction_id, 0) for s in loop.singles if s.prediction.value < max_confidence}
    p, g = predictions.c, ground_truth.c
    with loop.serving.service.engine.connect() as conn:
        index = conn.execute(select(p.prediction_id, p.row, p.shadow, p.label)).all()
        outcomes = conn.execute(select(g.prediction_id, g.row, g.outcome)).all()
    live = {(r.prediction_id, r.row): r.label for r in index if not r.shadow}
    if reason == R.BAD_CASE_REASON_SHADOW_DISAGREEMENT:
        return {
            (r.prediction_id, r.row)
            for r in index
            if r.shadow and r.label != live[(r.prediction_id, r.row)]
        }
    assert reason == R.BAD_CASE_REASON_WRONG_BY_GROUND_TRUTH
    return {
        (o.prediction_id, o.row) for o in outcomes if o.outcome != live[(o.prediction_id, o.row)]
    }


async def project(loop: Loop, name: str, labels: tuple[str, ...] = ("0", "1")) -> str:
    spec = lpb.ProjectSpec(
        name=name,
        task_type=lpb.TASK_TYPE_TEXT_CLASSIFICATION,
        overlap=1,
        labels=[lpb.LabelDefinition(name=n) for n in labels],
    )
    resp = await loop.labeling.stub.CreateProject(lpb.CreateProjectRequest(spec=spec))
    return resp.project.project_id


def selection(project_id: str, *reasons: int, **kw: float) -> pb.MonitoringSpec:
    spec = pb.MonitoringSpec(
        bad_cases=pb.BadCaseSelection(
            reasons=list(reasons), labeling_project_id=project_id, batch_size=7, **kw
        )
    )
    spec.endpoint.endpoint_name = "bc"
    return spec


async def run(loop: Loop, spec: pb.MonitoringSpec, timeout: float = 120) -> pb.MonitoringJob:
    stub = loop.serving.stub
    job = (await stub.SubmitMonitoringJob(pb.SubmitMonitoringJobRequest(spec=spec))).job
    return await finished(loop, job.status.job_id, timeout)


async def finished(loop: Loop, job_id: str, timeout: float = 120) -> pb.MonitoringJob:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        job = (
            await loop.serving.stub.GetMonitoringJob(pb.GetMonitoringJobRequest(job_id=job_id))
        ).job
        if job.status.state in TERMINAL:
            assert job.status.state == common_pb2.JOB_STATE_SUCCEEDED, job.status.error
            return job
        assert asyncio.get_running_loop().time() < deadline, job
        await asyncio.sleep(0.2)


async def items_of(loop: Loop, project_id: str) -> list[lpb.Item]:
    resp = await loop.labeling.stub.ListItems(
        lpb.ListItemsRequest(
            project_id=project_id,
            omit_annotations=True,
            page=common_pb2.PageRequest(page_size=1000),
        )
    )
    return list(resp.items)


def keys(items: list[lpb.Item]) -> set[tuple[str, int]]:
    return {(i.served_prediction.prediction_id, i.served_prediction.row) for i in items}


@pytest.mark.slow
async def test_bad_cases_by_each_reason_reach_labeling_with_their_reasons(
    tmp_path: Path, s3_settings: S3Settings
) -> None:
    X = breast_cancer()[0]
    async with loop_services(tmp_path, s3_settings) as loop:
        for reason in (
            R.BAD_CASE_REASON_LOW_CONFIDENCE,
            R.BAD_CASE_REASON_SHADOW_DISAGREEMENT,
            R.BAD_CASE_REASON_WRONG_BY_GROUND_TRUTH,
        ):
            want = expected(loop, reason)
            assert want, f"the traffic has no {R.Name(reason)} case"
            pid = await project(loop, R.Name(reason).lower().replace("_", "-"))
            job = await run(loop, selection(pid, reason, max_confidence=0.8))
            report = job.bad_case_report
            items = await items_of(loop, pid)
            assert keys(items) == want
            assert report.selected == report.items_added == len(want)
            assert dict(report.reason_counts) == {
                R.Name(reason).removeprefix("BAD_CASE_REASON_"): len(want)
            }
            for item in items:
                served = item.served_prediction
                assert served.endpoint_name == "bc" and served.model_version == "bc:1"
                assert list(served.reasons) == [lpb.BadCaseReason.Value(R.Name(reason))]
                assert item.external_id == f"serving:{served.prediction_id}:{served.row}"
                if served.prediction_id == loop.prediction_id:  # the features came along
                    assert item.metadata["mean_radius"] == pytest.approx(
                        X.iloc[served.row]["mean_radius"]
                    )
        # drift: exactly the rows outside the training range, none of the batch
        pid = await project(loop, "drift")
        job = await run(loop, selection(pid, R.BAD_CASE_REASON_HIGH_DRIFT, min_drift_score=1.0))
        items = await items_of(loop, pid)
        assert job.bad_case_report.rows_scanned == BATCH_ROWS + DRIFTED
        assert len(items) == DRIFTED and all(
            i.served_prediction.prediction_id != loop.prediction_id
            and "mean_radius" in i.served_prediction.detail
            for i in items
        )
        # all reasons at once: the union, each item with all of its reasons; a rerun adds
        # nothing; the correction queue holds each case once
        everything = [
            R.BAD_CASE_REASON_LOW_CONFIDENCE,
            R.BAD_CASE_REASON_HIGH_DRIFT,
            R.BAD_CASE_REASON_SHADOW_DISAGREEMENT,
            R.BAD_CASE_REASON_WRONG_BY_GROUND_TRUTH,
        ]
        pid = await project(loop, "all")
        spec = selection(pid, *everything, max_confidence=0.8, min_drift_score=1.0)
        first = (await run(loop, spec)).bad_case_report
        items = await items_of(loop, pid)
        union = (
            expected(loop, R.BAD_CASE_REASON_LOW_CONFIDENCE)
            | expected(loop, R.BAD_CASE_REASON_SHADOW_DISAGREEMENT)
            | expected(loop, R.BAD_CASE_REASON_WRONG_BY_GROUND_TRUTH)
        )
        drifted = {(s.prediction_id, 0) for s in loop.singles}
        assert keys(items) == union | drifted
        assert len(items) == len(union | drifted) == first.items_added
        both = expected(loop, R.BAD_CASE_REASON_SHADOW_DISAGREEMENT) & expected(
            loop, R.BAD_CASE_REASON_WRONG_BY_GROUND_TRUTH
        )
        for item in items:
            k = (item.served_prediction.prediction_id, item.served_prediction.row)
            if k in both:
                assert {
                    lpb.BAD_CASE_REASON_SHADOW_DISAGREEMENT,
                    lpb.BAD_CASE_REASON_WRONG_BY_GROUND_TRUTH,
                } <= set(item.served_prediction.reasons)
        again = (await run(loop, spec)).bad_case_report
        assert (again.items_added, again.items_skipped) == (0, first.items_added)
        assert len(await items_of(loop, pid)) == len(items)
        queue = await loop.labeling.stub.ListCorrectionQueue(
            lpb.ListCorrectionQueueRequest(
                project_id=pid,
                reasons=[lpb.CORRECTION_REASON_BAD_CASE],
                page=common_pb2.PageRequest(page_size=1000),
            )
        )
        assert len(queue.entries) == len(items)


@pytest.mark.slow
async def test_labeling_down_during_the_job_is_retried_without_duplicates(
    tmp_path: Path, s3_settings: S3Settings
) -> None:
    async with loop_services(tmp_path, s3_settings) as loop:
        pid = await project(loop, "outage")
        want = expected(loop, R.BAD_CASE_REASON_LOW_CONFIDENCE, 0.9)
        await loop.labeling.stop()
        spec = selection(pid, R.BAD_CASE_REASON_LOW_CONFIDENCE, max_confidence=0.9)
        stub = loop.serving.stub
        job = (await stub.SubmitMonitoringJob(pb.SubmitMonitoringJobRequest(spec=spec))).job
        deadline = asyncio.get_running_loop().time() + 60
        while "unreachable" not in job.status.progress.message:
            assert job.status.state not in TERMINAL, job.status
            assert asyncio.get_running_loop().time() < deadline, "the job never retried"
            await asyncio.sleep(0.1)
            job = (
                await stub.GetMonitoringJob(pb.GetMonitoringJobRequest(job_id=job.status.job_id))
            ).job
        loop.labeling = await start_labeling(
            tmp_path / "labeling", s3_settings, loop.labeling_port, loop.serving.server.port
        )
        report = (await finished(loop, job.status.job_id)).bad_case_report
        assert report.labeling_retries > 0
        items = await items_of(loop, pid)
        assert keys(items) == want and report.items_added == len(want) == len(items)


@pytest.mark.slow
async def test_a_bad_case_job_resumes_after_a_serving_restart(
    tmp_path: Path, s3_settings: S3Settings
) -> None:
    async with loop_services(tmp_path, s3_settings) as loop:
        pid = await project(loop, "restart")
        want = expected(loop, R.BAD_CASE_REASON_LOW_CONFIDENCE, 0.9)
        # labeling down: the job selects, checkpoints, then waits for labeling
        await loop.labeling.stop()
        spec = selection(pid, R.BAD_CASE_REASON_LOW_CONFIDENCE, max_confidence=0.9)
        stub = loop.serving.stub
        job_id = (
            await stub.SubmitMonitoringJob(pb.SubmitMonitoringJobRequest(spec=spec))
        ).job.status.job_id
        deadline = asyncio.get_running_loop().time() + 60
        while (
            "unreachable"
            not in (
                await stub.GetMonitoringJob(pb.GetMonitoringJobRequest(job_id=job_id))
            ).job.status.progress.message
        ):
            assert asyncio.get_running_loop().time() < deadline, "the job never retried"
            await asyncio.sleep(0.1)
        await stop_harness(loop.serving)  # the job's process goes with the service
        loop.labeling = await start_labeling(
            tmp_path / "labeling", s3_settings, loop.labeling_port, loop.serving.server.port
        )
        loop.serving = await start_harness(loop.serving.settings)
        job = await finished(loop, job_id)
        assert job.status.attempt == 2 and job.status.resumable
        assert job.bad_case_report.items_added == len(want)
        assert keys(await items_of(loop, pid)) == want


async def label_all(loop: Loop, project_id: str, answer: dict[tuple[str, int], str]) -> int:
    """One human label per leased item (overlap 1: the item is decided); returns the count."""
    done = 0
    while True:
        leased = (
            await loop.labeling.stub.RequestAssignments(
                lpb.RequestAssignmentsRequest(project_id=project_id, annotator="ann", count=50)
            )
        ).assignments
        if not leased:
            return done
        for a in leased:
            served = a.item.served_prediction
            await loop.labeling.stub.SubmitAnnotation(
                lpb.SubmitAnnotationRequest(
                    assignment_id=a.assignment_id,
                    annotator="ann",
                    value=lpb.AnnotationValue(
                        classes=lpb.ClassLabels(labels=[answer[(served.prediction_id, served.row)]])
                    ),
                )
            )
            done += 1


async def labeled(loop: Loop) -> int:
    resp = await loop.serving.stub.GetModelQuality(
        pb.GetModelQualityRequest(endpoint_name="bc", variant="blue")
    )
    return sum(v.labeled for v in resp.variants if not v.shadow)


async def export(loop: Loop, project_id: str) -> lpb.Export:
    job = (
        await loop.labeling.stub.SubmitExportJob(
            lpb.SubmitExportJobRequest(spec=lpb.ExportSpec(project_id=project_id))
        )
    ).job
    return (await succeeded(loop.labeling.stub, job)).export_result


@pytest.mark.slow
async def test_exported_human_labels_become_ground_truth_once(
    tmp_path: Path, s3_settings: S3Settings
) -> None:
    async with loop_services(tmp_path, s3_settings) as loop:
        # low-confidence rows, some already given ground truth, and one "unsure" label
        pid = await project(loop, "feedback", labels=("0", "1", "unsure"))
        spec = selection(pid, R.BAD_CASE_REASON_LOW_CONFIDENCE, max_confidence=0.9)
        report = (await run(loop, spec)).bad_case_report
        cases = sorted(expected(loop, R.BAD_CASE_REASON_LOW_CONFIDENCE, 0.9))
        covered = {(loop.prediction_id, i) for i in range(LABELED_ROWS)}
        fresh = [c for c in cases if c not in covered]
        assert report.items_added == len(cases) and len(fresh) >= 2
        # the true class of batch rows (the drifted rows' features were made up: any class)
        answer = {c: str(int(loop.y.iloc[c[1]])) for c in cases}
        answer[fresh[0]] = "unsure"  # a class the model does not have
        before = await labeled(loop)
        assert await label_all(loop, pid, answer) == len(cases)

        first = await export(loop, pid)
        gt = first.ground_truth
        assert (gt.sent, gt.accepted, gt.duplicate, gt.rejected) == (
            len(cases),
            len(fresh) - 1,
            len(cases) - len(fresh),  # these had this outcome already
            1,
        )
        assert dict(gt.rejected_reasons) == {"UNKNOWN_CLASS": 1}
        (rejection,) = gt.rejections
        assert (rejection.prediction_id, rejection.row, rejection.label) == (*fresh[0], "unsure")
        assert await labeled(loop) == before + len(fresh) - 1
        # a re-export while serving is down: retried until it is back, counting nothing again
        await stop_harness(loop.serving)
        stub = loop.labeling.stub
        job = (
            await stub.SubmitExportJob(
                lpb.SubmitExportJobRequest(spec=lpb.ExportSpec(project_id=pid))
            )
        ).job
        deadline = asyncio.get_running_loop().time() + 60
        while "serving unreachable" not in job.status.progress.message:
            assert job.status.state not in TERMINAL, job.status
            assert asyncio.get_running_loop().time() < deadline, "the export never retried"
            await asyncio.sleep(0.1)
            job = (
                await stub.GetLabelingJob(lpb.GetLabelingJobRequest(job_id=job.status.job_id))
            ).job
        loop.serving = await start_harness(loop.serving.settings)
        second = (await succeeded(stub, job)).export_result.ground_truth
        assert (second.accepted, second.duplicate, second.rejected) == (0, len(cases) - 1, 1)
        assert await labeled(loop) == before + len(fresh) - 1


@pytest.mark.slow
async def test_cli_starts_a_bad_case_job_and_shows_its_progress(
    tmp_path: Path, s3_settings: S3Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    async with loop_services(tmp_path, s3_settings) as loop:
        pid = await project(loop, "cli")
        conn = ["--address", loop.serving.server.address, "--token", TOKEN]
        argv = ["deploy", "bad-cases", "bc", "--project", pid, "--reason", "wrong", *conn]
        assert await asyncio.to_thread(main, [*argv, "--reason", "disagreement"]) == 0
        out = capsys.readouterr().out
        want = expected(loop, R.BAD_CASE_REASON_WRONG_BY_GROUND_TRUTH) | expected(
            loop, R.BAD_CASE_REASON_SHADOW_DISAGREEMENT
        )
        # progress lines are sampled while the job runs (a quick job may show none of them)
        assert "bad-case job" in out and "submitted" in out
        assert f"{len(want)} added to {pid}, 0 already there" in out
        assert keys(await items_of(loop, pid)) == want
        assert await asyncio.to_thread(main, [*argv, "--since", "1h"]) == 0
        assert f"0 added to {pid}" in capsys.readouterr().out
        unknown = [*argv[:3], "--project", "prj-nope", *argv[5:]]
        assert await asyncio.to_thread(main, unknown) != 0
        assert "no project prj-nope" in capsys.readouterr().err


async def test_bad_case_jobs_refuse_bad_input(tmp_path: Path, s3_settings: S3Settings) -> None:
    serving_port, labeling_port = free_port(), free_port()
    serving = await start_harness(
        serving_with_labeling(tmp_path, s3_settings, serving_port, labeling_port)
    )
    labeling = await start_labeling(tmp_path / "labeling", s3_settings, labeling_port, serving_port)
    try:
        await serving.register("bc", write_model(s3_settings, "models/bc/v1.tar"))
        spec = pb.EndpointSpec(
            name="bc",
            variants=[
                pb.Variant(
                    name="blue",
                    model=common_pb2.ModelRef(model_name="bc", version=1),
                    role=pb.VARIANT_ROLE_LIVE,
                    weight=100,
                )
            ],
        )
        spec.capture.enabled, spec.capture.sample_fraction = True, 1.0
        await serving.stub.CreateEndpoint(pb.CreateEndpointRequest(spec=spec))
        created = await labeling.stub.CreateProject(
            lpb.CreateProjectRequest(
                spec=lpb.ProjectSpec(
                    name="p",
                    task_type=lpb.TASK_TYPE_TEXT_CLASSIFICATION,
                    labels=[lpb.LabelDefinition(name="0")],
                )
            )
        )
        pid = created.project.project_id
        low = R.BAD_CASE_REASON_LOW_CONFIDENCE
        cases: list[tuple[pb.MonitoringSpec, grpc.StatusCode, str]] = []

        def case(code: grpc.StatusCode, reason: str, *reasons: int, **kw: object) -> None:
            s = pb.MonitoringSpec(bad_cases=pb.BadCaseSelection(reasons=list(reasons), **kw))
            s.endpoint.endpoint_name = "bc"
            cases.append((s, code, reason))

        invalid, missing = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
        case(invalid, "NO_REASONS", labeling_project_id=pid)
        case(invalid, "NO_REASONS", R.BAD_CASE_REASON_UNSPECIFIED, labeling_project_id=pid)
        case(invalid, "NO_REASONS", low, 99, labeling_project_id=pid)
        case(invalid, "PROJECT_REQUIRED", low)
        case(invalid, "BAD_THRESHOLD", low, labeling_project_id=pid, max_confidence=1.5)
        case(invalid, "BAD_THRESHOLD", low, labeling_project_id=pid, min_drift_score=-0.1)
        case(invalid, "BAD_THRESHOLD", low, labeling_project_id=pid, regression_tolerance=-1)
        case(invalid, "BAD_THRESHOLD", low, labeling_project_id=pid, batch_size=5000)
        case(missing, "LABELING_PROJECT_NOT_FOUND", low, labeling_project_id="prj-nope")
        case(
            grpc.StatusCode.FAILED_PRECONDITION,
            "QUALITY_DISABLED",
            R.BAD_CASE_REASON_WRONG_BY_GROUND_TRUTH,
            labeling_project_id=pid,
        )
        unknown = pb.MonitoringSpec(
            bad_cases=pb.BadCaseSelection(reasons=[low], labeling_project_id=pid)
        )
        unknown.endpoint.endpoint_name = "nope"
        cases.append((unknown, missing, "ENDPOINT_NOT_FOUND"))
        for s, code, reason in cases:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await serving.stub.SubmitMonitoringJob(pb.SubmitMonitoringJobRequest(spec=s))
            assert err.value.code() == code, (s, err.value.details())
            assert error_from_rpc(err.value).reason == reason, err.value.details()
        jobs = await serving.stub.ListMonitoringJobs(pb.ListMonitoringJobsRequest())
        assert not jobs.jobs  # nothing was queued
    finally:
        await labeling.stop()
        await stop_harness(serving)
