"""The streamed workload of bench/data_pit.py's ``--ooc-times K``: make_workload's schema, entity
ids, row order and distributions written block by block (peak memory one block at any K), and
the as-of record of any sample regenerated from the generator alone, for checking the output."""

from __future__ import annotations

import os
from pathlib import Path

SEED = 20240601
DAY_US = 86_400_000_000
BASE_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z

# The streaming generator (--ooc-times K > 1): entities per generated block, rows per history
# row group, samples per generated block (and samples row group).
STREAM_ENTITY_BLOCK = 50_000
STREAM_ROW_GROUP = 50_000
STREAM_SAMPLE_BLOCK = 1_000_000


def _entity_ids(index):
    """Entity ids by entity number, as make_workload numbers them."""
    return index * 7_919 + 100_003


def stream_block_times(seed: int, snapshot: int, block: int, n: int):
    """(event, ingestion) microseconds of ``n`` entities' ``snapshot`` in entity block ``block``:
    make_workload's formulas, from the block's own stream (event jitter drawn first, so the
    first-snapshot times of a block can be regenerated without its features)."""
    import numpy as np

    rng = np.random.default_rng([seed, 0, snapshot, block])
    event = BASE_US + snapshot * DAY_US + rng.integers(0, DAY_US, n)
    delay = rng.integers(0, 20 * 60_000_000, n)
    late = rng.random(n) < 0.05
    delay[late] = rng.integers(3_600_000_000, 72 * 3_600_000_000, int(late.sum()))
    return event, event + delay


def stream_block_features(seed: int, snapshot: int, block: int, n: int, features: int):
    """(features, n) float32 N(0, 1): row i is feature column i of the block."""
    import numpy as np

    rng = np.random.default_rng([seed, 1, snapshot, block])
    return rng.standard_normal((features, n), dtype=np.float32)


def stream_history(
    entities: int,
    snapshots: int,
    features: int,
    seed: int = SEED,
    entity_block: int = STREAM_ENTITY_BLOCK,
):
    """The history as pyarrow Tables of at most ``entity_block`` rows, in arrival order
    (snapshot-major, entities ascending within a snapshot, as make_workload). Block
    (snapshot k, entities [b * entity_block, ...)) comes from its own seeded streams, so a
    block's values depend on (seed, k, b, its size) only: not on how many entities follow."""
    import numpy as np
    import pyarrow as pa

    utc = pa.timestamp("us", tz="UTC")
    for k in range(snapshots):
        for b, lo in enumerate(range(0, entities, entity_block)):
            n = min(entity_block, entities - lo)
            event, ingestion = stream_block_times(seed, k, b, n)
            values = stream_block_features(seed, k, b, n, features)
            columns = {
                "entity_id": pa.array(_entity_ids(np.arange(lo, lo + n, dtype=np.int64))),
                "event_time": pa.array(event).cast(utc),
                "_ingestion_time": pa.array(ingestion).cast(utc),
            }
            for i in range(features):
                columns[f"f{i:03d}"] = pa.array(values[i])
            yield pa.table(columns)
            del values, columns


def stream_samples(
    entities: int,
    snapshots: int,
    samples: int,
    seed: int = SEED,
    sample_block: int = STREAM_SAMPLE_BLOCK,
):
    """The samples as pyarrow Tables of at most ``sample_block`` rows: make_workload's
    distribution (an entity uniform over all of them, 1 % unknown ids numbered -1, -2, ... in
    order, a time uniform over [day -1, day snapshots + 1), a 0/1 label), block b from its own
    stream."""
    import numpy as np
    import pyarrow as pa

    utc = pa.timestamp("us", tz="UTC")
    start, stop = BASE_US - DAY_US, BASE_US + (snapshots + 1) * DAY_US
    unknown_so_far = 0
    for b, lo in enumerate(range(0, samples, sample_block)):
        n = min(sample_block, samples - lo)
        rng = np.random.default_rng([seed, 2, b])
        s_ent = _entity_ids(rng.integers(0, entities, n))
        unknown = rng.random(n) < 0.01
        count = int(unknown.sum())
        s_ent[unknown] = -1 - unknown_so_far - np.arange(count)
        unknown_so_far += count
        yield pa.table(
            {
                "entity_id": pa.array(s_ent),
                "event_timestamp": pa.array(rng.integers(start, stop, n)).cast(utc),
                "label": pa.array(rng.integers(0, 2, n)),
            }
        )


def write_streamed_workload(
    directory: str | Path,
    entities: int,
    snapshots: int,
    features: int,
    samples: int,
    seed: int = SEED,
    entity_block: int = STREAM_ENTITY_BLOCK,
    row_group: int = STREAM_ROW_GROUP,
    sample_block: int = STREAM_SAMPLE_BLOCK,
) -> dict:
    """history.parquet (``row_group``-row row groups) and samples.parquet (one row group per
    sample block) in ``directory``, one block in memory at a time; returns the row counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    h_rows = s_rows = 0
    writer = None
    pending: list = []
    pending_rows = 0
    try:
        for block in stream_history(entities, snapshots, features, seed, entity_block):
            if writer is None:
                writer = pq.ParquetWriter(os.path.join(directory, "history.parquet"), block.schema)
            pending.append(block)
            pending_rows += block.num_rows
            h_rows += block.num_rows
            if pending_rows >= row_group:
                table = pa.concat_tables(pending)
                full = pending_rows - pending_rows % row_group
                writer.write_table(table.slice(0, full), row_group_size=row_group)
                rest = table.slice(full)
                pending, pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
                del table
        if pending and writer is not None:
            writer.write_table(pa.concat_tables(pending), row_group_size=row_group)
    finally:
        if writer is not None:
            writer.close()
    writer = None
    try:
        for block in stream_samples(entities, snapshots, samples, seed, sample_block):
            if writer is None:
                writer = pq.ParquetWriter(os.path.join(directory, "samples.parquet"), block.schema)
            writer.write_table(block, row_group_size=max(1, block.num_rows))
            s_rows += block.num_rows
    finally:
        if writer is not None:
            writer.close()
    return {"history_rows": h_rows, "samples": s_rows}


def stream_expected_first_event(entities: int, seed: int = SEED):
    """Each entity's first (snapshot 0) event time in the streamed history, by entity number."""
    import numpy as np

    parts = []
    for b, lo in enumerate(range(0, entities, STREAM_ENTITY_BLOCK)):
        n = min(STREAM_ENTITY_BLOCK, entities - lo)
        parts.append(stream_block_times(seed, 0, b, n)[0])
    return np.concatenate(parts)


def stream_as_of(
    entity: int, micros: int, entities: int, snapshots: int, features: int, seed: int = SEED
):
    """The streamed history's as-of record for one sample, from the generator alone: the
    features (float32 array) of the entity's latest snapshot with event time <= ``micros``,
    or None (unknown entity, or no snapshot yet)."""
    if entity < 0:
        return None
    index = (entity - 100_003) // 7_919
    block, row = divmod(index, STREAM_ENTITY_BLOCK)
    n = min(STREAM_ENTITY_BLOCK, entities - block * STREAM_ENTITY_BLOCK)
    best = None
    for k in range(snapshots):
        if stream_block_times(seed, k, block, n)[0][row] <= micros:
            best = k  # event times grow with k (snapshot k is inside day k)
    if best is None:
        return None
    return stream_block_features(seed, best, block, n, features)[:, row]
