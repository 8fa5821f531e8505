"""The bad-case job: select an endpoint's bad cases over a window (bad_case_selection) and
import them into a labeling project through the labeling service's gRPC API.

Resumable and idempotent: the window's end and the selection are fixed by the first attempt
(the selection is written to the object store and checkpointed), then items go to labeling
in batches, a checkpoint after each. Every case's external id is
``serving:<prediction id>:<row>`` and every batch's request id derives from the job id, so a
retried call, a resumed job, a rerun or an overlapping window adds nothing twice. While
labeling is unreachable, calls are retried with backoff for ``labeling_retry_seconds``."""

from __future__ import annotations

import functools
import json
from typing import Any

from atlas.common.v1 import common_pb2
from atlas.labeling.v1 import labeling_service_pb2 as lpb
from atlas_core.clients.labeling import LabelingClient
from atlas_core.clients.retry import Backoff, call_with_retry
from atlas_core.errors import AtlasError, FailedPrecondition, InvalidArgument, NotFound
from atlas_core.jobs import JobContext
from atlas_serving.config import ServingSettings
from atlas_serving.domain import BadCaseReason, BadCaseSelection
from atlas_serving.monitoring.bad_case_selection import Case, select_cases
from atlas_serving.records import now_us

DEFAULT_BATCH = 500
MAX_BATCH = 1000
NEEDS_PREDICTION_INDEX = {BadCaseReason.SHADOW_DISAGREEMENT, BadCaseReason.WRONG_BY_GROUND_TRUTH}
TEXT_TASKS = {lpb.TASK_TYPE_TEXT_CLASSIFICATION, lpb.TASK_TYPE_TEXT_SPANS}
IMAGE_TASKS = {
    lpb.TASK_TYPE_IMAGE_CLASSIFICATION,
    lpb.TASK_TYPE_OBJECT_BOXES,
    lpb.TASK_TYPE_OCR,
    lpb.TASK_TYPE_FACE_BOXES,
}


def check_selection(s: BadCaseSelection) -> None:
    """INVALID_ARGUMENT naming the field when the selection cannot run."""
    if not s.reasons or BadCaseReason.UNSPECIFIED in s.reasons:
        raise InvalidArgument(
            "bad_cases.reasons: give at least one reason (BAD_CASE_REASON_UNSPECIFIED and "
            "unknown numbers are none)",
            reason="NO_REASONS",
        )
    for name, value in (
        ("max_confidence", s.max_confidence),
        ("min_drift_score", s.min_drift_score),
    ):
        if not 0.0 <= value <= 1.0:
            raise InvalidArgument(
                f"bad_cases.{name} {value} is outside [0, 1]", reason="BAD_THRESHOLD"
            )
    for name, value in (
        ("regression_tolerance", s.regression_tolerance),
        ("max_items", s.max_items),
    ):
        if value < 0:
            raise InvalidArgument(f"bad_cases.{name} {value} is negative", reason="BAD_THRESHOLD")
    if not 0 <= s.batch_size <= MAX_BATCH:
        raise InvalidArgument(
            f"bad_cases.batch_size {s.batch_size} is outside 0..{MAX_BATCH}",
            reason="BAD_THRESHOLD",
        )
    if not s.labeling_project_id:
        raise InvalidArgument("bad_cases.labeling_project_id is empty", reason="PROJECT_REQUIRED")


def run_bad_cases(
    settings: ServingSettings, ctx: JobContext, raw: dict[str, Any]
) -> dict[str, Any]:
    """The job handler: ``raw`` holds the monitoring spec and the endpoint's name (see
    ServingService.submit_monitoring); returns the BadCaseReport (proto JSON) and the
    window's end (where a scheduled chain's next run starts)."""
    from atlas_serving.runtime import open_runtime  # the job subprocess opens its own

    if settings.labeling is None or not settings.labeling.target:
        raise FailedPrecondition(
            "bad cases go to the labeling service, and none is configured (labeling.target)",
            reason="NO_LABELING_SERVICE",
        )
    rt = open_runtime(settings, migrate=False, connect_data=False)
    try:
        spec = rt.codecs.monitoring_spec.from_dict(raw["spec"])
        selection = spec.bad_cases
        assert selection is not None  # submit_monitoring sends only such specs here
        endpoint = rt.endpoints.get(spec.endpoint.endpoint_name).spec
        state = ctx.last_checkpoint()
        if state is None:
            window_end = spec.end_us if spec.end_us is not None else now_us()
            ctx.report(0.05, "selecting bad cases from the captured requests")
            cases, scanned = select_cases(
                rt.engine,
                rt.artifacts,
                rt.registry,
                endpoint,
                spec.endpoint.variant_name,
                spec.start_us,
                window_end,
                selection,
            )
            ref = rt.artifacts.put_bytes(
                f"serving/bad-cases/{endpoint.name}/{ctx.job_id}.jsonl",
                "".join(c.to_json() + "\n" for c in cases).encode(),
            )
            counts: dict[str, int] = {}
            for c in cases:
                for r in c.reasons:
                    counts[r.upper()] = counts.get(r.upper(), 0) + 1
            state = {
                "window_end_us": window_end,
                "selection": {"uri": ref.uri, "sha256": ref.sha256, "size_bytes": ref.size},
                "rows_scanned": scanned,
                "selected": len(cases),
                "reason_counts": counts,
                "next": 0,
                "added": 0,
                "skipped": 0,
                "retries": 0,
            }
            ctx.checkpoint(state)
        else:
            text = rt.artifacts.get_bytes(rt.artifacts.key_for_uri(state["selection"]["uri"]))
            cases = [Case.from_json(line) for line in text.decode().splitlines() if line]
        with LabelingClient(settings.labeling, timeout=30.0) as labeling:
            _import(labeling, ctx, selection, endpoint.name, cases, state, settings)
        ctx.report(1.0, f"{state['added']} bad cases added to {selection.labeling_project_id}")
        return {
            "bad_case_report": {
                "rows_scanned": state["rows_scanned"],
                "selected": state["selected"],
                "items_added": state["added"],
                "items_skipped": state["skipped"],
                "reason_counts": state["reason_counts"],
                "labeling_project_id": selection.labeling_project_id,
                "labeling_retries": state["retries"],
                "selection": state["selection"],
            },
            "window_end_us": state["window_end_us"],
        }
    finally:
        rt.close()


