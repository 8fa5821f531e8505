"""Active learning: the queue order of a project's open items from the class probabilities of
their latest pre-labels (``atlas_labeling.quality.active``), written as item priorities. The
queue hands out the highest priority first, then the oldest."""

from __future__ import annotations

import json

import numpy as np
from sqlalchemy import Connection, bindparam, select, update

from atlas_labeling.projects import Project
from atlas_labeling.tables import items

OPEN = ("unlabeled", "in_progress")


def refresh_order(conn: Connection, project: Project) -> int:
    """Recompute the priorities of the project's open items; returns how many were ranked."""
    rows = conn.execute(
        select(items.c.item_id, items.c.probs)
        .where((items.c.project_id == project.project_id) & items.c.status.in_(OPEN))
        .order_by(items.c.seq)
    ).all()
    if not rows:
        return 0
    if project.spec.queue_order == "fifo":
        ranked = [r.item_id for r in rows]
        priorities = dict.fromkeys(ranked, 0.0)
    else:
        from atlas_labeling.quality import active  # the shared algorithms

        probs = {r.item_id: json.loads(r.probs) if r.probs else None for r in rows}
        classes = sorted({c for p in probs.values() if p for c in p})
        vectors = {item_id: _vector(p, classes) if p else None for item_id, p in probs.items()}
        ranked = active.order(vectors, project.spec.queue_order)
        priorities = {item_id: float(len(ranked) - i) for i, item_id in enumerate(ranked)}
    statement = (
        update(items)
        .where(items.c.item_id == bindparam("b_item_id"))
        .values(priority=bindparam("b_priority"))
    )
    conn.execute(
        statement,
        [{"b_item_id": i, "b_priority": p} for i, p in priorities.items()],
    )
    return len(ranked)


def _vector(probs: dict[str, float], classes: list[str]) -> np.ndarray:
    vector = np.array([max(0.0, float(probs.get(c, 0.0))) for c in classes])
    total = vector.sum()
    return vector / total if total > 0 else np.full(len(classes), 1.0 / len(classes))
