"""Pure helpers of bench/labeling.py (unit-tested in tests/unit/bench): latency summaries and
the double-assignment count."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Assignment states that hold an item for their annotator (a lease or a submitted label);
# expired, skipped (re-queued) and rejected ones gave the item back.
HOLDING = ("active", "submitted")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks, as
    numpy's default; nan for no values."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize_ms(seconds: Sequence[float]) -> dict[str, Any]:
    """Count, mean, p50, p90, p99 and max of latencies given in seconds, in milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "mean_ms": sum(ms) / len(ms) if ms else math.nan,
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else math.nan,
    }


def double_assignments(
    rows: Iterable[tuple[str, str, str]],
    overlap: int,
    rounds: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Count assignment invariant breaches from (item_id, annotator, state) rows of annotation
    (not review) assignments of items without a gold answer.

    ``same_annotator``: holding assignments beyond the first of one item by one annotator.
    ``beyond_overlap``: holding assignments of one item beyond ``overlap`` plus the item's
    relabel rounds (``rounds``: an item whose annotators disagreed is sent to one more person
    per round, by design), counted over distinct annotators (so a same-annotator duplicate is
    not counted twice). ``total`` is their sum.
    """
    rounds = rounds or {}
    per_pair: Counter[tuple[str, str]] = Counter()
    for item_id, annotator, state in rows:
        if state in HOLDING:
            per_pair[(item_id, annotator)] += 1
    same = sum(n - 1 for n in per_pair.values() if n > 1)
    people: Counter[str] = Counter(item for item, _ in per_pair)
    beyond = sum(
        max(0, n - overlap - rounds.get(item, 0)) for item, n in people.items() if n > overlap
    )
    return {"same_annotator": same, "beyond_overlap": beyond, "total": same + beyond}


def client_double_assignments(
    received: Iterable[tuple[str, str]], overlap: int, rounds: Mapping[str, int] | None = None
) -> dict[str, int]:
    """The same count from what the load generators were handed: (item_id, annotator) per
    granted assignment (every lease was submitted, and none expired during the run)."""
    return double_assignments(((i, a, "submitted") for i, a in received), overlap, rounds)
