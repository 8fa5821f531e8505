"""Confident learning over decided labels: out-of-sample class probabilities (e.g. a trainer
job's out-of-fold predictions) go through ``atlas_labeling.quality.errors``; each label it
flags enters the correction queue with the model's choice and the label's quality as its
audited reason and, within the relabel cap, goes to one more (different) annotator. The label
itself is never changed here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

import numpy as np
from sqlalchemy import Connection, select, update

from atlas_labeling.consensus import flag, vote_key
from atlas_labeling.gold import REOPENABLE
from atlas_labeling.items import row_to_item
from atlas_labeling.projects import Project
from atlas_labeling.tables import corrections, items
from atlas_labeling.values import from_json

DECIDED_BY_PEOPLE = ("human", "consensus", "review")


def flag_issues(
    conn: Connection,
    project: Project,
    probabilities: Mapping[str, np.ndarray],
    classes: list[str],
    *,
    match_entity_id: bool,
    now: datetime,
) -> tuple[int, int]:
    """Flag likely label errors; returns (items checked, items flagged)."""
    from atlas_labeling.quality.errors import find_label_issues_by_item

    rows = conn.execute(
        select(items).where(
            (items.c.project_id == project.project_id)
            & items.c.final_source.in_(DECIDED_BY_PEOPLE)
            & items.c.gold_value.is_(None)
        )
    ).all()
    checked = []
    for row in rows:
        key = row.entity_id if match_entity_id else row.item_id
        label = vote_key(from_json(json.loads(row.final_value)))
        if key in probabilities and label in classes:
            checked.append((row, label, probabilities[key]))
    if not checked:
        return 0, 0
    issues = find_label_issues_by_item(
        [r.item_id for r, _, _ in checked],
        [label for _, label, _ in checked],
        np.vstack([p for _, _, p in checked]),
        classes,
    )
    by_id = {r.item_id: r for r, _, _ in checked}
    already = set(
        conn.execute(
            select(corrections.c.item_id).where(
                (corrections.c.project_id == project.project_id)
                & (corrections.c.reason == "model_human_conflict")
            )
        ).scalars()
    )
    for issue in issues:
        if issue.item in already:
            continue  # flagged by an earlier run: one extra round per finding at most
        item = row_to_item(by_id[issue.item])
        requeue = item.rounds < project.spec.max_relabel_rounds and item.status in REOPENABLE
        detail = (
            f"confident learning: label {issue.given!r} has quality {issue.quality:.3f}; "
            f"the model suggests {issue.suggested!r}"
        )
        flag(
            conn,
            item,
            "model_human_conflict",
            1.0 - issue.quality,
            detail,
            now,
            "requeued" if requeue else "open",
        )
        if requeue:
            conn.execute(
                update(items)
                .where(items.c.item_id == item.item_id)
                .values(rounds=items.c.rounds + 1, status="in_progress")
            )
    return len(checked), len(issues)
