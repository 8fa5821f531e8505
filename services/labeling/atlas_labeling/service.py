"""The labeling service's domain facade (no grpc): what every front end (gRPC, CLI, tests)
uses. Mutations taking a request_id are idempotent: a retry returns the first result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from atlas_core.db import IdempotencyStore
from atlas_labeling.assignments import AnnotatorStats, AssignmentRecord
from atlas_labeling.config import LabelingSettings
from atlas_labeling.items import AnnotationRecord, ItemRecord, NewItem
from atlas_labeling.projects import Project
from atlas_labeling.runtime import LabelingRuntime, open_runtime
from atlas_labeling.schema import ProjectSpec
from atlas_labeling.tables import idempotency
from atlas_labeling.values import Value


class LabelingService:
    def __init__(self, runtime: LabelingRuntime) -> None:
        self.rt = runtime
        self.idempotency = IdempotencyStore(runtime.engine, idempotency)

    @classmethod
    def open(cls, settings: LabelingSettings) -> LabelingService:
        runtime = open_runtime(settings)
        runtime.artifacts.exists("atlas-startup-probe")  # fail fast on wrong S3 credentials
        return cls(runtime)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.rt.close()

    # ---- projects -----------------------------------------------------------------------

    def _with_defaults(self, spec: ProjectSpec) -> ProjectSpec:
        if not spec.assignment_ttl_s:
            spec = replace(spec, assignment_ttl_s=self.rt.settings.queue.default_lease_s)
        return spec

    def create_project(self, spec: ProjectSpec, request_id: str = "") -> Project:
        seen = self.idempotency.recall("CreateProject", request_id)
        if seen is not None:
            return self.rt.projects.get(seen["project_id"])
        project = self.rt.projects.create(self._with_defaults(spec))
        self.idempotency.remember("CreateProject", request_id, {"project_id": project.project_id})
        return self.rt.projects.get(project.project_id)

    def get_project(self, project_id: str) -> Project:
        return self.rt.projects.get(project_id)

    def list_projects(
        self, offset: int, limit: int, *, include_archived: bool = False, task_type: str = ""
    ) -> tuple[list[Project], bool]:
        return self.rt.projects.list(
            offset, limit, include_archived=include_archived, task_type=task_type
        )

    def update_project(
        self, project_id: str, spec: ProjectSpec, etag: str = "", request_id: str = ""
    ) -> Project:
        if self.idempotency.recall("UpdateProject", request_id) is not None:
            return self.rt.projects.get(project_id)
        project = self.rt.projects.update(project_id, self._with_defaults(spec), etag)
        self.idempotency.remember("UpdateProject", request_id, {"project_id": project_id})
        return project

    def archive_project(self, project_id: str, request_id: str = "") -> Project:
        return self.rt.projects.archive(project_id)  # archiving twice is harmless

    # ---- items --------------------------------------------------------------------------

    def add_items(
        self, project_id: str, new: Sequence[NewItem], request_id: str = ""
    ) -> tuple[list[str], int]:
        seen = self.idempotency.recall("AddItems", request_id)
        if seen is not None:
            return list(seen["item_ids"]), int(seen["skipped"])
        ids, skipped = self.rt.items.add(project_id, new)
        self.idempotency.remember("AddItems", request_id, {"item_ids": ids, "skipped": skipped})
        return ids, skipped

    def get_item(self, project_id: str, item_id: str) -> ItemRecord:
        return self.rt.items.get(project_id, item_id)

    def list_items(
        self,
        project_id: str,
        statuses: Sequence[str],
        offset: int,
        limit: int,
        *,
        with_annotations: bool = True,
    ) -> tuple[list[ItemRecord], bool]:
        return self.rt.items.list(
            project_id, statuses, offset, limit, with_annotations=with_annotations
        )

    # ---- assignments --------------------------------------------------------------------

    def request_assignments(
        self,
        project_id: str,
        annotator: str,
        count: int,
        *,
        review: bool = False,
        request_id: str = "",
    ) -> list[AssignmentRecord]:
        key = f"{annotator}|{request_id}" if request_id else ""
        seen = self.idempotency.recall("RequestAssignments", key)
        if seen is not None:
            return self.rt.queue.get_many(seen["assignment_ids"])
        leased = self.rt.queue.request(project_id, annotator, count, review=review)
        self.idempotency.remember(
            "RequestAssignments", key, {"assignment_ids": [a.assignment_id for a in leased]}
        )
        return leased

    def list_assignments(
        self, project_id: str, annotator: str, include_submitted: bool, offset: int, limit: int
    ) -> tuple[list[AssignmentRecord], bool]:
        return self.rt.queue.list(project_id, annotator, include_submitted, offset, limit)

    def renew_lease(self, assignment_id: str, annotator: str) -> AssignmentRecord:
        return self.rt.queue.renew(assignment_id, annotator)

    def submit_annotation(
        self,
        assignment_id: str,
        annotator: str,
        value: Value | None,
        *,
        skip: bool = False,
        confidence: float = 0.0,
        duration_ms: int = 0,
        request_id: str = "",
    ) -> tuple[AnnotationRecord | None, str]:
        return self.rt.queue.submit(
            assignment_id,
            annotator,
            value,
            skip=skip,
            confidence=confidence,
            duration_ms=duration_ms,
            request_id=request_id,
        )

    def submit_review(
        self,
        annotation_id: str,
        reviewer: str,
        decision: str,
        correction: Value | None = None,
        comment: str = "",
        request_id: str = "",
    ) -> tuple[AnnotationRecord, str]:
        return self.rt.queue.review(
            annotation_id, reviewer, decision, correction, comment, request_id
        )

    def annotator_stats(self, project_id: str, annotator: str = "") -> list[AnnotatorStats]:
        return self.rt.queue.annotator_stats(project_id, annotator)
