"""gRPC front end of the labeling service: translation only (see convert.py and service.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from atlas.labeling.v1 import labeling_service_pb2 as pb
from atlas.labeling.v1 import labeling_service_pb2_grpc as pb_grpc
from atlas_core import lineage
from atlas_core import proto_convert as pc
from atlas_core.errors import InvalidArgument
from atlas_core.rpc import ServiceDef
from atlas_core.rpc.auth import fingerprint
from atlas_labeling import convert
from atlas_labeling.service import LabelingService

to_thread = asyncio.to_thread


def _require(value: str, name: str) -> str:
    if not value:
        raise InvalidArgument(f"{name} is empty", reason="EMPTY_ID")
    return value


def _person(given: str, context: Any, field: str) -> str:
    """The named annotator/reviewer, else the caller: ``token:<fingerprint>`` of its token."""
    if given:
        return given
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            _, _, token = str(value).partition(" ")
            if token.strip():
                return f"token:{fingerprint(token.strip())}"
    raise InvalidArgument(
        f"{field} is empty and the call carries no token to name the caller", reason="EMPTY_ID"
    )


class LabelingServicer(pb_grpc.LabelingServiceServicer):
    def __init__(self, service: LabelingService) -> None:
        self.svc = service

    # ---- projects -------------------------------------------------------------------------

    async def CreateProject(self, request: Any, context: Any) -> Any:
        project = await to_thread(
            self.svc.create_project, convert.spec_from_pb(request.spec), request.request_id
        )
        return pb.CreateProjectResponse(project=convert.project_to_pb(project))

    async def GetLineage(self, request: Any, context: Any) -> Any:
        view = await to_thread(
            self.svc.lineage, request.id, request.children_limit, request.ancestor_depth
        )
        return pb.GetLineageResponse(
            lineage=lineage.to_pb(view), ancestors=[lineage.to_pb(a) for a in view.ancestors]
        )

    async def GetProject(self, request: Any, context: Any) -> Any:
        project = await to_thread(self.svc.get_project, _require(request.project_id, "project_id"))
        return pb.GetProjectResponse(project=convert.project_to_pb(project))

    async def ListProjects(self, request: Any, context: Any) -> Any:
        offset, limit = pc.page_window(request.page)
        found, more = await to_thread(
            self.svc.list_projects,
            offset,
            limit,
            include_archived=request.include_archived,
            task_type=convert.task_type_filter(request.task_type),
        )
        return pb.ListProjectsResponse(
            projects=[convert.project_to_pb(p) for p in found],
            page=pc.page_response(offset, limit, more),
        )

    async def UpdateProject(self, request: Any, context: Any) -> Any:
        project = await to_thread(
            self.svc.update_project,
            _require(request.project_id, "project_id"),
            convert.spec_from_pb(request.spec),
            request.etag,
            request.request_id,
        )
        return pb.UpdateProjectResponse(project=convert.project_to_pb(project))

    async def ArchiveProject(self, request: Any, context: Any) -> Any:
        project = await to_thread(
            self.svc.archive_project, _require(request.project_id, "project_id")
        )
        return pb.ArchiveProjectResponse(project=convert.project_to_pb(project))

    # ---- items ----------------------------------------------------------------------------

    async def AddItems(self, request: Any, context: Any) -> Any:
        new = [convert.new_item_from_pb(item) for item in request.items]
        ids, skipped = await to_thread(
            self.svc.add_items,
            _require(request.project_id, "project_id"),
            new,
            request.request_id,
        )
        return pb.AddItemsResponse(item_ids=ids, skipped=skipped)

    async def GetItem(self, request: Any, context: Any) -> Any:
        item = await to_thread(
            self.svc.get_item, request.project_id, _require(request.item_id, "item_id")
        )
        return pb.GetItemResponse(item=convert.item_to_pb(item))

    async def ListItems(self, request: Any, context: Any) -> Any:
        offset, limit = pc.page_window(request.page)
        found, more = await to_thread(
            self.svc.list_items,
            _require(request.project_id, "project_id"),
            convert.statuses_from_pb(request.statuses),
            offset,
            limit,
            with_annotations=not request.omit_annotations,
        )
        return pb.ListItemsResponse(
            items=[
                convert.item_to_pb(i, with_annotations=not request.omit_annotations) for i in found
            ],
            page=pc.page_response(offset, limit, more),
        )

    # ---- assignments ----------------------------------------------------------------------

    async def RequestAssignments(self, request: Any, context: Any) -> Any:
        leased = await to_thread(
            self.svc.request_assignments,
            _require(request.project_id, "project_id"),
            _person(request.annotator, context, "annotator"),
            request.count,
            review=request.review,
            prefer_corrections=request.prefer_correction_queue,
            request_id=request.request_id,
        )
        return pb.RequestAssignmentsResponse(
            assignments=[convert.assignment_to_pb(a) for a in leased]
        )

    async def ListAssignments(self, request: Any, context: Any) -> Any:
        offset, limit = pc.page_window(request.page)
        found, more = await to_thread(
            self.svc.list_assignments,
            _require(request.project_id, "project_id"),
            request.annotator,
            request.include_submitted,
            offset,
            limit,
        )
        return pb.ListAssignmentsResponse(
            assignments=[convert.assignment_to_pb(a) for a in found],
            page=pc.page_response(offset, limit, more),
        )

    async def RenewAssignmentLease(self, request: Any, context: Any) -> Any:
        record = await to_thread(
            self.svc.renew_lease,
            _require(request.assignment_id, "assignment_id"),
            _person(request.annotator, context, "annotator"),
        )
        return pb.RenewAssignmentLeaseResponse(assignment=convert.assignment_to_pb(record))

    async def SubmitAnnotation(self, request: Any, context: Any) -> Any:
        value = convert.value_from_pb(request.value) if request.HasField("value") else None
        stored, status = await to_thread(
            self.svc.submit_annotation,
            _require(request.assignment_id, "assignment_id"),
            _person(request.annotator, context, "annotator"),
            value,
            skip=request.skip,
            confidence=request.confidence,
            duration_ms=request.duration_ms,
            request_id=request.request_id,
        )
        response = pb.SubmitAnnotationResponse(item_status=convert.ITEM_STATUS_TO_PB[status])
        if stored is not None:
            response.annotation.CopyFrom(convert.annotation_to_pb(stored))
        return response

    async def SubmitReview(self, request: Any, context: Any) -> Any:
        correction = (
            convert.value_from_pb(request.correction) if request.HasField("correction") else None
        )
        stored, status = await to_thread(
            self.svc.submit_review,
            _require(request.annotation_id, "annotation_id"),
            _person(request.reviewer, context, "reviewer"),
            convert.review_decision(request.decision),
            correction,
            request.comment,
            request.request_id,
        )
        return pb.SubmitReviewResponse(
            annotation=convert.annotation_to_pb(stored),
            item_status=convert.ITEM_STATUS_TO_PB[status],
        )

    async def GetAnnotatorStats(self, request: Any, context: Any) -> Any:
        project_id = _require(request.project_id, "project_id")
        stats = await to_thread(self.svc.annotator_stats, project_id, request.annotator)
        models = await to_thread(self.svc.suggestion_stats, project_id)
        return pb.GetAnnotatorStatsResponse(
            annotators=[convert.annotator_stats_to_pb(s) for s in stats],
            suggestions=[convert.suggestion_stats_to_pb(s) for s in models],
        )

    # ---- agreement --------------------------------------------------------------------------

    async def GetAgreement(self, request: Any, context: Any) -> Any:
        result = await to_thread(self.svc.agreement, _require(request.project_id, "project_id"))
        return convert.agreement_to_pb(result)

    # ---- correction queue -----------------------------------------------------------------

    async def ListCorrectionQueue(self, request: Any, context: Any) -> Any:
        offset, limit = pc.page_window(request.page)
        found, more = await to_thread(
            self.svc.correction_queue,
            _require(request.project_id, "project_id"),
            convert.correction_reasons_from_pb(request.reasons),
            offset,
            limit,
            include_resolved=request.include_resolved,
        )
        return pb.ListCorrectionQueueResponse(
            entries=[convert.correction_to_pb(e) for e in found],
            page=pc.page_response(offset, limit, more),
        )

    # ---- jobs -------------------------------------------------------------------------------

    async def SubmitImportJob(self, request: Any, context: Any) -> Any:
        record = await to_thread(self.svc.submit_import, request.spec, request.request_id)
        return pb.SubmitImportJobResponse(job=convert.job_to_pb(record))

    async def SubmitPrelabelJob(self, request: Any, context: Any) -> Any:
        record = await to_thread(self.svc.submit_prelabel, request.spec, request.request_id)
        return pb.SubmitPrelabelJobResponse(job=convert.job_to_pb(record))

    async def SubmitLabelIssuesJob(self, request: Any, context: Any) -> Any:
        record = await to_thread(self.svc.submit_label_issues, request.spec, request.request_id)
        return pb.SubmitLabelIssuesJobResponse(job=convert.job_to_pb(record))

    async def SubmitExportJob(self, request: Any, context: Any) -> Any:
        record = await to_thread(self.svc.submit_export, request.spec, request.request_id)
        return pb.SubmitExportJobResponse(job=convert.job_to_pb(record))

    async def GetLabelingJob(self, request: Any, context: Any) -> Any:
        record = await to_thread(self.svc.get_job, request.job_id)
        return pb.GetLabelingJobResponse(job=convert.job_to_pb(record))

    async def WatchLabelingJob(
        self, request: Any, context: Any
    ) -> AsyncIterator[pb.WatchLabelingJobResponse]:
        job_id = _require(request.job_id, "job_id")
        record = await to_thread(self.svc.get_job, job_id)
        seen = await to_thread(self.svc.jobs.events, job_id)
        yield pb.WatchLabelingJobResponse(job=convert.job_to_pb(record))
        if record.finished:
            return
        async for _event in self.svc.jobs.awatch(job_id, seen[-1].seq if seen else 0):
            record = await to_thread(self.svc.get_job, job_id)
            yield pb.WatchLabelingJobResponse(job=convert.job_to_pb(record))

    async def CancelLabelingJob(self, request: Any, context: Any) -> Any:
        record = await to_thread(self.svc.cancel_job, _require(request.job_id, "job_id"))
        return pb.CancelLabelingJobResponse(job=convert.job_to_pb(record))

    async def ListLabelingJobs(self, request: Any, context: Any) -> Any:
        offset, limit = pc.page_window(request.page)
        states = {pc.JOB_STATES_FROM_PB[s] for s in request.states if s in pc.JOB_STATES_FROM_PB}
        records, more = await to_thread(
            self.svc.list_jobs,
            offset,
            limit,
            project_id=request.project_id,
            kind=convert.JOB_KINDS_FROM_PB.get(request.kind),
            states=states,
        )
        return pb.ListLabelingJobsResponse(
            jobs=[convert.job_to_pb(r) for r in records],
            page=pc.page_response(offset, limit, more),
        )

    async def ListExports(self, request: Any, context: Any) -> Any:
        offset, limit = pc.page_window(request.page)
        found, more = await to_thread(
            self.svc.list_exports, _require(request.project_id, "project_id"), offset, limit
        )
        return pb.ListExportsResponse(
            exports=[convert.export_to_pb(e) for e in found],
            page=pc.page_response(offset, limit, more),
        )


def labeling_service_def(service: LabelingService) -> ServiceDef:
    return ServiceDef(
        LabelingServicer(service),
        pb_grpc.add_LabelingServiceServicer_to_server,
        pb.DESCRIPTOR.services_by_name["LabelingService"].full_name,
        on_stop=service.stop,
    )
