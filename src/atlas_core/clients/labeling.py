"""Python client of the labeling service (the SDK): projects, items, leased assignments,
annotation, review, annotator stats, agreement, the correction queue and labeling jobs."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from atlas.common.v1 import common_pb2
from atlas.labeling.v1 import labeling_service_pb2 as pb
from atlas.labeling.v1 import labeling_service_pb2_grpc as pb_grpc
from atlas_core.clients._base import ServiceClient, mapped_errors, mapped_stream
from atlas_core.errors import DeadlineExceeded
from atlas_core.rpc.channel import ClientSettings

_PAGE = 500
TERMINAL = {
    common_pb2.JOB_STATE_SUCCEEDED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
}


class LabelingClient(ServiceClient):
    lineage_request = pb.GetLineageRequest

    def __init__(self, settings: ClientSettings, *, timeout: float = 60.0) -> None:
        super().__init__(settings, timeout=timeout)
        self.stub = pb_grpc.LabelingServiceStub(self._channel)

    # -- projects -------------------------------------------------------------------------

    @mapped_errors
    def create_project(self, spec: pb.ProjectSpec, *, request_id: str = "") -> pb.Project:
        return self.stub.CreateProject(
            pb.CreateProjectRequest(spec=spec, request_id=request_id), timeout=self.timeout
        ).project

    @mapped_errors
    def get_project(self, project_id: str) -> pb.Project:
        return self.stub.GetProject(
            pb.GetProjectRequest(project_id=project_id), timeout=self.timeout
        ).project

    @mapped_errors
    def list_projects(
        self, *, include_archived: bool = False, task_type: int = 0
    ) -> list[pb.Project]:
        found: list[pb.Project] = []
        token = ""
        while True:
            resp = self.stub.ListProjects(
                pb.ListProjectsRequest(
                    page=common_pb2.PageRequest(page_size=_PAGE, page_token=token),
                    include_archived=include_archived,
                    task_type=task_type,  # type: ignore[arg-type]
                ),
                timeout=self.timeout,
            )
            found.extend(resp.projects)
            token = resp.page.next_page_token
            if not token:
                return found

    @mapped_errors
    def update_project(
        self, project_id: str, spec: pb.ProjectSpec, *, etag: str = "", request_id: str = ""
    ) -> pb.Project:
        return self.stub.UpdateProject(
            pb.UpdateProjectRequest(
                project_id=project_id, spec=spec, etag=etag, request_id=request_id
            ),
            timeout=self.timeout,
        ).project

    @mapped_errors
    def archive_project(self, project_id: str, *, request_id: str = "") -> pb.Project:
        return self.stub.ArchiveProject(
            pb.ArchiveProjectRequest(project_id=project_id, request_id=request_id),
            timeout=self.timeout,
        ).project

    # -- items ----------------------------------------------------------------------------

    @mapped_errors
    def add_items(
        self, project_id: str, items: Sequence[pb.NewItem], *, request_id: str = ""
    ) -> pb.AddItemsResponse:
        """Add up to 1,000 items; ids come back in order ("" for skipped duplicates)."""
        return self.stub.AddItems(
            pb.AddItemsRequest(project_id=project_id, items=items, request_id=request_id),
            timeout=self.timeout,
        )

    def add_texts(
        self, project_id: str, texts: Sequence[str], *, request_id: str = ""
    ) -> list[str]:
        items = [pb.NewItem(content=pb.ItemContent(text=t)) for t in texts]
        return list(self.add_items(project_id, items, request_id=request_id).item_ids)

    @mapped_errors
    def get_item(self, project_id: str, item_id: str) -> pb.Item:
        return self.stub.GetItem(
            pb.GetItemRequest(project_id=project_id, item_id=item_id), timeout=self.timeout
        ).item

    def iter_items(
        self, project_id: str, statuses: Sequence[int] = (), *, omit_annotations: bool = False
    ) -> Iterator[pb.Item]:
        """Every item of the project (optionally of these statuses), page by page."""
        token = ""
        while True:
            resp = self._items_page(project_id, statuses, omit_annotations, token)
            yield from resp.items
            token = resp.page.next_page_token
            if not token:
                return

    @mapped_errors
    def _items_page(
        self, project_id: str, statuses: Sequence[int], omit: bool, token: str
    ) -> pb.ListItemsResponse:
        return self.stub.ListItems(
            pb.ListItemsRequest(
                project_id=project_id,
                statuses=statuses,  # type: ignore[arg-type]
                omit_annotations=omit,
                page=common_pb2.PageRequest(page_size=_PAGE, page_token=token),
            ),
            timeout=self.timeout,
        )

    # -- assignments ----------------------------------------------------------------------

    @mapped_errors
    def request_assignments(
        self,
        project_id: str,
        count: int = 1,
        *,
        annotator: str = "",
        review: bool = False,
        request_id: str = "",
    ) -> list[pb.Assignment]:
        """Lease up to ``count`` items (fewer, or none, when the queue is short)."""
        return list(
            self.stub.RequestAssignments(
                pb.RequestAssignmentsRequest(
                    project_id=project_id,
                    annotator=annotator,
                    count=count,
                    review=review,
                    request_id=request_id,
                ),
                timeout=self.timeout,
            ).assignments
        )

    @mapped_errors
    def list_assignments(
        self, project_id: str, *, annotator: str = "", include_submitted: bool = False
    ) -> list[pb.Assignment]:
        return list(
            self.stub.ListAssignments(
                pb.ListAssignmentsRequest(
                    project_id=project_id,
                    annotator=annotator,
                    include_submitted=include_submitted,
                    page=common_pb2.PageRequest(page_size=1000),
                ),
                timeout=self.timeout,
            ).assignments
        )

    @mapped_errors
    def renew_lease(self, assignment_id: str, *, annotator: str = "") -> pb.Assignment:
        """The heartbeat: extends the lease by the project's TTL from now."""
        return self.stub.RenewAssignmentLease(
            pb.RenewAssignmentLeaseRequest(assignment_id=assignment_id, annotator=annotator),
            timeout=self.timeout,
        ).assignment

    @mapped_errors
    def submit_annotation(
        self,
        assignment_id: str,
        value: pb.AnnotationValue | None = None,
        *,
        skip: bool = False,
        annotator: str = "",
        confidence: float = 0.0,
        duration_ms: int = 0,
        request_id: str = "",
    ) -> pb.SubmitAnnotationResponse:
        request = pb.SubmitAnnotationRequest(
            assignment_id=assignment_id,
            skip=skip,
            annotator=annotator,
            confidence=confidence,
            duration_ms=duration_ms,
            request_id=request_id,
        )
        if value is not None:
            request.value.CopyFrom(value)
        return self.stub.SubmitAnnotation(request, timeout=self.timeout)

    def skip(
        self, assignment_id: str, *, annotator: str = "", request_id: str = ""
    ) -> pb.SubmitAnnotationResponse:
        return self.submit_annotation(
            assignment_id, skip=True, annotator=annotator, request_id=request_id
        )

    @mapped_errors
    def submit_review(
        self,
        annotation_id: str,
        decision: int,
        *,
        correction: pb.AnnotationValue | None = None,
        comment: str = "",
        reviewer: str = "",
        request_id: str = "",
    ) -> pb.SubmitReviewResponse:
        request = pb.SubmitReviewRequest(
            annotation_id=annotation_id,
            decision=decision,  # type: ignore[arg-type]
            comment=comment,
            reviewer=reviewer,
            request_id=request_id,
        )
        if correction is not None:
            request.correction.CopyFrom(correction)
        return self.stub.SubmitReview(request, timeout=self.timeout)

    @mapped_errors
    def annotator_stats(self, project_id: str, annotator: str = "") -> list[pb.AnnotatorStats]:
        return list(
            self.stub.GetAnnotatorStats(
                pb.GetAnnotatorStatsRequest(project_id=project_id, annotator=annotator),
                timeout=self.timeout,
            ).annotators
        )

    # -- quality ---------------------------------------------------------------------------

    @mapped_errors
    def agreement(self, project_id: str) -> pb.GetAgreementResponse:
        return self.stub.GetAgreement(
            pb.GetAgreementRequest(project_id=project_id), timeout=self.timeout
        )

    @mapped_errors
    def correction_queue(
        self, project_id: str, reasons: Sequence[int] = (), *, include_resolved: bool = False
    ) -> list[pb.CorrectionEntry]:
        return list(
            self.stub.ListCorrectionQueue(
                pb.ListCorrectionQueueRequest(
                    project_id=project_id,
                    reasons=reasons,  # type: ignore[arg-type]
                    include_resolved=include_resolved,
                    page=common_pb2.PageRequest(page_size=1000),
                ),
                timeout=self.timeout,
            ).entries
        )

    # -- jobs ------------------------------------------------------------------------------

    @mapped_errors
    def submit_import(self, spec: pb.ImportSpec, *, request_id: str = "") -> pb.LabelingJob:
        """Import items from a manifest (``spec.manifest``) or serving bad cases."""
        return self.stub.SubmitImportJob(
            pb.SubmitImportJobRequest(spec=spec, request_id=request_id), timeout=self.timeout
        ).job

    @mapped_errors
    def submit_export(self, spec: pb.ExportSpec, *, request_id: str = "") -> pb.LabelingJob:
        return self.stub.SubmitExportJob(
            pb.SubmitExportJobRequest(spec=spec, request_id=request_id), timeout=self.timeout
        ).job

    @mapped_errors
    def submit_prelabel(self, spec: pb.PrelabelSpec, *, request_id: str = "") -> pb.LabelingJob:
        return self.stub.SubmitPrelabelJob(
            pb.SubmitPrelabelJobRequest(spec=spec, request_id=request_id), timeout=self.timeout
        ).job

    @mapped_errors
    def submit_label_issues(
        self, spec: pb.LabelIssuesSpec, *, request_id: str = ""
    ) -> pb.LabelingJob:
        return self.stub.SubmitLabelIssuesJob(
            pb.SubmitLabelIssuesJobRequest(spec=spec, request_id=request_id),
            timeout=self.timeout,
        ).job

    @mapped_errors
    def get_job(self, job_id: str) -> pb.LabelingJob:
        return self.stub.GetLabelingJob(
            pb.GetLabelingJobRequest(job_id=job_id), timeout=self.timeout
        ).job

    def watch(self, job_id: str) -> Iterator[pb.LabelingJob]:
        """The job at each progress event, ending after its terminal state."""
        for event in mapped_stream(
            self.stub.WatchLabelingJob(pb.WatchLabelingJobRequest(job_id=job_id))
        ):
            yield event.job

    def wait_job(self, job_id: str, timeout: float = 600.0) -> pb.LabelingJob:
        """Follow the job until it ends; returns its final state (check status.state)."""
        deadline = time.monotonic() + timeout
        job = self.get_job(job_id)
        for job in self.watch(job_id):
            if job.status.state in TERMINAL or time.monotonic() > deadline:
                break
        if job.status.state not in TERMINAL:
            raise DeadlineExceeded(f"labeling job {job_id} still running after {timeout:.0f}s")
        return job

    @mapped_errors
    def cancel_job(self, job_id: str, *, request_id: str = "") -> pb.LabelingJob:
        return self.stub.CancelLabelingJob(
            pb.CancelLabelingJobRequest(job_id=job_id, request_id=request_id),
            timeout=self.timeout,
        ).job

    @mapped_errors
    def list_jobs(self, project_id: str = "", kind: int = 0) -> list[pb.LabelingJob]:
        return list(
            self.stub.ListLabelingJobs(
                pb.ListLabelingJobsRequest(
                    project_id=project_id,
                    kind=kind,  # type: ignore[arg-type]
                    page=common_pb2.PageRequest(page_size=1000),
                ),
                timeout=self.timeout,
            ).jobs
        )

    @mapped_errors
    def list_exports(self, project_id: str) -> list[pb.Export]:
        return list(
            self.stub.ListExports(
                pb.ListExportsRequest(
                    project_id=project_id, page=common_pb2.PageRequest(page_size=1000)
                ),
                timeout=self.timeout,
            ).exports
        )
