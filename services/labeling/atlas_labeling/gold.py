"""Gold (honeypot) items score annotators; an annotator whose gold accuracy falls below the
bar has every item they labelled flagged with an audited reason and, within the relabel cap,
sent to one more (different) annotator. Their labels are never flipped automatically."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select, update

from atlas_labeling.consensus import flag
from atlas_labeling.items import row_to_item
from atlas_labeling.projects import Project
from atlas_labeling.tables import annotations_table, corrections, items

REOPENABLE = ("done", "annotated", "in_review")


def check_annotator(
    conn: Connection,
    project: Project,
    annotator: str,
    now: datetime,
    *,
    min_answers: int,
    min_accuracy: float,
) -> int:
    """Flag the annotator's items when their gold accuracy is too low; returns how many."""
    a = annotations_table
    answers = (
        conn.execute(
            select(a.c.gold_correct).where(
                (a.c.project_id == project.project_id)
                & (a.c.author == annotator)
                & a.c.gold_correct.is_not(None)
            )
        )
        .scalars()
        .all()
    )
    answered, correct = len(answers), sum(1 for x in answers if x)
    if answered < min_answers or correct / answered >= min_accuracy:
        return 0
    flagged = select(corrections.c.item_id).where(
        (corrections.c.project_id == project.project_id)
        & (corrections.c.reason == "low_gold_accuracy")
    )
    rows = conn.execute(
        select(items).where(
            items.c.item_id.in_(
                select(a.c.item_id).where(
                    (a.c.project_id == project.project_id)
                    & (a.c.author == annotator)
                    & (a.c.source == "human")
                )
            )
            & items.c.gold_value.is_(None)
            & items.c.item_id.not_in(flagged)
        )
    ).all()
    detail = f"{annotator} answered {correct} of {answered} gold items right (< {min_accuracy:.0%})"
    for row in rows:
        item = row_to_item(row)
        requeue = item.rounds < project.spec.max_relabel_rounds and item.status in (
            *REOPENABLE,
            "unlabeled",
            "in_progress",
        )
        flag(
            conn,
            item,
            "low_gold_accuracy",
            1.0 - correct / answered,
            detail,
            now,
            "requeued" if requeue else "open",
        )
        if requeue:
            conn.execute(
                update(items)
                .where(items.c.item_id == item.item_id)
                .values(
                    rounds=items.c.rounds + 1,
                    status="in_progress" if item.status in REOPENABLE else item.status,
                )
            )
    return len(rows)
