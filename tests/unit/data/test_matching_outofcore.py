"""Out-of-core point-in-time matching (entity-hash spill buckets on disk, joined one by one)
gives the in-memory join's result row for row, and refuses a budget below one bucket."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from atlas_core.errors import FailedPrecondition, InvalidArgument, NotFound
from atlas_data.matching import (
    JoinColumns,
    matched_history_rows,
    point_in_time_join,
    timestamps_to_micros,
)
from atlas_data.matching_outofcore import ArrowFiles, out_of_core_join
from tests.unit.data.test_matching import _random_case

JOIN = {
    "entity_column": "user",
    "timestamp_column": "ts",
    "history_entity_column": "uid",
    "event_time_column": "event_time",
}
BUDGET = 40_000  # bytes: several buckets for ~160 history rows and 300 samples


def _run(tmp_path: Path, history: pa.Table, samples: pa.Table, **kw: object):
    path = tmp_path / "samples.parquet"
    pq.write_table(samples, path, row_group_size=70)  # several batches, streamed in order
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    names = {f.name for f in fields(JoinColumns)}
    columns = JoinColumns(**{"features": [], **JOIN, **{k: v for k, v in kw.items() if k in names}})  # type: ignore[arg-type]
    rest = {"budget_bytes": BUDGET, **{k: v for k, v in kw.items() if k not in names}}
    result = out_of_core_join(
        ArrowFiles((path,)),
        history=lambda columns: history.select(columns).to_batches(max_chunksize=45),
        history_schema=history.schema,
        history_rows=history.num_rows,
        columns=columns,
        workdir=work,
        output=tmp_path / "out.arrow",
        **rest,  # type: ignore[arg-type]
    )
    with ipc.open_file(pa.memory_map(str(result.path))) as reader:
        return result, reader.read_all()


@pytest.mark.parametrize("string_keys", [False, True])
@pytest.mark.parametrize("ttl_s", [None, 0.12])
@pytest.mark.parametrize("known", [False, True])
def test_out_of_core_join_equals_the_in_memory_join_row_for_row(
    tmp_path: Path, string_keys: bool, ttl_s: float | None, known: bool
) -> None:
    history, samples = _random_case(11, string_keys=string_keys)
    # Null keys and event times never match, in memory or out of core.
    history = history.set_column(
        0, "uid", pa.array(history.column("uid").to_pylist()[:-3] + [None] * 3, history["uid"].type)
    )
    args = {"ttl_seconds": ttl_s, "as_known_at": known, "column_prefix": "g_"}
    single = point_in_time_join(samples, history=history, features=[], **JOIN, **args)
    seen: list[tuple[int, int]] = []
    result, table = _run(
        tmp_path, history, samples, on_progress=lambda d, t: seen.append((d, t)), **args
    )
    assert result.buckets > 2
    assert table.schema == single.table.schema
    assert table.combine_chunks().equals(single.table.combine_chunks())
    assert (result.matched == single.matched).all() and single.matched.any()
    assert seen[-1][0] == seen[-1][1] and len(seen) == seen[-1][1]
    # only the records some sample matches were spilled for the join
    rows = matched_history_rows(
        samples,
        entity_column="user",
        s_time=timestamps_to_micros(samples["ts"], what="", name="ts")[0],
        history=history,
        history_entity_column="uid",
        event_time_column="event_time",
        ingestion_time_column="_ingestion_time",
        ttl_seconds=ttl_s,
        as_known_at=known,
    )
    assert result.history_rows == history.num_rows
    assert result.history_matched == len(np.unique(rows[rows >= 0])) < history.num_rows


def test_a_history_that_changes_between_the_passes_is_refused(tmp_path: Path) -> None:
    history, samples = _random_case(4, string_keys=False)
    calls: list[list[str]] = []

    def shrinking(columns: list[str]) -> list[pa.RecordBatch]:
        calls.append(columns)  # five rows fewer the second time (a compaction, say)
        return history.select(columns).slice(0, history.num_rows + 5 - 5 * len(calls)).to_batches()

    path = tmp_path / "samples.parquet"
    pq.write_table(samples, path)
    (tmp_path / "work").mkdir()
    with pytest.raises(RuntimeError, match="changed between the two passes"):
        out_of_core_join(
            ArrowFiles((path,)),
            history=shrinking,
            history_schema=history.schema,
            history_rows=history.num_rows,
            columns=JoinColumns(features=[], **JOIN),
            budget_bytes=BUDGET,
            workdir=tmp_path / "work",
            output=tmp_path / "out.arrow",
        )
    assert calls[0] == ["uid", "event_time", "_ingestion_time"] and len(calls[1]) > 3


def test_drop_unless_keeps_rows_matched_here_or_before(tmp_path: Path) -> None:
    history, samples = _random_case(3, string_keys=False)
    single = point_in_time_join(
        samples, history=history, features=["f"], ttl_seconds=None, as_known_at=False, **JOIN
    )
    before = np.zeros(samples.num_rows, dtype=bool)
    before[::7] = True
    result, table = _run(
        tmp_path,
        history,
        samples,
        features=["f"],
        ttl_seconds=None,
        as_known_at=False,
        drop_unless=before,
    )
    keep = before | single.matched
    assert result.rows == int(keep.sum()) == table.num_rows
    assert table.equals(single.table.filter(pa.array(keep)).combine_chunks())


def test_a_budget_below_one_bucket_fails_with_the_size_needed(tmp_path: Path) -> None:
    history, samples = _random_case(5, string_keys=False)
    # Every history row on one entity: its bucket cannot be split by entity hash.
    one = history.set_column(0, "uid", pa.array(np.zeros(history.num_rows, dtype=np.int64)))
    with pytest.raises(FailedPrecondition) as err:
        _run(tmp_path, one, samples, ttl_seconds=None, as_known_at=False, budget_bytes=20_000)
    assert err.value.reason == "MATCH_MEMORY_BUDGET"
    needed = int(err.value.metadata["needed_bytes"])
    assert needed > 20_000 and str(needed) in str(err.value)
    # Raising the budget to what it names runs the join; a bigger budget means fewer buckets,
    # so more samples land beside the entity and the bucket may name a bigger size once more.
    for _ in range(2):
        try:
            _run(tmp_path, one, samples, ttl_seconds=None, as_known_at=False, budget_bytes=needed)
            break
        except FailedPrecondition as again:
            assert int(again.metadata["needed_bytes"]) > needed
            needed = int(again.metadata["needed_bytes"])
    else:
        pytest.fail(f"the join did not run at the budget it named last ({needed} bytes)")


def test_a_budget_far_too_small_for_the_input_fails_before_spilling(tmp_path: Path) -> None:
    history, samples = _random_case(5, string_keys=False)
    with pytest.raises(FailedPrecondition, match="needs a memory budget of at least") as err:
        _run(tmp_path, history, samples, ttl_seconds=None, as_known_at=False, budget_bytes=100)
    assert int(err.value.metadata["needed_bytes"]) > 100
    assert not list((tmp_path / "work").iterdir())


def test_bad_input_fails_as_the_in_memory_join_does(tmp_path: Path) -> None:
    history, samples = _random_case(2, string_keys=False)
    with pytest.raises(NotFound, match="feature 'nope'"):
        _run(tmp_path, history, samples, features=["nope"], ttl_seconds=None, as_known_at=False)
    with pytest.raises(InvalidArgument, match="collides"):
        _run(
            tmp_path,
            history,
            samples.append_column("f", samples["label"]),
            ttl_seconds=None,
            as_known_at=False,
        )


def test_an_unparseable_sample_time_is_named_by_its_row_in_the_whole_sample_set(
    tmp_path: Path,
) -> None:
    history, samples = _random_case(2, string_keys=False)
    times = [f"2024-01-01T00:00:{i % 60:02d}Z" for i in range(samples.num_rows)]
    times[250] = "not a time"  # in the fourth 70-row batch of the samples file
    samples = samples.set_column(1, "ts", pa.array(times))
    args = {"ttl_seconds": None, "as_known_at": False}
    with pytest.raises(InvalidArgument) as memory:
        point_in_time_join(samples, history=history, features=[], **JOIN, **args)
    with pytest.raises(InvalidArgument) as spilled:
        _run(tmp_path, history, samples, **args)
    assert spilled.value.message == memory.value.message
    assert spilled.value.metadata["row"] == "250"
