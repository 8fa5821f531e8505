"""Quality metrics, bootstrap intervals and challenger comparisons (no server)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from atlas_core.errors import InvalidArgument
from atlas_serving.dataplane.prediction_log import new_prediction_id, prediction_time_us
from atlas_serving.monitoring import quality as q


def _binary(n: int, noise: float, seed: int) -> q.Labeled:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p1 = np.clip(y + rng.normal(0, noise, n), 0.001, 0.999)
    probs = np.column_stack([1 - p1, p1])
    return q.Labeled(
        "binary",
        ["0", "1"],
        [(f"id{i}", 0) for i in range(n)],
        y.astype(str).astype(object),
        np.where(p1 >= 0.5, "1", "0").astype(object),
        probs,
    )


def test_point_estimates_are_sklearns() -> None:
    data = _binary(300, 0.6, 1)
    y = data.y.astype(int)
    assert q.metric_value("auc", data) == pytest.approx(
        skm.roc_auc_score(y, data.probs[:, 1])  # type: ignore[index]
    )
    assert q.metric_value("accuracy", data) == pytest.approx(
        skm.accuracy_score(y, data.pred.astype(int))
    )
    assert q.metric_value("log_loss", data) == pytest.approx(skm.log_loss(y, data.probs))


def test_intervals_are_reproducible_and_cover_the_estimate() -> None:
    data = _binary(300, 0.6, 2)
    first = q.estimates(data)
    assert first == q.estimates(data)  # fixed seed
    for m in first:
        assert m.lower <= m.value <= m.upper and 0 < m.upper - m.lower < 0.5
    # more data, narrower interval
    wide = q.estimate("accuracy", _binary(100, 0.6, 3))
    narrow = q.estimate("accuracy", _binary(2000, 0.6, 3))
    assert wide is not None and narrow is not None
    assert narrow.upper - narrow.lower < wide.upper - wide.lower


def test_resampled_auc_is_sklearns_on_each_resample() -> None:
    data = _binary(120, 1.0, 9)
    data.probs = np.round(data.probs, 1)  # type: ignore[operator]  # ties
    idx = np.random.default_rng(0).integers(0, 120, size=(20, 120))
    fast = q._resampled("auc", data, idx)
    for b, rows in enumerate(idx):
        assert fast[b] == pytest.approx(q.metric_value("auc", data.take(rows)))


def test_auc_is_undefined_with_one_class() -> None:
    data = _binary(50, 0.3, 4)
    ones = data.take(np.flatnonzero(data.y == "1"))
    assert q.metric_value("auc", ones) is None
    assert [m.metric for m in q.estimates(ones)] == ["accuracy", "log_loss"]


def test_paired_difference_finds_a_better_challenger_on_the_same_requests() -> None:
    champion = _binary(400, 0.9, 5)
    rng = np.random.default_rng(6)
    y = champion.y.astype(int)
    p1 = np.clip(y + rng.normal(0, 0.3, len(y)), 0.001, 0.999)
    challenger = q.Labeled(
        "binary",
        ["0", "1"],
        list(reversed(champion.keys)),  # another order: paired by key, not by position
        champion.y[::-1].copy(),
        np.where(p1 >= 0.5, "1", "0").astype(object)[::-1],
        np.column_stack([1 - p1, p1])[::-1],
    )
    diff = q.paired_difference("auc", challenger, champion)
    assert diff is not None and diff.n == 400
    assert diff.difference > 0 and diff.significant and diff.challenger_better
    drop, lower, upper = diff.drop()
    assert drop < 0 and upper < 0
    same = q.paired_difference("accuracy", champion, champion)
    assert same is not None and (same.difference, same.lower, same.upper) == (0.0, 0.0, 0.0)
    assert not same.significant


def test_lower_is_better_metrics_orient_the_drop() -> None:
    base = _binary(300, 0.5, 7)
    worse = _binary(300, 1.5, 7)
    diff = q.unpaired_difference("log_loss", worse, base)
    assert diff is not None and diff.difference > 0
    assert diff.significant and not diff.challenger_better
    drop, lower, _ = diff.drop()
    assert drop > 0 and lower > 0


def test_regression_metrics() -> None:
    rng = np.random.default_rng(8)
    y = rng.normal(10, 3, 200)
    pred = y + rng.normal(0, 1, 200)
    data = q.Labeled("regression", [], [(str(i), 0) for i in range(200)], y, pred, None)
    rmse = q.estimate("rmse", data)
    assert rmse is not None
    assert rmse.value == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert rmse.lower < rmse.value < rmse.upper and not rmse.higher_is_better
    with pytest.raises(InvalidArgument) as info:
        q.check_metric("regression", "auc")
    assert info.value.reason == "UNKNOWN_METRIC"
    assert q.check_metric("regression", "") == "rmse"


def test_prediction_ids_carry_their_time() -> None:
    pid = new_prediction_id()
    assert len(pid) == 32 and int(pid, 16) >= 0
    made = prediction_time_us(pid)
    import time

    assert made is not None and abs(made - time.time() * 1e6) < 5e6
    assert prediction_time_us("xyz") is None
    assert prediction_time_us("g" * 32) is None


def test_multiclass_auc_resamples_match_sklearns_ovr() -> None:
    rng = np.random.default_rng(10)
    y = rng.integers(0, 3, 150)
    logits = rng.normal(0, 1, (150, 3))
    logits[np.arange(150), y] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    data = q.Labeled(
        "multiclass",
        ["a", "b", "c"],
        [(str(i), 0) for i in range(150)],
        np.array(["abc"[k] for k in y], dtype=object),
        np.array(["abc"[k] for k in probs.argmax(axis=1)], dtype=object),
        probs,
    )
    expected = skm.roc_auc_score(y, probs, multi_class="ovr")
    assert q.metric_value("auc", data) == pytest.approx(expected)
    identity = np.arange(150)[None, :]
    assert q._resampled("auc", data, identity)[0] == pytest.approx(expected)


def test_large_windows_resample_in_bounded_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _binary(3000, 0.8, 11)
    whole = q.estimate("auc", data)
    monkeypatch.setattr(q, "_MAX_CELLS", 3000 * 7)  # 7 resamples per chunk
    chunked = q.estimate("auc", data)
    assert whole is not None and chunked is not None
    # the same draws in the same order: chunking does not change the interval
    assert (chunked.lower, chunked.upper) == pytest.approx((whole.lower, whole.upper))
    sizes = [len(c) for c in q._index_chunks(3000, np.random.default_rng(0), 20)]
    assert sizes == [7, 7, 6]


def test_bootstrap_memory_is_bounded_on_large_windows() -> None:
    """The periodic quality evaluation bootstraps every labelled prediction of the window in
    a worker thread; its peak must not grow into tens of MB (freed, such arrays stayed in
    glibc's arena as fragmented heap: serving grew ~5 KB per labelled prediction)."""
    import tracemalloc

    data = _binary(20_000, 0.6, 4)
    tracemalloc.start()
    try:
        found = q.estimates(data, resamples=400)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert {m.metric for m in found} == {"auc", "accuracy", "log_loss"}
    # 400 x 20,000 cells: ~64 MB per int64 array if drawn at once; chunked, a few 2 MB arrays
    assert peak < 16 * 1024 * 1024, f"bootstrap peak {peak / 2**20:.1f} MB"
