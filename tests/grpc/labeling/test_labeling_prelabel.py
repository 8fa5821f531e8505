"""Pre-labeling through a real serving endpoint: suggestions with model version and score,
low-confidence items in the correction queue, bad answers counted and not stored, and a
suggestion never exported as a human label."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from atlas.labeling.v1 import labeling_service_pb2 as pb
from atlas.serving.v1 import serving_service_pb2 as serving_pb
from atlas_core.config import S3Settings
from tests.grpc.serving.conftest import TOKEN as SERVING_TOKEN
from tests.grpc.serving.conftest import (
    breast_cancer,
    live,
    row,
    serving_settings,
    start_harness,
    stop_harness,
    write_model,
)

from .conftest import running_labeling_service
from .test_labeling_jobs import succeeded, wait


async def test_prelabel_through_serving(tmp_path: Path, s3_settings: S3Settings) -> None:
    serving = await start_harness(serving_settings(tmp_path / "serving", s3_settings, ""))
    try:
        ref = write_model(serving.settings.s3, "models/bc/v1.tar")
        await serving.register("bc", ref)
        await serving.stub.CreateEndpoint(
            serving_pb.CreateEndpointRequest(
                spec=serving_pb.EndpointSpec(name="bc", variants=[live("blue", "bc", 1)])
            )
        )
        async with running_labeling_service(
            tmp_path / "labeling",
            s3_settings,
            serving_target=serving.server.address,
            serving_token=SERVING_TOKEN,
        ) as labeling:
            stub = labeling.stub
            labels = [pb.LabelDefinition(name="malignant"), pb.LabelDefinition(name="benign")]
            spec = pb.ProjectSpec(
                name="tumours", task_type=pb.TASK_TYPE_TEXT_CLASSIFICATION, labels=labels
            )
            pid = (await stub.CreateProject(pb.CreateProjectRequest(spec=spec))).project.project_id
            X, y = breast_cancer()
            new = []
            for i, features in enumerate(X.iloc[:40].to_dict("records")):
                item = pb.NewItem(content=pb.ItemContent(text=f"patient {i}"), entity_id=str(i))
                item.metadata.update(features)
                new.append(item)
            await stub.AddItems(pb.AddItemsRequest(project_id=pid, items=new))
            mapping = {"0": "malignant", "1": "benign"}
            job = (
                await stub.SubmitPrelabelJob(
                    pb.SubmitPrelabelJobRequest(
                        spec=pb.PrelabelSpec(
                            project_id=pid,
                            endpoint_name="bc",
                            label_mapping=mapping,
                            low_confidence_threshold=0.99,
                            batch_size=16,
                        )
                    )
                )
            ).job
            job = await succeeded(stub, job)
            result = job.item_result
            assert (result.items_processed, result.items_added, result.errors) == (40, 40, 0)
            items = (await stub.ListItems(pb.ListItemsRequest(project_id=pid))).items
            first = items[0]
            (suggestion,) = first.annotations
            assert suggestion.source == pb.ANNOTATION_SOURCE_MODEL
            assert suggestion.model.model_name == "bc" and suggestion.model.version == 1
            assert 0.5 <= suggestion.confidence <= 1.0
            assert suggestion.value.classes.labels[0] == mapping[str(int(y.iloc[0]))]
            assert first.model_version == "bc:1"
            # Re-running stores nothing twice (one suggestion per item and model version).
            job = (
                await stub.SubmitPrelabelJob(
                    pb.SubmitPrelabelJobRequest(
                        spec=pb.PrelabelSpec(
                            project_id=pid, endpoint_name="bc", label_mapping=mapping
                        )
                    )
                )
            ).job
            await succeeded(stub, job)
            again = (
                await stub.GetItem(pb.GetItemRequest(project_id=pid, item_id=first.item_id))
            ).item
            assert len(again.annotations) == 1
            queue = await stub.ListCorrectionQueue(pb.ListCorrectionQueueRequest(project_id=pid))
            assert queue.entries and len(queue.entries) == result.queued_for_correction
            assert all(e.reasons == [pb.CORRECTION_REASON_LOW_CONFIDENCE] for e in queue.entries)
            priorities = [e.priority for e in queue.entries]
            assert priorities == sorted(priorities, reverse=True)
            # Without the label mapping the model's "0"/"1" are not project labels: counted
            # as errors, nothing stored.
            other = (
                await stub.CreateProject(
                    pb.CreateProjectRequest(
                        spec=pb.ProjectSpec(
                            name="raw", task_type=pb.TASK_TYPE_TEXT_CLASSIFICATION, labels=labels
                        )
                    )
                )
            ).project.project_id
            await stub.AddItems(pb.AddItemsRequest(project_id=other, items=new[:5]))
            job = (
                await stub.SubmitPrelabelJob(
                    pb.SubmitPrelabelJobRequest(
                        spec=pb.PrelabelSpec(project_id=other, endpoint_name="bc")
                    )
                )
            ).job
            bad = (await succeeded(stub, job)).item_result
            assert (bad.items_added, bad.errors) == (0, 5)
            # A suggestion is never exported as a human label.
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.SubmitExportJob(
                    pb.SubmitExportJobRequest(spec=pb.ExportSpec(project_id=pid))
                )
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            # Auto-labeling: people label 35 items, then new items above the threshold at
            # which the model matches them get the model's label (source MODEL).
            leased = await stub.RequestAssignments(
                pb.RequestAssignmentsRequest(project_id=pid, annotator="ann", count=35)
            )
            truth = {str(i): mapping[str(int(y.iloc[i]))] for i in range(len(y))}
            for a in leased.assignments:
                await stub.SubmitAnnotation(
                    pb.SubmitAnnotationRequest(
                        assignment_id=a.assignment_id,
                        annotator="ann",
                        value=pb.AnnotationValue(
                            classes=pb.ClassLabels(labels=[truth[a.item.entity_id]])
                        ),
                    )
                )
            stats = await stub.GetAnnotatorStats(pb.GetAnnotatorStatsRequest(project_id=pid))
            (model,) = stats.suggestions
            assert model.model_version == "bc:1" and model.answered == 35
            assert model.accepted + model.edited == 35 and model.acceptance_rate > 0.8
            more = []
            for i, features in enumerate(X.iloc[100:130].to_dict("records"), start=100):
                item = pb.NewItem(content=pb.ItemContent(text=f"patient {i}"), entity_id=str(i))
                item.metadata.update(features)
                more.append(item)
            await stub.AddItems(pb.AddItemsRequest(project_id=pid, items=more))
            job = (
                await stub.SubmitPrelabelJob(
                    pb.SubmitPrelabelJobRequest(
                        spec=pb.PrelabelSpec(
                            project_id=pid,
                            endpoint_name="bc",
                            label_mapping=mapping,
                            auto_label_target_accuracy=0.9,
                        )
                    )
                )
            ).job
            auto = (await succeeded(stub, job)).item_result
            assert auto.auto_labeled > 0 and 0 < auto.auto_label_threshold <= 1
            done = await stub.ListItems(
                pb.ListItemsRequest(project_id=pid, statuses=[pb.ITEM_STATUS_DONE])
            )
            by_model = [i for i in done.items if i.final_source == pb.ANNOTATION_SOURCE_MODEL]
            assert len(by_model) == auto.auto_labeled
            assert all(i.prediction_score >= auto.auto_label_threshold for i in by_model)
            # Bad input.
            for spec_, code in [
                (pb.PrelabelSpec(project_id=pid, endpoint_name="nope"), grpc.StatusCode.NOT_FOUND),
                (
                    pb.PrelabelSpec(
                        project_id=pid, endpoint_name="bc", low_confidence_threshold=1.5
                    ),
                    grpc.StatusCode.INVALID_ARGUMENT,
                ),
                (pb.PrelabelSpec(project_id=pid), grpc.StatusCode.INVALID_ARGUMENT),
                (
                    pb.PrelabelSpec(project_id="prj-x", endpoint_name="bc"),
                    grpc.StatusCode.NOT_FOUND,
                ),
            ]:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.SubmitPrelabelJob(pb.SubmitPrelabelJobRequest(spec=spec_))
                assert err.value.code() == code, spec_
    finally:
        await stop_harness(serving)


async def test_prelabel_needs_a_serving_service(tmp_path: Path, s3_settings: S3Settings) -> None:
    async with running_labeling_service(tmp_path, s3_settings) as labeling:
        stub = labeling.stub
        spec = pb.ProjectSpec(
            name="p",
            task_type=pb.TASK_TYPE_TEXT_CLASSIFICATION,
            labels=[pb.LabelDefinition(name="a")],
        )
        pid = (await stub.CreateProject(pb.CreateProjectRequest(spec=spec))).project.project_id
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SubmitPrelabelJob(
                pb.SubmitPrelabelJobRequest(
                    spec=pb.PrelabelSpec(project_id=pid, endpoint_name="bc")
                )
            )
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "serving" in (err.value.details() or "")
        boxes = pb.ProjectSpec(
            name="b", task_type=pb.TASK_TYPE_OBJECT_BOXES, labels=[pb.LabelDefinition(name="a")]
        )
        bid = (await stub.CreateProject(pb.CreateProjectRequest(spec=boxes))).project.project_id
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SubmitPrelabelJob(
                pb.SubmitPrelabelJobRequest(
                    spec=pb.PrelabelSpec(project_id=bid, endpoint_name="bc")
                )
            )
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_bad_case_import_from_captured_predictions(
    tmp_path: Path, s3_settings: S3Settings
) -> None:
    serving = await start_harness(serving_settings(tmp_path / "serving", s3_settings, ""))
    try:
        await serving.register("bc", write_model(serving.settings.s3, "models/bc/v1.tar"))
        endpoint = serving_pb.EndpointSpec(name="bc", variants=[live("blue", "bc", 1)])
        endpoint.capture.enabled, endpoint.capture.sample_fraction = True, 1.0
        endpoint.capture.flush_rows = 20
        await serving.stub.CreateEndpoint(serving_pb.CreateEndpointRequest(spec=endpoint))
        X, _ = breast_cancer()
        for i in range(0, 80, 10):
            await serving.stub.Predict(
                serving_pb.PredictRequest(endpoint_name="bc", row=row(X.iloc[i].to_dict()))
            )
        batch = [row(r) for r in X.iloc[100:160].to_dict("records")]
        await serving.stub.PredictBatch(
            serving_pb.PredictBatchRequest(endpoint_name="bc", rows=batch)
        )
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            files = (
                await serving.stub.ListCaptureFiles(
                    serving_pb.ListCaptureFilesRequest(endpoint_name="bc")
                )
            ).files
            if sum(f.row_count for f in files) >= 60:
                break
            assert asyncio.get_running_loop().time() < deadline, "capture never flushed"
            await asyncio.sleep(0.2)
        captured = sum(f.row_count for f in files)
        async with running_labeling_service(
            tmp_path / "labeling",
            s3_settings,
            serving_target=serving.server.address,
            serving_token=SERVING_TOKEN,
        ) as labeling:
            stub = labeling.stub
            spec = pb.ProjectSpec(
                name="bad-cases",
                task_type=pb.TASK_TYPE_TEXT_CLASSIFICATION,
                labels=[pb.LabelDefinition(name="0"), pb.LabelDefinition(name="1")],
            )
            pid = (await stub.CreateProject(pb.CreateProjectRequest(spec=spec))).project.project_id
            source = pb.BadCaseImport(
                endpoint_name="bc", content_column="mean_radius", max_confidence=1.0
            )
            request = pb.SubmitImportJobRequest(
                spec=pb.ImportSpec(project_id=pid, bad_cases=source)
            )
            job = await succeeded(stub, (await stub.SubmitImportJob(request)).job)
            result = job.item_result
            assert result.items_added == result.items_processed > 0
            assert result.items_processed <= captured
            items = (await stub.ListItems(pb.ListItemsRequest(project_id=pid))).items
            assert all(i.prediction_id and i.model_version == "1" for i in items)
            assert all(0 < i.prediction_score < 1 for i in items)
            assert {i.content.text for i in items} <= {str(v) for v in X["mean_radius"]}
            queue = await stub.ListCorrectionQueue(
                pb.ListCorrectionQueueRequest(
                    project_id=pid, reasons=[pb.CORRECTION_REASON_BAD_CASE]
                )
            )
            assert len(queue.entries) == len(items)
            assert queue.entries[0].prediction_id
            # Re-running adds nothing twice; a cap and a confidence bound select fewer.
            job = await succeeded(stub, (await stub.SubmitImportJob(request)).job)
            assert (job.item_result.items_added, job.item_result.items_skipped) == (
                0,
                result.items_added,
            )
            capped = pb.SubmitImportJobRequest(
                spec=pb.ImportSpec(
                    project_id=pid,
                    bad_cases=pb.BadCaseImport(
                        endpoint_name="bc", content_column="mean_radius", max_items=3
                    ),
                )
            )
            job = await succeeded(stub, (await stub.SubmitImportJob(capped)).job)
            assert job.item_result.items_processed == 3
            for bad, code in [
                (
                    pb.BadCaseImport(endpoint_name="nope", content_column="x"),
                    grpc.StatusCode.NOT_FOUND,
                ),
                (pb.BadCaseImport(endpoint_name="bc"), grpc.StatusCode.INVALID_ARGUMENT),
                (
                    pb.BadCaseImport(endpoint_name="bc", content_column="x", max_confidence=2),
                    grpc.StatusCode.INVALID_ARGUMENT,
                ),
            ]:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.SubmitImportJob(
                        pb.SubmitImportJobRequest(spec=pb.ImportSpec(project_id=pid, bad_cases=bad))
                    )
                assert err.value.code() == code, bad
            missing = pb.SubmitImportJobRequest(
                spec=pb.ImportSpec(
                    project_id=pid,
                    bad_cases=pb.BadCaseImport(endpoint_name="bc", content_column="nothing"),
                )
            )
            job = await wait(stub, (await stub.SubmitImportJob(missing)).job)
            assert job.status.error.code == "INVALID_ARGUMENT"
            assert "nothing" in job.status.error.message
    finally:
        await stop_harness(serving)
