"""Every bad input of the labeling service through the API: the right status, a message
naming the field, and nothing stored."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import duration_pb2

from atlas.common.v1 import common_pb2
from atlas.labeling.v1 import labeling_service_pb2 as pb
from tests.support.images import png_bytes

from .conftest import LabelingHarness

C = grpc.StatusCode


async def status(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), err.value.details() or ""


async def expect(call, code: grpc.StatusCode, *words: str) -> None:  # type: ignore[no-untyped-def]
    got, details = await status(call)
    assert got == code, (got, details)
    for word in words:
        assert word in details, details


async def project(stub, name: str, task: int, labels=(), **kw) -> str:  # type: ignore[no-untyped-def]
    spec = pb.ProjectSpec(name=name, task_type=task, labels=list(labels), **kw)
    return (await stub.CreateProject(pb.CreateProjectRequest(spec=spec))).project.project_id


async def lease(stub, pid: str, who: str = "ann") -> pb.Assignment:  # type: ignore[no-untyped-def]
    got = await stub.RequestAssignments(
        pb.RequestAssignmentsRequest(project_id=pid, annotator=who, count=1)
    )
    return got.assignments[0]


async def test_projects_bad_input(labeling: LabelingHarness) -> None:
    stub = labeling.stub
    create = stub.CreateProject
    await expect(
        create(pb.CreateProjectRequest(spec=pb.ProjectSpec(task_type=1))),
        C.INVALID_ARGUMENT,
        "spec.name",
    )
    await expect(
        create(pb.CreateProjectRequest(spec=pb.ProjectSpec(name="a"))),
        C.INVALID_ARGUMENT,
        "spec.task_type",
    )
    await expect(
        create(
            pb.CreateProjectRequest(
                spec=pb.ProjectSpec(
                    name="a",
                    task_type=pb.TASK_TYPE_TEXT_CLASSIFICATION,
                    labels=[pb.LabelDefinition(name="x", kind="colour")],
                )
            )
        ),
        C.INVALID_ARGUMENT,
        "spec.labels[0].kind",
    )
    await expect(
        create(
            pb.CreateProjectRequest(
                spec=pb.ProjectSpec(name="a", task_type=pb.TASK_TYPE_OCR, review_fraction=2)
            )
        ),
        C.INVALID_ARGUMENT,
        "spec.review_fraction",
    )
    labels = [pb.LabelDefinition(name="pos"), pb.LabelDefinition(name="neg")]
    pid = await project(stub, "p", pb.TASK_TYPE_TEXT_CLASSIFICATION, labels)
    await expect(
        create(
            pb.CreateProjectRequest(
                spec=pb.ProjectSpec(
                    name="p", task_type=pb.TASK_TYPE_TEXT_CLASSIFICATION, labels=labels
                )
            )
        ),
        C.ALREADY_EXISTS,
        "'p'",
    )
    await expect(stub.GetProject(pb.GetProjectRequest()), C.INVALID_ARGUMENT, "project_id")
    await expect(stub.GetProject(pb.GetProjectRequest(project_id="prj-x")), C.NOT_FOUND, "prj-x")
    await expect(
        stub.ListProjects(pb.ListProjectsRequest(page=common_pb2.PageRequest(page_token="zz"))),
        C.INVALID_ARGUMENT,
        "page_token",
    )
    await expect(stub.ArchiveProject(pb.ArchiveProjectRequest(project_id="prj-x")), C.NOT_FOUND)
    # A used label cannot be renamed; a stale etag aborts.
    await stub.AddItems(
        pb.AddItemsRequest(project_id=pid, items=[pb.NewItem(content=pb.ItemContent(text="t"))])
    )
    a = await lease(stub, pid)
    await stub.SubmitAnnotation(
        pb.SubmitAnnotationRequest(
            assignment_id=a.assignment_id,
            annotator="ann",
            value=pb.AnnotationValue(classes=pb.ClassLabels(labels=["pos"])),
        )
    )
    renamed = pb.ProjectSpec(
        name="p",
        task_type=pb.TASK_TYPE_TEXT_CLASSIFICATION,
        labels=[pb.LabelDefinition(name="positive"), labels[1]],
    )
    await expect(
        stub.UpdateProject(pb.UpdateProjectRequest(project_id=pid, spec=renamed)),
        C.FAILED_PRECONDITION,
        "'pos'",
    )
    await expect(
        stub.UpdateProject(
            pb.UpdateProjectRequest(
                project_id=pid,
                etag="stale",
                spec=pb.ProjectSpec(
                    name="p", task_type=pb.TASK_TYPE_TEXT_CLASSIFICATION, labels=labels
                ),
            )
        ),
        C.ABORTED,
        "etag",
    )
    await expect(
        stub.UpdateProject(pb.UpdateProjectRequest(project_id="prj-x", spec=renamed)), C.NOT_FOUND
    )
    await expect(
        stub.UpdateProject(
            pb.UpdateProjectRequest(
                project_id=pid, spec=pb.ProjectSpec(name="p", task_type=pb.TASK_TYPE_OCR)
            )
        ),
        C.INVALID_ARGUMENT,
        "task_type",
    )


async def test_items_bad_input(labeling: LabelingHarness) -> None:
    stub, store = labeling.stub, labeling.service.rt.artifacts
    text_pid = await project(
        stub, "t", pb.TASK_TYPE_TEXT_CLASSIFICATION, [pb.LabelDefinition(name="a")]
    )
    image_pid = await project(
        stub, "i", pb.TASK_TYPE_IMAGE_CLASSIFICATION, [pb.LabelDefinition(name="a")]
    )
    add = stub.AddItems
    await expect(add(pb.AddItemsRequest(project_id=text_pid)), C.INVALID_ARGUMENT, "items")
    await expect(
        add(
            pb.AddItemsRequest(
                project_id=text_pid, items=[pb.NewItem(content=pb.ItemContent(text="x"))] * 1001
            )
        ),
        C.INVALID_ARGUMENT,
        "1001",
    )
    ref = common_pb2.ArtifactRef(uri=store.put_bytes("img/a.png", png_bytes(8, 8)).uri)
    await expect(
        add(
            pb.AddItemsRequest(
                project_id=text_pid,
                items=[
                    pb.NewItem(content=pb.ItemContent(text="ok")),
                    pb.NewItem(content=pb.ItemContent(image=ref)),
                ],
            )
        ),
        C.INVALID_ARGUMENT,
        "items[1].content",
    )
    await expect(
        add(
            pb.AddItemsRequest(
                project_id=image_pid,
                items=[
                    pb.NewItem(
                        content=pb.ItemContent(image=common_pb2.ArtifactRef(uri="img/none.png"))
                    )
                ],
            )
        ),
        C.NOT_FOUND,
        "items[0].content.image",
    )
    await expect(
        add(
            pb.AddItemsRequest(
                project_id="prj-x", items=[pb.NewItem(content=pb.ItemContent(text="x"))]
            )
        ),
        C.NOT_FOUND,
    )
    await expect(
        add(
            pb.AddItemsRequest(
                project_id=image_pid,
                items=[
                    pb.NewItem(
                        content=pb.ItemContent(image=ref),
                        gold_value=pb.AnnotationValue(classes=pb.ClassLabels(labels=["zz"])),
                    )
                ],
            )
        ),
        C.INVALID_ARGUMENT,
        "items[0].gold_value.classes.labels[0]",
    )
    got = await stub.GetProject(pb.GetProjectRequest(project_id=image_pid))
    assert got.project.stats.items == 0  # nothing stored by any failure
    await stub.ArchiveProject(pb.ArchiveProjectRequest(project_id=image_pid))
    await expect(
        add(
            pb.AddItemsRequest(
                project_id=image_pid, items=[pb.NewItem(content=pb.ItemContent(image=ref))]
            )
        ),
        C.FAILED_PRECONDITION,
        "archived",
    )
    await expect(
        stub.RequestAssignments(
            pb.RequestAssignmentsRequest(project_id=image_pid, annotator="a", count=1)
        ),
        C.FAILED_PRECONDITION,
        "archived",
    )
    await expect(
        stub.GetItem(pb.GetItemRequest(project_id=text_pid)), C.INVALID_ARGUMENT, "item_id"
    )
    await expect(
        stub.GetItem(pb.GetItemRequest(project_id=text_pid, item_id="itm-x")), C.NOT_FOUND, "itm-x"
    )
    await expect(stub.ListItems(pb.ListItemsRequest(project_id="prj-x")), C.NOT_FOUND)
    await expect(
        stub.ListItems(
            pb.ListItemsRequest(project_id=text_pid, page=common_pb2.PageRequest(page_token="-"))
        ),
        C.INVALID_ARGUMENT,
        "page_token",
    )
    await expect(
        stub.ListItems(pb.ListItemsRequest(project_id=text_pid, statuses=[42])),
        C.INVALID_ARGUMENT,
        "statuses",
    )


def _box(**kw: float) -> pb.AnnotationValue:
    box = pb.BoundingBox(**{"x": 1, "y": 1, "width": 5, "height": 5, "label": "car", **kw})
    return pb.AnnotationValue(boxes=pb.BoxAnnotation(boxes=[box]))


async def test_every_bad_annotation_is_named_and_nothing_is_stored(
    labeling: LabelingHarness,
) -> None:
    stub, store = labeling.stub, labeling.service.rt.artifacts
    ref = common_pb2.ArtifactRef(uri=store.put_bytes("img/b.png", png_bytes(100, 80)).uri)

    async def item_of(task: int, labels, content: pb.ItemContent, name: str):  # type: ignore[no-untyped-def]
        pid = await project(stub, name, task, labels)
        await stub.AddItems(pb.AddItemsRequest(project_id=pid, items=[pb.NewItem(content=content)]))
        return pid, await lease(stub, pid)

    async def refused(
        pid: str, a: pb.Assignment, value: pb.AnnotationValue, field: str, **kw: object
    ) -> None:
        await expect(
            stub.SubmitAnnotation(
                pb.SubmitAnnotationRequest(
                    assignment_id=a.assignment_id, annotator="ann", value=value, **kw
                )
            ),
            C.INVALID_ARGUMENT,
            field,
        )

    boxes_pid, box_a = await item_of(
        pb.TASK_TYPE_OBJECT_BOXES,
        [pb.LabelDefinition(name="car")],
        pb.ItemContent(image=ref),
        "boxes",
    )
    await refused(boxes_pid, box_a, _box(x=96), "value.boxes.boxes[0]")
    await refused(boxes_pid, box_a, _box(width=0), "value.boxes.boxes[0]")
    await refused(boxes_pid, box_a, _box(label="bus"), "value.boxes.boxes[0].label")
    await refused(boxes_pid, box_a, _box(), "confidence", confidence=1.01)
    await refused(boxes_pid, box_a, _box(), "confidence", confidence=-0.5)
    await refused(
        boxes_pid,
        box_a,
        pb.AnnotationValue(classes=pb.ClassLabels(labels=["car"])),
        "value.classes",
    )
    await expect(
        stub.SubmitAnnotation(
            pb.SubmitAnnotationRequest(assignment_id=box_a.assignment_id, annotator="ann")
        ),
        C.INVALID_ARGUMENT,
        "value",
    )

    ocr_pid, ocr_a = await item_of(pb.TASK_TYPE_OCR, [], pb.ItemContent(image=ref), "ocr")
    await refused(ocr_pid, ocr_a, _box(label="", text=""), "value.boxes.boxes[0].text")

    labels = [
        pb.LabelDefinition(name="PER", kind="entity"),
        pb.LabelDefinition(name="r", kind="relation"),
    ]
    text = "Ünï 😀 Köln und Bonn am Rhein"
    span_pid, span_a = await item_of(
        pb.TASK_TYPE_TEXT_SPANS, labels, pb.ItemContent(text=text), "spans"
    )

    def spans(*s: pb.TextSpan, rel: list[pb.Relation] | None = None) -> pb.AnnotationValue:
        return pb.AnnotationValue(spans=pb.SpanAnnotation(spans=list(s), relations=rel or []))

    await refused(
        span_pid,
        span_a,
        spans(pb.TextSpan(span_id="a", start=2, end=2, label="PER")),
        "value.spans.spans[0]",
    )
    await refused(
        span_pid,
        span_a,
        spans(pb.TextSpan(span_id="a", start=0, end=99, label="PER")),
        "value.spans.spans[0].end",
    )
    k = len(text[: text.index("Köln")].encode())  # a client counting UTF-8 bytes
    await refused(
        span_pid,
        span_a,
        spans(pb.TextSpan(span_id="a", start=k, end=k + 4, label="PER", text="Köln")),
        "value.spans.spans[0].text",
    )
    await refused(
        span_pid,
        span_a,
        spans(pb.TextSpan(span_id="a", start=0, end=3, label="ORG")),
        "value.spans.spans[0].label",
    )
    await refused(
        span_pid,
        span_a,
        spans(
            pb.TextSpan(span_id="a", start=0, end=3, label="PER"),
            rel=[pb.Relation(source_span_id="a", target_span_id="ghost", label="r")],
        ),
        "value.spans.relations[0].target_span_id",
    )

    face_pid, face_a = await item_of(
        pb.TASK_TYPE_FACE_PAIR,
        [],
        pb.ItemContent(image_pair=pb.ImagePair(first=ref, second=ref)),
        "faces",
    )
    await refused(face_pid, face_a, pb.AnnotationValue(face_pair=9), "value.face_pair")
    await refused(face_pid, face_a, pb.AnnotationValue(face_pair=0), "value.face_pair")

    cls_pid, cls_a = await item_of(
        pb.TASK_TYPE_TEXT_CLASSIFICATION,
        [pb.LabelDefinition(name="a")],
        pb.ItemContent(text="x"),
        "cls",
    )
    await refused(
        cls_pid,
        cls_a,
        pb.AnnotationValue(classes=pb.ClassLabels(labels=["b"])),
        "value.classes.labels[0]",
    )
    for pid in (boxes_pid, ocr_pid, span_pid, face_pid, cls_pid):
        got = await stub.GetProject(pb.GetProjectRequest(project_id=pid))
        assert got.project.stats.annotations == 0, pid


async def test_assignment_and_review_faults(labeling: LabelingHarness) -> None:
    stub = labeling.stub
    pid = await project(
        stub,
        "f",
        pb.TASK_TYPE_TEXT_CLASSIFICATION,
        [pb.LabelDefinition(name="a")],
        assignment_ttl=duration_pb2.Duration(seconds=1),
    )
    await stub.AddItems(
        pb.AddItemsRequest(
            project_id=pid,
            items=[
                pb.NewItem(content=pb.ItemContent(text="x")),
                pb.NewItem(content=pb.ItemContent(text="y")),
            ],
        )
    )
    request = stub.RequestAssignments
    await expect(
        request(pb.RequestAssignmentsRequest(project_id=pid, annotator="a", count=0)),
        C.INVALID_ARGUMENT,
        "count",
    )
    await expect(
        request(pb.RequestAssignmentsRequest(project_id="prj-x", annotator="a", count=1)),
        C.NOT_FOUND,
    )
    await expect(
        request(pb.RequestAssignmentsRequest(annotator="a", count=1)),
        C.INVALID_ARGUMENT,
        "project_id",
    )
    value = pb.AnnotationValue(classes=pb.ClassLabels(labels=["a"]))
    submit = stub.SubmitAnnotation
    await expect(
        submit(pb.SubmitAnnotationRequest(value=value)), C.INVALID_ARGUMENT, "assignment_id"
    )
    await expect(
        submit(pb.SubmitAnnotationRequest(assignment_id="asg-x", value=value)), C.NOT_FOUND, "asg-x"
    )
    a = await lease(stub, pid, "ann")
    await expect(
        submit(pb.SubmitAnnotationRequest(assignment_id=a.assignment_id, value=value)),
        C.PERMISSION_DENIED,
    )  # the caller (named by its token) is not "ann"
    await expect(
        stub.RenewAssignmentLease(
            pb.RenewAssignmentLeaseRequest(assignment_id=a.assignment_id, annotator="bob")
        ),
        C.PERMISSION_DENIED,
    )
    await expect(stub.RenewAssignmentLease(pb.RenewAssignmentLeaseRequest()), C.INVALID_ARGUMENT)
    await expect(
        stub.RenewAssignmentLease(pb.RenewAssignmentLeaseRequest(assignment_id="asg-x")),
        C.NOT_FOUND,
    )
    await asyncio.sleep(1.2)  # the one-second lease lapses
    await expect(
        submit(
            pb.SubmitAnnotationRequest(assignment_id=a.assignment_id, annotator="ann", value=value)
        ),
        C.FAILED_PRECONDITION,
        "expired",
    )
    await expect(
        stub.RenewAssignmentLease(
            pb.RenewAssignmentLeaseRequest(assignment_id=a.assignment_id, annotator="ann")
        ),
        C.FAILED_PRECONDITION,
        "expired",
    )
    b = await lease(stub, pid, "bob")
    done = await submit(
        pb.SubmitAnnotationRequest(
            assignment_id=b.assignment_id, annotator="bob", value=value, request_id="r1"
        )
    )
    again = await submit(
        pb.SubmitAnnotationRequest(
            assignment_id=b.assignment_id, annotator="bob", value=value, request_id="r1"
        )
    )
    assert again.annotation.annotation_id == done.annotation.annotation_id
    await expect(
        submit(
            pb.SubmitAnnotationRequest(
                assignment_id=b.assignment_id, annotator="bob", value=value, request_id="r2"
            )
        ),
        C.FAILED_PRECONDITION,
        "already",
    )
    review = stub.SubmitReview
    ann_id = done.annotation.annotation_id
    await expect(
        review(pb.SubmitReviewRequest(annotation_id=ann_id, reviewer="rev")),
        C.INVALID_ARGUMENT,
        "decision",
    )
    await expect(
        review(pb.SubmitReviewRequest(reviewer="rev", decision=1)),
        C.INVALID_ARGUMENT,
        "annotation_id",
    )
    await expect(
        review(pb.SubmitReviewRequest(annotation_id="ann-x", reviewer="rev", decision=1)),
        C.NOT_FOUND,
    )
    await expect(
        review(pb.SubmitReviewRequest(annotation_id=ann_id, reviewer="bob", decision=1)),
        C.FAILED_PRECONDITION,
        "own",
    )
    await expect(
        review(
            pb.SubmitReviewRequest(
                annotation_id=ann_id,
                reviewer="rev",
                decision=pb.REVIEW_DECISION_CORRECT,
                correction=pb.AnnotationValue(classes=pb.ClassLabels(labels=["zz"])),
            )
        ),
        C.INVALID_ARGUMENT,
        "correction.classes.labels[0]",
    )
    await expect(
        stub.GetAnnotatorStats(pb.GetAnnotatorStatsRequest(project_id="prj-x")), C.NOT_FOUND
    )
    await expect(stub.ListAssignments(pb.ListAssignmentsRequest(project_id="prj-x")), C.NOT_FOUND)