def _import(
    labeling: LabelingClient,
    ctx: JobContext,
    selection: BadCaseSelection,
    endpoint: str,
    cases: list[Case],
    state: dict[str, Any],
    settings: ServingSettings,
) -> None:
    backoff = Backoff(budget_s=settings.labeling_retry_seconds)
    target = settings.labeling.target if settings.labeling else ""

    def retrying(attempt: int, error: AtlasError) -> None:
        state["retries"] += 1
        ctx.raise_if_cancelled()
        ctx.report(None, f"labeling unreachable (attempt {attempt}), retrying: {error.message}")

    project_id = selection.labeling_project_id
    try:
        project = call_with_retry(
            functools.partial(labeling.get_project, project_id),
            what=f"labeling ({target}) GetProject",
            backoff=backoff,
            on_retry=retrying,
        )
    except NotFound:
        raise NotFound(
            f"labeling has no project {project_id}", reason="LABELING_PROJECT_NOT_FOUND"
        ) from None
    task = project.spec.task_type
    if task not in TEXT_TASKS and (task not in IMAGE_TASKS or not selection.content_feature):
        raise InvalidArgument(
            f"project {project_id} ({lpb.TaskType.Name(task)}) needs "
            + (
                "two images per item: bad cases cannot fill it"
                if task not in IMAGE_TASKS
                else "an image per item: name the captured feature holding its URI "
                "(content_feature)"
            ),
            reason="BAD_CASE_CONTENT",
        )
    size = selection.batch_size or DEFAULT_BATCH
    while state["next"] < len(cases):
        ctx.raise_if_cancelled()
        start = state["next"]
        part = cases[start : start + size]
        items = [
            new_item(c, endpoint, selection.content_feature, image=task in IMAGE_TASKS)
            for c in part
        ]
        resp = call_with_retry(
            functools.partial(
                labeling.add_items,
                project_id,
                items,
                request_id=f"serving-bad-cases-{ctx.job_id}-{start}",
            ),
            what=f"labeling ({target}) AddItems",
            backoff=backoff,
            on_retry=retrying,
        )
        state["next"] = start + len(part)
        state["added"] += sum(1 for i in resp.item_ids if i)
        state["skipped"] += int(resp.skipped)
        ctx.checkpoint(state)
        ctx.report(
            min(1.0, 0.1 + 0.9 * state["next"] / len(cases)),
            f"{state['next']}/{len(cases)} bad cases sent, {state['added']} added",
        )


def new_item(case: Case, endpoint: str, content_feature: str, *, image: bool) -> lpb.NewItem:
    """The labeling item of a case: its content, features as metadata, and the served
    prediction with its reasons."""
    if content_feature:
        if case.features.get(content_feature) is None:
            raise InvalidArgument(
                f"captured row {case.prediction_id}:{case.row} has no feature {content_feature!r}",
                reason="BAD_CASE_CONTENT",
            )
        value = str(case.features[content_feature])
    else:
        value = json.dumps(case.features, sort_keys=True, default=str)
    content = (
        lpb.ItemContent(image=common_pb2.ArtifactRef(uri=value))
        if image
        else lpb.ItemContent(text=value)
    )
    item = lpb.NewItem(
        content=content,
        entity_id=case.entity,
        external_id=f"serving:{case.prediction_id}:{case.row}",
        served_prediction=lpb.ServedPrediction(
            endpoint_name=endpoint,
            prediction_id=case.prediction_id,
            row=case.row,
            model_version=case.version_name,
            score=case.value,
            reasons=[lpb.BadCaseReason.Value("BAD_CASE_REASON_" + r.upper()) for r in case.reasons],
            detail="; ".join(case.details),
        ),
    )
    item.label_time.FromMicroseconds(case.time_us)
    item.metadata.update({**case.features, "served_label": case.label})
    return item
