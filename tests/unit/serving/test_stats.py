"""Per-second window statistics, their merge across replicas and percentiles."""

from __future__ import annotations

import time

from atlas_serving.monitoring.stats import (
    WindowStats,
    bucket_upper,
    latency_bucket,
    merge,
    percentile_ms,
)


def test_latency_buckets_are_monotonic_and_about_seven_percent_wide() -> None:
    assert latency_bucket(10e-6) == 0
    for seconds in (1e-4, 1e-3, 0.01, 0.5):
        b = latency_bucket(seconds)
        assert bucket_upper(b - 1) <= seconds * 1.0001 and seconds <= bucket_upper(b) * 1.0001
        assert bucket_upper(b) / bucket_upper(b - 1) < 1.08


def test_merge_sums_replicas_within_the_window() -> None:
    a, b = WindowStats(), WindowStats()
    for _ in range(98):
        a.latency(0.001)
    a.latency(0.2, error=True)
    b.latency(0.001)
    b.count("rejected", 3)
    total = merge([a.export(), b.export()], 10)
    assert total["requests"] == 100 and total["errors"] == 1 and total["rejected"] == 3
    assert 0.9 < percentile_ms(total["lat"], 0.5) < 1.1
    assert percentile_ms(total["lat"], 0.999) > 150


def test_old_seconds_fall_out_of_the_window() -> None:
    s = WindowStats()
    s.latency(0.001)
    later = time.time() + 30
    assert merge([s.export()], 10, now=later)["requests"] == 0
    assert merge([s.export()], 60, now=later)["requests"] == 1


def test_shadow_comparisons_are_counted() -> None:
    s = WindowStats()
    s.shadow(True, 0.1, 0.002)
    s.shadow(False, 0.3, 0.004)
    total = merge([s.export()], 10)
    assert total["compared"] == 2 and total["agreed"] == 1
    assert abs(total["score_diff"] - 0.4) < 1e-9
    assert percentile_ms(total["shadow_lat"], 0.99) > 3.5


def test_percentile_of_nothing_is_zero() -> None:
    assert percentile_ms({}, 0.99) == 0.0


def test_export_json_equals_the_export_and_tracks_the_open_second(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import json

    import atlas_serving.monitoring.stats as stats_module

    clock = [1000.5]
    monkeypatch.setattr(stats_module.time, "time", lambda: clock[0])
    w = WindowStats()
    for second in range(5):
        clock[0] = 1000.5 + second
        w.latency(0.001 * (second + 1), error=second == 2)
        w.count("batches")
        w.export_json(loaded=1)  # caches the seconds that are over
    w.latency(0.5)  # the open second changes after it was exported
    w.shadow(True, 0.1, 0.002)
    assert json.loads(w.export_json(loaded=1)) == {
        **json.loads(json.dumps(w.export())),
        "loaded": 1,
    }
    clock[0] += stats_module.KEEP_SECONDS + 10  # old seconds are dropped, and their cache
    w.latency(0.001)
    assert list(json.loads(w.export_json())["seconds"]) == [str(int(clock[0]))]
    assert len(w._frozen) <= len(w.seconds)
