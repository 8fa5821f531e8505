"""Point-in-time matching sharded over a real dask.distributed LocalCluster (two worker
processes) gives the single-process join's result row for row, and fails the same way."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pyarrow as pa
import pytest

from atlas_core.errors import InvalidArgument, NotFound
from atlas_data.matching import JoinColumns, point_in_time_join
from atlas_data.matching_dask import dask_point_in_time_join, shard_ids
from tests.unit.data.test_matching import _random_case

pytestmark = pytest.mark.slow  # a LocalCluster takes a few seconds to start

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as dask_client,
    ):
        yield dask_client


JOIN = {
    "entity_column": "user",
    "timestamp_column": "ts",
    "history_entity_column": "uid",
    "event_time_column": "event_time",
    "features": [],
}


@pytest.mark.parametrize("string_keys", [False, True])
@pytest.mark.parametrize("ttl_s", [None, 0.12])
@pytest.mark.parametrize("known", [False, True])
def test_sharded_join_equals_the_single_process_join_row_for_row(
    client, string_keys: bool, ttl_s: float | None, known: bool
) -> None:
    history, samples = _random_case(7, string_keys=string_keys)
    args = {**JOIN, "ttl_seconds": ttl_s, "as_known_at": known, "column_prefix": "g_"}
    single = point_in_time_join(samples, history=history, **args)
    seen: list[tuple[int, int]] = []
    sharded = dask_point_in_time_join(
        client,
        samples,
        history=history,
        columns=JoinColumns(**args),
        shards=5,
        on_progress=lambda done, total: seen.append((done, total)),
    )
    assert sharded.table.schema == single.table.schema
    assert sharded.table.combine_chunks().equals(single.table.combine_chunks())
    assert sharded.matched.tolist() == single.matched.tolist()
    assert (sharded.matched_count, sharded.unmatched_count) == (
        single.matched_count,
        single.unmatched_count,
    )
    assert 0 < single.matched_count < samples.num_rows  # the case has hits and misses
    assert seen[-1] == (5, 5) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_sample_keys_cast_to_the_history_type_land_in_the_same_shard(client) -> None:
    history, samples = _random_case(3, string_keys=False)
    samples = samples.set_column(2, "user", samples.column("user").cast(pa.int32()))
    args = {**JOIN, "ttl_seconds": None, "as_known_at": False}
    single = point_in_time_join(samples, history=history, **args)
    sharded = dask_point_in_time_join(
        client, samples, history=history, columns=JoinColumns(**args), shards=4
    )
    assert sharded.matched.tolist() == single.matched.tolist() and single.matched.any()
    ids = shard_ids(pa.array([1, 2, 3], pa.int64()), 4)
    assert ids.tolist() == shard_ids(pa.array([1, 2, 3], pa.int16()), 4).tolist()


def test_bad_input_fails_as_the_single_process_join_does(client) -> None:
    history, samples = _random_case(1, string_keys=False)
    columns = JoinColumns(**JOIN, ttl_seconds=None, as_known_at=False)

    def join(samples: pa.Table, columns: JoinColumns = columns):
        return dask_point_in_time_join(client, samples, history=history, columns=columns, shards=3)

    bad_times = samples.set_column(1, "ts", pa.array(["2024-01-01T00:00:00"] * 250 + ["nope"] * 50))
    with pytest.raises(InvalidArgument, match="row 250 'nope'"):  # row of the whole sample set
        join(bad_times)
    strings = samples.set_column(2, "user", pa.array([f"u{i}" for i in range(300)]))
    with pytest.raises(InvalidArgument, match="does not convert"):
        join(strings)
    with pytest.raises(NotFound, match="nope"):
        join(samples, replace(columns, features=["nope"]))
    empty = join(samples.slice(0, 0))
    assert empty.table.num_rows == 0 and "f" in empty.table.column_names


def test_stopping_cancels_the_remaining_shards(client) -> None:
    history, samples = _random_case(2, string_keys=True)

    def stop() -> None:
        raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt):
        dask_point_in_time_join(
            client,
            samples,
            history=history,
            columns=JoinColumns(**JOIN, ttl_seconds=None, as_known_at=False),
            shards=4,
            should_stop=stop,
        )

    def ours() -> list[str]:  # running or held in worker memory
        keys = [*client.who_has(), *(k for ks in client.processing().values() for k in ks)]
        return [str(k) for k in keys if str(k).startswith("atlas-match-")]

    deadline = time.monotonic() + 20  # the scheduler forgets cancelled tasks asynchronously
    while ours() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ours()
