"""Consensus for regions: boxes (objects, faces, OCR regions) and text spans."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from atlas_labeling.quality.consensus._clusters import (
    cluster_across_annotators,
    mean_pairwise,
    medoid,
)
from atlas_labeling.quality.consensus._text import merge_ocr_text


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in image pixels: top-left corner, width and height (both > 0)."""

    x: float
    y: float
    width: float
    height: float
    label: str | None = None
    text: str | None = None  # OCR transcription, when the task has one

    def __post_init__(self) -> None:
        values = (self.x, self.y, self.width, self.height)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"box coordinates must be finite: {values}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"box width and height must be > 0: {self.width}x{self.height}")


@dataclass(frozen=True)
class MergedBox:
    """One object found by `support` annotators.

    Attributes:
        box: the merged box (label and text merged too).
        members: (annotator, box) pairs in the cluster, one per annotator, sorted by annotator.
        support: number of annotators who drew it.
        agreement: mean pairwise IoU of the members (1.0 for a single member).
    """

    box: Box
    members: tuple[tuple[str, Box], ...]
    support: int
    agreement: float


@dataclass(frozen=True)
class Span:
    """Character offsets [start, end) into the item's text, and the entity label."""

    start: int
    end: int
    label: str

    def __post_init__(self) -> None:
        if self.start < 0 or self.end <= self.start:
            raise ValueError(f"span needs 0 <= start < end, got [{self.start}, {self.end})")


@dataclass(frozen=True)
class MergedSpan:
    """One entity found by `support` annotators; fields as in `MergedBox` (agreement = Jaccard)."""

    span: Span
    members: tuple[tuple[str, Span], ...]
    support: int
    agreement: float


@dataclass(frozen=True)
class Relation:
    """A typed, directed relation between two of an annotator's spans."""

    head: Span
    tail: Span
    label: str


@dataclass(frozen=True)
class MergedRelation:
    """A relation between two merged spans (indices into `merge_spans`' result).

    `annotators` are those who drew it, sorted; `support` is their number.
    """

    head: int
    tail: int
    label: str
    support: int
    annotators: tuple[str, ...]


