"""Consensus: one answer per item (or per object) from several annotators' answers.

Categorical answers (classification, face pairs): `majority_vote`, `dawid_skene` /
`fit_dawid_skene`, `consensus_by_count` (the two combined by answers per item).
Multi-label classification: `multilabel_vote`. Regions: `merge_boxes` (boxes, faces, OCR
regions), `merge_spans` and then `merge_relations`. Transcriptions: `merge_ocr_text`.
"""

from atlas_labeling.quality.consensus._regions import (
    Box,
    MergedBox,
    MergedRelation,
    MergedSpan,
    Relation,
    Span,
    box_iou,
    merge_boxes,
    merge_relations,
    merge_spans,
    span_jaccard,
)
from atlas_labeling.quality.consensus._text import (
    character_error_rate,
    levenshtein,
    merge_ocr_text,
    normalize_text,
)
from atlas_labeling.quality.consensus._votes import (
    DawidSkeneResult,
    consensus_by_count,
    dawid_skene,
    fit_dawid_skene,
    majority_vote,
    multilabel_vote,
)

__all__ = [
    "Box",
    "DawidSkeneResult",
    "MergedBox",
    "MergedRelation",
    "MergedSpan",
    "Relation",
    "Span",
    "box_iou",
    "character_error_rate",
    "consensus_by_count",
    "dawid_skene",
    "fit_dawid_skene",
    "levenshtein",
    "majority_vote",
    "merge_boxes",
    "merge_ocr_text",
    "merge_relations",
    "merge_spans",
    "multilabel_vote",
    "normalize_text",
    "span_jaccard",
]
