"""Active learning: the queue order of a project's open items (``atlas_labeling.quality.active``)
written as item priorities — by the class probabilities of their latest pre-labels, or by a
k-center order over their embeddings (metadata "embedding") away from what is labelled
already. Items without a prediction or embedding alternate with the others, so they never
starve. The queue hands out the highest priority first, then the oldest."""

from __future__ import annotations

import json
from collections import Counter
from itertools import zip_longest
from typing import cast

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
    elif project.spec.queue_order == "diversity":
        ranked = _diversity(conn, project, [r.item_id for r in rows])
        priorities = {item_id: float(len(ranked) - i) for i, item_id in enumerate(ranked)}
    else:
        from atlas_labeling.quality import active  # the shared algorithms

        probs = {r.item_id: json.loads(r.probs) if r.probs else None for r in rows}
        classes = sorted({c for p in probs.values() if p for c in p})
        vectors = {item_id: _vector(p, classes) if p else None for item_id, p in probs.items()}
        strategy = cast(active.Strategy, project.spec.queue_order)  # the other orders are above
        ranked = active.order(vectors, strategy)
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


def _embedding(metadata: str) -> list[float] | None:
    value = json.loads(metadata or "{}").get("embedding")
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        return [float(v) for v in value]
    return None


def _diversity(conn: Connection, project: Project, open_ids: list[str]) -> list[str]:
    from atlas_labeling.quality import active  # the shared algorithms

    rows = conn.execute(
        select(items.c.item_id, items.c.status, items.c.metadata).where(
            items.c.project_id == project.project_id
        )
    ).all()
    embedded = {r.item_id: e for r in rows if (e := _embedding(r.metadata)) is not None}
    dims = Counter(len(e) for e in embedded.values()).most_common(1)
    width = dims[0][0] if dims else 0
    is_open = set(open_ids)
    labelled = [i for i, e in embedded.items() if i not in is_open and len(e) == width]
    candidates = [i for i in open_ids if i in embedded and len(embedded[i]) == width]
    if not candidates:
        return open_ids
    matrix = np.array([embedded[i] for i in labelled + candidates])
    picks = active.k_center(
        matrix, len(candidates), seed=0, already_selected=list(range(len(labelled)))
    )
    scored = [candidates[p - len(labelled)] for p in picks]
    chosen = set(scored)
    unscored = [i for i in open_ids if i not in chosen]
    return _alternate(scored, unscored)


def _alternate(scored: list[str], unscored: list[str]) -> list[str]:
    """Scored and unscored items in turn, starting with a scored one."""
    out: list[str] = []
    for pair in zip_longest(scored, unscored):
        out.extend(i for i in pair if i is not None)
    return out


def _vector(probs: dict[str, float], classes: list[str]) -> np.ndarray:
    vector = np.array([max(0.0, float(probs.get(c, 0.0))) for c in classes])
    total = vector.sum()
    return vector / total if total > 0 else np.full(len(classes), 1.0 / len(classes))
