"""Inter-annotator agreement of a project, computed with the shared algorithms of
``atlas_labeling.quality.agreement`` over the human annotations reviewers did not reject.

Classification and face pairs: Cohen's kappa when exactly two annotators took part, else
Fleiss' kappa over the items with the most common number of annotations; Krippendorff's alpha
(nominal) over all items with two or more annotations (missing answers allowed); per-label
specific agreement; per-annotator accuracy against the final label. Spans: mean pairwise F1
of exact (start, end, label) matches. Boxes: mean pairwise IoU of greedily matched boxes.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from sqlalchemy import Connection, select

from atlas_core.errors import FailedPrecondition
from atlas_labeling.consensus import vote_key
from atlas_labeling.projects import Project
from atlas_labeling.schema import VALUE_KIND
from atlas_labeling.tables import annotations_table, items
from atlas_labeling.values import Boxes, Spans, Value, box_iou, from_json


@dataclass
class AnnotatorAgreement:
    annotator: str
    annotations: int = 0
    accuracy: float = 0.0
    median_duration_ms: int = 0


@dataclass
class Agreement:
    items_compared: int = 0
    kappa: float = 0.0
    krippendorff_alpha: float = 0.0
    span_f1: float = 0.0
    box_iou: float = 0.0
    annotators: list[AnnotatorAgreement] = field(default_factory=list)
    per_label: dict[str, float] = field(default_factory=dict)


def project_agreement(conn: Connection, project: Project) -> Agreement:
    rows = conn.execute(
        select(
            annotations_table.c.item_id,
            annotations_table.c.author,
            annotations_table.c.value,
            annotations_table.c.duration_ms,
        ).where(
            (annotations_table.c.project_id == project.project_id)
            & (annotations_table.c.source == "human")
            & (
                annotations_table.c.review_decision.is_(None)
                | (annotations_table.c.review_decision != "reject")
            )
        )
    ).all()
    by_item: dict[str, dict[str, Value]] = defaultdict(dict)
    durations: dict[str, list[int]] = defaultdict(list)
    for item_id, author, raw, duration in rows:
        by_item[item_id][author] = from_json(json.loads(raw))
        durations[author].append(duration)
    compared = {i: v for i, v in by_item.items() if len(v) >= 2}
    if not compared:
        raise FailedPrecondition(
            "no item has two or more annotations to compare", reason="NOTHING_TO_COMPARE"
        )
    finals = {
        i: from_json(json.loads(v))
        for i, v in conn.execute(
            select(items.c.item_id, items.c.final_value).where(
                (items.c.project_id == project.project_id) & items.c.final_value.is_not(None)
            )
        )
    }
    result = Agreement(items_compared=len(compared))
    kind = VALUE_KIND[project.spec.task_type]
    if kind in ("classes", "face_pair"):
        _categorical(result, compared)
    elif kind == "spans":
        result.span_f1 = _mean_pairwise(compared, _span_f1)
    else:
        result.box_iou = _mean_pairwise(compared, _box_iou)
    for annotator in sorted(durations):
        judged = [
            vote_key(values[annotator]) == vote_key(finals[i])
            for i, values in by_item.items()
            if annotator in values and i in finals
        ]
        result.annotators.append(
            AnnotatorAgreement(
                annotator,
                len(durations[annotator]),
                sum(judged) / len(judged) if judged else 0.0,
                int(statistics.median(durations[annotator])),
            )
        )
    return result


def _categorical(result: Agreement, compared: dict[str, dict[str, Value]]) -> None:
    from atlas_labeling.quality import agreement as qa  # the shared algorithms

    votes = {i: {a: vote_key(v) for a, v in values.items()} for i, values in compared.items()}
    categories = sorted({k for values in votes.values() for k in values.values()})
    code = {c: n for n, c in enumerate(categories)}
    coders = sorted({a for values in votes.values() for a in values})
    units = sorted(votes)
    reliability = np.full((len(units), len(coders)), np.nan)
    for u, unit in enumerate(units):
        for c, coder in enumerate(coders):
            if coder in votes[unit]:
                reliability[u, c] = code[votes[unit][coder]]
    result.krippendorff_alpha = float(qa.krippendorff_alpha(reliability, "nominal"))
    if len(coders) == 2:
        a, b = coders
        both = [u for u in units if a in votes[u] and b in votes[u]]
        result.kappa = float(
            qa.cohen_kappa([votes[u][a] for u in both], [votes[u][b] for u in both])
        )
    else:
        # Fleiss' kappa needs the same number of raters per item: the most common one.
        raters = Counter(len(v) for v in votes.values()).most_common(1)[0][0]
        same = [u for u in units if len(votes[u]) == raters]
        counts = np.zeros((len(same), len(categories)))
        for row, unit in enumerate(same):
            for label in votes[unit].values():
                counts[row, code[label]] += 1
        result.kappa = float(qa.fleiss_kappa(counts))
    # Specific agreement per label: of the pairs where one annotator chose it, the share
    # where the other did too.
    chosen: Counter[str] = Counter()
    matched: Counter[str] = Counter()
    for values in votes.values():
        for x, y in combinations(values.values(), 2):
            for first, second in ((x, y), (y, x)):
                chosen[first] += 1
                matched[first] += int(first == second)
    result.per_label = {label: matched[label] / chosen[label] for label in sorted(chosen)}


def _mean_pairwise(compared: dict[str, dict[str, Value]], score: object) -> float:
    scores = [
        score(x, y)  # type: ignore[operator]
        for values in compared.values()
        for x, y in combinations(values.values(), 2)
    ]
    return float(np.mean(scores)) if scores else 0.0


def _span_f1(x: Value, y: Value) -> float:
    assert isinstance(x, Spans) and isinstance(y, Spans)
    a = {(s.start, s.end, s.label) for s in x.spans}
    b = {(s.start, s.end, s.label) for s in y.spans}
    if not a and not b:
        return 1.0
    return 2 * len(a & b) / (len(a) + len(b))


def _box_iou(x: Value, y: Value) -> float:
    """Mean IoU over greedily matched box pairs; unmatched boxes count as IoU 0."""
    assert isinstance(x, Boxes) and isinstance(y, Boxes)
    if not x.boxes and not y.boxes:
        return 1.0
    pairs = sorted(
        ((box_iou(p, q), i, j) for i, p in enumerate(x.boxes) for j, q in enumerate(y.boxes)),
        reverse=True,
    )
    used_x: set[int] = set()
    used_y: set[int] = set()
    total = 0.0
    for iou, i, j in pairs:
        if iou <= 0 or i in used_x or j in used_y:
            continue
        used_x.add(i)
        used_y.add(j)
        total += iou
    return total / max(len(x.boxes), len(y.boxes))
