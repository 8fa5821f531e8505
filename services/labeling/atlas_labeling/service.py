"""The labeling service's domain facade (no grpc): what every front end (gRPC, CLI, tests)
uses. Mutations taking a request_id are idempotent: a retry returns the first result."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import replace

from sqlalchemy import select

from atlas.labeling.v1 import labeling_service_pb2 as pb
from atlas_core import lineage as lin
from atlas_core.db import IdempotencyStore, write_transaction
from atlas_core.errors import FailedPrecondition, InvalidArgument, NotFound
from atlas_core.jobs import JobRecord, JobRunner
from atlas_labeling.agreement import Agreement, project_agreement
from atlas_labeling.assignments import AnnotatorStats, AssignmentRecord
from atlas_labeling.config import LabelingSettings
from atlas_labeling.consensus import refit as consensus_refit
from atlas_labeling.corrections import CorrectionEntry
from atlas_labeling.items import AnnotationRecord, ItemRecord, NewItem
from atlas_labeling.jobs import (
    FORMATS,
    KIND_EXPORT,
    KIND_IMPORT,
    KIND_LABEL_ISSUES,
    KIND_PRELABEL,
    RESUMABLE,
    export_sources,
    job_handlers,
    parse_cursor,
    spec_to_json,
)
from atlas_labeling.labels import read_rows
from atlas_labeling.lineage import LabelingLineage
from atlas_labeling.ordering import refresh_order
from atlas_labeling.prelabel import SuggestionStats, suggestion_stats
from atlas_labeling.projects import Project
from atlas_labeling.runtime import LabelingRuntime, open_runtime
from atlas_labeling.schema import CONTENT_KIND, VALUE_KIND, ProjectSpec
from atlas_labeling.tables import exports, idempotency
from atlas_labeling.values import Value

# What a job process imports (jobs._run, the work, the export reader and writer; pyarrow
# imports pandas the first time it converts Python values).
JOB_MODULES = (
    "atlas_labeling.jobs",
    "atlas_labeling.job_work",
    "atlas_labeling.export_reader",
    "pyarrow.parquet",
    "pandas",
)


class LabelingService:
    def __init__(self, runtime: LabelingRuntime, runner: JobRunner | None = None) -> None:
        self.rt = runtime
        self.jobs = runner or JobRunner(
            runtime.engine,
            job_handlers(runtime.settings),
            max_concurrent=runtime.settings.jobs.max_concurrent,
            runner_id=runtime.settings.jobs.runner_id,
            # Job processes fork from a server that imported these once (an export of a
            # million rows took seconds less): see JobRunner.
            preload=JOB_MODULES,
        )
        self.idempotency = IdempotencyStore(runtime.engine, idempotency)
        self.lineage_index = LabelingLineage(runtime.engine, runtime.projects, self.jobs)

    @classmethod
    def open(cls, settings: LabelingSettings) -> LabelingService:
        runtime = open_runtime(settings)
        runtime.artifacts.exists("atlas-startup-probe")  # fail fast on wrong S3 credentials
        return cls(runtime)

    def start(self) -> None:
        self.jobs.start()

    def stop(self) -> None:
        self.jobs.stop()
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

    def lineage(
        self, lineage_id: str, children_limit: int, ancestor_depth: int = 0
    ) -> lin.LineageView:
        return lin.answer(self.lineage_index.view, lineage_id, children_limit, ancestor_depth)

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
        before = self.rt.projects.get(project_id, with_stats=False)
        project = self.rt.projects.update(project_id, self._with_defaults(spec), etag)
        if project.spec.queue_order != before.spec.queue_order:
            with write_transaction(self.rt.engine) as conn:
                refresh_order(conn, project)
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
        prefer_corrections: bool = False,
        request_id: str = "",
    ) -> list[AssignmentRecord]:
        key = f"{annotator}|{request_id}" if request_id else ""
        seen = self.idempotency.recall("RequestAssignments", key)
        if seen is not None:
            return self.rt.queue.get_many(seen["assignment_ids"])
        leased = self.rt.queue.request(
            project_id, annotator, count, review=review, prefer_corrections=prefer_corrections
        )
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

    def suggestion_stats(self, project_id: str) -> list[SuggestionStats]:
        with self.rt.engine.connect() as conn:
            self.rt.projects.load(conn, project_id)
            return suggestion_stats(conn, project_id)

    # ---- jobs ---------------------------------------------------------------------------

    def submit_import(self, spec: pb.ImportSpec, request_id: str = "") -> JobRecord:
        """Check what can be checked at once, then queue a resumable import."""
        project = self.rt.projects.get(spec.project_id, with_stats=False)
        if project.archived:
            raise FailedPrecondition(f"project {spec.project_id} is archived", reason="ARCHIVED")
        source = spec.WhichOneof("source")
        if source is None:
            raise InvalidArgument("import_items: give manifest or bad_cases", reason="NO_SOURCE")
        if source == "bad_cases":
            return self._submit_bad_cases(spec, project.spec.task_type, request_id)
        m = spec.manifest
        if not m.manifest.uri:
            raise InvalidArgument("manifest.manifest.uri is empty", reason="NO_SOURCE")
        if not m.content_column:
            raise InvalidArgument("manifest.content_column is empty", reason="MISSING_COLUMN")
        if CONTENT_KIND[project.spec.task_type] == "image_pair" and not m.second_content_column:
            raise InvalidArgument(
                "manifest.second_content_column is empty (face pairs need two images)",
                reason="MISSING_COLUMN",
            )
        if m.prelabel_column:
            raise InvalidArgument(
                "manifest.prelabel_column is not supported yet", reason="UNSUPPORTED_COLUMN"
            )
        key = self.rt.artifacts.key_for_uri(m.manifest.uri)
        if not self.rt.artifacts.exists(key):
            raise NotFound(f"manifest {m.manifest.uri} does not exist", reason="NOT_FOUND")
        return self._submit(KIND_IMPORT, spec, request_id)

    def _submit_bad_cases(self, spec: pb.ImportSpec, task: str, request_id: str) -> JobRecord:
        b = spec.bad_cases
        if not b.endpoint_name:
            raise InvalidArgument("bad_cases.endpoint_name is empty", reason="EMPTY_ID")
        if not b.content_column:
            raise InvalidArgument("bad_cases.content_column is empty", reason="MISSING_COLUMN")
        if not 0.0 <= b.max_confidence <= 1.0:
            raise InvalidArgument(
                "bad_cases.max_confidence is outside [0, 1]", reason="OUT_OF_RANGE"
            )
        if b.max_items < 0:
            raise InvalidArgument("bad_cases.max_items is negative", reason="OUT_OF_RANGE")
        if CONTENT_KIND[task] == "image_pair":
            raise FailedPrecondition(
                "bad cases carry one input: face-pair projects cannot import them",
                reason="OUTPUT_DOES_NOT_FIT",
            )
        from atlas_labeling.job_work import serving_client

        with serving_client(self.rt) as client:
            client.get_endpoint(b.endpoint_name)  # NotFound names the endpoint
        return self._submit(KIND_IMPORT, spec, request_id)

    def submit_export(self, spec: pb.ExportSpec, request_id: str = "") -> JobRecord:
        project = self.rt.projects.get(spec.project_id, with_stats=False)
        if spec.format not in FORMATS:
            raise InvalidArgument(f"format {spec.format} is unknown", reason="BAD_FORMAT")
        fmt = FORMATS[spec.format]
        after = parse_cursor(spec.after_cursor)
        if not 0.0 <= spec.min_agreement <= 1.0:
            raise InvalidArgument("min_agreement is outside [0, 1]", reason="OUT_OF_RANGE")
        if spec.rows_per_part < 0:
            raise InvalidArgument("rows_per_part is negative", reason="OUT_OF_RANGE")
        if (
            spec.HasField("start_time")
            and spec.HasField("end_time")
            and spec.end_time.ToNanoseconds() <= spec.start_time.ToNanoseconds()
        ):
            raise InvalidArgument("end_time must be after start_time", reason="BAD_WINDOW")
        if fmt == "coco" and VALUE_KIND[project.spec.task_type] != "boxes":
            raise FailedPrecondition(
                f"COCO exports boxes; task type {project.spec.task_type} has none",
                reason="NO_BOXES",
            )
        if spec.dataset_name and fmt != "parquet":
            raise InvalidArgument(
                "dataset_name needs the Parquet format", reason="DATASET_NEEDS_PARQUET"
            )
        with self.rt.engine.connect() as conn:
            found = read_rows(conn, spec.project_id, after, 1, sources=export_sources(spec))
        if not found:
            raise FailedPrecondition(
                "no label row matches the export (nothing decided after the cursor)",
                reason="NO_LABELS",
            )
        return self._submit(KIND_EXPORT, spec, request_id)

    def submit_prelabel(self, spec: pb.PrelabelSpec, request_id: str = "") -> JobRecord:
        project = self.rt.projects.get(spec.project_id, with_stats=False)
        if project.archived:
            raise FailedPrecondition(f"project {spec.project_id} is archived", reason="ARCHIVED")
        if not 0.0 <= spec.low_confidence_threshold <= 1.0:
            raise InvalidArgument(
                "low_confidence_threshold is outside [0, 1]", reason="OUT_OF_RANGE"
            )
        if not 0 <= spec.batch_size <= 10_000:
            raise InvalidArgument("batch_size must be in 0..10000", reason="OUT_OF_RANGE")
        if not spec.endpoint_name:
            raise InvalidArgument("endpoint_name is empty", reason="EMPTY_ID")
        if VALUE_KIND[project.spec.task_type] not in ("classes", "face_pair"):
            raise FailedPrecondition(
                f"a serving endpoint answers with one class; task type "
                f"{project.spec.task_type} needs spans or boxes",
                reason="OUTPUT_DOES_NOT_FIT",
            )
        from atlas_labeling.job_work import serving_client

        with serving_client(self.rt) as client:
            client.get_endpoint(spec.endpoint_name)  # NotFound names the endpoint
        return self._submit(KIND_PRELABEL, spec, request_id)

    def submit_label_issues(self, spec: pb.LabelIssuesSpec, request_id: str = "") -> JobRecord:
        project = self.rt.projects.get(spec.project_id, with_stats=False)
        if VALUE_KIND[project.spec.task_type] not in ("classes", "face_pair") or (
            project.spec.multi_label
        ):
            raise FailedPrecondition(
                "confident learning needs single-label classification or face pairs",
                reason="NOT_SINGLE_LABEL",
            )
        if not spec.key_column:
            raise InvalidArgument("key_column is empty", reason="MISSING_COLUMN")
        if not spec.probabilities.uri:
            raise InvalidArgument("probabilities.uri is empty", reason="NO_SOURCE")
        key = self.rt.artifacts.key_for_uri(spec.probabilities.uri)
        if not self.rt.artifacts.exists(key):
            raise NotFound(
                f"probabilities {spec.probabilities.uri} do not exist", reason="NOT_FOUND"
            )
        return self._submit(KIND_LABEL_ISSUES, spec, request_id)

    def _submit(self, kind: str, spec: object, request_id: str) -> JobRecord:
        job_id = self.jobs.submit(
            kind, spec_to_json(spec), request_id=request_id or None, resumable=kind in RESUMABLE
        )
        return self.jobs.get(job_id)

    def get_job(self, job_id: str) -> JobRecord:
        if not job_id:
            raise InvalidArgument("job_id is empty", reason="EMPTY_ID")
        return self.jobs.get(job_id)

    def cancel_job(self, job_id: str) -> JobRecord:
        record = self.get_job(job_id)
        if not record.finished:
            self.jobs.cancel(job_id)
        return self.jobs.get(job_id)

    def list_jobs(
        self,
        offset: int,
        limit: int,
        *,
        project_id: str = "",
        kind: str | None = None,
        states: Collection[str] | None = None,
    ) -> tuple[list[JobRecord], bool]:
        records = [
            r
            for r in self.jobs.list_all(kind=kind)
            if (not states or r.state in states)
            and (not project_id or r.spec.get("project_id") == project_id)
        ]
        records.sort(key=lambda r: r.created_at, reverse=True)
        return records[offset : offset + limit], offset + limit < len(records)

    def list_exports(self, project_id: str, offset: int, limit: int) -> tuple[list[dict], bool]:
        with self.rt.engine.connect() as conn:
            self.rt.projects.load(conn, project_id)
            rows = (
                conn.execute(
                    select(exports.c.body)
                    .where(exports.c.project_id == project_id)
                    .order_by(exports.c.created_at.desc(), exports.c.export_id)
                    .offset(offset)
                    .limit(limit + 1)
                )
                .scalars()
                .all()
            )
        return [json.loads(r) for r in rows[:limit]], len(rows) > limit

    # ---- correction queue ---------------------------------------------------------------

    def correction_queue(
        self,
        project_id: str,
        reasons: Sequence[str],
        offset: int,
        limit: int,
        *,
        include_resolved: bool = False,
    ) -> tuple[list[CorrectionEntry], bool]:
        return self.rt.corrections.list(
            project_id, reasons, offset, limit, include_resolved=include_resolved
        )

    # ---- agreement ----------------------------------------------------------------------

    def agreement(self, project_id: str) -> Agreement:
        with self.rt.engine.connect() as conn:
            project = self.rt.projects.load(conn, project_id)
            found = project_agreement(conn, project)
        if project.spec.consensus == "weighted":
            self.refit_consensus(project_id)  # the full pass happens here, not in submits
        return found

    def refit_consensus(self, project_id: str) -> None:
        """Refit the project's Dawid-Skene confusion matrices over all its votes now."""
        with write_transaction(self.rt.engine) as conn:
            self.rt.projects.load(conn, project_id)
            consensus_refit(conn, project_id, self.rt.queue.clock())
