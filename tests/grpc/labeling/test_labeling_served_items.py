"""Items made from served predictions through AddItems: the prediction and its bad-case
reasons kept and shown, a BAD_CASE correction entry each, bad served predictions refused with
nothing stored, and an export of their labels refused while no serving service is there to
take them as ground truth."""

from __future__ import annotations

import grpc

from atlas.common.v1 import common_pb2
from atlas.labeling.v1 import labeling_service_pb2 as pb

from .conftest import LabelingHarness
from .test_labeling_bad_input import expect, project
from .test_labeling_jobs import wait

C = grpc.StatusCode


def served(row: int = 0, *reasons: int, prediction_id: str = "p1") -> pb.ServedPrediction:
    return pb.ServedPrediction(
        endpoint_name="credit",
        prediction_id=prediction_id,
        row=row,
        model_version="credit:3",
        score=0.55,
        reasons=list(reasons) or [pb.BAD_CASE_REASON_LOW_CONFIDENCE],
        detail="confidence 0.550 < 0.6",
    )


def item(text: str, s: pb.ServedPrediction) -> pb.NewItem:
    return pb.NewItem(
        content=pb.ItemContent(text=text),
        external_id=f"serving:{s.prediction_id}:{s.row}",
        served_prediction=s,
    )


async def test_served_predictions_are_kept_queued_and_refused_when_bad(
    labeling: LabelingHarness,
) -> None:
    stub = labeling.stub
    labels = [pb.LabelDefinition(name="0"), pb.LabelDefinition(name="1")]
    pid = await project(stub, "served", pb.TASK_TYPE_TEXT_CLASSIFICATION, labels, overlap=1)
    both = served(
        1, pb.BAD_CASE_REASON_SHADOW_DISAGREEMENT, pb.BAD_CASE_REASON_WRONG_BY_GROUND_TRUTH
    )
    added = await stub.AddItems(
        pb.AddItemsRequest(project_id=pid, items=[item("a", served()), item("b", both)])
    )
    got = (await stub.GetItem(pb.GetItemRequest(project_id=pid, item_id=added.item_ids[1]))).item
    assert got.served_prediction == both
    assert (got.prediction_id, got.model_version) == ("p1", "credit:3")
    queue = await stub.ListCorrectionQueue(
        pb.ListCorrectionQueueRequest(project_id=pid, reasons=[pb.CORRECTION_REASON_BAD_CASE])
    )
    assert len(queue.entries) == 2
    details = " ".join(d for e in queue.entries for d in e.details)
    assert "shadow_disagreement, wrong_by_ground_truth" in details and "p1:1" in details

    for bad, words in (
        (served(prediction_id=""), ("endpoint_name and prediction_id",)),
        (served(-1), ("row -1",)),
        (served(2, pb.BAD_CASE_REASON_UNSPECIFIED), ("UNSPECIFIED",)),
        (served(2, 99), ("[99]",)),
    ):
        await expect(
            stub.AddItems(pb.AddItemsRequest(project_id=pid, items=[item("c", bad)])),
            C.INVALID_ARGUMENT,
            *words,
        )
    listed = await stub.ListItems(pb.ListItemsRequest(project_id=pid))
    assert len(listed.items) == 2  # nothing stored by the refused calls

    # a human label of a served prediction cannot go back to serving: none is configured
    (a,) = (
        await stub.RequestAssignments(
            pb.RequestAssignmentsRequest(project_id=pid, annotator="ann", count=1)
        )
    ).assignments
    await stub.SubmitAnnotation(
        pb.SubmitAnnotationRequest(
            assignment_id=a.assignment_id,
            annotator="ann",
            value=pb.AnnotationValue(classes=pb.ClassLabels(labels=["1"])),
        )
    )
    job = (
        await stub.SubmitExportJob(pb.SubmitExportJobRequest(spec=pb.ExportSpec(project_id=pid)))
    ).job
    job = await wait(stub, job)
    assert job.status.state == common_pb2.JOB_STATE_FAILED
    assert job.status.error.code == "FAILED_PRECONDITION"
    assert "serving.target" in job.status.error.message
