"""Gold (honeypot) items score annotators. Once an annotator has answered ``min_answers``
gold items and is below ``min_accuracy``:

- every item they labelled before is flagged ``low_gold_accuracy`` with an audited detail
  and, within the relabel cap, sent to one more (different) annotator;
- every later submission of theirs on a regular item (a lease they already held) is flagged
  the same way, before the item can be decided with their vote;
- they get no more regular items: ``RequestAssignments`` hands them the gold items they
  have not answered (a way back over the bar), then refuses them (FAILED_PRECONDITION,
  ``ANNOTATOR_PAUSED``), as Label Studio Enterprise pauses an annotator who fails its
  ground truth. Reviews are not affected.

"Below the bar" is beyond reasonable doubt: the upper end of a 90 % Wilson interval of their
accuracy is under ``min_accuracy`` (see ``Standing.low``).

Their labels are never flipped automatically. The counts live in ``annotator_gold`` (one
row per annotator, updated on each gold answer), so the check costs one key lookup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from atlas_labeling.consensus import flag
from atlas_labeling.items import ItemRecord, row_to_item
from atlas_labeling.projects import Project
from atlas_labeling.tables import annotations_table, annotator_gold, corrections, items

REOPENABLE = ("done", "annotated", "in_review")
REASON = "low_gold_accuracy"
WILSON_Z = 1.645  # 90 % two-sided


@dataclass(frozen=True)
class Standing:
    annotator: str
    answered: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.answered if self.answered else 0.0

    def upper_bound(self) -> float:
        """The Wilson score interval's upper end (90 %, two-sided) of their accuracy."""
        n, p, z = self.answered, self.accuracy, WILSON_Z
        if not n:
            return 1.0
        centre = p + z * z / (2 * n)
        spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return (centre + spread) / (1 + z * z / n)

    def low(self, min_answers: int, min_accuracy: float) -> bool:
        """Below the bar beyond reasonable doubt: after ``min_answers`` gold answers, even
        the optimistic end of their accuracy's interval is under it. A 90 % annotator who
        missed 2 of 4 (or 3 of 8) is not paused on that luck; 0 of 3 is."""
        return (
            self.answered >= min_answers
            and self.accuracy < min_accuracy
            and self.upper_bound() < min_accuracy
        )

    def detail(self, min_accuracy: float) -> str:
        return (
            f"{self.annotator} answered {self.correct} of {self.answered} gold items right "
            f"(< {min_accuracy:.0%})"
        )


def standing(conn: Connection, project_id: str, annotator: str) -> Standing:
    row = conn.execute(
        select(annotator_gold.c.answered, annotator_gold.c.correct).where(
            (annotator_gold.c.project_id == project_id) & (annotator_gold.c.annotator == annotator)
        )
    ).first()
    return Standing(annotator, row.answered, row.correct) if row else Standing(annotator, 0, 0)


def record_answer(conn: Connection, project_id: str, annotator: str, correct: bool) -> Standing:
    """Count one gold answer (inside the submit's transaction)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    g = annotator_gold
    statement = dialect.insert(g).values(
        project_id=project_id, annotator=annotator, answered=1, correct=int(correct)
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["project_id", "annotator"],
            set_={"answered": g.c.answered + 1, "correct": g.c.correct + int(correct)},
        )
    )
    return standing(conn, project_id, annotator)


def _flag_item(
    conn: Connection,
    project: Project,
    item: ItemRecord,
    who: Standing,
    detail: str,
    now: datetime,
) -> str:
    """Flag one item; returns the entry's resolution (requeued within the cap, else open)."""
    requeue = item.rounds < project.spec.max_relabel_rounds and item.status in (
        *REOPENABLE,
        "unlabeled",
        "in_progress",
    )
    resolution = "requeued" if requeue else "open"
    flag(conn, item, REASON, 1.0 - who.accuracy, detail, now, resolution)
    if requeue:
        conn.execute(
            update(items)
            .where(items.c.item_id == item.item_id)
            .values(
                rounds=items.c.rounds + 1,
                status="in_progress" if item.status in REOPENABLE else item.status,
            )
        )
    return resolution


def check_annotator(
    conn: Connection,
    project: Project,
    who: Standing,
    now: datetime,
    *,
    min_answers: int,
    min_accuracy: float,
) -> int:
    """After a gold answer: flag every item the annotator labelled (and no entry of this
    reason flags yet) when their gold accuracy is too low; returns how many."""
    if not who.low(min_answers, min_accuracy):
        return 0
    a = annotations_table
    flagged = select(corrections.c.item_id).where(
        (corrections.c.project_id == project.project_id) & (corrections.c.reason == REASON)
    )
    rows = conn.execute(
        select(items).where(
            items.c.item_id.in_(
                select(a.c.item_id).where(
                    (a.c.project_id == project.project_id)
                    & (a.c.author == who.annotator)
                    & (a.c.source == "human")
                )
            )
            & items.c.gold_value.is_(None)
            & items.c.item_id.not_in(flagged)
        )
    ).all()
    detail = who.detail(min_accuracy)
    for row in rows:
        _flag_item(conn, project, row_to_item(row), who, detail, now)
    return len(rows)


def flag_submission(
    conn: Connection,
    project: Project,
    item: ItemRecord,
    who: Standing,
    now: datetime,
    *,
    min_accuracy: float,
) -> str:
    """A submission on a regular item by an annotator already below the gold bar (a lease
    they held before falling below it): flag the item before it is decided. Within the
    relabel cap it needs one more annotator (returns "requeued"); at the cap it goes to
    review (returns "escalated")."""
    detail = who.detail(min_accuracy) + "; labelled this item while below the bar"
    if item.rounds < project.spec.max_relabel_rounds:
        return _flag_item(conn, project, item, who, detail, now)
    flag(conn, item, REASON, 1.0 - who.accuracy, detail + ", sent to review", now, "escalated")
    return "escalated"
