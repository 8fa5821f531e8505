"""Point-in-time join: ATLAS `point_in_time_join` vs Feast `get_historical_features`.

    python bench/data_pit.py            # full: 200,000 entities x 25 snapshots x 100 float32
                                        # features (5,000,000 rows), 1,000,000 samples
    python bench/data_pit.py --quick    # 1/20 scale (10,000 entities, 50,000 samples)
    python bench/data_pit.py --no-feast # skip the Feast side
    python bench/data_pit.py --dask     # only the Dask section (~1-2 min)
    python bench/data_pit.py --no-dask  # skip it
    python bench/data_pit.py --outofcore [--ooc-scale N] [--ooc-budget-mib M]
                                        # only the out-of-core section (below)
    python bench/data_pit.py --outofcore --ooc-times 10 --ooc-budget-mib 512
                                        # ... and out of core alone on 10x the full history

Workload (generator `make_workload`, seed 20240601): entity ids are distinct int64s; entity
e's snapshot k has event time 2024-01-01 + k days + uniform jitter within that day, and an
ingestion time 0-20 min later (5 % of records arrive late, 1-72 h after their event time);
100 float32 N(0, 1) feature columns. Samples draw an entity uniformly (1 % are unknown
ids), a time uniform over [2023-12-31, 2024-01-27) and a 0/1 label. History rows are in
arrival order (snapshot-major), not sorted by entity.

Our join runs in a child process that generates the data, then resets its peak-RSS counter
(/proc/self/clear_refs) so `peak_rss_gb` is the process's peak during the join, input tables
included; the generation peak is reported separately. The child then writes a 1/20 slice
(the first 1/20 of the entities, their history and their samples) as Parquet and times our
join on that slice too. Feast (installed into a throwaway venv under /tmp/atlas-bench-feast,
reused when present) runs `get_historical_features` on that slice with a FileSource in its
own process. Feast's ttl is 0 (unbounded) and `_ingestion_time` is its created-timestamp
column, so both sides compute the same as-of join; the matched counts are compared.

Writes bench/results/data_pit.json (and a dated copy, see _results.py) with keys join_s,
peak_rss_gb, rows_per_s, feast_rows_per_s (null when Feast could not run; the reason is printed and
recorded). Targets: join <= 60 s on 2 cores, peak RSS <= 8 GB, >= 20x Feast's rows/s.

Dask section (after the main one, or alone with ``--dask``, which writes its keys into the
latest data_pit.json beside the other sections'): always at 1/20 scale (the --quick workload,
250,000 history rows, 50,000 samples). A child process starts a dask.distributed LocalCluster
of two worker processes (one thread each), warms the workers up with a small join, then times,
on the same tables, the single-process join and ``dask_point_in_time_join`` with 4 shards
(as-of, then as-known-at), and compares the outputs row for row (``Table.equals``). Keys:
``pit_dask_2w_rows_per_s``, ``pit_single_rows_per_s`` (the same data in one process, same
run), ``pit_dask_identical`` (both modes). On 2 cores two workers add transfer and
serialization, not cores: the figure is a report, not a target.

Out-of-core section (alone, with ``--outofcore``; writes its keys into the latest
data_pit.json, or data_pit_quick.json with --quick): a generator process writes the workload
at 1/4 scale (1,250,000 history rows x 100 features, 250,000 samples; --quick: 1/20, 250,000
rows, 50,000 samples) to Parquet (history in 50,000-row row groups). Then two fresh processes,
each from those files to the joined table: the in-memory join (read both files, then
``point_in_time_join``), and ``out_of_core_join`` with a memory budget (256 MiB; --quick 64
MiB) streaming the history's row groups and the samples (``--ooc-scale N`` and
``--ooc-budget-mib M`` override both). Each reports its peak RSS (VmHWM, the whole process)
and rows/s (samples / seconds, from reading the Parquet files to the output written as an
Arrow IPC file; the in-memory side's join alone is reported too); the outputs are compared
row for row (``Table.equals``). Keys: ``pit_outofcore_rows_per_s``,
``pit_outofcore_peak_rss_gb``, ``pit_inmemory_rows_per_s``, ``pit_inmemory_peak_rss_gb``,
``pit_inmemory_join_only_rows_per_s`` (same data, same run), ``pit_outofcore_identical``,
``pit_outofcore_budget_bytes``, ``pit_outofcore_buckets``.

``--ooc-times K`` (K > 1) adds a history and samples K times the pair's (entities x K, samples
x K; snapshots and features unchanged; ``--ooc-times 10`` on the full pair, whose scale is 1
then unless ``--ooc-scale`` says otherwise: 50M history rows x 100 features, 10M samples;
with --quick, K x the 1/20 pair).
The pair above runs first, unchanged, as the reference measured in the same run (and the
identical-output check); then, in a new temp dir (under ``--ooc-dir``, default the system's;
the run stops first if the filesystem has less free than its estimate, ~55 GB for K=10),
a generator process streams the Kx workload to Parquet (``write_streamed_workload``: blocks of
50,000 entities x one snapshot, history in 50,000-row row groups, samples in 1M-row groups;
peak RSS ~0.2 GB at any K), ``out_of_core_join`` runs alone on it (the in-memory join cannot:
50M x 100 float32 is 20 GB), and a check process reads its output: the row count equals the
samples, a feature is null on exactly the rows where the generator says no record is valid
(unknown entity, or a time before the entity's first snapshot), and 12 random rows' 100
features equal, bit for bit, the as-of record the generator regenerates for them
(``stream_as_of``). Keys: ``pit_outofcore_times``, ``pit_outofcore_big_rows_per_s``,
``pit_outofcore_big_peak_rss_gb``, ``pit_outofcore_big_history_rows``,
``pit_outofcore_big_samples``, ``pit_outofcore_big_vs_inmemory`` (the big rows/s over the
pair's in-memory rows/s, end to end), ``pit_outofcore_big_check``, ``pit_outofcore_big_buckets``,
``pit_outofcore_big_disk_peak_gb`` (bytes under the temp dir, polled every 2 s),
``pit_outofcore_big_history_spilled_frac`` (the history rows some sample matches: the only
ones spilled). Each child's
timeout is 1800 s times the data's size relative to the 5M-row case (at least 1800 s).

The streamed workload has make_workload's schema, entity ids, row order (snapshot-major) and
distributions (the same formulas), but not its values: make_workload draws each column for all
rows from one stream, which needs the whole table in memory, while the streamed generator draws
each block from its own stream seeded by (seed, snapshot, entity block), and each sample block
by (seed, block). Equal in distribution, not identical by construction; a block's values do not
depend on K, so the Kx history's first blocks are the same at any K.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pit_stream import (  # noqa: E402
    BASE_US,
    DAY_US,
    SEED,
    stream_as_of,
    stream_expected_first_event,
    write_streamed_workload,
)
from _results import write_results  # noqa: E402

FEAST_VENV = Path("/tmp/atlas-bench-feast")
FULL = {"entities": 200_000, "snapshots": 25, "features": 100, "samples": 1_000_000}
SLICE = 20  # Feast runs on 1/SLICE of the workload; --quick runs ours at 1/SLICE too


def make_workload(entities: int, snapshots: int, features: int, samples: int, seed: int = SEED):
    """(history, samples) pyarrow Tables, as described in the module docstring."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    utc = pa.timestamp("us", tz="UTC")
    ids = np.arange(entities, dtype=np.int64) * 7_919 + 100_003
    n = entities * snapshots
    ent = np.tile(ids, snapshots)  # snapshot-major: arrival order
    snap = np.repeat(np.arange(snapshots, dtype=np.int64), entities)
    event = BASE_US + snap * DAY_US + rng.integers(0, DAY_US, n)
    delay = rng.integers(0, 20 * 60_000_000, n)
    late = rng.random(n) < 0.05
    delay[late] = rng.integers(3_600_000_000, 72 * 3_600_000_000, int(late.sum()))
    columns = {
        "entity_id": pa.array(ent),
        "event_time": pa.array(event).cast(utc),
        "_ingestion_time": pa.array(event + delay).cast(utc),
    }
    del snap, delay, late
    for i in range(features):
        columns[f"f{i:03d}"] = pa.array(rng.standard_normal(n, dtype=np.float32))
    history = pa.table(columns)
    s_ent = ids[rng.integers(0, entities, samples)]
    unknown = rng.random(samples) < 0.01
    s_ent[unknown] = -1 - np.arange(int(unknown.sum()))
    start, stop = BASE_US - DAY_US, BASE_US + (snapshots + 1) * DAY_US
    spine = pa.table(
        {
            "entity_id": pa.array(s_ent),
            "event_timestamp": pa.array(rng.integers(start, stop, samples)).cast(utc),
            "label": pa.array(rng.integers(0, 2, samples)),
        }
    )
    return history, spine