def box_iou(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    """len(a) x len(b) matrix of intersection over union."""
    ax = np.array([[r.x, r.y, r.x + r.width, r.y + r.height] for r in a], dtype=float)
    bx = np.array([[r.x, r.y, r.x + r.width, r.y + r.height] for r in b], dtype=float)
    ax, bx = ax.reshape(-1, 4), bx.reshape(-1, 4)
    w = np.minimum(ax[:, None, 2], bx[None, :, 2]) - np.maximum(ax[:, None, 0], bx[None, :, 0])
    h = np.minimum(ax[:, None, 3], bx[None, :, 3]) - np.maximum(ax[:, None, 1], bx[None, :, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    area_a = (ax[:, 2] - ax[:, 0]) * (ax[:, 3] - ax[:, 1])
    area_b = (bx[:, 2] - bx[:, 0]) * (bx[:, 3] - bx[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def span_jaccard(a: Sequence[Span], b: Sequence[Span]) -> np.ndarray:
    """len(a) x len(b) matrix of Jaccard overlap of the character-offset sets."""
    sa = np.array([[s.start, s.end] for s in a], dtype=float).reshape(-1, 2)
    sb = np.array([[s.start, s.end] for s in b], dtype=float).reshape(-1, 2)
    inter = np.clip(
        np.minimum(sa[:, None, 1], sb[None, :, 1]) - np.maximum(sa[:, None, 0], sb[None, :, 0]),
        0,
        None,
    )
    union = (sa[:, 1] - sa[:, 0])[:, None] + (sb[:, 1] - sb[:, 0])[None, :] - inter
    return inter / union


def merge_boxes(
    boxes_by_annotator: Mapping[str, Sequence[Box]],
    iou_threshold: float,
    quorum: int,
    how: Literal["mean", "medoid"] = "mean",
    match_labels: bool = True,
) -> list[MergedBox]:
    """Merge the boxes several annotators drew on one image into one box per object.

    Boxes are clustered by `cluster_across_annotators` (IoU >= `iou_threshold` between every
    two members, at most one box per annotator); clusters drawn by fewer than `quorum`
    annotators are dropped. With `match_labels` only boxes with the same label cluster;
    without it the merged label is the members' majority (ties to the smallest label).

    The merged box is the mean of the members' corners (`how="mean"`) or the member with the
    highest summed IoU to the others (`how="medoid"`, ties to the smallest annotator id).
    Members' texts, where present, merge through `merge_ocr_text`.

    Returns:
        Merged boxes sorted by (label, y, x).
    """
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    if quorum < 1:
        raise ValueError(f"quorum must be >= 1, got {quorum}")
    if how not in ("mean", "medoid"):
        raise ValueError(f"how must be 'mean' or 'medoid', got {how!r}")
    owners, boxes = _flatten(boxes_by_annotator)
    if not boxes:
        return []
    iou = box_iou(boxes, boxes)
    if match_labels:
        iou = np.where(_same_label([b.label for b in boxes]), iou, 0.0)
    merged = []
    for cluster in cluster_across_annotators(owners, iou, iou_threshold):
        if len(cluster) < quorum:
            continue
        sub = iou[np.ix_(cluster, cluster)]
        members = tuple(sorted(((owners[i], boxes[i]) for i in cluster), key=lambda m: m[0]))
        merged.append(
            MergedBox(
                box=_merge_members(members, sub, [owners[i] for i in cluster], how),
                members=members,
                support=len(cluster),
                agreement=mean_pairwise(sub),
            )
        )
    merged.sort(key=lambda m: (m.box.label or "", m.box.y, m.box.x))
    return merged


def merge_spans(
    spans_by_annotator: Mapping[str, Sequence[Span]],
    jaccard_threshold: float,
    quorum: int,
) -> list[MergedSpan]:
    """Merge entity spans from several annotators of one text into one span per entity.

    Spans cluster only with spans of the same label, by Jaccard overlap of their character
    offsets >= `jaccard_threshold` between every two members, at most one per annotator;
    clusters from fewer than `quorum` annotators are dropped. The merged span is the medoid
    (highest summed Jaccard to the others, ties to the smallest annotator id), so its
    offsets are ones an annotator actually chose; identical spans held by most annotators
    therefore win.

    Returns:
        Merged spans sorted by (start, end, label).
    """
    if not 0 < jaccard_threshold <= 1:
        raise ValueError(f"jaccard_threshold must be in (0, 1], got {jaccard_threshold}")
    if quorum < 1:
        raise ValueError(f"quorum must be >= 1, got {quorum}")
    owners, spans = _flatten(spans_by_annotator)
    if not spans:
        return []
    sim = np.where(_same_label([s.label for s in spans]), span_jaccard(spans, spans), 0.0)
    merged = []
    for cluster in cluster_across_annotators(owners, sim, jaccard_threshold):
        if len(cluster) < quorum:
            continue
        sub = sim[np.ix_(cluster, cluster)]
        best = cluster[medoid(sub, [owners[i] for i in cluster])]
        merged.append(
            MergedSpan(
                span=spans[best],
                members=tuple(sorted(((owners[i], spans[i]) for i in cluster), key=_first)),
                support=len(cluster),
                agreement=mean_pairwise(sub),
            )
        )
    merged.sort(key=lambda m: (m.span.start, m.span.end, m.span.label))
    return merged


def _first(member: tuple[str, object]) -> str:
    return member[0]


def _flatten(by_annotator: Mapping[str, Sequence[object]]) -> tuple[list[str], list]:
    owners: list[str] = []
    regions: list = []
    for annotator in sorted(by_annotator):
        for region in by_annotator[annotator]:
            owners.append(annotator)
            regions.append(region)
    return owners, regions


def _same_label(labels: Sequence[str | None]) -> np.ndarray:
    arr = np.array(["" if lab is None else "\x00" + lab for lab in labels], dtype=object)
    return arr[:, None] == arr[None, :]


def _merge_members(
    members: tuple[tuple[str, Box], ...],
    iou: np.ndarray,
    owners: list[str],
    how: str,
) -> Box:
    by_owner = dict(members)
    ordered = [by_owner[o] for o in owners]  # the iou matrix's order
    labels = [b.label for b in ordered if b.label is not None]
    label = None
    if labels:
        tally = Counter(labels)
        label = min(tally, key=lambda lab: (-tally[lab], lab))
    texts = [b.text for b in ordered if b.text is not None]
    text = merge_ocr_text(texts) if texts else None
    if how == "medoid":
        pick = ordered[medoid(iou, owners)]
        return Box(pick.x, pick.y, pick.width, pick.height, label=label, text=text)
    corners = np.array([[b.x, b.y, b.x + b.width, b.y + b.height] for b in ordered])
    x0, y0, x1, y1 = corners.mean(axis=0)
    return Box(float(x0), float(y0), float(x1 - x0), float(y1 - y0), label=label, text=text)


def merge_relations(
    merged_spans: Sequence[MergedSpan],
    relations_by_annotator: Mapping[str, Sequence[Relation]],
    quorum: int,
) -> list[MergedRelation]:
    """Relations agreed on by at least `quorum` annotators, between merged spans.

    Each annotator's relation is mapped to the merged spans that hold its head and tail
    among their members (from that same annotator); a relation whose head or tail did not
    survive span merging is dropped. An annotator counts once per (head, tail, label).

    Returns:
        Merged relations sorted by (head, tail, label).
    """
    if quorum < 1:
        raise ValueError(f"quorum must be >= 1, got {quorum}")
    where = {
        (annotator, span): index
        for index, merged in enumerate(merged_spans)
        for annotator, span in merged.members
    }
    votes: dict[tuple[int, int, str], set[str]] = {}
    for annotator, relations in relations_by_annotator.items():
        for rel in relations:
            head, tail = where.get((annotator, rel.head)), where.get((annotator, rel.tail))
            if head is not None and tail is not None:
                votes.setdefault((head, tail, rel.label), set()).add(annotator)
    return [
        MergedRelation(head, tail, label, len(names), tuple(sorted(names)))
        for (head, tail, label), names in sorted(votes.items())
        if len(names) >= quorum
    ]
