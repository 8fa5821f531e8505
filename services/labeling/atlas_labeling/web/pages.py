"""The annotator's pages: projects, the next item of every task type, skip, lease heartbeat,
review. Each handler is one or two calls of the labeling service with the signed-in person's
token; what to show and whether an answer is valid is the service's decision."""

from __future__ import annotations

import math
import secrets
import time
from typing import Any
from urllib.parse import quote

from google.protobuf import json_format
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from atlas.labeling.v1 import labeling_service_pb2 as pb
from atlas_core.clients.labeling import LabelingClient
from atlas_core.errors import FailedPrecondition, InvalidArgument
from atlas_core.storage import ArtifactStore
from atlas_core.web import WebKit, safe_next
from atlas_labeling.web.clients import ClientPool
from atlas_labeling.web.config import LabelingWebSettings
from atlas_labeling.web.images import image_uri, open_image

# Which editor each task type uses.
EDITORS = {
    "text_classification": "classes",
    "image_classification": "classes",
    "text_spans": "spans",
    "ocr": "boxes",
    "face_boxes": "boxes",
    "object_boxes": "boxes",
    "face_pair": "face_pair",
}
REVIEW_DECISIONS = {
    "accept": pb.REVIEW_DECISION_ACCEPT,
    "reject": pb.REVIEW_DECISION_REJECT,
    "correct": pb.REVIEW_DECISION_CORRECT,
}
_MAX_VALUE_CHARS = 1_000_000


