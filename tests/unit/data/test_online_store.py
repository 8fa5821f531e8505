"""One contract suite for every online store backend (LMDB, Redis), plus backend faults."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pydantic
import pytest

from atlas_core.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, Unavailable
from atlas_data.online import (
    OnlineStore,
    OnlineStoreSettings,
    decode_header,
    open_online_store,
)
from atlas_data.online._lmdb import LmdbOnlineStore
from atlas_data.online._redis import RedisOnlineStore
from atlas_data.online._redis_sharded import ShardedRedisOnlineStore
from atlas_data.records import RawRecord, RecordBatch
from atlas_data.schema import EntityKeyType, FeatureSpec, FeatureType, RecordLayout
from tests.unit.data.conftest import WIDE_DIMS, expected_vector, mixed_spec, wide_batch, wide_spec

WIDE = RecordLayout.for_spec(wide_spec())


def write(store: OnlineStore, batch: RecordBatch, group: str = "users", *, ingested: int = 1):
    return store.write(group, batch, ingestion_time_us=ingested, schema_version=3)


# ---------------------------------------------------------------- contract (every backend)


def test_registry_opens_the_configured_backend(online_settings: OnlineStoreSettings) -> None:
    expected = {
        "lmdb": LmdbOnlineStore,
        "redis": RedisOnlineStore,
        "redis_sharded": ShardedRedisOnlineStore,
        "redis_cluster": ShardedRedisOnlineStore,
    }[online_settings.backend]
    with open_online_store(online_settings) as store:
        assert type(store) is expected


def test_wide_vectors_round_trip_exactly(online_store: OnlineStore) -> None:
    keys = list(range(20))
    outcome = write(online_store, wide_batch(keys, [1000 + k for k in keys]), ingested=555)
    assert (outcome.written, outcome.stale) == (20, 0)
    rows = online_store.read_rows("users", [19, 3, 0], WIDE)
    assert rows.found.tolist() == [True, True, True]
    assert rows.float32.shape == (3, WIDE_DIMS)
    for row, key in zip(rows.float32, [19, 3, 0], strict=True):
        np.testing.assert_array_equal(row, expected_vector(1000 + key))
    assert rows.int64[:, 0].tolist() == [1019, 1003, 1000]
    assert rows.event_time_us.tolist() == [1019, 1003, 1000]
    assert rows.ingestion_time_us.tolist() == [555] * 3 and rows.schema_version.tolist() == [3] * 3
    stored = online_store.read("users", [5])[0]
    assert stored is not None
    header = decode_header(stored)
    assert (header.event_time_us, header.ingestion_time_us, header.schema_version) == (1005, 555, 3)
    assert header.float32_width == WIDE_DIMS


def test_mixed_types_round_trip_and_subsets_project(online_store: OnlineStore) -> None:
    layout = RecordLayout.for_spec(mixed_spec())
    slot_names = [s.name for s in layout.slots]
    nickname_null = bytes([1 << slot_names.index("nickname")])
    records = [
        RawRecord(
            "alice",
            10,
            np.array([0.5, 1, 2, 3], "<f4").tobytes(),
            (1.25, -2.5),
            (30, 1),
            ("DE", "ali"),
        ),
        RawRecord(
            "bøb",
            11,
            np.array([-1, 4, 5, 6], "<f4").tobytes(),
            (9.0, 0.0),
            (-7, 0),
            ("US", ""),
            nickname_null,
        ),
    ]
    write(online_store, RecordBatch.from_records(layout, EntityKeyType.STRING, records), "accounts")

    rows = online_store.read_rows("accounts", ["bøb", "nobody", "alice"], layout)
    assert rows.found.tolist() == [True, False, True]
    assert rows.float32[[0, 2]].tolist() == [[-1, 4, 5, 6], [0.5, 1, 2, 3]]
    assert np.isnan(rows.float32[1]).all() and np.isnan(rows.float64[1]).all()
    assert rows.float64[[0, 2]].tolist() == [[9.0, 0.0], [1.25, -2.5]]
    assert rows.int64.tolist() == [[-7, 0], [0, 0], [30, 1]]
    assert rows.strings == [("US", ""), ("", ""), ("DE", "ali")]
    assert rows.null_masks == [nickname_null, b"", b""]

    sub = layout.subset(["nickname", "emb", "age"])
    rows = online_store.read_rows("accounts", ["alice", "bøb"], layout, sub)
    assert rows.layout == sub.layout
    assert rows.float32.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert rows.int64.tolist() == [[30], [-7]] and rows.float64.shape == (2, 0)
    assert rows.strings == [("ali",), ("",)]
    assert rows.null_masks == [b"", b"\x01"]  # nickname is slot 0 of the subset


def test_reads_preserve_order_and_report_missing_keys(online_store: OnlineStore) -> None:
    write(online_store, wide_batch([10, 20, 30], [1, 2, 3]))
    raw = online_store.read("users", [30, 99, 10, 10, -1])
    assert [r is None for r in raw] == [False, True, False, False, True]
    assert [decode_header(r).event_time_us for r in raw if r] == [3, 1, 1]
    assert online_store.read("users", []) == []


def test_unknown_group_reads_as_missing(online_store: OnlineStore) -> None:
    assert online_store.read("ghosts", [1, 2]) == [None, None]
    assert not online_store.read_rows("ghosts", [1], WIDE).found.any()
    assert online_store.count("ghosts") == 0 and online_store.delete_group("ghosts") == 0


def test_older_records_are_ignored_and_counted_stale(online_store: OnlineStore) -> None:
    write(online_store, wide_batch([1, 2], [100, 100]))
    outcome = write(online_store, wide_batch([1, 2, 3], [99, 101, 50], fill=lambda i: -1.0))
    assert (outcome.written, outcome.stale) == (2, 1)
    rows = online_store.read_rows("users", [1, 2, 3], WIDE)
    assert rows.event_time_us.tolist() == [100, 101, 50]
    np.testing.assert_array_equal(rows.float32[0], expected_vector(100))
    np.testing.assert_array_equal(rows.float32[1], expected_vector(-1.0))


def test_equal_event_time_newer_write_wins(online_store: OnlineStore) -> None:
    write(online_store, wide_batch([1], [100], fill=lambda i: 1.0))
    outcome = write(online_store, wide_batch([1], [100], fill=lambda i: 2.0))
    assert (outcome.written, outcome.stale) == (1, 0)
    np.testing.assert_array_equal(
        online_store.read_rows("users", [1], WIDE).float32[0], expected_vector(2.0)
    )


def test_duplicates_within_a_batch_apply_in_order(online_store: OnlineStore) -> None:
    outcome = write(online_store, wide_batch([7, 7, 7], [5, 9, 6], fill=float))
    assert (outcome.written, outcome.stale) == (2, 1)
    rows = online_store.read_rows("users", [7], WIDE)
    assert rows.event_time_us.tolist() == [9]
    np.testing.assert_array_equal(rows.float32[0], expected_vector(1.0))
    assert online_store.count("users") == 1


def test_count_and_delete_group_leave_other_groups_alone(online_store: OnlineStore) -> None:
    write(online_store, wide_batch(list(range(30)), [1] * 30))
    write(online_store, wide_batch([1, 2], [1, 1]), "other")
    write(online_store, wide_batch([5], [2]))  # overwrite: no new entity
    assert online_store.count("users") == 30 and online_store.count("other") == 2
    assert online_store.delete_group("users") == 30
    assert online_store.count("users") == 0
    assert online_store.read("users", [0, 5]) == [None, None]
    assert online_store.count("other") == 2 and online_store.read("other", [1])[0] is not None
    assert write(online_store, wide_batch([5], [1])).written == 1  # a deleted group is reusable
    assert online_store.count("users") == 1


def test_int_and_string_keys(online_store: OnlineStore) -> None:
    int_keys = [0, -1, 2**63 - 1, -(2**63), 42]
    write(online_store, wide_batch(int_keys, [1, 2, 3, 4, 5]), "ints")
    assert online_store.read_rows(
        "ints", np.array(int_keys[::-1]), WIDE
    ).event_time_us.tolist() == [5, 4, 3, 2, 1]
    str_keys = ["42", "user:7", "ünïcode ✓", "a*b?[c]"]
    write(online_store, wide_batch(str_keys, [6, 7, 8, 9]), "strs")
    assert online_store.read_rows("strs", str_keys[::-1], WIDE).event_time_us.tolist() == [
        9,
        8,
        7,
        6,
    ]
    assert online_store.count("strs") == 4


def test_ttl_cutoff_reports_old_records_as_not_found(online_store: OnlineStore) -> None:
    write(online_store, wide_batch([1, 2], [100, 200]))
    rows = online_store.read_rows("users", [1, 2], WIDE, min_event_time_us=150)
    assert rows.found.tolist() == [False, True] and np.isnan(rows.float32[0]).all()


def test_layout_of_another_schema_version_is_refused(online_store: OnlineStore) -> None:
    write(online_store, wide_batch([1], [1]))
    with pytest.raises(FailedPrecondition, match="schema version 3"):
        online_store.read_rows("users", [1], RecordLayout.for_spec(mixed_spec()))


@pytest.mark.parametrize("group", ["", "a:b", "a*", "x" * 201])
def test_malformed_group_keys_are_rejected(online_store: OnlineStore, group: str) -> None:
    with pytest.raises(InvalidArgument, match="group key"):
        online_store.read(group, [1])


@pytest.mark.parametrize("key", [True, 1.5, None, "", 2**63])
def test_malformed_entity_keys_are_rejected(online_store: OnlineStore, key) -> None:
    with pytest.raises(InvalidArgument, match="entity key"):
        online_store.read("users", [1, key])


def test_concurrent_reader_never_sees_a_torn_record(online_store: OnlineStore) -> None:
    keys = list(range(8))
    write(online_store, wide_batch(keys, [1] * 8))
    stop = threading.Event()
    problems: list[str] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        last = dict.fromkeys(keys, 1)
        while not stop.is_set():
            rows = online_store.read_rows("users", keys, WIDE)
            reads += 1
            for key, t, vector, version in zip(
                keys, rows.event_time_us, rows.float32, rows.int64[:, 0], strict=True
            ):
                # Each record's vector and version are derived from its event time.
                if version != t or not np.array_equal(vector, expected_vector(float(t))):
                    problems.append(f"torn record for key {key} at event time {t}")
                if t < last[key]:
                    problems.append(f"key {key} went back in time: {last[key]} -> {t}")
                last[key] = int(t)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for t in range(2, 120):
            write(online_store, wide_batch(keys, [t] * 8))
    finally:
        stop.set()
        thread.join()
    assert not problems, problems[:3]
    assert reads > 0
    assert online_store.read_rows("users", keys, WIDE).event_time_us.tolist() == [119] * 8


# ---------------------------------------------------------------- LMDB faults


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from atlas_data.online import OnlineStoreSettings, open_online_store
    from atlas_data.records import RecordBatch

    settings = OnlineStoreSettings(lmdb_path=sys.argv[1], lmdb_map_size_bytes=1 << 30)
    store = open_online_store(settings)
    for b in range(100000):
        keys = np.arange(b * 10, b * 10 + 10, dtype=np.int64)
        batch = RecordBatch(
            keys=keys, event_time_us=keys + 1,
            float32=np.repeat(keys.astype("<f4")[:, None], 2000, axis=1),
            float64=np.zeros((10, 0)), int64=keys[:, None].copy(), strings=[()] * 10,
        )
        store.write("g", batch, ingestion_time_us=1, schema_version=1)
        print(f"ack {b}", flush=True)
    """
)


