"""Confidence-threshold auto-labeling, as SageMaker Ground Truth does it: on the items humans
labelled, find the lowest score at which a model version's suggestions reach the target
accuracy (``atlas_labeling.quality.autolabel``); open items that no one has touched and whose
suggestion scores at or above it are labelled by the model — source "model", visible as such
in items and exports — and the rest stay with people."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
from sqlalchemy import Connection, select, update

from atlas_labeling.consensus import resolve, vote_key
from atlas_labeling.items import row_to_item
from atlas_labeling.labels import append_label
from atlas_labeling.projects import Project
from atlas_labeling.tables import annotations_table, items
from atlas_labeling.values import from_json

HUMAN_SOURCES = ("human", "consensus", "review")


def auto_label(
    conn: Connection, project: Project, model_version: str, target: float, now: datetime
) -> tuple[float | None, int]:
    """Returns (threshold or None, items labelled by the model)."""
    from atlas_labeling.quality.autolabel import threshold_for_accuracy

    a, i = annotations_table, items
    judged = conn.execute(
        select(a.c.value, a.c.confidence, i.c.final_value)
        .join(i, i.c.item_id == a.c.item_id)
        .where(
            (i.c.project_id == project.project_id)
            & (a.c.source == "model")
            & (a.c.model_version == model_version)
            & i.c.final_source.in_(HUMAN_SOURCES)
        )
    ).all()
    if not judged:
        return None, 0
    scores = np.array([score for _, score, _ in judged], dtype=float)
    correct = np.array(
        [
            vote_key(from_json(json.loads(v))) == vote_key(from_json(json.loads(f)))
            for v, _, f in judged
        ]
    )
    threshold = threshold_for_accuracy(scores, correct, target)
    if threshold is None:
        return None, 0
    candidates = conn.execute(
        select(i, a.c.value.label("suggested"))
        .join(a, a.c.item_id == i.c.item_id)
        .where(
            (i.c.project_id == project.project_id)
            & (i.c.status == "unlabeled")
            & (i.c.taken == 0)
            & i.c.gold_value.is_(None)
            & (a.c.source == "model")
            & (a.c.model_version == model_version)
            & (a.c.confidence >= threshold)
        )
    ).all()
    for row in candidates:
        item = row_to_item(row)
        value = from_json(json.loads(row.suggested))
        conn.execute(
            update(i)
            .where(i.c.item_id == item.item_id)
            .values(
                status="done",
                final_value=row.suggested,
                final_source="model",
                decided_at=now,
            )
        )
        append_label(
            conn, item, value, source="model", annotators=[model_version], agreement=None, now=now
        )
        resolve(conn, item, now, f"auto-label by {model_version} (score above {threshold:.3f})")
    return float(threshold), len(candidates)