def _vm_hwm_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _join(history, samples):
    from atlas_data.matching import point_in_time_join

    features = [c for c in history.column_names if c.startswith("f")]
    return point_in_time_join(
        samples,
        entity_column="entity_id",
        timestamp_column="event_timestamp",
        history=history,
        history_entity_column="entity_id",
        event_time_column="event_time",
        features=features,
        ttl_seconds=None,
        as_known_at=False,
    )


def child(scale: int, slice_dir: str) -> None:
    """Generate, join (timed), write the Feast slice; print one JSON line."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    sizes = {k: (v if k in ("snapshots", "features") else v // scale) for k, v in FULL.items()}
    t0 = time.perf_counter()
    history, samples = make_workload(**sizes)
    gen_s = time.perf_counter() - t0
    gen_peak = _vm_hwm_gb()
    reset = _reset_peak()
    t0 = time.perf_counter()
    result = _join(history, samples)
    join_s = time.perf_counter() - t0
    join_peak = _vm_hwm_gb()
    matched = result.matched_count
    del result

    # as-known-at mode, for the record (not a target)
    from atlas_data.matching import point_in_time_join

    t0 = time.perf_counter()
    point_in_time_join(
        samples,
        entity_column="entity_id",
        timestamp_column="event_timestamp",
        history=history,
        history_entity_column="entity_id",
        event_time_column="event_time",
        features=[c for c in history.column_names if c.startswith("f")],
        ttl_seconds=None,
        as_known_at=True,
    )
    known_s = time.perf_counter() - t0

    n_slice_entities = sizes["entities"] // SLICE
    cutoff = 100_003 + 7_919 * n_slice_entities
    h_slice = history.filter(pc.less(history["entity_id"], cutoff))
    keep = np.asarray(samples["entity_id"]) < cutoff
    s_slice = samples.filter(keep)
    s_slice = s_slice.slice(0, max(1, samples.num_rows // SLICE))
    pq.write_table(h_slice, os.path.join(slice_dir, "history.parquet"))
    pq.write_table(s_slice, os.path.join(slice_dir, "samples.parquet"))
    t0 = time.perf_counter()
    slice_result = _join(h_slice, s_slice)
    slice_s = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "history_rows": history.num_rows,
                "samples": samples.num_rows,
                "gen_s": gen_s,
                "gen_peak_rss_gb": gen_peak,
                "join_s": join_s,
                "join_known_at_s": known_s,
                "peak_rss_gb": join_peak if reset else max(join_peak, gen_peak),
                "peak_is_join_only": reset,
                "matched": int(matched),
                "slice_samples": s_slice.num_rows,
                "slice_history_rows": h_slice.num_rows,
                "slice_join_s": slice_s,
                "slice_matched": int(slice_result.matched_count),
            }
        ),
        flush=True,
    )


def dask_child(scale: int) -> None:
    """The Dask section: single-process vs 2-worker Dask join on the same tables."""
    import distributed

    from atlas_data.matching import JoinColumns, point_in_time_join
    from atlas_data.matching_dask import dask_point_in_time_join

    sizes = {k: (v if k in ("snapshots", "features") else v // scale) for k, v in FULL.items()}
    history, samples = make_workload(**sizes)
    as_of = JoinColumns(
        entity_column="entity_id",
        timestamp_column="event_timestamp",
        history_entity_column="entity_id",
        event_time_column="event_time",
        features=[c for c in history.column_names if c.startswith("f")],
    )
    out: dict = {"history_rows": history.num_rows, "samples": samples.num_rows, "modes": {}}
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        warm = history.slice(0, 1000)  # workers import the join on their first task
        dask_point_in_time_join(
            client, samples.slice(0, 100), history=warm, columns=as_of, shards=4
        )
        for known in (False, True):
            columns = replace(as_of, as_known_at=known)
            t0 = time.perf_counter()
            single = point_in_time_join(samples, history=history, **columns.kwargs())
            single_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            sharded = dask_point_in_time_join(
                client,
                samples,
                history=history,
                columns=columns,
                shards=4,
            )
            dask_s = time.perf_counter() - t0
            identical = bool(
                sharded.table.combine_chunks().equals(single.table.combine_chunks())
                and (sharded.matched == single.matched).all()
            )
            out["modes"]["as_known_at" if known else "as_of"] = {
                "single_s": single_s,
                "dask_s": dask_s,
                "identical": identical,
                "matched": single.matched_count,
            }
            del single, sharded
    out["workers"], out["shards"] = 2, 4
    print(json.dumps(out), flush=True)


def run_dask_section() -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--dask-child", "--scale", str(SLICE)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        sys.exit(f"the Dask section failed:\n{proc.stderr[-3000:]}")
    d = json.loads(proc.stdout.strip().splitlines()[-1])
    as_of = d["modes"]["as_of"]
    print(
        f"Dask section: {d['history_rows']:,} history rows, {d['samples']:,} samples, "
        f"{d['workers']} workers x 1 thread, {d['shards']} shards"
    )
    print(
        f"{'mode':<14}{'single s':>10}{'dask s':>10}{'single rows/s':>15}{'dask rows/s':>14}  same"
    )
    for mode, m in d["modes"].items():
        print(
            f"{mode:<14}{m['single_s']:>10.2f}{m['dask_s']:>10.2f}"
            f"{d['samples'] / m['single_s']:>15,.0f}{d['samples'] / m['dask_s']:>14,.0f}"
            f"  {'yes' if m['identical'] else 'NO'}"
        )
    return {
        "pit_dask_2w_rows_per_s": round(d["samples"] / as_of["dask_s"], 1),
        "pit_single_rows_per_s": round(d["samples"] / as_of["single_s"], 1),
        "pit_dask_identical": all(m["identical"] for m in d["modes"].values()),
        "dask_detail": d,
    }


OUTOFCORE = {"full": (4, 256 * 1024**2), "quick": (SLICE, 64 * 1024**2)}  # scale, budget


def _stream_sizes(scale: int, times: int) -> dict:
    """The streamed workload's sizes: ``times`` x (FULL at 1/scale) entities and samples."""
    return {
        "entities": FULL["entities"] // scale * times,
        "snapshots": FULL["snapshots"],
        "features": FULL["features"],
        "samples": FULL["samples"] // scale * times,
    }


