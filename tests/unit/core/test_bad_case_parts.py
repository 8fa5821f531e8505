"""The shared parts bad-case jobs stand on: per-row drift scores against training statistics,
and calls to a peer service retried with backoff while it is unreachable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atlas_core.bundles._stats import series_stats
from atlas_core.bundles.drift import row_drift_scores
from atlas_core.clients.retry import Backoff, call_with_retry
from atlas_core.errors import InvalidArgument, Unavailable


def training_stats() -> dict[str, dict[str, object]]:
    rng = np.random.default_rng(0)
    return {
        "x": series_stats(pd.Series(rng.normal(size=5000)), "numeric"),
        "city": series_stats(pd.Series(["paris", "rome"] * 500), "categorical"),
    }


def test_row_drift_scores_rank_rows_by_their_most_unusual_feature() -> None:
    frame = pd.DataFrame(
        {
            "x": [0.0, 1.0, 2.9, 50.0, np.nan, 0.1],
            "city": ["paris", "rome", "rome", "paris", "rome", "oslo"],
        }
    )
    scores, features = row_drift_scores(training_stats(), frame)
    # the median is typical, one sigma less so, three sigma rare; out of range, a missing
    # value where training had none, and an unseen city all score 1
    assert scores[0] < 0.1 and 0.6 < scores[1] < 0.8 and 0.99 < scores[2] < 1.0
    assert list(scores[3:]) == [1.0, 1.0, 1.0]
    assert features == ["x", "x", "x", "x", "x", "city"]
    # features the statistics do not know are ignored
    scores, features = row_drift_scores(training_stats(), pd.DataFrame({"other": [1e9]}))
    assert list(scores) == [0.0] and features == [""]


def test_calls_are_retried_while_the_peer_is_unreachable() -> None:
    answers: list[object] = [Unavailable("down"), Unavailable("down"), "done"]
    waits: list[float] = []
    retries: list[int] = []

    def call() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    result = call_with_retry(
        call,
        what="peer",
        backoff=Backoff(budget_s=10, first_s=0.5, max_s=0.8),
        on_retry=lambda attempt, _: retries.append(attempt),
        sleep=waits.append,
    )
    assert result == "done" and retries == [1, 2] and waits == [0.5, 0.8]


def test_retrying_gives_up_after_its_budget_and_never_retries_other_errors() -> None:
    calls = 0

    def down() -> None:
        nonlocal calls
        calls += 1
        raise Unavailable("connection refused")

    with pytest.raises(Unavailable, match="peer: still unreachable after 1 attempts"):
        call_with_retry(down, what="peer", backoff=Backoff(budget_s=0.0), sleep=lambda _: None)

    def refused() -> None:
        raise InvalidArgument("bad")

    with pytest.raises(InvalidArgument):
        call_with_retry(refused, what="peer", sleep=lambda _: pytest.fail("no retry"))
    assert calls == 1
