"""Import and export jobs over gRPC: streamed manifests (Parquet, JSONL) imported once however
often they run, versioned label rows exported in parts with a cursor (Parquet, JSONL, COCO),
registered with the data service, and the job RPCs."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as data_pb
from atlas.labeling.v1 import labeling_service_pb2 as pb
from atlas_core.config import S3Settings
from tests.grpc.data.conftest import TOKEN as DATA_TOKEN
from tests.grpc.data.conftest import running_data_service
from tests.support.images import png_bytes

from .conftest import LabelingHarness, running_labeling_service

TERMINAL = {
    common_pb2.JOB_STATE_SUCCEEDED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
}
CLASSES = [pb.LabelDefinition(name="pos"), pb.LabelDefinition(name="neg")]


async def wait(stub, job: pb.LabelingJob, timeout: float = 120) -> pb.LabelingJob:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while job.status.state not in TERMINAL:
        assert asyncio.get_running_loop().time() < deadline, job
        await asyncio.sleep(0.1)
        job = (await stub.GetLabelingJob(pb.GetLabelingJobRequest(job_id=job.status.job_id))).job
    return job


async def succeeded(stub, job: pb.LabelingJob) -> pb.LabelingJob:  # type: ignore[no-untyped-def]
    job = await wait(stub, job)
    assert job.status.state == common_pb2.JOB_STATE_SUCCEEDED, job.status.error
    return job


def put_parquet(harness: LabelingHarness, key: str, table: pa.Table) -> common_pb2.ArtifactRef:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    ref = harness.service.rt.artifacts.put_bytes(key, buf.getvalue())
    return common_pb2.ArtifactRef(uri=ref.uri)


def read_part(harness: LabelingHarness, uri: str) -> pa.Table:
    data = harness.service.rt.artifacts.get_bytes(harness.service.rt.artifacts.key_for_uri(uri))
    return pq.read_table(io.BytesIO(data))


async def new_project(stub, name: str, task=pb.TASK_TYPE_TEXT_CLASSIFICATION, labels=CLASSES):  # type: ignore[no-untyped-def]
    spec = pb.ProjectSpec(name=name, task_type=task, labels=labels)
    return (await stub.CreateProject(pb.CreateProjectRequest(spec=spec))).project.project_id


async def label_all(stub, pid: str, who: str, label: str = "pos") -> int:  # type: ignore[no-untyped-def]
    n = 0
    while True:
        leased = await stub.RequestAssignments(
            pb.RequestAssignmentsRequest(project_id=pid, annotator=who, count=100)
        )
        if not leased.assignments:
            return n
        for a in leased.assignments:
            await stub.SubmitAnnotation(
                pb.SubmitAnnotationRequest(
                    assignment_id=a.assignment_id,
                    annotator=who,
                    value=pb.AnnotationValue(classes=pb.ClassLabels(labels=[label])),
                )
            )
            n += 1


async def import_job(stub, pid: str, manifest: pb.ManifestImport, rid: str = ""):  # type: ignore[no-untyped-def]
    job = (
        await stub.SubmitImportJob(
            pb.SubmitImportJobRequest(
                spec=pb.ImportSpec(project_id=pid, manifest=manifest), request_id=rid
            )
        )
    ).job
    return await wait(stub, job)


async def test_imports_are_streamed_and_idempotent(labeling_db: LabelingHarness) -> None:
    labeling = labeling_db
    stub = labeling.stub
    pid = await new_project(stub, "imports")
    n = 1200
    times = [datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp() * 1e6 + i for i in range(n)]
    table = pa.table(
        {
            "id": [f"x{i}" for i in range(n)],
            "text": [f"review number {i}" for i in range(n)],
            "user": [f"u{i % 7}" for i in range(n)],
            "ts": pa.array([int(t) for t in times], pa.int64()),
        }
    )
    ref = put_parquet(labeling, "manifests/a.parquet", table)
    manifest = pb.ManifestImport(
        manifest=ref,
        content_column="text",
        entity_column="user",
        label_time_column="ts",
        external_id_column="id",
    )
    job = await import_job(stub, pid, manifest)
    assert job.status.state == common_pb2.JOB_STATE_SUCCEEDED, job.status.error
    assert (job.item_result.items_processed, job.item_result.items_added) == (n, n)
    assert job.kind == pb.LABELING_JOB_KIND_IMPORT and job.import_items.project_id == pid
    again = await import_job(stub, pid, manifest)
    assert (again.item_result.items_added, again.item_result.items_skipped) == (0, n)
    lines = "\n".join(json.dumps({"t": f"jsonl {i}"}) for i in range(250))
    jref = labeling.service.rt.artifacts.put_bytes("manifests/b.jsonl", lines.encode())
    jm = pb.ManifestImport(manifest=common_pb2.ArtifactRef(uri=jref.uri), content_column="t")
    assert (await import_job(stub, pid, jm)).item_result.items_added == 250
    # No id column: ids derived from the manifest's checksum and row keep re-runs idempotent.
    assert (await import_job(stub, pid, jm)).item_result.items_added == 0
    got = await stub.GetProject(pb.GetProjectRequest(project_id=pid))
    assert got.project.stats.items == n + 250
    first = (await stub.ListItems(pb.ListItemsRequest(project_id=pid))).items[0]
    assert first.entity_id == "u0" and first.label_time.ToMicroseconds() == int(times[0])
    # A missing column fails the job with the column named.
    bad = pb.ManifestImport(manifest=ref, content_column="body")
    failed = await import_job(stub, pid, bad)
    assert failed.status.state == common_pb2.JOB_STATE_FAILED
    assert failed.status.error.code == "INVALID_ARGUMENT" and "body" in failed.status.error.message


async def test_export_versions_cursor_and_formats(labeling_db: LabelingHarness) -> None:
    labeling = labeling_db
    stub = labeling.stub
    pid = await new_project(stub, "exports")
    items = [pb.NewItem(content=pb.ItemContent(text=f"t{i}"), entity_id=f"e{i}") for i in range(25)]
    ids = (await stub.AddItems(pb.AddItemsRequest(project_id=pid, items=items))).item_ids
    assert await label_all(stub, pid, "ann") == 25
    job = (
        await stub.SubmitExportJob(
            pb.SubmitExportJobRequest(spec=pb.ExportSpec(project_id=pid, rows_per_part=10))
        )
    ).job
    job = await succeeded(stub, job)
    export = job.export_result
    assert export.rows == 25 and len(export.parts) == 3 and export.label_counts == {"pos": 25}
    table = pa.concat_tables([read_part(labeling, p.uri) for p in export.parts])
    assert table.num_rows == 25 and set(table.column("label").to_pylist()) == {"pos"}
    assert table.column("label_version").to_pylist() == [1] * 25
    assert table.column("annotators").to_pylist()[0] == ["ann"]
    assert set(table.column("entity_key").to_pylist()) == {f"e{i}" for i in range(25)}
    assert table.column("source").to_pylist() == ["human"] * 25
    manifest = json.loads(
        labeling.service.rt.artifacts.get_bytes(
            labeling.service.rt.artifacts.key_for_uri(export.artifact.uri)
        )
    )
    assert manifest["cursor"] == export.cursor and len(manifest["parts"]) == 3
    # Nothing new after the cursor: an incremental export is refused as empty.
    code = None
    try:
        await stub.SubmitExportJob(
            pb.SubmitExportJobRequest(
                spec=pb.ExportSpec(project_id=pid, after_cursor=export.cursor)
            )
        )
    except grpc.aio.AioRpcError as err:
        code = err.code()
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    # A relabel (review rejects, someone else labels) appends version 2, same event time.
    item = (await stub.GetItem(pb.GetItemRequest(project_id=pid, item_id=ids[0]))).item
    await stub.SubmitReview(
        pb.SubmitReviewRequest(
            annotation_id=item.annotations[0].annotation_id,
            reviewer="rev",
            decision=pb.REVIEW_DECISION_REJECT,
        )
    )
    assert await label_all(stub, pid, "bob", "neg") == 1
    job = (
        await stub.SubmitExportJob(
            pb.SubmitExportJobRequest(
                spec=pb.ExportSpec(
                    project_id=pid,
                    after_cursor=export.cursor,
                    format=pb.EXPORT_FORMAT_JSONL,
                )
            )
        )
    ).job
    newer = (await succeeded(stub, job)).export_result
    assert newer.rows == 1 and int(newer.cursor) > int(export.cursor)
    data = labeling.service.rt.artifacts.get_bytes(
        labeling.service.rt.artifacts.key_for_uri(newer.parts[0].uri)
    )
    (row,) = [json.loads(line) for line in data.decode().splitlines()]
    first = table.filter(pa.compute.equal(table.column("item_id"), ids[0])).to_pylist()[0]
    assert row["label"] == "neg" and row["label_version"] == 2
    assert row["event_time"] == first["event_time"].isoformat()
    assert row["label_created_time"] > first["label_created_time"].isoformat()
    exports = await stub.ListExports(pb.ListExportsRequest(project_id=pid))
    assert [e.export_id for e in exports.exports] == [newer.export_id, export.export_id]
    jobs = await stub.ListLabelingJobs(
        pb.ListLabelingJobsRequest(project_id=pid, kind=pb.LABELING_JOB_KIND_EXPORT)
    )
    assert len(jobs.jobs) == 2
    watched = [
        w async for w in stub.WatchLabelingJob(pb.WatchLabelingJobRequest(job_id=job.status.job_id))
    ]
    assert watched[-1].job.status.state == common_pb2.JOB_STATE_SUCCEEDED
    cancelled = await stub.CancelLabelingJob(pb.CancelLabelingJobRequest(job_id=job.status.job_id))
    assert cancelled.job.status.state == common_pb2.JOB_STATE_SUCCEEDED  # already finished


async def test_coco_export_of_boxes(labeling: LabelingHarness) -> None:
    stub, store = labeling.stub, labeling.service.rt.artifacts
    labels = [pb.LabelDefinition(name="car"), pb.LabelDefinition(name="bus")]
    pid = await new_project(stub, "boxes", pb.TASK_TYPE_OBJECT_BOXES, labels)
    image = store.put_bytes("img/c.png", png_bytes(300, 200))
    await stub.AddItems(
        pb.AddItemsRequest(
            project_id=pid,
            items=[pb.NewItem(content=pb.ItemContent(image=common_pb2.ArtifactRef(uri=image.uri)))],
        )
    )
    (a,) = (
        await stub.RequestAssignments(
            pb.RequestAssignmentsRequest(project_id=pid, annotator="ann", count=1)
        )
    ).assignments
    boxes = [
        pb.BoundingBox(x=10.5, y=20, width=50, height=40, label="bus"),
        pb.BoundingBox(x=100, y=100, width=20, height=30, label="car"),
    ]
    await stub.SubmitAnnotation(
        pb.SubmitAnnotationRequest(
            assignment_id=a.assignment_id,
            annotator="ann",
            value=pb.AnnotationValue(boxes=pb.BoxAnnotation(boxes=boxes)),
        )
    )
    job = (
        await stub.SubmitExportJob(
            pb.SubmitExportJobRequest(
                spec=pb.ExportSpec(project_id=pid, format=pb.EXPORT_FORMAT_COCO)
            )
        )
    ).job
    export = (await succeeded(stub, job)).export_result
    coco = json.loads(store.get_bytes(store.key_for_uri(export.parts[0].uri)))
    assert coco["images"][0]["width"] == 300 and coco["images"][0]["height"] == 200
    assert coco["images"][0]["file_name"] == image.uri
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert [(names[x["category_id"]], x["bbox"]) for x in coco["annotations"]] == [
        ("bus", [10.5, 20, 50, 40]),
        ("car", [100, 100, 20, 30]),
    ]
    assert export.label_counts == {"bus": 1, "car": 1}


async def test_export_registers_a_sample_set_with_the_data_service(
    tmp_path: Path, s3_settings: S3Settings
) -> None:
    async with running_data_service(tmp_path / "data", s3_settings) as data:
        async with running_labeling_service(
            tmp_path / "labeling",
            s3_settings,
            data_target=data.server.address,
            data_token=DATA_TOKEN,
        ) as labeling:
            stub = labeling.stub
            pid = await new_project(stub, "registered")
            await stub.AddItems(
                pb.AddItemsRequest(
                    project_id=pid,
                    items=[
                        pb.NewItem(content=pb.ItemContent(text=f"t{i}"), entity_id=str(i))
                        for i in range(5)
                    ],
                )
            )
            await label_all(stub, pid, "ann")
            job = (
                await stub.SubmitExportJob(
                    pb.SubmitExportJobRequest(
                        spec=pb.ExportSpec(project_id=pid, dataset_name="sentiment-labels")
                    )
                )
            ).job
            export = (await succeeded(stub, job)).export_result
            assert export.dataset.dataset_id and export.dataset.version == 1
            got = await data.stub.GetDataset(data_pb.GetDatasetRequest(ref=export.dataset))
            assert got.dataset.name == "sentiment-labels"
            assert [a.uri for a in got.dataset.artifacts] == [p.uri for p in export.parts]
            # Its lineage names the export (a training job refuses it until it is matched).
            [parent] = got.dataset.lineage.parents
            assert parent.role == "labels"
            assert (parent.label_set.project_id, parent.label_set.export_id) == (
                pid,
                job.status.job_id,
            )


async def test_job_bad_input(labeling: LabelingHarness) -> None:
    stub = labeling.stub
    pid = await new_project(stub, "bad")

    async def code(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        return err.value.code(), err.value.details() or ""

    C = grpc.StatusCode
    imp = stub.SubmitImportJob
    ref = common_pb2.ArtifactRef(uri="manifests/none.parquet")
    assert (await code(imp(pb.SubmitImportJobRequest(spec=pb.ImportSpec(project_id=pid)))))[0] == (
        C.INVALID_ARGUMENT
    )
    c, msg = await code(
        imp(
            pb.SubmitImportJobRequest(
                spec=pb.ImportSpec(project_id=pid, manifest=pb.ManifestImport(manifest=ref))
            )
        )
    )
    assert c == C.INVALID_ARGUMENT and "content_column" in msg
    c, msg = await code(
        imp(
            pb.SubmitImportJobRequest(
                spec=pb.ImportSpec(
                    project_id=pid, manifest=pb.ManifestImport(manifest=ref, content_column="t")
                )
            )
        )
    )
    assert c == C.NOT_FOUND and "none.parquet" in msg
    c, _ = await code(
        imp(
            pb.SubmitImportJobRequest(
                spec=pb.ImportSpec(
                    project_id="prj-x", manifest=pb.ManifestImport(manifest=ref, content_column="t")
                )
            )
        )
    )
    assert c == C.NOT_FOUND
    exp = stub.SubmitExportJob
    c, msg = await code(
        exp(pb.SubmitExportJobRequest(spec=pb.ExportSpec(project_id=pid, after_cursor="x1")))
    )
    assert c == C.INVALID_ARGUMENT and "after_cursor" in msg
    c, _ = await code(exp(pb.SubmitExportJobRequest(spec=pb.ExportSpec(project_id=pid))))
    assert c == C.FAILED_PRECONDITION
    c, _ = await code(
        exp(
            pb.SubmitExportJobRequest(
                spec=pb.ExportSpec(project_id=pid, format=pb.EXPORT_FORMAT_COCO)
            )
        )
    )
    assert c == C.FAILED_PRECONDITION
    c, _ = await code(
        exp(pb.SubmitExportJobRequest(spec=pb.ExportSpec(project_id=pid, min_agreement=2)))
    )
    assert c == C.INVALID_ARGUMENT
    c, _ = await code(exp(pb.SubmitExportJobRequest(spec=pb.ExportSpec(project_id="prj-x"))))
    assert c == C.NOT_FOUND
    c, _ = await code(stub.GetLabelingJob(pb.GetLabelingJobRequest()))
    assert c == C.INVALID_ARGUMENT
    c, _ = await code(stub.GetLabelingJob(pb.GetLabelingJobRequest(job_id="job-x")))
    assert c == C.NOT_FOUND
    c, _ = await code(stub.CancelLabelingJob(pb.CancelLabelingJobRequest(job_id="job-x")))
    assert c == C.NOT_FOUND
    c, _ = await code(stub.ListExports(pb.ListExportsRequest(project_id="prj-x")))
    assert c == C.NOT_FOUND
    await stub.ArchiveProject(pb.ArchiveProjectRequest(project_id=pid))
    c, _ = await code(
        imp(
            pb.SubmitImportJobRequest(
                spec=pb.ImportSpec(
                    project_id=pid, manifest=pb.ManifestImport(manifest=ref, content_column="t")
                )
            )
        )
    )
    assert c == C.FAILED_PRECONDITION


async def test_confident_learning_flags_wrong_labels_without_flipping_them(
    labeling: LabelingHarness,
) -> None:
    stub = labeling.stub
    pid = await new_project(stub, "issues")
    n = 80
    items = [pb.NewItem(content=pb.ItemContent(text=f"t{i}"), entity_id=f"e{i}") for i in range(n)]
    ids = list((await stub.AddItems(pb.AddItemsRequest(project_id=pid, items=items))).item_ids)
    truth = {item_id: ("pos" if i % 2 else "neg") for i, item_id in enumerate(ids)}
    wrong = set(ids[:8])  # the annotator gets these eight wrong
    leased = await stub.RequestAssignments(
        pb.RequestAssignmentsRequest(project_id=pid, annotator="ann", count=100)
    )
    for a in leased.assignments:
        given = truth[a.item.item_id]
        if a.item.item_id in wrong:
            given = "pos" if given == "neg" else "neg"
        await stub.SubmitAnnotation(
            pb.SubmitAnnotationRequest(
                assignment_id=a.assignment_id,
                annotator="ann",
                value=pb.AnnotationValue(classes=pb.ClassLabels(labels=[given])),
            )
        )
    # Out-of-sample probabilities that know the truth, keyed by entity id.
    p_pos = [0.95 if truth[i] == "pos" else 0.05 for i in ids]
    ref = put_parquet(
        labeling,
        "oof/probs.parquet",
        pa.table(
            {"entity": [f"e{i}" for i in range(n)], "p_pos": p_pos, "neg": [1 - p for p in p_pos]}
        ),
    )
    spec = pb.LabelIssuesSpec(
        project_id=pid,
        probabilities=ref,
        key_column="entity",
        match_entity_id=True,
        probability_columns={"pos": "p_pos"},
    )
    job = (await stub.SubmitLabelIssuesJob(pb.SubmitLabelIssuesJobRequest(spec=spec))).job
    job = await succeeded(stub, job)
    assert job.kind == pb.LABELING_JOB_KIND_LABEL_ISSUES
    assert job.item_result.items_processed == n
    queue = await stub.ListCorrectionQueue(
        pb.ListCorrectionQueueRequest(
            project_id=pid, reasons=[pb.CORRECTION_REASON_MODEL_HUMAN_CONFLICT]
        )
    )
    flagged = {e.item.item_id for e in queue.entries}
    assert flagged == wrong and job.item_result.queued_for_correction == len(wrong)
    entry = queue.entries[0]
    assert "confident learning" in entry.details[0]
    assert list(entry.resolutions) == [pb.CORRECTION_RESOLUTION_REQUEUED]
    # Not flipped: the wrong label stays final until people decide again.
    item = entry.item
    assert item.status == pb.ITEM_STATUS_IN_PROGRESS
    assert item.final_value.classes.labels[0] != truth[item.item_id]
    # Re-running flags nothing twice.
    job = (await stub.SubmitLabelIssuesJob(pb.SubmitLabelIssuesJobRequest(spec=spec))).job
    await succeeded(stub, job)
    again = await stub.GetItem(pb.GetItemRequest(project_id=pid, item_id=item.item_id))
    assert again.item.status == pb.ITEM_STATUS_IN_PROGRESS
    # Another annotator is asked (never "ann" again).
    redo = await stub.RequestAssignments(
        pb.RequestAssignmentsRequest(project_id=pid, annotator="ann", count=10)
    )
    assert not redo.assignments
    redo = await stub.RequestAssignments(
        pb.RequestAssignmentsRequest(project_id=pid, annotator="bob", count=10)
    )
    assert {a.item.item_id for a in redo.assignments} == wrong
    for bad, code in [
        (pb.LabelIssuesSpec(project_id=pid, probabilities=ref), grpc.StatusCode.INVALID_ARGUMENT),
        (
            pb.LabelIssuesSpec(
                project_id=pid,
                key_column="entity",
                probabilities=common_pb2.ArtifactRef(uri="oof/none.parquet"),
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SubmitLabelIssuesJob(pb.SubmitLabelIssuesJobRequest(spec=bad))
        assert err.value.code() == code