def outofcore_gen_stream(directory: str, scale: int, times: int) -> None:
    """Write the streamed workload (``times`` x the 1/scale one); print one JSON line."""
    t0 = time.perf_counter()
    counts = write_streamed_workload(directory, **_stream_sizes(scale, times))
    seconds = time.perf_counter() - t0
    files = sum(os.path.getsize(os.path.join(directory, n)) for n in os.listdir(directory))
    print(
        json.dumps(
            {**counts, "seconds": seconds, "peak_rss_gb": _vm_hwm_gb(), "file_bytes": files}
        ),
        flush=True,
    )


def outofcore_check(directory: str, scale: int, times: int, budget: int, spot: int = 12) -> None:
    """Check the big out-of-core output against the generator; print one JSON line.

    Every row: a feature is null exactly when the generator says no record is valid (unknown
    entity, or a time before the entity's first snapshot). ``spot`` rows drawn at random: all
    100 features equal the generator's as-of record, bit for bit."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.ipc as ipc

    sizes = _stream_sizes(scale, times)
    entities = sizes["entities"]
    first = stream_expected_first_event(entities)
    rng = np.random.default_rng([SEED, 3])
    picks = np.sort(rng.choice(sizes["samples"], size=min(spot, sizes["samples"]), replace=False))
    features = [f"f{i:03d}" for i in range(sizes["features"])]
    rows = mismatched = matched = 0
    got: dict[int, tuple[int, int, list]] = {}
    path = os.path.join(directory, f"out-{budget}.arrow")
    with pa.memory_map(path) as source, ipc.open_file(source) as reader:
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            ent = batch.column("entity_id").to_numpy()
            micros = batch.column("event_timestamp").cast(pa.int64()).to_numpy()
            known = ent >= 0
            expect = np.zeros(len(ent), dtype=bool)
            idx = (ent[known] - 100_003) // 7_919
            expect[known] = micros[known] >= first[idx]
            present = batch.column("f000").is_valid().to_numpy(zero_copy_only=False)
            mismatched += int((present != expect).sum())
            matched += int(present.sum())
            for p in picks[(picks >= rows) & (picks < rows + len(ent))]:
                r = int(p - rows)
                values = [batch.column(f)[r].as_py() for f in features]
                got[int(p)] = (int(ent[r]), int(micros[r]), values)
            rows += len(ent)
    spot_ok = 0
    for _p, (ent_id, micros_at, values) in sorted(got.items()):
        want = stream_as_of(ent_id, micros_at, entities, sizes["snapshots"], sizes["features"])
        if want is None:
            spot_ok += all(v is None for v in values)
        else:
            spot_ok += bool(
                all(v is not None for v in values)
                and np.array_equal(np.asarray(values, dtype=np.float32), want)
            )
    print(
        json.dumps(
            {
                "rows": rows,
                "expected_rows": sizes["samples"],
                "null_pattern_mismatches": mismatched,
                "matched": matched,
                "spot_rows": len(got),
                "spot_equal": spot_ok,
                "spot_matched": sum(v[2][0] is not None for v in got.values()),
                "ok": rows == sizes["samples"] and mismatched == 0 and spot_ok == len(got),
            }
        ),
        flush=True,
    )


def outofcore_gen(directory: str, scale: int) -> None:
    """Write the workload at 1/scale as Parquet (history in 50,000-row row groups)."""
    import pyarrow.parquet as pq

    sizes = {k: (v if k in ("snapshots", "features") else v // scale) for k, v in FULL.items()}
    history, samples = make_workload(**sizes)
    pq.write_table(history, os.path.join(directory, "history.parquet"), row_group_size=50_000)
    pq.write_table(samples, os.path.join(directory, "samples.parquet"))


def outofcore_child(directory: str, budget: int) -> None:
    """One side of the out-of-core section (budget 0: in memory); prints one JSON line."""
    import pyarrow as pa
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    from atlas_data.matching import JoinColumns, point_in_time_join
    from atlas_data.matching_outofcore import ArrowFiles, out_of_core_join, parquet_batches

    h_path = os.path.join(directory, "history.parquet")
    s_path = os.path.join(directory, "samples.parquet")
    h_file = pq.ParquetFile(h_path)
    columns = JoinColumns(
        entity_column="entity_id",
        timestamp_column="event_timestamp",
        history_entity_column="entity_id",
        event_time_column="event_time",
        features=[n for n in h_file.schema_arrow.names if n.startswith("f")],
    )
    out = os.path.join(directory, f"out-{budget}.arrow")
    t0 = time.perf_counter()
    join_s = None
    spilled_history: dict[str, int] = {}
    if budget == 0:
        samples, history = pq.read_table(s_path), pq.read_table(h_path)
        t1 = time.perf_counter()
        result = point_in_time_join(samples, history=history, **columns.kwargs())
        join_s = time.perf_counter() - t1
        with ipc.new_file(out, result.table.schema) as writer:
            writer.write_table(result.table)
        rows, buckets = result.table.num_rows, 1
    else:
        work = Path(directory) / "spill"
        work.mkdir()
        ooc = out_of_core_join(
            ArrowFiles((Path(s_path),)),
            history=lambda columns: parquet_batches(h_path, 50_000, columns),
            history_schema=h_file.schema_arrow,
            history_rows=h_file.metadata.num_rows,
            columns=columns,
            budget_bytes=budget,
            workdir=work,
            output=Path(out),
        )
        rows, buckets = ooc.rows, ooc.buckets
        spilled_history = {"history_rows": ooc.history_rows, "history_matched": ooc.history_matched}
    seconds = time.perf_counter() - t0
    del h_file
    peak = _vm_hwm_gb()
    with pa.memory_map(out) as source, ipc.open_file(source) as reader:
        digest = reader.read_all().num_rows
    print(
        json.dumps(
            {
                "seconds": seconds,
                "join_only_s": join_s,
                "peak_rss_gb": peak,
                "rows": rows,
                "buckets": buckets,
                "check_rows": digest,
                **spilled_history,
            }
        ),
        flush=True,
    )


def _dir_bytes(directory: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:  # a spill file removed meanwhile
                pass
    return total


def _run_child(*extra: str, timeout: float, watch: str | None = None) -> tuple[dict, int]:
    """Run this script with ``extra`` arguments; its last stdout line as JSON, and the most
    bytes seen under ``watch`` (polled every 2 s) while it ran."""
    proc = subprocess.Popen(
        [sys.executable, __file__, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout
    disk = 0
    while True:
        try:
            stdout, stderr = proc.communicate(timeout=2)
            break
        except subprocess.TimeoutExpired:
            if watch is not None:
                disk = max(disk, _dir_bytes(watch))
            if time.monotonic() > deadline:
                proc.kill()
                proc.communicate()
                sys.exit(f"the out-of-core section exceeded {timeout:.0f} s: {' '.join(extra)}")
    if proc.returncode != 0:
        sys.exit(f"the out-of-core section failed ({' '.join(extra)}):\n{stderr[-3000:]}")
    if watch is not None:
        disk = max(disk, _dir_bytes(watch))
    lines = stdout.strip().splitlines()
    return (json.loads(lines[-1]) if lines else {}), disk


def stream_disk_estimate(history_rows: int, samples: int, features: int) -> int:
    """Bytes the big run needs on disk at its peak: the Parquet inputs (pyarrow's default
    dictionary pages take ~6 bytes a random float32 value) and either the spilled history and
    samples (while spilling) or the joined buckets and the output (while merging)."""
    parquet = 6 * features + 24
    wide = 4 * features + 24  # a history row in the spill (Arrow IPC), or an output row
    inputs = history_rows * parquet + samples * 32
    spilling = inputs + history_rows * wide + samples * 24
    merging = inputs + 2 * samples * (wide + 16)
    return int(1.05 * max(spilling, merging))


def _check_disk(scale: int, times: int, ooc_dir: str | None) -> int:
    """The big run's disk estimate; exits when the temp dir's filesystem has less free."""
    import shutil

    sizes = _stream_sizes(scale, times)
    need = stream_disk_estimate(
        sizes["entities"] * sizes["snapshots"], sizes["samples"], sizes["features"]
    )
    base = ooc_dir or tempfile.gettempdir()
    free = shutil.disk_usage(base).free
    if free < need:
        sys.exit(
            f"--ooc-times {times} needs about {need / 1e9:.1f} GB free under {base}, "
            f"{free / 1e9:.1f} GB are: choose another with --ooc-dir"
        )
    return need


def run_outofcore_big(
    scale: int, times: int, budget: int, reference_rows_per_s: float, ooc_dir: str | None
) -> dict:
    """The out-of-core side alone on the streamed ``times`` x workload, then its check."""
    sizes = _stream_sizes(scale, times)
    history_rows = sizes["entities"] * sizes["snapshots"]
    samples = sizes["samples"]
    need = _check_disk(scale, times, ooc_dir)
    timeout = 1800 * max(1.0, times / scale)  # 1800 s for the 5M-row data, times as long per x
    with tempfile.TemporaryDirectory(prefix="atlas-bench-ooc-big-", dir=ooc_dir) as directory:
        args = ("--scale", str(scale), "--times", str(times))
        gen, _ = _run_child("--ooc-gen-stream", directory, *args, timeout=timeout)
        spilled, disk = _run_child(
            "--ooc-child", directory, "--budget", str(budget), timeout=timeout, watch=directory
        )
        check, _ = _run_child(
            "--ooc-check", directory, *args, "--budget", str(budget), timeout=timeout
        )
    rows_per_s = samples / spilled["seconds"]
    print(
        f"Out-of-core, {times}x: {history_rows:,} history rows x {sizes['features']} features, "
        f"{samples:,} samples (streamed generator: {gen['seconds']:.0f} s, peak RSS "
        f"{gen['peak_rss_gb']:.2f} GB, {gen['file_bytes'] / 1e9:.1f} GB of Parquet); "
        f"{spilled['buckets']} buckets"
    )
    print(
        f"out of core {spilled['seconds']:.2f} s, {rows_per_s:,.0f} rows/s "
        f"({rows_per_s / reference_rows_per_s:.2f}x the in-memory rows/s above), peak RSS "
        f"{spilled['peak_rss_gb']:.2f} GB, disk peak {disk / 1e9:.1f} GB; "
        f"{spilled['history_matched'] / spilled['history_rows']:.1%} of the history spilled "
        "(the records some sample matches)"
    )
    print(
        f"check: {check['rows']:,} rows (expected {check['expected_rows']:,}); null pattern "
        f"mismatches {check['null_pattern_mismatches']}; {check['spot_equal']}/"
        f"{check['spot_rows']} spot rows equal the generator's as-of record "
        f"({check['spot_matched']} matched): {'ok' if check['ok'] else 'FAILED'}"
    )
    return {
        "pit_outofcore_times": times,
        "pit_outofcore_big_rows_per_s": round(rows_per_s, 1),
        "pit_outofcore_big_peak_rss_gb": round(spilled["peak_rss_gb"], 3),
        "pit_outofcore_big_history_rows": history_rows,
        "pit_outofcore_big_samples": samples,
        "pit_outofcore_big_vs_inmemory": round(rows_per_s / reference_rows_per_s, 3),
        "pit_outofcore_big_check": bool(check["ok"]),
        "pit_outofcore_big_buckets": spilled["buckets"],
        "pit_outofcore_big_disk_peak_gb": round(disk / 1e9, 2),
        "pit_outofcore_big_history_spilled_frac": round(
            spilled["history_matched"] / spilled["history_rows"], 4
        ),
        "outofcore_big_detail": {
            "generator": gen,
            "out_of_core": spilled,
            "check": check,
            "disk_estimate_gb": round(need / 1e9, 2),
        },
    }


def run_outofcore_section(
    quick: bool,
    scale: int = 0,
    budget_mib: int = 0,
    times: int = 1,
    ooc_dir: str | None = None,
) -> dict:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    default_scale, default_budget = OUTOFCORE["quick" if quick else "full"]
    if times > 1 and not quick:
        default_scale = 1  # the reference pair is the 5M-row case
    scale = scale or default_scale
    budget = budget_mib * 1024**2 or default_budget
    if times > 1:
        _check_disk(scale, times, ooc_dir)  # before the pair, not after it
    timeout = 1800 * max(1.0, 1 / scale)
    with tempfile.TemporaryDirectory(prefix="atlas-bench-ooc-", dir=ooc_dir) as directory:

        def run(*extra: str) -> dict:
            return _run_child(*extra, timeout=timeout)[0]

        run("--ooc-gen", directory, "--scale", str(scale))
        memory = run("--ooc-child", directory, "--budget", "0")
        spilled = run("--ooc-child", directory, "--budget", str(budget))

        def read(b: int) -> pa.Table:
            with pa.memory_map(os.path.join(directory, f"out-{b}.arrow")) as src:
                return ipc.open_file(src).read_all().combine_chunks()

        identical = bool(read(0).equals(read(budget)))
    sizes = {k: (v if k in ("snapshots", "features") else v // scale) for k, v in FULL.items()}
    history_rows = sizes["entities"] * sizes["snapshots"]
    samples = sizes["samples"]
    print(
        f"Out-of-core section: {history_rows:,} history rows x {FULL['features']} features, "
        f"{samples:,} samples; budget {budget / 1024**2:.0f} MiB, {spilled['buckets']} buckets"
    )
    print(f"{'side':<16}{'seconds':>10}{'rows/s':>12}{'peak RSS GB':>13}")
    for name, side in (("in memory", memory), ("out of core", spilled)):
        print(
            f"{name:<16}{side['seconds']:>10.2f}{samples / side['seconds']:>12,.0f}"
            f"{side['peak_rss_gb']:>13.2f}"
        )
    print(
        f"in memory, the join alone (no Parquet read, no output write): "
        f"{memory['join_only_s']:.2f} s, {samples / memory['join_only_s']:,.0f} rows/s"
    )
    print(f"identical output: {'yes' if identical else 'NO'}")
    result = {
        "pit_outofcore_rows_per_s": round(samples / spilled["seconds"], 1),
        "pit_outofcore_peak_rss_gb": round(spilled["peak_rss_gb"], 3),
        "pit_inmemory_rows_per_s": round(samples / memory["seconds"], 1),
        "pit_inmemory_peak_rss_gb": round(memory["peak_rss_gb"], 3),
        "pit_inmemory_join_only_rows_per_s": round(samples / memory["join_only_s"], 1),
        "pit_outofcore_identical": identical,
        "pit_outofcore_budget_bytes": budget,
        "pit_outofcore_buckets": spilled["buckets"],
        "outofcore_detail": {
            "history_rows": history_rows,
            "samples": samples,
            "in_memory": memory,
            "out_of_core": spilled,
            "command": "python bench/data_pit.py --outofcore"
            + (" --quick" if quick else "")
            + (f" --ooc-scale {scale}" if scale != default_scale else "")
            + (f" --ooc-budget-mib {budget_mib}" if budget != default_budget else "")
            + (f" --ooc-times {times}" if times > 1 else ""),
        },
    }
    if times > 1:
        result.update(run_outofcore_big(scale, times, budget, samples / memory["seconds"], ooc_dir))
    return result


FEAST_RUNNER = r"""
import json, sys, time
from datetime import timedelta
import pandas as pd
import pyarrow.parquet as pq
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.types import Float32