def lease_cookie(project_id: str, *, review: bool) -> str:
    """Cookie holding the request id of the lease in progress in a project."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in project_id)
    return f"atlas_{'review' if review else 'lease'}_{safe}"


def task_slug(task_type: int) -> str:
    return pb.TaskType.Name(task_type).removeprefix("TASK_TYPE_").lower()


def suggestion_of(assignment: pb.Assignment) -> dict[str, Any] | None:
    """The newest model pre-label of the assigned item: assignments carry the item's MODEL
    suggestions (and nothing else of its annotations), so no GetItem is needed."""
    models = [a for a in assignment.item.annotations if a.source == pb.ANNOTATION_SOURCE_MODEL]
    if not models:
        return None
    latest = max(models, key=lambda a: a.create_time.ToNanoseconds())
    version = latest.model.version
    model = latest.model.model_name + (f":{version}" if version else "")
    return {
        "value": _as_dict(latest.value),
        "model": model or latest.author,
        "score": latest.confidence,
    }


def _nonce() -> str:
    return secrets.token_urlsafe(12)


def _as_dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def parse_value(raw: str) -> pb.AnnotationValue:
    """The annotation the page built (proto3 JSON of AnnotationValue); only its shape is
    checked here, its meaning by the service."""
    if not raw or len(raw) > _MAX_VALUE_CHARS:
        raise InvalidArgument("the answer is empty or too large", reason="MISSING_VALUE")
    try:
        return json_format.Parse(raw, pb.AnnotationValue())
    except json_format.ParseError as exc:
        raise InvalidArgument(f"the answer is malformed: {exc}", reason="MALFORMED_VALUE") from None


class Pages:
    def __init__(
        self, kit: WebKit, pool: ClientPool, store: ArtifactStore, settings: LabelingWebSettings
    ) -> None:
        self.kit = kit
        self.pool = pool
        self.store = store
        self.settings = settings

    def client(self, request: Request) -> LabelingClient:
        return self.pool.get(self.kit.session(request).token)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.projects),
            Route("/p/{project_id}/next", self.next_item),
            Route("/p/{project_id}/label", self.label),
            Route("/p/{project_id}/review/next", self.next_review),
            Route("/p/{project_id}/review", self.review),
            Route("/a/{assignment_id}/submit", self.submit, methods=["POST"]),
            Route("/a/{assignment_id}/skip", self.skip, methods=["POST"]),
            Route("/a/{assignment_id}/renew", self.renew, methods=["POST"]),
            Route("/annotations/{annotation_id}/review", self.submit_review, methods=["POST"]),
            Route("/img/{project_id}/{item_id}/{index:int}", self.image),
        ]

    # ---- pages ---------------------------------------------------------------------------

    async def projects(self, request: Request) -> Response:
        found = await run_in_threadpool(self.client(request).list_projects)
        rows = [
            {
                "id": p.project_id,
                "name": p.spec.name,
                "task": task_slug(p.spec.task_type),
                "stats": p.stats,
                "instructions": p.spec.instructions,
            }
            for p in found
        ]
        return self.kit.render(request, "projects.html", {"projects": rows})

    # Leases are requested with a request id, so asking again with the same id replays the
    # same lease (the service's idempotency): reloading /label?r=... keeps the item, and the
    # id of the lease in progress is kept in a cookie per project so that coming back to the
    # project resumes it instead of leasing a second item.

    async def next_item(self, request: Request) -> Response:
        pid = request.path_params["project_id"]
        rid = request.cookies.get(lease_cookie(pid, review=False)) or _nonce()
        return self.kit.redirect(request, f"/p/{pid}/label?r={quote(rid)}")

    async def next_review(self, request: Request) -> Response:
        pid = request.path_params["project_id"]
        rid = request.cookies.get(lease_cookie(pid, review=True)) or _nonce()
        return self.kit.redirect(request, f"/p/{pid}/review?r={quote(rid)}")

    async def label(self, request: Request) -> Response:
        return await self._task_page(request, review=False)

    async def review(self, request: Request) -> Response:
        return await self._task_page(request, review=True)

    async def _task_page(self, request: Request, *, review: bool) -> Response:
        pid = request.path_params["project_id"]
        rid = request.query_params.get("r", "")
        again = f"/p/{pid}/review/next" if review else f"/p/{pid}/next"
        if not rid:
            return self.kit.redirect(request, again)
        client = self.client(request)
        prefix = "review" if review else "label"

        def load() -> tuple[pb.Project, list[pb.Assignment]]:
            project = client.get_project(pid)
            leased = client.request_assignments(
                pid, 1, review=review, request_id=f"web-{prefix}-{pid}-{rid}"
            )
            return project, leased

        paused = ""
        try:
            project, leased = await run_in_threadpool(load)
        except FailedPrecondition as exc:
            if exc.reason != "ANNOTATOR_PAUSED":
                raise
            # Below the gold bar: say so plainly instead of an empty queue or an error page.
            project, leased, paused = (
                await run_in_threadpool(client.get_project, pid),
                [],
                exc.message,
            )
        context: dict[str, Any] = {
            "project": project,
            "task": task_slug(project.spec.task_type),
            "review": review,
            "next_url": again,
            "paused": paused,
        }
        cookie = lease_cookie(pid, review=review)
        if not leased:
            response = self.kit.render(request, "empty.html", context)
            response.delete_cookie(cookie, path="/")
            return response
        assignment = leased[0]
        if assignment.project_id != pid or assignment.state in (
            pb.ASSIGNMENT_STATE_SUBMITTED,
            pb.ASSIGNMENT_STATE_SKIPPED,
            pb.ASSIGNMENT_STATE_REJECTED,
        ):
            response = self.kit.redirect(request, again)  # answered already: the next one
            response.delete_cookie(cookie, path="/")
            return response
        suggestion = None if review else suggestion_of(assignment)
        # A replayed lease keeps its stored state until the service sweeps it: past its
        # expiry it is over all the same (and must not be resumed again).
        lapsed = assignment.expire_time.ToNanoseconds() / 1e9 <= time.time()
        context.update(
            assignment=assignment,
            expired=assignment.state == pb.ASSIGNMENT_STATE_EXPIRED or lapsed,
            data=self._task_data(project, assignment, suggestion, review, again),
            editor=EDITORS[task_slug(project.spec.task_type)],
        )
        response = self.kit.render(request, "task.html", context)
        if context["expired"]:
            response.delete_cookie(cookie, path="/")
        else:
            self.kit.set_cookie(response, cookie, rid, max_age=self.settings.session_max_age_s)
        return response

    def _task_data(
        self,
        project: pb.Project,
        assignment: pb.Assignment,
        suggestion: dict[str, Any] | None,
        review: bool,
        next_url: str,
    ) -> dict[str, Any]:
        """What the page script needs, as JSON."""
        item = assignment.item
        pid, iid = project.project_id, item.item_id
        kind = item.content.WhichOneof("content")
        count = {"image": 1, "image_pair": 2}.get(kind or "", 0)
        images = [f"/img/{pid}/{iid}/{n}" for n in range(count)]
        ttl = project.spec.assignment_ttl.ToTimedelta().total_seconds() or 3600.0
        expires_in = assignment.expire_time.ToNanoseconds() / 1e9 - time.time()
        aid = assignment.assignment_id
        return {
            "mode": "review" if review else "annotate",
            "project_id": pid,
            "assignment_id": aid,
            "task": task_slug(project.spec.task_type),
            "editor": EDITORS[task_slug(project.spec.task_type)],
            "multi_label": project.spec.multi_label,
            "labels": [_as_dict(label) for label in project.spec.labels],
            "text": item.content.text if kind == "text" else None,
            "images": images,
            "image_width": item.image_width,
            "image_height": item.image_height,
            "suggestion": suggestion,
            "annotations": [
                {"annotation_id": a.annotation_id, "author": a.author, "value": _as_dict(a.value)}
                for a in item.annotations
                if review and a.source == pb.ANNOTATION_SOURCE_HUMAN
            ],
            "expires_in_s": max(0.0, expires_in),
            "heartbeat_s": min(
                self.settings.heartbeat_max_s, max(self.settings.heartbeat_min_s, ttl / 3)
            ),
            "request_id": f"web-{_nonce()}",
            "next_url": next_url,
            "submit_url": f"/a/{aid}/submit",
            "skip_url": f"/a/{aid}/skip",
            "renew_url": f"/a/{aid}/renew",
        }

    # ---- actions (htmx) ------------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        form = await request.form()
        value = parse_value(str(form.get("value", "")))
        duration = _duration(form.get("duration_ms"))
        await run_in_threadpool(
            self.client(request).submit_annotation,
            request.path_params["assignment_id"],
            value,
            duration_ms=duration,
            request_id=str(form.get("request_id", "")),
        )
        return self._done(request, form, review=False)

    async def skip(self, request: Request) -> Response:
        form = await request.form()
        await run_in_threadpool(
            self.client(request).skip,
            request.path_params["assignment_id"],
            request_id=str(form.get("request_id", "")),
        )
        return self._done(request, form, review=False)

    async def renew(self, request: Request) -> Response:
        renewed = await run_in_threadpool(
            self.client(request).renew_lease, request.path_params["assignment_id"]
        )
        left = renewed.expire_time.ToNanoseconds() / 1e9 - time.time()
        return JSONResponse({"expires_in_s": max(0.0, left)})

    async def submit_review(self, request: Request) -> Response:
        form = await request.form()
        decision = REVIEW_DECISIONS.get(str(form.get("decision", "")))
        if decision is None:
            raise InvalidArgument(
                "decision must be accept, reject or correct", reason="MISSING_DECISION"
            )
        correction = None
        if decision == pb.REVIEW_DECISION_CORRECT:
            correction = parse_value(str(form.get("value", "")))
        await run_in_threadpool(
            self.client(request).submit_review,
            request.path_params["annotation_id"],
            decision,
            correction=correction,
            comment=str(form.get("comment", ""))[:2000],
            request_id=str(form.get("request_id", "")),
        )
        return self._done(request, form, review=True)

    def _done(self, request: Request, form: Any, *, review: bool) -> Response:
        """On to the next item; the finished lease is no longer the one to resume."""
        response = self.kit.redirect(request, safe_next(str(form.get("next_url", ""))))
        pid = str(form.get("project_id", ""))
        if pid:
            response.delete_cookie(lease_cookie(pid, review=review), path="/")
        return response

    async def image(self, request: Request) -> Response:
        pid = request.path_params["project_id"]
        iid = request.path_params["item_id"]
        index = request.path_params["index"]
        client = self.client(request)

        def load() -> tuple[str, Any]:
            uri = image_uri(client.get_item(pid, iid), index)
            return open_image(self.store, uri)

        kind, chunks = await run_in_threadpool(load)
        return StreamingResponse(
            chunks,
            media_type=kind,
            headers={"cache-control": "private, max-age=3600"},
        )


def _duration(raw: object) -> int:
    try:
        value = float(str(raw))
    except ValueError:
        return 0
    if not math.isfinite(value) or value < 0:
        return 0
    return int(min(value, 7 * 24 * 3600 * 1000))
