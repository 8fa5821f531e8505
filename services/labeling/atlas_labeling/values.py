"""Annotation values as plain domain objects (no protobuf), with a stable JSON form for the
database. Which kind a value has follows the project's task type (see schema.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

FACE_PAIR_DECISIONS = ("same", "different", "unsure")


@dataclass(frozen=True)
class Classes:
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Span:
    span_id: str
    start: int  # code points, inclusive
    end: int  # code points, exclusive
    label: str
    text: str = ""  # optional echo of the covered text, checked against the item


@dataclass(frozen=True)
class Relation:
    source_span_id: str
    target_span_id: str
    label: str


@dataclass(frozen=True)
class Spans:
    spans: tuple[Span, ...]
    relations: tuple[Relation, ...] = ()


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    width: float
    height: float
    rotation: float = 0.0
    label: str = ""
    text: str = ""
    landmarks: tuple[float, ...] = ()


@dataclass(frozen=True)
class Boxes:
    boxes: tuple[Box, ...]
    # Pixel size of the image the boxes are in; filled from the item when stored.
    image_width: int = 0
    image_height: int = 0


@dataclass(frozen=True)
class FacePair:
    decision: str  # one of FACE_PAIR_DECISIONS; anything else fails validation


Value = Classes | Spans | Boxes | FacePair

KIND_NAMES: dict[type, str] = {
    Classes: "classes",
    Spans: "spans",
    Boxes: "boxes",
    FacePair: "face_pair",
}


def kind_of(value: Value) -> str:
    return KIND_NAMES[type(value)]


def to_json(value: Value) -> dict[str, Any]:
    return {"kind": kind_of(value), **asdict(value)}


def from_json(raw: dict[str, Any]) -> Value:
    kind = raw["kind"]
    if kind == "classes":
        return Classes(tuple(raw["labels"]))
    if kind == "spans":
        return Spans(
            tuple(Span(**s) for s in raw["spans"]),
            tuple(Relation(**r) for r in raw["relations"]),
        )
    if kind == "boxes":
        boxes = tuple(
            Box(**{**b, "landmarks": tuple(b.get("landmarks", ()))}) for b in raw["boxes"]
        )
        return Boxes(boxes, raw.get("image_width", 0), raw.get("image_height", 0))
    if kind == "face_pair":
        return FacePair(raw["decision"])
    raise ValueError(f"unknown annotation value kind {kind!r}")


def labels_used(value: Value) -> set[tuple[str, str]]:
    """(label kind, label name) pairs a value refers to: what makes a label "used"."""
    if isinstance(value, Classes):
        return {("class", label) for label in value.labels}
    if isinstance(value, Spans):
        return {("entity", s.label) for s in value.spans} | {
            ("relation", r.label) for r in value.relations
        }
    if isinstance(value, Boxes):
        return {("class", b.label) for b in value.boxes if b.label}
    return set()


def same_answer(value: Value, known: Value, iou_threshold: float = 0.5) -> bool:
    """Whether an answer matches a gold answer: equal label sets, equal spans (offsets and
    labels), the same face-pair decision, or boxes matched one to one with IoU at least
    ``iou_threshold`` and equal labels/transcriptions."""
    if type(value) is not type(known):
        return False
    if isinstance(value, Classes):
        return set(value.labels) == set(known.labels)  # type: ignore[union-attr]
    if isinstance(value, FacePair):
        return value.decision == known.decision  # type: ignore[union-attr]
    if isinstance(value, Spans):
        mine = {(s.start, s.end, s.label) for s in value.spans}
        return mine == {(s.start, s.end, s.label) for s in known.spans}  # type: ignore[union-attr]
    assert isinstance(value, Boxes) and isinstance(known, Boxes)
    if len(value.boxes) != len(known.boxes):
        return False
    remaining = list(known.boxes)
    for box in value.boxes:
        match = next(
            (
                k
                for k in remaining
                if k.label == box.label
                and k.text.strip() == box.text.strip()
                and box_iou(box, k) >= iou_threshold
            ),
            None,
        )
        if match is None:
            return False
        remaining.remove(match)
    return True


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two axis-aligned boxes (rotation ignored)."""
    ix = max(0.0, min(a.x + a.width, b.x + b.width) - max(a.x, b.x))
    iy = max(0.0, min(a.y + a.height, b.y + b.height) - max(a.y, b.y))
    inter = ix * iy
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class ItemContent:
    """What an item shows: a text, an image, or two images (face pairs)."""

    text: str | None = None
    image_uri: str = ""
    second_image_uri: str = ""
    image_width: int = 0
    image_height: int = 0