repo = sys.argv[1]
features = [c for c in pq.read_schema(f"{repo}/history.parquet").names if c.startswith("f")]
entity = Entity(name="entity", join_keys=["entity_id"], value_type=ValueType.INT64)
source = FileSource(path=f"{repo}/history.parquet", timestamp_field="event_time",
                    created_timestamp_column="_ingestion_time")
view = FeatureView(name="fg", entities=[entity], ttl=timedelta(0), source=source,
                   schema=[Field(name=f, dtype=Float32) for f in features])
store = FeatureStore(repo_path=repo)
store.apply([entity, view])
samples = pd.read_parquet(f"{repo}/samples.parquet")
t0 = time.perf_counter()
out = store.get_historical_features(entity_df=samples,
                                    features=[f"fg:{f}" for f in features]).to_df()
seconds = time.perf_counter() - t0
print(json.dumps({"rows": len(samples), "output_rows": len(out), "seconds": seconds,
                  "matched": int(out[f"{features[0]}"].notna().sum())}), flush=True)
"""

FEAST_YAML = """project: atlas_bench
registry: {repo}/registry.db
provider: local
online_store:
  type: sqlite
  path: {repo}/online.db
offline_store:
  type: file
entity_key_serialization_version: 3
"""


def _ensure_feast() -> tuple[Path | None, str]:
    python = FEAST_VENV / "bin" / "python"
    check = [str(python), "-c", "import feast"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python, "reused"
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(FEAST_VENV)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "feast"],
            check=True,
            capture_output=True,
            timeout=1200,
        )
        subprocess.run(check, check=True, capture_output=True, timeout=120)
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        return None, f"feast install failed: {exc} {detail.decode(errors='replace')[-400:]}"
    return python, "installed"


def run_feast(slice_dir: str, timeout_s: float) -> tuple[dict | None, str]:
    python, how = _ensure_feast()
    if python is None:
        return None, how
    Path(slice_dir, "feature_store.yaml").write_text(FEAST_YAML.format(repo=slice_dir))
    runner = Path(slice_dir, "run_feast.py")
    runner.write_text(FEAST_RUNNER)
    try:
        proc = subprocess.run(
            [str(python), str(runner), slice_dir],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=slice_dir,
        )
    except subprocess.TimeoutExpired:
        return None, f"feast get_historical_features exceeded {timeout_s:.0f} s"
    if proc.returncode != 0:
        return None, f"feast run failed: {proc.stderr[-800:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1]), how


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1/20 scale")
    parser.add_argument("--no-feast", action="store_true")
    parser.add_argument("--feast-timeout", type=float, default=1800)
    parser.add_argument("--dask", action="store_true", help="only the Dask section")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask section")
    parser.add_argument("--outofcore", action="store_true", help="only the out-of-core section")
    parser.add_argument("--ooc-scale", type=int, default=0, help="out-of-core: 1/N scale")
    parser.add_argument("--ooc-budget-mib", type=int, default=0, help="out-of-core budget")
    parser.add_argument(
        "--ooc-times",
        type=int,
        default=1,
        help="out-of-core: also join K x the data (streamed), out of core only",
    )
    parser.add_argument("--ooc-dir", default=None, help="out-of-core: temp dir's parent")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--ooc-gen", help=argparse.SUPPRESS)
    parser.add_argument("--ooc-child", help=argparse.SUPPRESS)
    parser.add_argument("--ooc-gen-stream", help=argparse.SUPPRESS)
    parser.add_argument("--ooc-check", help=argparse.SUPPRESS)
    parser.add_argument("--times", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--dask-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.scale, args.child)
        return
    if args.dask_child:
        dask_child(args.scale)
        return
    if args.ooc_gen:
        outofcore_gen(args.ooc_gen, args.scale)
        return
    if args.ooc_child:
        outofcore_child(args.ooc_child, args.budget)
        return
    if args.ooc_gen_stream:
        outofcore_gen_stream(args.ooc_gen_stream, args.scale, args.times)
        return
    if args.ooc_check:
        outofcore_check(args.ooc_check, args.scale, args.times, args.budget)
        return
    if args.outofcore:
        name = "data_pit_quick" if args.quick else "data_pit"
        latest = Path(__file__).parent / "results" / f"{name}.json"
        result = json.loads(latest.read_text()) if latest.exists() else {}
        result.setdefault("previous_run", result.pop("run", None))
        result.update(
            run_outofcore_section(
                args.quick, args.ooc_scale, args.ooc_budget_mib, args.ooc_times, args.ooc_dir
            )
        )
        print(f"wrote {write_results('data_pit', result, quick=args.quick)}")
        return
    if args.dask:
        latest = Path(__file__).parent / "results" / "data_pit.json"
        result = json.loads(latest.read_text()) if latest.exists() else {}
        result.setdefault("previous_run", result.pop("run", None))
        result.update(run_dask_section())
        print(f"wrote {write_results('data_pit', result)}")
        return
    scale = SLICE if args.quick else 1
    with tempfile.TemporaryDirectory(prefix="atlas-bench-pit-") as slice_dir:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", slice_dir, "--scale", str(scale)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            sys.exit(f"our join failed:\n{proc.stderr}")
        ours = json.loads(proc.stdout.strip().splitlines()[-1])
        feast, feast_note = (
            (None, "skipped (--no-feast)")
            if args.no_feast
            else run_feast(slice_dir, args.feast_timeout)
        )
    rows_per_s = ours["samples"] / ours["join_s"]
    slice_rps = ours["slice_samples"] / ours["slice_join_s"]
    feast_rps = feast["rows"] / feast["seconds"] if feast else None
    ratio = rows_per_s / feast_rps if feast_rps else None
    print(
        f"history {ours['history_rows']:,} rows x {FULL['features']} float32 features; "
        f"{ours['samples']:,} samples; {os.cpu_count()} cores"
    )
    print(f"{'side':<28}{'samples':>12}{'seconds':>10}{'rows/s':>14}{'peak RSS GB':>13}")
    print(
        f"{'atlas as-of (timed)':<28}{ours['samples']:>12,}{ours['join_s']:>10.2f}"
        f"{rows_per_s:>14,.0f}{ours['peak_rss_gb']:>13.2f}"
    )
    print(
        f"{'atlas as-known-at':<28}{ours['samples']:>12,}{ours['join_known_at_s']:>10.2f}"
        f"{ours['samples'] / ours['join_known_at_s']:>14,.0f}{'':>13}"
    )
    print(
        f"{'atlas on the 1/20 slice':<28}{ours['slice_samples']:>12,}"
        f"{ours['slice_join_s']:>10.2f}{slice_rps:>14,.0f}{'':>13}"
    )
    if feast:
        print(
            f"{'feast on the 1/20 slice':<28}{feast['rows']:>12,}{feast['seconds']:>10.2f}"
            f"{feast_rps:>14,.0f}{'':>13}"
        )
        same = feast["matched"] == ours["slice_matched"]
        print(
            f"matched rows on the slice: atlas {ours['slice_matched']:,}, feast "
            f"{feast['matched']:,} ({'same' if same else 'DIFFERENT'})"
        )
        print(
            f"ratio atlas/feast rows/s: {ratio:.1f}x (target >= 20x); "
            f"same-slice ratio {slice_rps / feast_rps:.1f}x"
        )
    else:
        print(f"feast: not measured — {feast_note}")
    print(
        f"data generation peak RSS {ours['gen_peak_rss_gb']:.2f} GB "
        f"(peak during join only: {ours['peak_is_join_only']})"
    )
    result = {
        "join_s": round(ours["join_s"], 3),
        "peak_rss_gb": round(ours["peak_rss_gb"], 3),
        "rows_per_s": round(rows_per_s, 1),
        "feast_rows_per_s": None if feast_rps is None else round(feast_rps, 1),
        "ratio_vs_feast": None if ratio is None else round(ratio, 2),
        "feast_note": feast_note,
        "scale": "quick (1/20)" if args.quick else "full",
        "command": "python bench/data_pit.py" + (" --quick" if args.quick else ""),
        "detail": {**ours, "feast": feast, "slice_rows_per_s": slice_rps},
    }
    if not args.no_dask:
        result.update(run_dask_section())
    print(f"wrote {write_results('data_pit', result, quick=args.quick)}")


if __name__ == "__main__":
    main()