def test_lmdb_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    path = tmp_path / "online.lmdb"
    child = subprocess.Popen(
        [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True
    )
    acked = []
    try:
        for line in child.stdout:  # type: ignore[union-attr]
            acked.append(int(line.split()[1]))
            if len(acked) == 20:
                os.kill(child.pid, signal.SIGKILL)
                break
        # Acks already in the pipe were printed after their write returned: they count too.
        acked += [int(line.split()[1]) for line in child.stdout]  # type: ignore[union-attr]
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    layout = RecordLayout.for_spec(
        dataclasses.replace(
            wide_spec(),
            features=(
                FeatureSpec("v", FeatureType.FLOAT32_VECTOR, 2000),
                FeatureSpec("k", FeatureType.INT64),
            ),
        )
    )
    with LmdbOnlineStore(path, map_size_bytes=1 << 30) as store:
        keys = np.arange(0, (max(acked) + 1) * 10)
        rows = store.read_rows("g", keys, layout)
        assert rows.found.all(), f"{(~rows.found).sum()} acknowledged records lost"
        assert (rows.float32 == keys[:, None]).all() and (rows.int64[:, 0] == keys).all()
        assert store.count("g") >= len(keys)


def test_lmdb_full_map_is_resource_exhausted_naming_the_setting(tmp_path: Path) -> None:
    with LmdbOnlineStore(tmp_path / "small", map_size_bytes=1 << 20) as store:
        with pytest.raises(ResourceExhausted, match="lmdb_map_size_bytes"):
            write(store, wide_batch(list(range(100)), [1] * 100))
        assert store.count("users") == 0  # the failed batch left nothing behind
        assert write(store, wide_batch([1], [1])).written == 1


def test_lmdb_unusable_path_is_unavailable_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(Unavailable, match=str(blocker / "online.lmdb")):
        LmdbOnlineStore(blocker / "online.lmdb", map_size_bytes=1 << 20)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "data.mdb").write_bytes(b"garbage" * 2000)
    with pytest.raises(Unavailable, match=str(corrupt)):
        LmdbOnlineStore(corrupt, map_size_bytes=1 << 20)


# ---------------------------------------------------------------- Redis faults and settings


def test_unreachable_redis_is_unavailable_naming_the_url_without_password() -> None:
    settings = OnlineStoreSettings(
        backend="redis", redis_url="redis://admin:s3cret@127.0.0.1:1/0", redis_timeout_seconds=0.5
    )
    with pytest.raises(Unavailable) as info:
        open_online_store(settings)
    assert "redis://127.0.0.1:1/0" in info.value.message and "s3cret" not in info.value.message


def test_settings_reject_unknown_keys_and_backends() -> None:
    with pytest.raises(pydantic.ValidationError):
        OnlineStoreSettings(backend="lmdb", lmdb_pth="x")  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError):
        OnlineStoreSettings(backend="cassandra")  # type: ignore[arg-type]
    assert OnlineStoreSettings().lmdb_map_size_bytes == 64 * 1024**3
