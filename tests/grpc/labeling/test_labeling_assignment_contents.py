"""What an assignment shows over gRPC: the item's model suggestions (so the web app needs no
GetItem for them) but never its gold answer nor another annotator's label; and a paused
annotator (below the gold bar) gets FAILED_PRECONDITION naming why."""

from __future__ import annotations

from datetime import datetime, timezone

import grpc
import pytest

from atlas.labeling.v1 import labeling_service_pb2 as pb
from atlas_core.db import write_transaction
from atlas_labeling import prelabel

from .conftest import LabelingHarness

CLASSES = [pb.LabelDefinition(name="pos"), pb.LabelDefinition(name="neg")]
POS = pb.AnnotationValue(classes=pb.ClassLabels(labels=["pos"]))
NEG = pb.AnnotationValue(classes=pb.ClassLabels(labels=["neg"]))


def suggest(labeling: LabelingHarness, pid: str, item_id: str, label: str) -> None:
    svc = labeling.service
    spec = svc.get_project(pid).spec
    with write_transaction(svc.rt.engine) as conn:
        record = svc.rt.items.load(conn, pid, item_id)
        s = prelabel.Suggestion(record, label, 0.42, "sentiment:3")
        prelabel.store(conn, spec, [s], 0.5, datetime.now(timezone.utc))


async def lease(stub, pid: str, who: str, count: int = 10) -> list[pb.Assignment]:  # type: ignore[no-untyped-def]
    request = pb.RequestAssignmentsRequest(project_id=pid, annotator=who, count=count)
    return list((await stub.RequestAssignments(request)).assignments)


async def test_assignments_carry_model_suggestions_only(labeling: LabelingHarness) -> None:
    stub = labeling.stub
    spec = pb.ProjectSpec(
        name="suggested", task_type=pb.TASK_TYPE_TEXT_CLASSIFICATION, labels=CLASSES, overlap=2
    )
    pid = (await stub.CreateProject(pb.CreateProjectRequest(spec=spec))).project.project_id
    added = await stub.AddItems(
        pb.AddItemsRequest(
            project_id=pid,
            items=[
                pb.NewItem(content=pb.ItemContent(text="fine")),
                pb.NewItem(content=pb.ItemContent(text="gold"), gold_value=NEG),
            ],
        )
    )
    regular, golden = added.item_ids
    suggest(labeling, pid, regular, "pos")
    suggest(labeling, pid, golden, "pos")
    first = {a.item.item_id: a for a in await lease(stub, pid, "ann")}
    await stub.SubmitAnnotation(
        pb.SubmitAnnotationRequest(
            assignment_id=first[regular].assignment_id, annotator="ann", value=NEG
        )
    )
    for assignments in (first, {a.item.item_id: a for a in await lease(stub, pid, "bob")}):
        for item_id in (regular, golden):
            item = assignments[item_id].item
            (only,) = item.annotations  # ann's label is never shown to bob
            assert only.source == pb.ANNOTATION_SOURCE_MODEL
            assert only.value.classes.labels == ["pos"] and only.confidence == pytest.approx(0.42)
            assert not item.gold and not item.HasField("gold_value")
    # ListAssignments (and a replayed request) show the same, filtered the same way.
    listed = await stub.ListAssignments(pb.ListAssignmentsRequest(project_id=pid, annotator="bob"))
    for a in listed.assignments:
        assert [x.source for x in a.item.annotations] == [pb.ANNOTATION_SOURCE_MODEL]


async def test_a_paused_annotator_gets_failed_precondition(labeling: LabelingHarness) -> None:
    stub = labeling.stub
    spec = pb.ProjectSpec(
        name="paused", task_type=pb.TASK_TYPE_TEXT_CLASSIFICATION, labels=CLASSES, overlap=1
    )
    pid = (await stub.CreateProject(pb.CreateProjectRequest(spec=spec))).project.project_id
    gold = [pb.NewItem(content=pb.ItemContent(text=f"g{i}"), gold_value=POS) for i in range(3)]
    await stub.AddItems(pb.AddItemsRequest(project_id=pid, items=gold))
    await stub.AddItems(
        pb.AddItemsRequest(project_id=pid, items=[pb.NewItem(content=pb.ItemContent(text="x"))])
    )
    for a in await lease(stub, pid, "sloppy", 3):
        await stub.SubmitAnnotation(
            pb.SubmitAnnotationRequest(assignment_id=a.assignment_id, annotator="sloppy", value=NEG)
        )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await lease(stub, pid, "sloppy")
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "paused" in info.value.details() and "0 of 3 gold" in info.value.details()
    # Everyone else still gets work.
    assert [a.item.content.text for a in await lease(stub, pid, "careful")][-1] == "x"
