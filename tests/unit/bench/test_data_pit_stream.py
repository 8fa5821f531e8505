"""The streaming generator of bench/data_pit.py (--ooc-times): deterministic, independent of how
it is chunked into row groups, make_workload's shape and distribution, and the check that the
big out-of-core run is judged by agrees with the in-memory join on its data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from bench._pit_stream import BASE_US, DAY_US, stream_as_of, stream_history, write_streamed_workload
from bench.data_pit import make_workload, outofcore_check, outofcore_child, outofcore_gen_stream

SMALL = {"entities": 120, "snapshots": 5, "features": 3, "samples": 1_000}


def _write(directory: Path, **kw: int) -> tuple[pa.Table, pa.Table, pq.ParquetFile]:
    directory.mkdir()
    counts = write_streamed_workload(directory, **SMALL, **kw)
    assert counts == {"history_rows": 600, "samples": 1_000}
    history = pq.ParquetFile(directory / "history.parquet")
    return history.read(), pq.read_table(directory / "samples.parquet"), history


def test_the_same_rows_whatever_the_row_groups_and_from_run_to_run(tmp_path: Path) -> None:
    h1, s1, f1 = _write(tmp_path / "a", entity_block=50, row_group=70, sample_block=300)
    h2, s2, f2 = _write(tmp_path / "b", entity_block=50, row_group=600, sample_block=300)
    h3, s3, _ = _write(tmp_path / "c", entity_block=50, row_group=70, sample_block=300)
    assert [f1.metadata.row_group(i).num_rows for i in range(f1.num_row_groups)] == [70] * 8 + [40]
    assert f2.num_row_groups == 1
    assert h1.equals(h2) and h1.equals(h3)
    assert s1.equals(s2) and s1.equals(s3)
    assert h1.num_rows == 600 and s1.num_rows == 1_000
    other = tmp_path / "d"
    other.mkdir()
    write_streamed_workload(other, **SMALL, entity_block=50, seed=7)
    assert not pq.read_table(other / "history.parquet").equals(h1)


def test_a_block_does_not_depend_on_the_entities_after_it() -> None:
    small = pa.concat_tables(stream_history(100, 4, 2, entity_block=50))
    big = pa.concat_tables(stream_history(250, 4, 2, entity_block=50))
    first = big.filter(pc.less(big["entity_id"], 100 * 7_919 + 100_003))
    assert first.equals(small)


def test_shape_and_distribution_are_make_workloads(tmp_path: Path) -> None:
    history, samples, _ = _write(tmp_path / "a", entity_block=50)
    ref_h, ref_s = make_workload(**SMALL)
    assert history.schema == ref_h.schema and samples.schema == ref_s.schema
    # the same entity ids in the same snapshot-major arrival order, times in the same windows
    assert history["entity_id"].equals(ref_h["entity_id"])
    known = pc.greater_equal(samples["entity_id"], 0)
    assert set(samples.filter(known)["entity_id"].to_pylist()) <= set(
        ref_h["entity_id"].to_pylist()
    )
    event = history["event_time"].cast(pa.int64()).to_numpy()
    snapshot = np.repeat(np.arange(5), 120)
    assert ((event - BASE_US) // DAY_US == snapshot).all()
    delay = history["_ingestion_time"].cast(pa.int64()).to_numpy() - event
    assert delay.min() >= 0 and delay.max() < 72 * 3_600_000_000
    assert 0 < (delay >= 3_600_000_000).sum() < 0.15 * len(delay)  # ~5 % late
    ids = samples["entity_id"].to_numpy()
    unknown = ids[ids < 0]
    assert 0 < len(unknown) < 40 and list(unknown) == list(-1 - np.arange(len(unknown)))
    times = samples["event_timestamp"].cast(pa.int64()).to_numpy()
    assert times.min() >= BASE_US - DAY_US and times.max() < BASE_US + 6 * DAY_US
    values = history["f001"].to_numpy()
    assert abs(values.mean()) < 0.2 and 0.8 < values.std() < 1.2


def test_the_big_runs_check_agrees_with_the_join_and_catches_a_wrong_null(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 1/20,000 of FULL x 2: 20 entities x 25 snapshots x 100 features, 100 samples
    scale, times, budget = 20_000, 2, 200_000
    outofcore_gen_stream(str(tmp_path), scale, times)
    gen = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert gen["history_rows"] == 500 and gen["samples"] == 100
    outofcore_child(str(tmp_path), budget)
    joined = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert joined["rows"] == 100 and joined["buckets"] > 1
    outofcore_check(str(tmp_path), scale, times, budget, spot=100)
    check = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert check["ok"], check
    assert check["spot_rows"] == 100 and check["spot_matched"] == check["matched"] > 50

    # every row of the out-of-core output is the generator's as-of record
    out = tmp_path / f"out-{budget}.arrow"
    with pa.OSFile(str(out)) as src:  # read into memory: the file is rewritten below
        table = ipc.open_file(src).read_all()
    entity = table["entity_id"].to_numpy()
    micros = table["event_timestamp"].cast(pa.int64()).to_numpy()
    got = np.stack([table[f"f{i:03d}"].to_numpy(zero_copy_only=False) for i in range(100)], 1)
    for r in range(table.num_rows):
        want = stream_as_of(int(entity[r]), int(micros[r]), 20, 25, 100)
        if want is None:
            assert np.isnan(got[r]).all()
        else:
            assert np.array_equal(got[r], want)

    # a matched row whose features went missing is caught
    f000 = table["f000"].to_numpy(zero_copy_only=False)
    hit = int(np.flatnonzero(~np.isnan(f000))[0])
    mask = np.zeros(table.num_rows, dtype=bool)
    mask[hit] = True
    broken = table.set_column(
        table.schema.get_field_index("f000"),
        "f000",
        pc.if_else(pa.array(mask), pa.scalar(None, pa.float32()), table["f000"]),
    )
    with ipc.new_file(str(out), broken.schema) as writer:
        writer.write_table(broken)
    outofcore_check(str(tmp_path), scale, times, budget, spot=100)
    check = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not check["ok"] and check["null_pattern_mismatches"] == 1
