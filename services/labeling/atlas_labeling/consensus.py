"""Consensus over an item's human annotations, and what follows from it: the final label,
or one more annotator (an audited disagreement entry in the correction queue) up to the
project's relabel cap, then review. The algorithms live in ``atlas_labeling.quality``; this
module only gathers the votes and records the outcome.

Classification and face pairs: majority vote (Dawid-Skene for projects with the weighted
method once an item has three or more annotations); the confidence is the winner's share.
Boxes (objects, faces, OCR with their texts) and spans (with relations): clusters that a
majority of the annotators drew (IoU >= 0.5 for boxes, Jaccard >= 0.5 for spans) become the
final value; the confidence is the share of all drawn regions that ended in such a cluster.
Merged boxes keep position, label and text (rotation and landmarks are not merged).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from atlas_labeling.items import ItemRecord
from atlas_labeling.labels import append_label
from atlas_labeling.projects import Project, utcnow
from atlas_labeling.schema import VALUE_KIND, ProjectSpec
from atlas_labeling.tables import annotations_table, corrections, ds_models, items
from atlas_labeling.values import (
    Box,
    Boxes,
    Classes,
    FacePair,
    Relation,
    Span,
    Spans,
    Value,
    from_json,
    to_json,
)

DECIDABLE = ("classes", "face_pair")
# Correction entries still waiting for a decision on their item.
PENDING = ("open", "requeued", "escalated")
REGION_IOU = 0.5
SPAN_JACCARD = 0.5


def vote_key(value: Value) -> str:
    """One comparable string per answer: the sorted class labels, or the face-pair decision."""
    if isinstance(value, Classes):
        return "|".join(sorted(value.labels))
    if isinstance(value, FacePair):
        return value.decision
    return json.dumps(to_json(value), sort_keys=True)


def key_value(spec: ProjectSpec, key: str) -> Value:
    if VALUE_KIND[spec.task_type] == "face_pair":
        return FacePair(key)
    return Classes(tuple(key.split("|")))


@dataclass(frozen=True)
class Decision:
    value: Value
    confidence: float
    annotators: list[str]
    votes: dict[str, int]


# Built once with bound parameters (every decision runs them).
_VOTES = select(
    annotations_table.c.item_id, annotations_table.c.author, annotations_table.c.value
).where(
    annotations_table.c.item_id.in_(bindparam("item_ids", expanding=True))
    & (annotations_table.c.source == "human")
    & (
        annotations_table.c.review_decision.is_(None)
        | (annotations_table.c.review_decision != "reject")
    )
)
_DECIDED = (
    update(items)
    .where(items.c.item_id == bindparam("b_item_id"))
    .values(
        status="done",
        final_value=bindparam("b_final_value", type_=items.c.final_value.type),
        final_source="consensus",
        agreement=bindparam("b_agreement", type_=items.c.agreement.type),
        decided_at=bindparam("b_decided_at", type_=items.c.decided_at.type),
    )
)


def human_votes(conn: Connection, item_ids: list[str]) -> list[tuple[str, str, str]]:
    """(item, annotator, vote) of the human annotations a reviewer has not rejected."""
    rows = conn.execute(_VOTES, {"item_ids": list(item_ids)}).all()
    return [(i, a, vote_key(from_json(json.loads(v)))) for i, a, v in rows]


def _human_values(conn: Connection, item_id: str) -> dict[str, Value]:
    rows = conn.execute(
        select(annotations_table.c.author, annotations_table.c.value)
        .where(
            (annotations_table.c.item_id == item_id)
            & (annotations_table.c.source == "human")
            & (
                annotations_table.c.review_decision.is_(None)
                | (annotations_table.c.review_decision != "reject")
            )
        )
        .order_by(annotations_table.c.created_at)
    ).all()
    return {author: from_json(json.loads(raw)) for author, raw in rows}


def decide_regions(conn: Connection, project: Project, item: ItemRecord) -> Decision:
    """Boxes or spans merged across annotators by the shared clustering."""
    from atlas_labeling.quality import consensus as qc

    values = _human_values(conn, item.item_id)
    quorum = len(values) // 2 + 1
    drawn = 0
    if VALUE_KIND[project.spec.task_type] == "boxes":
        by_annotator = {
            a: [
                qc.Box(b.x, b.y, b.width, b.height, b.label or None, b.text or None)
                for b in v.boxes
            ]
            for a, v in values.items()
            if isinstance(v, Boxes)
        }
        drawn = sum(len(b) for b in by_annotator.values())
        merged = qc.merge_boxes(by_annotator, REGION_IOU, quorum)
        kept = sum(m.support for m in merged)
        value: Value = Boxes(
            tuple(
                Box(
                    m.box.x,
                    m.box.y,
                    m.box.width,
                    m.box.height,
                    0.0,
                    m.box.label or "",
                    m.box.text or "",
                )
                for m in merged
            ),
            item.content.image_width,
            item.content.image_height,
        )
    else:
        spans_by = {
            a: [qc.Span(s.start, s.end, s.label) for s in v.spans]  # type: ignore[union-attr]
            for a, v in values.items()
        }
        drawn = sum(len(s) for s in spans_by.values())
        merged_spans = qc.merge_spans(spans_by, SPAN_JACCARD, quorum)
        kept = sum(m.support for m in merged_spans)
        relations_by = {}
        for a, v in values.items():
            ids = {s.span_id: qc.Span(s.start, s.end, s.label) for s in v.spans}  # type: ignore[union-attr]
            relations_by[a] = [
                qc.Relation(ids[r.source_span_id], ids[r.target_span_id], r.label)
                for r in v.relations  # type: ignore[union-attr]
            ]
        relations = qc.merge_relations(merged_spans, relations_by, quorum)
        value = Spans(
            tuple(
                Span(f"s{i}", m.span.start, m.span.end, m.span.label)
                for i, m in enumerate(merged_spans)
            ),
            tuple(Relation(f"s{r.head}", f"s{r.tail}", r.label) for r in relations),
        )
    confidence = kept / drawn if drawn else 1.0  # nobody drew anything: they agree
    return Decision(value, confidence, sorted(values), {"regions drawn": drawn, "kept": kept})


def decide(
    conn: Connection,
    project: Project,
    item: ItemRecord,
    now: datetime | None = None,
    *,
    refit_every: int = 500,
) -> Decision:
    from atlas_labeling.quality import consensus as qc  # the shared algorithms

    votes = human_votes(conn, [item.item_id])
    pairs = [(annotator, key) for _, annotator, key in votes]
    if project.spec.consensus == "weighted" and len(pairs) >= 3:
        # Dawid-Skene with the project's stored confusion matrices: one E-step on this item.
        # The matrices are refitted over the whole project only every so many decisions
        # (or when a label they never saw turns up), not on every submit.
        model = load_model(conn, project.project_id)
        # A young project's fit saw few answers: refit once the answers grew by about 5 %
        # (so small projects refit at every decision), at most every `refit_every`.
        stale = model is None or model.completions + 1 >= min(
            refit_every, max(1, model.answers // 20)
        )
        if stale or any(key not in model.classes for _, key in pairs):  # type: ignore[union-attr]
            _, fitted = refit(conn, project.project_id, now or utcnow())
            label, confidence = fitted[item.item_id]
        else:
            _count_completion(conn, project.project_id)
            label, confidence = model.posterior(pairs)  # type: ignore[union-attr]
    else:
        label, confidence = qc.majority_vote({item.item_id: pairs})[item.item_id]
    counts: dict[str, int] = {}
    for _, key in pairs:
        counts[key] = counts.get(key, 0) + 1
    return Decision(
        key_value(project.spec, label), float(confidence), [a for a, _ in pairs], counts
    )


@dataclass(frozen=True)
class StoredModel:
    """A project's Dawid-Skene fit: class priors and one confusion matrix per annotator
    (``confusion[a][k][l]`` = P(a answers l | the true class is k))."""

    classes: tuple[str, ...]
    priors: tuple[float, ...]
    confusion: dict[str, list[list[float]]]
    answers: int
    completions: int = 0

    def posterior(self, pairs: list[tuple[str, str]]) -> tuple[str, float]:
        """The E-step for one item's (annotator, answer) pairs: (best label, posterior).
        An annotator the fit has not seen counts as the prior-weighted typical annotator."""
        import numpy as np

        ix = {c: i for i, c in enumerate(self.classes)}
        priors = np.asarray(self.priors)
        if self.confusion:
            typical = np.mean([np.asarray(m) for m in self.confusion.values()], axis=0)
        else:
            typical = np.full((len(ix), len(ix)), 1.0 / len(ix))
        log_post = np.log(priors)
        latest = dict(pairs)  # a repeated annotator keeps their last answer, as in the fit
        for annotator, key in latest.items():
            matrix = (
                np.asarray(self.confusion[annotator]) if annotator in self.confusion else typical
            )
            log_post = log_post + np.log(matrix[:, ix[key]])
        post = np.exp(log_post - log_post.max())
        post /= post.sum()
        best = int(np.argmax(post))  # first maximum = smallest label, as in the fit
        return self.classes[best], float(post[best])


def load_model(conn: Connection, project_id: str) -> StoredModel | None:
    row = conn.execute(select(ds_models).where(ds_models.c.project_id == project_id)).first()
    if row is None:
        return None
    body = json.loads(row.body)
    return StoredModel(
        tuple(body["classes"]),
        tuple(body["priors"]),
        body["confusion"],
        row.answers,
        row.completions,
    )


def _count_completion(conn: Connection, project_id: str) -> None:
    conn.execute(
        update(ds_models)
        .where(ds_models.c.project_id == project_id)
        .values(completions=ds_models.c.completions + 1)
    )


def refit(
    conn: Connection, project_id: str, now: datetime
) -> tuple[StoredModel, dict[str, tuple[str, float]]]:
    """Fit Dawid-Skene over every human vote on the project's regular items and store it
    (a pass over the project: run every so many decisions, and on GetAgreement)."""
    from atlas_labeling.quality import consensus as qc

    regular = select(items.c.item_id).where(
        (items.c.project_id == project_id) & items.c.gold_value.is_(None)
    )
    a = annotations_table
    rows = conn.execute(
        select(a.c.item_id, a.c.author, a.c.value).where(
            (a.c.project_id == project_id)
            & a.c.item_id.in_(regular)
            & (a.c.source == "human")
            & (a.c.review_decision.is_(None) | (a.c.review_decision != "reject"))
        )
    ).all()
    votes = [(i, who, vote_key(from_json(json.loads(v)))) for i, who, v in rows]
    fitted: dict[str, tuple[str, float]] = {}
    if not votes:
        model = StoredModel((), (), {}, 0)
    else:
        fit = qc.fit_dawid_skene(votes)
        model = StoredModel(
            fit.classes,
            tuple(float(p) for p in fit.priors),
            {who: m.tolist() for who, m in fit.confusion.items()},
            len(votes),
        )
        fitted = fit.consensus()
    body = json.dumps(
        {"classes": model.classes, "priors": model.priors, "confusion": model.confusion}
    )
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    values = {"body": body, "fitted_at": now, "answers": model.answers, "completions": 0}
    conn.execute(
        dialect.insert(ds_models)
        .values(project_id=project_id, **values)
        .on_conflict_do_update(index_elements=["project_id"], set_=values)
    )
    return model, fitted


def settle(
    conn: Connection,
    project: Project,
    item: ItemRecord,
    now: datetime,
    *,
    refit_every: int = 500,
) -> str:
    """Decide an item that has all its annotations; returns its new status."""
    spec = project.spec
    if VALUE_KIND[spec.task_type] in DECIDABLE:
        decision = decide(conn, project, item, now, refit_every=refit_every)
    else:
        decision = decide_regions(conn, project, item)
    if decision.confidence >= spec.consensus_threshold:
        conn.execute(
            _DECIDED,
            {
                "b_item_id": item.item_id,
                "b_final_value": json.dumps(to_json(decision.value)),
                "b_agreement": decision.confidence,
                "b_decided_at": now,
            },
        )
        append_label(
            conn,
            item,
            decision.value,
            source="consensus",
            annotators=decision.annotators,
            agreement=decision.confidence,
            now=now,
        )
        resolve(
            conn,
            item,
            now,
            f"consensus {vote_key(decision.value)!r} (confidence {decision.confidence:.2f}) "
            f"of {', '.join(decision.annotators)}",
        )
        return "done"
    detail = (
        f"round {item.rounds}: votes {dict(sorted(decision.votes.items()))}, consensus "
        f"confidence {decision.confidence:.2f} < {spec.consensus_threshold:.2f}"
    )
    if item.rounds < spec.max_relabel_rounds:
        # One more annotator; the holder keys keep it away from everyone who answered.
        conn.execute(
            update(items)
            .where(items.c.item_id == item.item_id)
            .values(rounds=items.c.rounds + 1, status="in_progress", agreement=decision.confidence)
        )
        flag(conn, item, "disagreement", 1.0 - decision.confidence, detail, now, "requeued")
        return "in_progress"
    flag(
        conn,
        item,
        "disagreement",
        1.0 - decision.confidence,
        detail + f"; relabel cap {spec.max_relabel_rounds} reached, sent to review",
        now,
        "escalated",
    )
    conn.execute(
        update(items)
        .where(items.c.item_id == item.item_id)
        .values(status="in_review", agreement=decision.confidence)
    )
    return "in_review"


def flag(
    conn: Connection,
    item: ItemRecord,
    reason: str,
    priority: float,
    detail: str,
    now: datetime,
    resolution: str = "open",
) -> None:
    """Add (or update) the item's correction entry for ``reason``; the detail is the audit."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(corrections).values(
        project_id=item.project_id,
        item_id=item.item_id,
        reason=reason,
        priority=priority,
        detail=detail,
        resolution=resolution,
        created_at=now,
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["project_id", "item_id", "reason"],
            set_={
                "priority": priority,
                "detail": detail,
                "resolution": resolution,
                "resolved_at": None,
            },
        )
    )


def resolve(conn: Connection, item: ItemRecord, now: datetime, by: str) -> None:
    """Close the item's pending entries (open, requeued, escalated) once it is decided, on
    every path that decides one (consensus, a single annotator, a review, auto-labeling);
    ``by`` says who or what decided and is appended to each entry's audited detail."""
    c = corrections.c
    conn.execute(
        update(corrections)
        # The project too: (project, item) is the primary key's prefix, an index lookup.
        .where(
            (c.project_id == item.project_id)
            & (c.item_id == item.item_id)
            & c.resolution.in_(PENDING)
        )
        .values(
            resolution="resolved",
            resolved_at=now,
            detail=corrections.c.detail + f"; resolved {now:%Y-%m-%d %H:%M:%S} UTC by {by}",
        )
    )
