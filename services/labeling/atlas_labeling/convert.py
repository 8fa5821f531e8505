"""The one bridge between the labeling protos and the domain: enums, specs, values, items,
annotations and assignments. Nothing else in the service imports the protos' message types
for translation."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2

from atlas.common.v1 import common_pb2
from atlas.labeling.v1 import labeling_service_pb2 as pb
from atlas_core import proto_convert as pc
from atlas_core.errors import InvalidArgument
from atlas_core.jobs import JobRecord
from atlas_labeling import schema
from atlas_labeling.agreement import Agreement
from atlas_labeling.assignments import AnnotatorStats, AssignmentRecord
from atlas_labeling.corrections import CorrectionEntry
from atlas_labeling.items import AnnotationRecord, ItemRecord, NewItem, ServedPrediction
from atlas_labeling.prelabel import SuggestionStats
from atlas_labeling.projects import Project
from atlas_labeling.values import (
    Box,
    Boxes,
    Classes,
    FacePair,
    ItemContent,
    Relation,
    Span,
    Spans,
    Value,
)

TASK_TYPES = {
    pb.TASK_TYPE_TEXT_CLASSIFICATION: schema.TEXT_CLASSIFICATION,
    pb.TASK_TYPE_TEXT_SPANS: schema.TEXT_SPANS,
    pb.TASK_TYPE_IMAGE_CLASSIFICATION: schema.IMAGE_CLASSIFICATION,
    pb.TASK_TYPE_OCR: schema.OCR,
    pb.TASK_TYPE_FACE_BOXES: schema.FACE_BOXES,
    pb.TASK_TYPE_FACE_PAIR: schema.FACE_PAIR,
    pb.TASK_TYPE_OBJECT_BOXES: schema.OBJECT_BOXES,
}
TASK_TYPES_TO_PB = {v: k for k, v in TASK_TYPES.items()}
CONSENSUS = {
    pb.CONSENSUS_METHOD_UNSPECIFIED: "majority",
    pb.CONSENSUS_METHOD_MAJORITY: "majority",
    pb.CONSENSUS_METHOD_WEIGHTED: "weighted",
    pb.CONSENSUS_METHOD_REVIEW: "review",
}
CONSENSUS_TO_PB = {
    "majority": pb.CONSENSUS_METHOD_MAJORITY,
    "weighted": pb.CONSENSUS_METHOD_WEIGHTED,
    "review": pb.CONSENSUS_METHOD_REVIEW,
}
SKIP_POLICIES = {
    pb.SKIP_POLICY_UNSPECIFIED: "requeue_for_others",
    pb.SKIP_POLICY_REQUEUE_FOR_ME: "requeue_for_me",
    pb.SKIP_POLICY_REQUEUE_FOR_OTHERS: "requeue_for_others",
    pb.SKIP_POLICY_IGNORE: "ignore",
}
SKIP_POLICIES_TO_PB = {
    "requeue_for_me": pb.SKIP_POLICY_REQUEUE_FOR_ME,
    "requeue_for_others": pb.SKIP_POLICY_REQUEUE_FOR_OTHERS,
    "ignore": pb.SKIP_POLICY_IGNORE,
}
ITEM_STATUS_TO_PB = {
    "unlabeled": pb.ITEM_STATUS_UNLABELED,
    "in_progress": pb.ITEM_STATUS_IN_PROGRESS,
    "annotated": pb.ITEM_STATUS_ANNOTATED,
    "in_review": pb.ITEM_STATUS_IN_REVIEW,
    "done": pb.ITEM_STATUS_DONE,
    "in_correction": pb.ITEM_STATUS_IN_CORRECTION,
    "skipped": pb.ITEM_STATUS_SKIPPED,
}
ITEM_STATUS = {v: k for k, v in ITEM_STATUS_TO_PB.items()}
ASSIGNMENT_STATE_TO_PB = {
    "active": pb.ASSIGNMENT_STATE_ACTIVE,
    "submitted": pb.ASSIGNMENT_STATE_SUBMITTED,
    "skipped": pb.ASSIGNMENT_STATE_SKIPPED,
    "expired": pb.ASSIGNMENT_STATE_EXPIRED,
    "rejected": pb.ASSIGNMENT_STATE_REJECTED,
}
REVIEW_DECISIONS = {
    pb.REVIEW_DECISION_ACCEPT: "accept",
    pb.REVIEW_DECISION_REJECT: "reject",
    pb.REVIEW_DECISION_CORRECT: "correct",
}
REVIEW_DECISIONS_TO_PB = {v: k for k, v in REVIEW_DECISIONS.items()}
SOURCES_TO_PB = {
    "human": pb.ANNOTATION_SOURCE_HUMAN,
    "model": pb.ANNOTATION_SOURCE_MODEL,
    "consensus": pb.ANNOTATION_SOURCE_CONSENSUS,
    "review": pb.ANNOTATION_SOURCE_REVIEW,
}
QUEUE_ORDERS = {
    pb.QUEUE_ORDER_UNSPECIFIED: "fifo",
    pb.QUEUE_ORDER_FIFO: "fifo",
    pb.QUEUE_ORDER_LEAST_CONFIDENCE: "least_confidence",
    pb.QUEUE_ORDER_MARGIN: "margin",
    pb.QUEUE_ORDER_ENTROPY: "entropy",
    pb.QUEUE_ORDER_DIVERSITY: "diversity",
}
QUEUE_ORDERS_TO_PB = {
    "fifo": pb.QUEUE_ORDER_FIFO,
    "least_confidence": pb.QUEUE_ORDER_LEAST_CONFIDENCE,
    "margin": pb.QUEUE_ORDER_MARGIN,
    "entropy": pb.QUEUE_ORDER_ENTROPY,
    "diversity": pb.QUEUE_ORDER_DIVERSITY,
}
CORRECTION_REASONS_TO_PB = {
    "low_confidence": pb.CORRECTION_REASON_LOW_CONFIDENCE,
    "disagreement": pb.CORRECTION_REASON_DISAGREEMENT,
    "model_human_conflict": pb.CORRECTION_REASON_MODEL_HUMAN_CONFLICT,
    "bad_case": pb.CORRECTION_REASON_BAD_CASE,
    "low_gold_accuracy": pb.CORRECTION_REASON_LOW_GOLD_ACCURACY,
}
CORRECTION_RESOLUTIONS_TO_PB = {
    "open": pb.CORRECTION_RESOLUTION_OPEN,
    "requeued": pb.CORRECTION_RESOLUTION_REQUEUED,
    "resolved": pb.CORRECTION_RESOLUTION_RESOLVED,
    "escalated": pb.CORRECTION_RESOLUTION_ESCALATED,
}
CORRECTION_REASONS = {v: k for k, v in CORRECTION_REASONS_TO_PB.items()}
FACE_PAIR = {
    pb.FACE_PAIR_DECISION_SAME: "same",
    pb.FACE_PAIR_DECISION_DIFFERENT: "different",
    pb.FACE_PAIR_DECISION_UNSURE: "unsure",
}
FACE_PAIR_TO_PB = {v: k for k, v in FACE_PAIR.items()}


# ---- projects ------------------------------------------------------------------------------


def spec_from_pb(message: pb.ProjectSpec) -> schema.ProjectSpec:
    task = TASK_TYPES.get(message.task_type, "")
    return schema.ProjectSpec(
        name=message.name,
        task_type=task,
        labels=tuple(
            schema.LabelDef(
                name=label.name,
                kind=label.kind or "class",
                description=label.description,
                allowed_pairs=tuple(label.allowed_pairs),
                color=label.color,
            )
            for label in message.labels
        ),
        multi_label=message.multi_label,
        overlap=message.overlap,
        consensus=CONSENSUS.get(message.consensus, "unknown"),
        review_fraction=message.review_fraction,
        instructions=message.instructions,
        low_confidence_threshold=message.low_confidence_threshold or 0.5,
        assignment_ttl_s=pc.duration_seconds(message.assignment_ttl, "assignment_ttl")
        if message.HasField("assignment_ttl")
        else 0.0,
        tags=dict(message.tags),
        skip_policy=SKIP_POLICIES.get(message.skip_policy, "unknown"),
        consensus_threshold=message.consensus_threshold or 0.6,
        max_relabel_rounds=message.max_relabel_rounds or 2,
        queue_order=QUEUE_ORDERS.get(message.queue_order, "unknown"),
    )


def spec_to_pb(spec: schema.ProjectSpec) -> pb.ProjectSpec:
    message = pb.ProjectSpec(
        name=spec.name,
        task_type=TASK_TYPES_TO_PB[spec.task_type],
        labels=[
            pb.LabelDefinition(
                name=label.name,
                kind=label.kind,
                description=label.description,
                allowed_pairs=label.allowed_pairs,
                color=label.color,
            )
            for label in spec.labels
        ],
        multi_label=spec.multi_label,
        overlap=spec.overlap,
        consensus=CONSENSUS_TO_PB[spec.consensus],
        review_fraction=spec.review_fraction,
        instructions=spec.instructions,
        low_confidence_threshold=spec.low_confidence_threshold,
        tags=spec.tags,
        skip_policy=SKIP_POLICIES_TO_PB[spec.skip_policy],
        consensus_threshold=spec.consensus_threshold,
        max_relabel_rounds=spec.max_relabel_rounds,
        queue_order=QUEUE_ORDERS_TO_PB[spec.queue_order],
    )
    message.assignment_ttl.FromNanoseconds(int(spec.assignment_ttl_s * 1e9))
    return message


def project_to_pb(project: Project) -> pb.Project:
    s = project.stats
    return pb.Project(
        project_id=project.project_id,
        spec=spec_to_pb(project.spec),
        stats=pb.ProjectStats(
            items=s.items,
            items_unlabeled=s.unlabeled,
            items_in_progress=s.in_progress,
            items_done=s.done,
            annotations=s.annotations,
            in_correction_queue=s.in_correction,
        ),
        archived=project.archived,
        etag=project.etag,
        create_time=pc.dt_to_ts(project.created_at),
    )


def task_type_filter(value: Any) -> str:
    if value == pb.TASK_TYPE_UNSPECIFIED:
        return ""
    if value not in TASK_TYPES:
        raise InvalidArgument(f"task_type {value} is unknown", reason="BAD_TASK_TYPE")
    return TASK_TYPES[value]


def statuses_from_pb(values: Any) -> list[str]:
    found = []
    for value in values:
        if value not in ITEM_STATUS:
            raise InvalidArgument(f"statuses: {value} is not an item status", reason="BAD_STATUS")
        found.append(ITEM_STATUS[value])
    return found


# ---- values --------------------------------------------------------------------------------


def value_from_pb(message: pb.AnnotationValue) -> Value | None:
    kind = message.WhichOneof("value")
    if kind is None:
        return None
    if kind == "classes":
        return Classes(tuple(message.classes.labels))
    if kind == "spans":
        return Spans(
            tuple(Span(s.span_id, s.start, s.end, s.label, s.text) for s in message.spans.spans),
            tuple(
                Relation(r.source_span_id, r.target_span_id, r.label)
                for r in message.spans.relations
            ),
        )
    if kind == "boxes":
        return Boxes(
            tuple(
                Box(
                    b.x,
                    b.y,
                    b.width,
                    b.height,
                    b.rotation,
                    b.label,
                    b.text,
                    tuple(b.landmarks),
                )
                for b in message.boxes.boxes
            )
        )
    # An enum value outside the known ones stays recognisable so validation can name it.
    return FacePair(FACE_PAIR.get(message.face_pair, f"unknown({message.face_pair})"))


def value_to_pb(value: Value) -> pb.AnnotationValue:
    if isinstance(value, Classes):
        return pb.AnnotationValue(classes=pb.ClassLabels(labels=value.labels))
    if isinstance(value, Spans):
        return pb.AnnotationValue(
            spans=pb.SpanAnnotation(
                spans=[
                    pb.TextSpan(
                        span_id=s.span_id, start=s.start, end=s.end, label=s.label, text=s.text
                    )
                    for s in value.spans
                ],
                relations=[
                    pb.Relation(
                        source_span_id=r.source_span_id,
                        target_span_id=r.target_span_id,
                        label=r.label,
                    )
                    for r in value.relations
                ],
            )
        )
    if isinstance(value, Boxes):
        return pb.AnnotationValue(
            boxes=pb.BoxAnnotation(
                boxes=[
                    pb.BoundingBox(
                        x=b.x,
                        y=b.y,
                        width=b.width,
                        height=b.height,
                        rotation=b.rotation,
                        label=b.label,
                        text=b.text,
                        landmarks=b.landmarks,
                    )
                    for b in value.boxes
                ],
                image_width=value.image_width,
                image_height=value.image_height,
            )
        )
    return pb.AnnotationValue(
        face_pair=FACE_PAIR_TO_PB.get(value.decision, pb.FACE_PAIR_DECISION_UNSPECIFIED)
    )


# ---- items ---------------------------------------------------------------------------------


def content_from_pb(message: pb.ItemContent) -> ItemContent:
    kind = message.WhichOneof("content")
    if kind == "text":
        return ItemContent(text=message.text)
    if kind == "image":
        return ItemContent(image_uri=message.image.uri)
    if kind == "image_pair":
        return ItemContent(
            image_uri=message.image_pair.first.uri,
            second_image_uri=message.image_pair.second.uri,
        )
    return ItemContent()


def content_to_pb(content: ItemContent) -> pb.ItemContent:
    if content.text is not None:
        return pb.ItemContent(text=content.text)
    if content.second_image_uri:
        return pb.ItemContent(
            image_pair=pb.ImagePair(
                first=common_pb2.ArtifactRef(uri=content.image_uri),
                second=common_pb2.ArtifactRef(uri=content.second_image_uri),
            )
        )
    return pb.ItemContent(image=common_pb2.ArtifactRef(uri=content.image_uri))


def new_item_from_pb(message: pb.NewItem) -> NewItem:
    return NewItem(
        content=content_from_pb(message.content),
        entity_id=message.entity_id,
        label_time=pc.ts_datetime(message.label_time, "label_time")
        if message.HasField("label_time")
        else None,
        metadata=json_format.MessageToDict(message.metadata),
        external_id=message.external_id,
        gold_value=value_from_pb(message.gold_value) if message.HasField("gold_value") else None,
        served=served_from_pb(message.served_prediction)
        if message.HasField("served_prediction")
        else None,
    )


_REASON_PREFIX = "BAD_CASE_REASON_"


def served_from_pb(message: pb.ServedPrediction) -> ServedPrediction:
    known = set(pb.BadCaseReason.values()) - {pb.BAD_CASE_REASON_UNSPECIFIED}
    unknown = [r for r in message.reasons if r not in known]
    if unknown:
        raise InvalidArgument(
            f"served_prediction.reasons: {unknown} are not reasons "
            "(BAD_CASE_REASON_UNSPECIFIED is none)",
            reason="BAD_SERVED_PREDICTION",
        )
    return ServedPrediction(
        endpoint_name=message.endpoint_name,
        prediction_id=message.prediction_id,
        row=message.row,
        model_version=message.model_version,
        score=message.score,
        reasons=tuple(
            pb.BadCaseReason.Name(r).removeprefix(_REASON_PREFIX).lower() for r in message.reasons
        ),
        detail=message.detail,
    )


def served_to_pb(served: ServedPrediction) -> pb.ServedPrediction:
    return pb.ServedPrediction(
        endpoint_name=served.endpoint_name,
        prediction_id=served.prediction_id,
        row=served.row,
        model_version=served.model_version,
        score=served.score or 0.0,
        reasons=[pb.BadCaseReason.Value(_REASON_PREFIX + r.upper()) for r in served.reasons],
        detail=served.detail,
    )


def review_to_pb(record: AnnotationRecord) -> pb.Review | None:
    if record.review_decision is None:
        return None
    review = pb.Review(
        reviewer=record.reviewer or "",
        decision=REVIEW_DECISIONS_TO_PB[record.review_decision],
        comment=record.review_comment,
    )
    if record.review_value is not None:
        review.correction.CopyFrom(value_to_pb(record.review_value))
    if record.reviewed_at is not None:
        review.create_time.CopyFrom(pc.dt_to_ts(record.reviewed_at))
    return review


def annotation_to_pb(record: AnnotationRecord) -> pb.Annotation:
    message = pb.Annotation(
        annotation_id=record.annotation_id,
        item_id=record.item_id,
        author=record.author,
        source=SOURCES_TO_PB.get(record.source, pb.ANNOTATION_SOURCE_UNSPECIFIED),
        value=value_to_pb(record.value),
        confidence=record.confidence,
        duration_ms=record.duration_ms,
        create_time=pc.dt_to_ts(record.created_at),
    )
    if record.model_version:
        name, _, version = record.model_version.rpartition(":")
        message.model.model_name = name or record.model_version
        if version.isdigit():
            message.model.version = int(version)
    review = review_to_pb(record)
    if review is not None:
        message.review.CopyFrom(review)
    return message


def item_to_pb(
    record: ItemRecord, *, reveal_gold: bool = True, with_annotations: bool = True
) -> pb.Item:
    """``reveal_gold`` is False inside assignments: annotators never see gold answers nor
    final labels."""
    metadata = struct_pb2.Struct()
    metadata.update(record.metadata)
    message = pb.Item(
        item_id=record.item_id,
        project_id=record.project_id,
        content=content_to_pb(record.content),
        entity_id=record.entity_id,
        metadata=metadata,
        status=ITEM_STATUS_TO_PB[record.status],
        external_id=record.external_id,
        create_time=pc.dt_to_ts(record.created_at),
        image_width=record.content.image_width,
        image_height=record.content.image_height,
        prediction_id=record.prediction_id,
        model_version=record.model_version,
        prediction_score=record.prediction_score or 0.0,
    )
    if record.label_time is not None:
        message.label_time.CopyFrom(pc.dt_to_ts(record.label_time))
    if record.served is not None:
        message.served_prediction.CopyFrom(served_to_pb(record.served))
    if with_annotations:
        message.annotations.extend(annotation_to_pb(a) for a in record.annotations)
    if reveal_gold:
        message.gold = record.gold
        if record.gold_value is not None:
            message.gold_value.CopyFrom(value_to_pb(record.gold_value))
        if record.final_value is not None:
            message.final_value.CopyFrom(value_to_pb(record.final_value))
            message.final_source = SOURCES_TO_PB.get(
                record.final_source or "", pb.ANNOTATION_SOURCE_UNSPECIFIED
            )
        if record.agreement is not None:
            message.agreement = record.agreement
    return message


def assignment_to_pb(record: AssignmentRecord) -> pb.Assignment:
    message = pb.Assignment(
        assignment_id=record.assignment_id,
        project_id=record.project_id,
        annotator=record.annotator,
        is_review=record.is_review,
        expire_time=pc.dt_to_ts(record.expire_at),
        submitted=record.state == "submitted",
        state=ASSIGNMENT_STATE_TO_PB[record.state],
    )
    if record.item is not None:
        # Reviewers see the annotations under review; annotators see the content and the
        # model's suggestions (pre-labels) only: never gold answers nor other people's labels.
        message.item.CopyFrom(
            item_to_pb(record.item, reveal_gold=False, with_annotations=record.is_review)
        )
        if not record.is_review:
            message.item.annotations.extend(
                annotation_to_pb(a) for a in record.item.annotations if a.source == "model"
            )
    return message


def annotator_stats_to_pb(stats: AnnotatorStats) -> pb.AnnotatorStats:
    return pb.AnnotatorStats(
        annotator=stats.annotator,
        annotations=stats.annotations,
        skipped=stats.skipped,
        gold_answered=stats.gold_answered,
        gold_correct=stats.gold_correct,
        gold_accuracy=stats.gold_accuracy,
        median_duration_ms=stats.median_duration_ms,
    )


def review_decision(value: Any) -> str:
    return REVIEW_DECISIONS.get(value, "")


# ---- jobs and exports ---------------------------------------------------------------------

JOB_KINDS = {
    "import_items": pb.LABELING_JOB_KIND_IMPORT,
    "export_labels": pb.LABELING_JOB_KIND_EXPORT,
    "prelabel": pb.LABELING_JOB_KIND_PRELABEL,
    "label_issues": pb.LABELING_JOB_KIND_LABEL_ISSUES,
}
JOB_KINDS_FROM_PB = {v: k for k, v in JOB_KINDS.items()}
_SPEC_FIELDS = {
    "import_items": "import_items",
    "export_labels": "export",
    "prelabel": "prelabel",
    "label_issues": "label_issues",
}
_EXPORT_FORMATS = {
    "parquet": pb.EXPORT_FORMAT_PARQUET,
    "jsonl": pb.EXPORT_FORMAT_JSONL,
    "coco": pb.EXPORT_FORMAT_COCO,
}


def _ref(raw: dict[str, Any]) -> common_pb2.ArtifactRef:
    return common_pb2.ArtifactRef(uri=raw["uri"], sha256=raw["sha256"], size_bytes=raw["size"])


def export_to_pb(raw: dict[str, Any], spec: dict[str, Any] | None = None) -> pb.Export:
    message = pb.Export(
        export_id=raw["export_id"],
        project_id=raw["project_id"],
        artifact=_ref(raw["artifact"]),
        rows=raw["rows"],
        label_counts=raw["label_counts"],
        cursor=raw["cursor"],
        parts=[_ref(p) for p in raw["parts"]],
    )
    message.create_time.FromJsonString(raw["create_time"].replace("+00:00", "Z"))
    if raw.get("ground_truth"):
        json_format.ParseDict(raw["ground_truth"], message.ground_truth, ignore_unknown_fields=True)
    if raw.get("dataset"):
        message.dataset.dataset_id = raw["dataset"]["dataset_id"]
        message.dataset.version = raw["dataset"]["version"]
    if spec is not None:
        json_format.ParseDict(spec, message.spec, ignore_unknown_fields=True)
    else:
        message.spec.project_id = raw["project_id"]
        message.spec.after_cursor = raw.get("after_cursor", "")
        message.spec.format = _EXPORT_FORMATS.get(
            raw.get("format", ""), pb.EXPORT_FORMAT_UNSPECIFIED
        )
    return message


def job_to_pb(record: JobRecord) -> pb.LabelingJob:
    job = pb.LabelingJob(
        status=pc.job_status(record),
        kind=JOB_KINDS.get(record.kind, pb.LABELING_JOB_KIND_UNSPECIFIED),
    )
    field = _SPEC_FIELDS.get(record.kind)
    if field is not None:
        json_format.ParseDict(record.spec, getattr(job, field), ignore_unknown_fields=True)
    result = record.result or {}
    if "item_result" in result:
        job.item_result.CopyFrom(pb.ItemJobResult(**result["item_result"]))
    elif "export" in result:
        job.export_result.CopyFrom(export_to_pb(result["export"], record.spec))
    return job


def correction_reasons_from_pb(values: Any) -> list[str]:
    found = []
    for value in values:
        if value not in CORRECTION_REASONS:
            raise InvalidArgument(
                f"reasons: {value} is not a correction reason", reason="BAD_REASON"
            )
        found.append(CORRECTION_REASONS[value])
    return found


def correction_to_pb(entry: CorrectionEntry) -> pb.CorrectionEntry:
    return pb.CorrectionEntry(
        item=item_to_pb(entry.item),
        reasons=[CORRECTION_REASONS_TO_PB[r] for r in entry.reasons],
        priority=entry.priority,
        prediction_id=entry.item.prediction_id,
        details=entry.details,
        resolutions=[CORRECTION_RESOLUTIONS_TO_PB[r] for r in entry.resolutions],
        relabel_rounds=entry.item.rounds,
    )


def agreement_to_pb(result: Agreement) -> pb.GetAgreementResponse:
    return pb.GetAgreementResponse(
        items_compared=result.items_compared,
        kappa=result.kappa,
        krippendorff_alpha=result.krippendorff_alpha,
        span_f1=result.span_f1,
        box_iou=result.box_iou,
        annotators=[
            pb.AnnotatorAgreement(
                annotator=a.annotator,
                annotations=a.annotations,
                accuracy=a.accuracy,
                median_duration_ms=a.median_duration_ms,
            )
            for a in result.annotators
        ],
        per_label=result.per_label,
    )


def suggestion_stats_to_pb(stats: SuggestionStats) -> pb.SuggestionStats:
    return pb.SuggestionStats(
        model_version=stats.model_version,
        suggestions=stats.suggestions,
        answered=stats.answered,
        accepted=stats.accepted,
        edited=stats.edited,
        acceptance_rate=stats.acceptance_rate,
    )
