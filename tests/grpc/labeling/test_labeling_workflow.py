"""Happy paths of the labeling service over gRPC: projects, items, leases, annotation,
review and annotator stats, for text, spans, boxes and face pairs."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import duration_pb2

from atlas.common.v1 import common_pb2
from atlas.labeling.v1 import labeling_service_pb2 as pb
from tests.support.images import png_bytes

from .conftest import LabelingHarness

CLASSES = [pb.LabelDefinition(name="pos"), pb.LabelDefinition(name="neg")]


def spec(name: str, task: int, labels: list[pb.LabelDefinition], **kw: object) -> pb.ProjectSpec:
    return pb.ProjectSpec(name=name, task_type=task, labels=labels, **kw)  # type: ignore[arg-type]


async def create(stub, message: pb.ProjectSpec) -> pb.Project:  # type: ignore[no-untyped-def]
    return (await stub.CreateProject(pb.CreateProjectRequest(spec=message))).project


async def test_text_classification_end_to_end(labeling: LabelingHarness) -> None:
    stub = labeling.stub
    project = await create(
        stub,
        spec(
            "sentiment",
            pb.TASK_TYPE_TEXT_CLASSIFICATION,
            CLASSES,
            overlap=2,
            consensus=pb.CONSENSUS_METHOD_REVIEW,
            assignment_ttl=duration_pb2.Duration(seconds=120),
        ),
    )
    assert project.spec.assignment_ttl.seconds == 120 and project.etag
    added = await stub.AddItems(
        pb.AddItemsRequest(
            project_id=project.project_id,
            items=[
                pb.NewItem(content=pb.ItemContent(text="great"), entity_id="u1", external_id="x1"),
                pb.NewItem(content=pb.ItemContent(text="awful"), entity_id="u2", external_id="x2"),
            ],
            request_id="add-1",
        )
    )
    assert len(added.item_ids) == 2 and added.skipped == 0
    again = await stub.AddItems(
        pb.AddItemsRequest(
            project_id=project.project_id,
            items=[pb.NewItem(content=pb.ItemContent(text="great"), external_id="x1")],
        )
    )
    assert list(again.item_ids) == [""] and again.skipped == 1

    # Without an annotator field, the caller is named by its token.
    mine = await stub.RequestAssignments(
        pb.RequestAssignmentsRequest(project_id=project.project_id, count=5)
    )
    theirs = await labeling.other.RequestAssignments(
        pb.RequestAssignmentsRequest(project_id=project.project_id, count=5)
    )
    assert len(mine.assignments) == 2 and len(theirs.assignments) == 2
    me = mine.assignments[0].annotator
    assert me.startswith("token:") and theirs.assignments[0].annotator != me
    first = mine.assignments[0]
    assert first.state == pb.ASSIGNMENT_STATE_ACTIVE and first.item.content.text
    renewed = await stub.RenewAssignmentLease(
        pb.RenewAssignmentLeaseRequest(assignment_id=first.assignment_id)
    )
    assert renewed.assignment.expire_time.seconds >= first.expire_time.seconds
    listed = await stub.ListAssignments(
        pb.ListAssignmentsRequest(project_id=project.project_id, annotator=me)
    )
    assert len(listed.assignments) == 2

    annotations = []
    for stub_, leased in ((stub, mine), (labeling.other, theirs)):
        for a in leased.assignments:
            done = await stub_.SubmitAnnotation(
                pb.SubmitAnnotationRequest(
                    assignment_id=a.assignment_id,
                    value=pb.AnnotationValue(classes=pb.ClassLabels(labels=["pos"])),
                    confidence=0.9,
                    duration_ms=1500,
                    request_id=f"s-{a.assignment_id}",
                )
            )
            annotations.append(done.annotation)
    assert done.item_status == pb.ITEM_STATUS_IN_REVIEW
    reviews = await stub.RequestAssignments(
        pb.RequestAssignmentsRequest(
            project_id=project.project_id, annotator="rev", count=5, review=True
        )
    )
    assert len(reviews.assignments) == 2
    assert len(reviews.assignments[0].item.annotations) == 2  # reviewers see the work
    target = annotations[0]
    reviewed = await stub.SubmitReview(
        pb.SubmitReviewRequest(
            annotation_id=target.annotation_id,
            reviewer="rev",
            decision=pb.REVIEW_DECISION_CORRECT,
            correction=pb.AnnotationValue(classes=pb.ClassLabels(labels=["neg"])),
            comment="sarcasm",
        )
    )
    assert reviewed.item_status == pb.ITEM_STATUS_DONE
    assert reviewed.annotation.review.decision == pb.REVIEW_DECISION_CORRECT
    item = (
        await stub.GetItem(pb.GetItemRequest(project_id=project.project_id, item_id=target.item_id))
    ).item
    assert item.final_value.classes.labels == ["neg"] and len(item.annotations) == 2
    assert item.entity_id in ("u1", "u2")
    done_items = await stub.ListItems(
        pb.ListItemsRequest(
            project_id=project.project_id, statuses=[pb.ITEM_STATUS_DONE], omit_annotations=True
        )
    )
    assert [i.item_id for i in done_items.items] == [target.item_id]
    assert not done_items.items[0].annotations
    stats = await stub.GetAnnotatorStats(pb.GetAnnotatorStatsRequest(project_id=project.project_id))
    assert {s.annotations for s in stats.annotators} == {2}
    assert all(s.median_duration_ms == 1500 for s in stats.annotators)
    got = await stub.GetProject(pb.GetProjectRequest(project_id=project.project_id))
    assert got.project.stats.items == 2 and got.project.stats.annotations == 4
    assert got.project.stats.items_done == 1
    listed_projects = await stub.ListProjects(pb.ListProjectsRequest())
    assert [p.project_id for p in listed_projects.projects] == [project.project_id]
    updated = await stub.UpdateProject(
        pb.UpdateProjectRequest(
            project_id=project.project_id,
            spec=spec(
                "sentiment",
                pb.TASK_TYPE_TEXT_CLASSIFICATION,
                [*CLASSES, pb.LabelDefinition(name="mixed")],
                overlap=2,
            ),
            etag=got.project.etag,
        )
    )
    assert len(updated.project.spec.labels) == 3
    archived = await stub.ArchiveProject(pb.ArchiveProjectRequest(project_id=project.project_id))
    assert archived.project.archived


async def test_boxes_spans_and_face_pairs(labeling: LabelingHarness) -> None:
    stub, store = labeling.stub, labeling.service.rt.artifacts
    image = store.put_bytes("images/street.png", png_bytes(320, 200))
    ref = common_pb2.ArtifactRef(uri=image.uri)
    boxes = await create(
        stub, spec("cars", pb.TASK_TYPE_OBJECT_BOXES, [pb.LabelDefinition(name="car")])
    )
    gold = pb.AnnotationValue(
        boxes=pb.BoxAnnotation(
            boxes=[pb.BoundingBox(x=10, y=20, width=100, height=50, label="car")]
        )
    )
    await stub.AddItems(
        pb.AddItemsRequest(
            project_id=boxes.project_id,
            items=[pb.NewItem(content=pb.ItemContent(image=ref), gold_value=gold)],
        )
    )
    (a,) = (
        await stub.RequestAssignments(
            pb.RequestAssignmentsRequest(project_id=boxes.project_id, annotator="ann", count=1)
        )
    ).assignments
    assert (a.item.image_width, a.item.image_height) == (320, 200)
    assert not a.item.gold and not a.item.HasField("gold_value")  # never shown to annotators
    done = await stub.SubmitAnnotation(
        pb.SubmitAnnotationRequest(
            assignment_id=a.assignment_id,
            annotator="ann",
            value=pb.AnnotationValue(
                boxes=pb.BoxAnnotation(
                    boxes=[pb.BoundingBox(x=11, y=21, width=99, height=50, label="car")]
                )
            ),
        )
    )
    stored = done.annotation.value.boxes
    assert (stored.image_width, stored.image_height) == (320, 200)
    assert stored.boxes[0].x == 11  # pixels as given, never rescaled
    stats = await stub.GetAnnotatorStats(
        pb.GetAnnotatorStatsRequest(project_id=boxes.project_id, annotator="ann")
    )
    assert stats.annotators[0].gold_correct == 1 and stats.annotators[0].gold_accuracy == 1.0

    spans = await create(
        stub,
        spec(
            "ner",
            pb.TASK_TYPE_TEXT_SPANS,
            [
                pb.LabelDefinition(name="PER", kind="entity"),
                pb.LabelDefinition(name="LOC", kind="entity"),
                pb.LabelDefinition(name="lives_in", kind="relation", allowed_pairs=["PER:LOC"]),
            ],
        ),
    )
    await stub.AddItems(
        pb.AddItemsRequest(
            project_id=spans.project_id,
            items=[pb.NewItem(content=pb.ItemContent(text="Zoë 😀 lives in Köln"))],
        )
    )
    (a,) = (
        await stub.RequestAssignments(
            pb.RequestAssignmentsRequest(project_id=spans.project_id, annotator="ann", count=1)
        )
    ).assignments
    text = a.item.content.text
    k = text.index("Köln")
    value = pb.AnnotationValue(
        spans=pb.SpanAnnotation(
            spans=[
                pb.TextSpan(span_id="p", start=0, end=3, label="PER", text="Zoë"),
                pb.TextSpan(span_id="l", start=k, end=k + 4, label="LOC", text="Köln"),
            ],
            relations=[pb.Relation(source_span_id="p", target_span_id="l", label="lives_in")],
        )
    )
    done = await stub.SubmitAnnotation(
        pb.SubmitAnnotationRequest(assignment_id=a.assignment_id, annotator="ann", value=value)
    )
    assert done.item_status == pb.ITEM_STATUS_DONE
    assert done.annotation.value.spans.spans[1].start == k

    pairs = await create(stub, spec("faces", pb.TASK_TYPE_FACE_PAIR, []))
    await stub.AddItems(
        pb.AddItemsRequest(
            project_id=pairs.project_id,
            items=[
                pb.NewItem(content=pb.ItemContent(image_pair=pb.ImagePair(first=ref, second=ref)))
            ],
        )
    )
    (a,) = (
        await stub.RequestAssignments(
            pb.RequestAssignmentsRequest(project_id=pairs.project_id, annotator="ann", count=1)
        )
    ).assignments
    done = await stub.SubmitAnnotation(
        pb.SubmitAnnotationRequest(
            assignment_id=a.assignment_id,
            annotator="ann",
            value=pb.AnnotationValue(face_pair=pb.FACE_PAIR_DECISION_SAME),
        )
    )
    assert done.annotation.value.face_pair == pb.FACE_PAIR_DECISION_SAME


async def test_agreement_and_disagreement_queue(labeling: LabelingHarness) -> None:
    stub = labeling.stub
    project = await create(
        stub,
        spec(
            "votes",
            pb.TASK_TYPE_TEXT_CLASSIFICATION,
            CLASSES,
            overlap=2,
            consensus_threshold=0.75,
            max_relabel_rounds=1,
        ),
    )
    pid = project.project_id
    items = [pb.NewItem(content=pb.ItemContent(text=f"t{i}")) for i in range(3)]
    await stub.AddItems(pb.AddItemsRequest(project_id=pid, items=items))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetAgreement(pb.GetAgreementRequest(project_id=pid))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    answers = {"a": ["pos", "neg", "pos"], "b": ["pos", "neg", "neg"]}
    for who, labels in answers.items():
        leased = await stub.RequestAssignments(
            pb.RequestAssignmentsRequest(project_id=pid, annotator=who, count=3)
        )
        for a, label in zip(leased.assignments, labels):
            await stub.SubmitAnnotation(
                pb.SubmitAnnotationRequest(
                    assignment_id=a.assignment_id,
                    annotator=who,
                    value=pb.AnnotationValue(classes=pb.ClassLabels(labels=[label])),
                )
            )
    agreement = await stub.GetAgreement(pb.GetAgreementRequest(project_id=pid))
    assert agreement.items_compared == 3 and agreement.kappa < 1
    assert {a.annotator for a in agreement.annotators} == {"a", "b"}
    assert set(agreement.per_label) == {"pos", "neg"}
    queue = await stub.ListCorrectionQueue(pb.ListCorrectionQueueRequest(project_id=pid))
    (entry,) = queue.entries
    assert list(entry.reasons) == [pb.CORRECTION_REASON_DISAGREEMENT]
    assert list(entry.resolutions) == [pb.CORRECTION_RESOLUTION_REQUEUED]
    assert entry.relabel_rounds == 1 and "votes" in entry.details[0]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetAgreement(pb.GetAgreementRequest(project_id="prj-x"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListCorrectionQueue(pb.ListCorrectionQueueRequest(project_id=pid, reasons=[99]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
