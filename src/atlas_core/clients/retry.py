"""Calls from one service's job to another service that outlive the peer's restarts: an
unreachable peer (UNAVAILABLE, or a deadline passed while it was down) is retried with
exponential backoff within a time budget. Callers make their calls idempotent (request ids,
deterministic keys), so a call that reached the peer before the failure does nothing twice."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from atlas_core.errors import AtlasError, DeadlineExceeded, Unavailable

T = TypeVar("T")
RETRYABLE = (Unavailable, DeadlineExceeded)


@dataclass(frozen=True)
class Backoff:
    """Retry for at most ``budget_s`` seconds, waiting ``first_s`` then twice as long each
    time, at most ``max_s``."""

    budget_s: float = 120.0
    first_s: float = 0.2
    max_s: float = 5.0


def call_with_retry(
    call: Callable[[], T],
    *,
    what: str,
    backoff: Backoff = Backoff(),
    on_retry: Callable[[int, AtlasError], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()``, retried while the peer is unreachable; ``on_retry(attempt, error)`` runs
    before each wait (report progress, honour a cancel). Other errors propagate at once.

    Raises Unavailable naming ``what`` once the budget is spent."""
    deadline = time.monotonic() + backoff.budget_s
    delay = backoff.first_s
    attempt = 0
    while True:
        try:
            return call()
        except RETRYABLE as exc:
            attempt += 1
            if time.monotonic() + delay > deadline:
                raise Unavailable(
                    f"{what}: still unreachable after {attempt} attempts over "
                    f"{backoff.budget_s:.0f}s ({exc.message})",
                    reason="UNAVAILABLE",
                ) from None
            if on_retry is not None:
                on_retry(attempt, exc)
            sleep(delay)
            delay = min(delay * 2, backoff.max_s)
