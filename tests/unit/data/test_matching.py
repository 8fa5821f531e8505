"""Point-in-time join against a brute-force reference, spine-free sampling, input errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from atlas_core.errors import InvalidArgument, NotFound
from atlas_data.matching import point_in_time_join
from atlas_data.spine import spine_from_history

UTC = pa.timestamp("us", tz="UTC")


def _random_case(seed: int, *, string_keys: bool) -> tuple[pa.Table, pa.Table]:
    """Small history with ties, late arrivals and gaps, plus samples (some unknown entities)."""
    rng = np.random.default_rng(seed)
    n_entities, n_records, n_samples = 12, 160, 300
    ent = rng.integers(0, n_entities, n_records)
    # Few distinct event times -> many (entity, event) ties; ingestion delays up to 40 units
    # -> late-arriving records; ingestion times unique so the reference winner is unambiguous.
    event = rng.integers(0, 60, n_records) * 10
    ingest = event + rng.integers(0, 400, n_records) + rng.permutation(n_records) * 1e-3
    ingest_us = np.round(ingest * 1000).astype(np.int64)
    feature = rng.standard_normal(n_records)
    vector = rng.standard_normal((n_records, 3)).astype(np.float32)
    s_ent = rng.integers(0, n_entities + 3, n_samples)  # +3: entities without history
    s_time = rng.integers(-50, 700, n_samples)  # some before any record

    def key(values: np.ndarray) -> pa.Array:
        return pa.array([f"user-{v}" for v in values]) if string_keys else pa.array(values)

    history = pa.table(
        {
            "uid": key(ent),
            "event_time": pa.array(event * 1000, pa.int64()).cast(UTC),
            "_ingestion_time": pa.array(ingest_us).cast(UTC),
            "f": pa.array(feature),
            "vec": pa.FixedSizeListArray.from_arrays(pa.array(vector.ravel()), 3),
            "row": pa.array(np.arange(n_records)),
        }
    )
    samples = pa.table(
        {
            "label": pa.array(rng.integers(0, 2, n_samples)),
            "ts": pa.array(s_time * 1000, pa.int64()).cast(UTC),
            "user": key(s_ent),
        }
    )
    return history, samples


def _reference(history: pa.Table, samples: pa.Table, ttl_s: float | None, known: bool) -> list:
    """Pure-Python: best eligible record by (event, ingestion) per sample."""
    h = history.to_pylist()
    out = []
    for s in samples.to_pylist():
        best = None
        for r in h:
            if r["uid"] != s["user"] or r["event_time"] > s["ts"]:
                continue
            if ttl_s is not None and (s["ts"] - r["event_time"]).total_seconds() > ttl_s:
                continue
            if known and r["_ingestion_time"] > s["ts"]:
                continue
            if best is None or (r["event_time"], r["_ingestion_time"]) > (
                best["event_time"],
                best["_ingestion_time"],
            ):
                best = r
        out.append(None if best is None else best["row"])
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("string_keys", [False, True])
@pytest.mark.parametrize("ttl_s", [None, 0.12])
@pytest.mark.parametrize("known", [False, True])
def test_join_matches_brute_force(seed: int, string_keys: bool, ttl_s: float | None, known: bool):
    history, samples = _random_case(seed, string_keys=string_keys)
    result = point_in_time_join(
        samples,
        entity_column="user",
        timestamp_column="ts",
        history=history,
        history_entity_column="uid",
        event_time_column="event_time",
        features=["row", "f", "vec"],
        ttl_seconds=ttl_s,
        as_known_at=known,
        column_prefix="g__",
    )
    expected = _reference(history, samples, ttl_s, known)
    assert result.table.column("g__row").to_pylist() == expected
    assert result.table.column_names == ["label", "ts", "user", "g__row", "g__f", "g__vec"]
    assert result.table.select(["label", "ts", "user"]).equals(samples)
    matched = sum(e is not None for e in expected)
    assert (result.matched_count, result.unmatched_count) == (matched, len(expected) - matched)
    assert 0 < matched < len(expected)
    rows = history.to_pylist()
    for got_f, got_vec, exp in zip(
        result.table.column("g__f").to_pylist(),
        result.table.column("g__vec").to_pylist(),
        expected,
        strict=True,
    ):
        assert got_f == (None if exp is None else rows[exp]["f"])
        assert got_vec == (None if exp is None else rows[exp]["vec"])


def _tiny_history() -> pa.Table:
    # Entity 1: record at t=10 ingested at 100 (late), record at t=5 ingested at 6.
    # Entity 2: two records at t=10 (tie) ingested at 11 and 12.
    return pa.table(
        {
            "id": pa.array([1, 1, 2, 2], pa.int64()),
            "t": pa.array([10, 5, 10, 10], pa.int64()).cast(UTC),
            "_ingestion_time": pa.array([100, 6, 12, 11], pa.int64()).cast(UTC),
            "x": pa.array([1.0, 2.0, 3.0, 4.0], pa.float32()),
        }
    )


def _join(samples: pa.Table, **kwargs) -> pa.Table:
    args = dict(
        entity_column="id",
        timestamp_column="ts",
        history=_tiny_history(),
        history_entity_column="id",
        event_time_column="t",
        features=["x"],
        ttl_seconds=None,
        as_known_at=False,
    )
    args.update(kwargs)
    return point_in_time_join(samples, **args).table


def test_as_known_at_falls_back_to_the_record_known_then():
    samples = pa.table({"id": [1, 1, 1], "ts": pa.array([50, 100, 4], pa.int64())})
    assert _join(samples, as_known_at=False).column("x").to_pylist() == [1.0, 1.0, None]
    assert _join(samples, as_known_at=True).column("x").to_pylist() == [2.0, 1.0, None]


def test_ties_pick_latest_ingestion():
    samples = pa.table({"id": [2], "ts": pa.array([10], pa.int64())})
    assert _join(samples).column("x").to_pylist() == [3.0]


def test_ttl_and_samples_before_history():
    samples = pa.table({"id": [1, 1, 3], "ts": pa.array([12, 20, 50], pa.int64())})
    out = _join(samples, ttl_seconds=5e-6)  # 5 microseconds
    assert out.column("x").to_pylist() == [1.0, None, None]


def test_sample_time_formats():
    expected = [1.0, 2.0]
    int_us = pa.table({"id": [1, 1], "ts": pa.array([10, 7], pa.int64())})
    iso = pa.table(
        {"id": [1, 1], "ts": ["1970-01-01T00:00:00.000010Z", "1970-01-01 00:00:00.000007"]}
    )
    naive_ns = pa.table({"id": [1, 1], "ts": pa.array([10_000, 7_000], pa.timestamp("ns"))})
    for samples in (int_us, iso, naive_ns):
        assert _join(samples).column("x").to_pylist() == expected


def test_unparseable_timestamp_names_row_and_value():
    samples = pa.table({"id": [1] * 13, "ts": ["2024-01-01"] * 12 + ["abc"]})
    with pytest.raises(
        InvalidArgument, match=r"sample timestamp column 'ts' is not parseable: row 12 'abc'"
    ):
        _join(samples)


def test_input_validation():
    ok = pa.table({"id": [1], "ts": pa.array([10], pa.int64())})
    with pytest.raises(InvalidArgument, match="'ts'"):
        _join(ok.drop_columns(["ts"]))
    with pytest.raises(InvalidArgument, match="'id'"):
        _join(ok.drop_columns(["id"]))
    with pytest.raises(InvalidArgument, match="2 null"):
        _join(pa.table({"id": [1, 1, 1], "ts": pa.array([None, 3, None], pa.int64())}))
    with pytest.raises(InvalidArgument, match="type double"):
        _join(pa.table({"id": [1], "ts": [1.5]}))
    with pytest.raises(NotFound, match="'nope'"):
        _join(ok, features=["nope"])
    with pytest.raises(InvalidArgument, match="collides"):
        _join(pa.table({"id": [1], "ts": pa.array([10], pa.int64()), "x": [0]}))
    with pytest.raises(InvalidArgument, match="'missing'"):
        _join(ok, history_entity_column="missing")
    with pytest.raises(InvalidArgument, match="entity column 'id'"):
        _join(pa.table({"id": ["not-a-number"], "ts": pa.array([10], pa.int64())}))


def test_empty_features_means_all_and_string_ids_cast_to_int_keys():
    samples = pa.table({"id": ["1"], "ts": pa.array([10], pa.int64())})
    out = _join(samples, features=[])
    assert out.column_names == ["id", "ts", "x"]
    assert out.column("x").to_pylist() == [1.0]


def _spine_history() -> pa.Table:
    return pa.table(
        {
            "id": pa.array(["a", "a", "b", "c"]),
            "t": pa.array([10, 30, 20, 500], pa.int64()).cast(UTC),
            "_ingestion_time": pa.array([10, 30, 20, 500], pa.int64()).cast(UTC),
            "label": pa.array([0, 1, 1, 0]),
        }
    )


def test_spine_every_record_and_latest():
    every = spine_from_history(
        _spine_history(),
        entity_column="id",
        event_time_column="t",
        start_us=0,
        end_us=100,
        sampling="every_record",
        label_feature="label",
    )
    assert every.column("id").to_pylist() == ["a", "a", "b"]
    assert every.column("label").to_pylist() == [0, 1, 1]
    latest = spine_from_history(
        _spine_history(),
        entity_column="id",
        event_time_column="t",
        start_us=0,
        end_us=100,
        sampling="latest_per_entity",
        label_feature="label",
    )
    assert latest.column("id").to_pylist() == ["a", "b"]
    assert latest.column("t").cast(pa.int64()).to_pylist() == [99, 99]
    assert latest.column("label").to_pylist() == [1, 1]


def test_spine_fixed_interval_and_cap():
    grid = spine_from_history(
        _spine_history(),
        entity_column="id",
        event_time_column="t",
        start_us=0,
        end_us=40,
        sampling="fixed_interval",
        interval_s=10e-6,
        label_feature="label",
    )
    rows = [
        (r["id"], r["t"], r["label"])
        for r in grid.cast(
            pa.schema([("id", pa.string()), ("t", pa.int64()), ("label", pa.int64())])
        ).to_pylist()
    ]
    assert rows == [("a", 10, 0), ("a", 20, 0), ("a", 30, 1), ("b", 20, 1), ("b", 30, 1)]
    capped = spine_from_history(
        _spine_history(),
        entity_column="id",
        event_time_column="t",
        start_us=0,
        end_us=40,
        sampling="fixed_interval",
        interval_s=10e-6,
        max_samples=2,
        seed=1,
    )
    assert capped.num_rows == 2 and capped.column_names == ["id", "t"]
    with pytest.raises(InvalidArgument):
        spine_from_history(
            _spine_history(),
            entity_column="id",
            event_time_column="t",
            start_us=0,
            end_us=40,
            sampling="fixed_interval",
        )
    with pytest.raises(InvalidArgument, match="window"):
        spine_from_history(
            _spine_history(),
            entity_column="id",
            event_time_column="t",
            start_us=5,
            end_us=5,
            sampling="every_record",
        )


def test_wide_time_span_uses_rank_keys_and_null_history_rows_never_match():
    far = 2**61
    history = pa.table(
        {
            "id": pa.array([1, 1, None, 2], pa.int64()),
            "t": pa.array([-far, far, 0, None], pa.int64()).cast(UTC),
            "_ingestion_time": pa.array([-far, far, 0, 0], pa.int64()).cast(UTC),
            "x": pa.array([1.0, 2.0, 3.0, 4.0]),
        }
    )
    samples = pa.table({"id": [1, 1, 2], "ts": pa.array([0, far, far], pa.int64())})
    for known in (False, True):
        out = _join(samples, history=history, as_known_at=known)
        assert out.column("x").to_pylist() == [1.0, 2.0, None]


def test_chunked_history_with_null_features():
    history = pa.concat_tables([_tiny_history().slice(0, 2), _tiny_history().slice(2)])
    history = history.set_column(3, "x", pa.chunked_array([[None, 2.0], [3.0, None]], pa.float32()))
    samples = pa.table({"id": [1, 2, 9], "ts": pa.array([50, 10, 10], pa.int64())})
    result = point_in_time_join(
        samples,
        entity_column="id",
        timestamp_column="ts",
        history=history,
        history_entity_column="id",
        event_time_column="t",
        features=["x"],
        ttl_seconds=None,
        as_known_at=False,
    )
    assert result.table.column("x").to_pylist() == [None, 3.0, None]
    assert result.matched.tolist() == [True, True, False]


def test_spine_fixed_interval_rejects_a_huge_grid():
    with pytest.raises(InvalidArgument, match="narrow the window"):
        spine_from_history(
            _spine_history(),
            entity_column="id",
            event_time_column="t",
            start_us=0,
            end_us=2**62,
            sampling="fixed_interval",
            interval_s=1.0,
        )
