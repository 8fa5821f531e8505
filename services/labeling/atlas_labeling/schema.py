"""Project settings and typed label schemas, and the validation of every annotation value
against them. Every check raises InvalidArgument naming the offending field, so a caller
knows what to fix and nothing is stored.

Span offsets are Unicode code points (Python string indices), half-open [start, end).
Box coordinates are pixels of the item's own image, whose size is recorded with the item.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from atlas_core.errors import FailedPrecondition, InvalidArgument
from atlas_labeling.values import (
    FACE_PAIR_DECISIONS,
    Box,
    Boxes,
    Classes,
    FacePair,
    ItemContent,
    Spans,
    Value,
    kind_of,
)

TEXT_CLASSIFICATION = "text_classification"
TEXT_SPANS = "text_spans"
IMAGE_CLASSIFICATION = "image_classification"
OCR = "ocr"
FACE_BOXES = "face_boxes"
FACE_PAIR = "face_pair"
OBJECT_BOXES = "object_boxes"
TASK_TYPES = (
    TEXT_CLASSIFICATION,
    TEXT_SPANS,
    IMAGE_CLASSIFICATION,
    OCR,
    FACE_BOXES,
    FACE_PAIR,
    OBJECT_BOXES,
)
# Which value kind each task type takes, and which content.
VALUE_KIND = {
    TEXT_CLASSIFICATION: "classes",
    IMAGE_CLASSIFICATION: "classes",
    TEXT_SPANS: "spans",
    OCR: "boxes",
    FACE_BOXES: "boxes",
    OBJECT_BOXES: "boxes",
    FACE_PAIR: "face_pair",
}
CONTENT_KIND = {
    TEXT_CLASSIFICATION: "text",
    TEXT_SPANS: "text",
    IMAGE_CLASSIFICATION: "image",
    OCR: "image",
    FACE_BOXES: "image",
    OBJECT_BOXES: "image",
    FACE_PAIR: "image_pair",
}
LABEL_KINDS = ("class", "entity", "relation")
SKIP_POLICIES = ("requeue_for_me", "requeue_for_others", "ignore")
QUEUE_ORDERS = ("fifo", "least_confidence", "margin", "entropy", "diversity")
CONSENSUS_METHODS = ("majority", "weighted", "review")
MAX_NAME = 128
MAX_OVERLAP = 50
MAX_TTL_S = 7 * 24 * 3600


@dataclass(frozen=True)
class LabelDef:
    name: str
    kind: str = "class"
    description: str = ""
    allowed_pairs: tuple[str, ...] = ()  # relations: "src_entity:dst_entity"
    color: str = ""


@dataclass(frozen=True)
class ProjectSpec:
    name: str
    task_type: str
    labels: tuple[LabelDef, ...] = ()
    multi_label: bool = False
    overlap: int = 1
    consensus: str = "majority"
    review_fraction: float = 0.0
    instructions: str = ""
    low_confidence_threshold: float = 0.5
    assignment_ttl_s: float = 3600.0
    tags: dict[str, str] = field(default_factory=dict)
    skip_policy: str = "requeue_for_others"
    consensus_threshold: float = 0.6  # above a tie of two
    max_relabel_rounds: int = 2
    queue_order: str = "fifo"

    def label_names(self, kind: str) -> set[str]:
        return {label.name for label in self.labels if label.kind == kind}


def _unit_interval(value: float, name: str) -> None:
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise InvalidArgument(f"{name} {value} is outside [0, 1]", reason="OUT_OF_RANGE")


def validate_spec(spec: ProjectSpec) -> ProjectSpec:
    """Check a project spec; returns it with defaults filled in (overlap 0 -> 1)."""
    name = spec.name.strip()
    if not name or len(name) > MAX_NAME:
        raise InvalidArgument(f"spec.name must be 1..{MAX_NAME} characters", reason="BAD_NAME")
    if spec.task_type not in TASK_TYPES:
        raise InvalidArgument("spec.task_type is unspecified or unknown", reason="BAD_TASK_TYPE")
    overlap = spec.overlap or 1
    if not 1 <= overlap <= MAX_OVERLAP:
        raise InvalidArgument(f"spec.overlap must be in 1..{MAX_OVERLAP}", reason="BAD_OVERLAP")
    _unit_interval(spec.review_fraction, "spec.review_fraction")
    _unit_interval(spec.low_confidence_threshold, "spec.low_confidence_threshold")
    _unit_interval(spec.consensus_threshold, "spec.consensus_threshold")
    if not 0 <= spec.max_relabel_rounds <= MAX_OVERLAP:
        raise InvalidArgument(
            f"spec.max_relabel_rounds must be in 0..{MAX_OVERLAP}", reason="BAD_ROUNDS"
        )
    if not 0 < spec.assignment_ttl_s <= MAX_TTL_S or math.isnan(spec.assignment_ttl_s):
        raise InvalidArgument(
            "spec.assignment_ttl must be positive and at most 7 days", reason="BAD_TTL"
        )
    if spec.skip_policy not in SKIP_POLICIES:
        raise InvalidArgument("spec.skip_policy is unknown", reason="BAD_SKIP_POLICY")
    if spec.queue_order not in QUEUE_ORDERS:
        raise InvalidArgument("spec.queue_order is unknown", reason="BAD_QUEUE_ORDER")
    if spec.consensus not in CONSENSUS_METHODS:
        raise InvalidArgument("spec.consensus is unknown", reason="BAD_CONSENSUS")
    if spec.multi_label and VALUE_KIND[spec.task_type] != "classes":
        raise InvalidArgument(
            "spec.multi_label applies to classification tasks only", reason="BAD_MULTI_LABEL"
        )
    _validate_labels(spec)
    return replace(spec, name=name, overlap=overlap)


def _validate_labels(spec: ProjectSpec) -> None:
    seen: set[tuple[str, str]] = set()
    for i, label in enumerate(spec.labels):
        where = f"spec.labels[{i}]"
        if not label.name.strip():
            raise InvalidArgument(f"{where}.name is empty", reason="BAD_LABEL")
        if label.kind not in LABEL_KINDS:
            raise InvalidArgument(
                f"{where}.kind {label.kind!r} is not class, entity or relation",
                reason="BAD_LABEL",
            )
        if (label.kind, label.name) in seen:
            raise InvalidArgument(
                f"{where}.name {label.name!r} is defined twice", reason="DUPLICATE_LABEL"
            )
        seen.add((label.kind, label.name))
    kinds = {label.kind for label in spec.labels}
    task = spec.task_type
    if task == TEXT_SPANS:
        if "class" in kinds:
            raise InvalidArgument(
                "spec.labels: span tasks take entity and relation labels", reason="BAD_LABEL"
            )
        if "entity" not in kinds:
            raise InvalidArgument("spec.labels needs an entity label", reason="NO_LABELS")
        entities = spec.label_names("entity")
        for i, label in enumerate(spec.labels):
            for pair in label.allowed_pairs:
                src, sep, dst = pair.partition(":")
                if not sep or src not in entities or dst not in entities:
                    raise InvalidArgument(
                        f"spec.labels[{i}].allowed_pairs {pair!r} must be "
                        "'<entity>:<entity>' of defined entity labels",
                        reason="BAD_LABEL",
                    )
        return
    if kinds - {"class"}:
        raise InvalidArgument(f"spec.labels: {task} takes class labels only", reason="BAD_LABEL")
    if task in (TEXT_CLASSIFICATION, IMAGE_CLASSIFICATION, OBJECT_BOXES) and not spec.labels:
        raise InvalidArgument("spec.labels is empty", reason="NO_LABELS")
    if task == FACE_PAIR and spec.labels:
        raise InvalidArgument(
            "spec.labels: face-pair answers are same/different/unsure, not labels",
            reason="BAD_LABEL",
        )


def check_update(old: ProjectSpec, new: ProjectSpec, used: set[tuple[str, str]]) -> None:
    """A label used by any annotation may not disappear (a rename is a removal); the task
    type never changes."""
    if new.task_type != old.task_type:
        raise InvalidArgument("spec.task_type cannot change", reason="TASK_TYPE_CHANGED")
    kept = {(label.kind, label.name) for label in new.labels}
    gone = sorted(used - kept)
    if gone:
        kind, name = gone[0]
        raise FailedPrecondition(
            f"spec.labels: {kind} label {name!r} is used by annotations and cannot be removed "
            "or renamed (labels may only be added)",
            reason="LABEL_IN_USE",
            metadata={"label": name},
        )


# ---- annotation values ----------------------------------------------------------------------


def validate_value(
    spec: ProjectSpec, content: ItemContent, value: Value | None, where: str = "value"
) -> Value:
    """Check ``value`` against the task type, the label schema and the item; returns it with
    the image size filled in for boxes."""
    if value is None:
        raise InvalidArgument(f"{where} is unset", reason="MISSING_VALUE")
    expected = VALUE_KIND[spec.task_type]
    if kind_of(value) != expected:
        raise InvalidArgument(
            f"{where}.{kind_of(value)} does not fit task type {spec.task_type} "
            f"(expected {where}.{expected})",
            reason="WRONG_VALUE_KIND",
        )
    if isinstance(value, Classes):
        _check_classes(spec, value, where)
    elif isinstance(value, Spans):
        _check_spans(spec, content.text or "", value, where)
    elif isinstance(value, Boxes):
        return _check_boxes(spec, content, value, where)
    elif isinstance(value, FacePair) and value.decision not in FACE_PAIR_DECISIONS:
        raise InvalidArgument(
            f"{where}.face_pair {value.decision} is not SAME, DIFFERENT or UNSURE",
            reason="BAD_FACE_PAIR",
        )
    return value


def check_confidence(confidence: float, where: str = "confidence") -> None:
    _unit_interval(confidence, where)


def _check_classes(spec: ProjectSpec, value: Classes, where: str) -> None:
    if not value.labels:
        raise InvalidArgument(f"{where}.classes.labels is empty", reason="MISSING_VALUE")
    if len(value.labels) > 1 and not spec.multi_label:
        raise InvalidArgument(
            f"{where}.classes.labels: the project takes exactly one label",
            reason="TOO_MANY_LABELS",
        )
    if len(set(value.labels)) != len(value.labels):
        raise InvalidArgument(f"{where}.classes.labels repeats a label", reason="DUPLICATE_LABEL")
    known = spec.label_names("class")
    for i, label in enumerate(value.labels):
        if label not in known:
            raise InvalidArgument(
                f"{where}.classes.labels[{i}] {label!r} is not a label of the project",
                reason="UNKNOWN_LABEL",
            )


def _check_spans(spec: ProjectSpec, text: str, value: Spans, where: str) -> None:
    entities = spec.label_names("entity")
    ids: dict[str, str] = {}
    for i, span in enumerate(value.spans):
        at = f"{where}.spans.spans[{i}]"
        if not span.span_id:
            raise InvalidArgument(f"{at}.span_id is empty", reason="BAD_SPAN")
        if span.span_id in ids:
            raise InvalidArgument(f"{at}.span_id {span.span_id!r} repeats", reason="BAD_SPAN")
        if span.start < 0 or span.end <= span.start:
            raise InvalidArgument(
                f"{at}: end ({span.end}) must be greater than start ({span.start}) >= 0",
                reason="BAD_SPAN",
            )
        if span.end > len(text):
            raise InvalidArgument(
                f"{at}.end {span.end} is past the text ({len(text)} code points)",
                reason="SPAN_OUT_OF_TEXT",
            )
        if span.text and text[span.start : span.end] != span.text:
            raise InvalidArgument(
                f"{at}.text {span.text!r} does not match the item text at "
                f"[{span.start}, {span.end}) ({text[span.start : span.end]!r}); offsets are "
                "Unicode code points, not bytes or UTF-16 units",
                reason="SPAN_TEXT_MISMATCH",
            )
        if span.label not in entities:
            raise InvalidArgument(
                f"{at}.label {span.label!r} is not an entity label of the project",
                reason="UNKNOWN_LABEL",
            )
        ids[span.span_id] = span.label
    relations = {label.name: label for label in spec.labels if label.kind == "relation"}
    for i, rel in enumerate(value.relations):
        at = f"{where}.spans.relations[{i}]"
        for end in ("source_span_id", "target_span_id"):
            if getattr(rel, end) not in ids:
                raise InvalidArgument(
                    f"{at}.{end} {getattr(rel, end)!r} names no span of this annotation",
                    reason="MISSING_REGION",
                )
        if rel.label not in relations:
            raise InvalidArgument(
                f"{at}.label {rel.label!r} is not a relation label of the project",
                reason="UNKNOWN_LABEL",
            )
        pairs = relations[rel.label].allowed_pairs
        pair = f"{ids[rel.source_span_id]}:{ids[rel.target_span_id]}"
        if pairs and pair not in pairs:
            raise InvalidArgument(
                f"{at}: relation {rel.label!r} is not allowed between {pair}",
                reason="BAD_RELATION",
            )


def _corners(box: Box) -> list[tuple[float, float]]:
    corners = [
        (box.x, box.y),
        (box.x + box.width, box.y),
        (box.x, box.y + box.height),
        (box.x + box.width, box.y + box.height),
    ]
    if not box.rotation:
        return corners
    # Rotation is clockwise about the box centre (image y points down).
    cx, cy = box.x + box.width / 2, box.y + box.height / 2
    a = math.radians(box.rotation)
    cos, sin = math.cos(a), math.sin(a)
    return [
        (cx + (px - cx) * cos - (py - cy) * sin, cy + (px - cx) * sin + (py - cy) * cos)
        for px, py in corners
    ]


def _check_boxes(spec: ProjectSpec, content: ItemContent, value: Boxes, where: str) -> Boxes:
    width, height = content.image_width, content.image_height
    known = spec.label_names("class")
    # Half a pixel of slack absorbs float rounding of rotated corners, nothing more.
    eps = 1e-6
    for i, box in enumerate(value.boxes):
        at = f"{where}.boxes.boxes[{i}]"
        numbers = (box.x, box.y, box.width, box.height, box.rotation, *box.landmarks)
        if not all(math.isfinite(n) for n in numbers):
            raise InvalidArgument(f"{at} has a non-finite coordinate", reason="BAD_BOX")
        if box.width <= 0 or box.height <= 0:
            raise InvalidArgument(
                f"{at}: width and height must be positive (zero-size box)", reason="BAD_BOX"
            )
        for cx, cy in _corners(box):
            if cx < -eps or cy < -eps or cx > width + eps or cy > height + eps:
                raise InvalidArgument(
                    f"{at} ({box.x}, {box.y}, {box.width}x{box.height}) is outside the "
                    f"{width}x{height} image (pixels)",
                    reason="BOX_OUTSIDE_IMAGE",
                )
        if len(box.landmarks) % 2:
            raise InvalidArgument(f"{at}.landmarks must be x,y pairs", reason="BAD_BOX")
        for j in range(0, len(box.landmarks), 2):
            lx, ly = box.landmarks[j], box.landmarks[j + 1]
            if not (0 <= lx <= width and 0 <= ly <= height):
                raise InvalidArgument(
                    f"{at}.landmarks[{j}] is outside the image", reason="BOX_OUTSIDE_IMAGE"
                )
        if spec.task_type == OCR and not box.text.strip():
            raise InvalidArgument(
                f"{at}.text is empty (OCR boxes need a transcription)", reason="EMPTY_TEXT"
            )
        if spec.task_type == OBJECT_BOXES and not box.label:
            raise InvalidArgument(f"{at}.label is empty", reason="MISSING_VALUE")
        if box.label and box.label not in known:
            raise InvalidArgument(
                f"{at}.label {box.label!r} is not a label of the project", reason="UNKNOWN_LABEL"
            )
    return replace(value, image_width=width, image_height=height)
