"""Point-in-time matching on a Dask cluster, shard by shard.

The samples and one feature group's history are split into shards by a hash of the entity
key (cast to one comparable type first, as the join does), so a shard holds every record of
its entities. Each Dask task joins one shard with :func:`point_in_time_join`; the shards'
feature columns are then put back in sample order. A sample's match depends only on its own
entity's history, so the result equals the single-process join row for row: same rows, order,
values and types, as-of and as-known-at.

The calling process validates everything the single-process join validates (columns,
features, collisions, TTL, sample times, key types) before any task runs, so bad input fails
the same way, with row numbers of the whole sample set.

Faults: Dask reschedules the shards of a worker that dies, up to the scheduler's
``distributed.scheduler.allowed-failures`` times; past that the join raises ``Unavailable``
naming the shard, and nothing is returned (the caller publishes nothing). ``should_stop`` is
polled while shards run (cancel); on any exit before the end the remaining shards are
cancelled on the cluster.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from atlas_core.errors import AtlasError, Unavailable
from atlas_data.matching import (
    JoinColumns,
    JoinResult,
    comparable_keys,
    point_in_time_join,
    timestamps_to_micros,
)

if TYPE_CHECKING:
    from distributed import Client, Future

_POLL_SECONDS = 0.25


def shard_ids(keys: pa.Array, shards: int) -> np.ndarray:
    """Shard of each key: a stable hash of its value mod ``shards`` (nulls: shard 0, they
    never match). Equal values of the same type always land in the same shard."""
    if keys.null_count:
        keys = keys.fill_null(0 if pa.types.is_integer(keys.type) else "")
    if pa.types.is_integer(keys.type):
        values = keys.cast(pa.int64()).to_numpy(zero_copy_only=False)
    else:  # strings, or whatever the history's key type is: hash the text
        values = keys.cast(pa.large_string()).to_numpy(zero_copy_only=False)
    return (pd.util.hash_array(values) % np.uint64(shards)).astype(np.int64)


def _join_shard(
    samples: pa.Table, history: pa.Table, join: dict[str, Any]
) -> tuple[pa.Table, np.ndarray]:
    """One shard on a worker: the joined feature columns and the match mask."""
    result = point_in_time_join(samples, history=history, **join)
    return result.table.drop_columns(samples.column_names), result.matched


def dask_point_in_time_join(
    client: Client,
    samples: pa.Table,
    *,
    history: pa.Table,
    columns: JoinColumns,
    shards: int,
    label: str = "",
    on_progress: Callable[[int, int], None] = lambda done, total: None,
    should_stop: Callable[[], None] = lambda: None,
) -> JoinResult:
    """:func:`point_in_time_join` split into ``shards`` Dask tasks (see the module docstring).

    ``label`` names the feature group in messages; ``on_progress(done, total)`` is called as
    shards finish; ``should_stop()`` raises to abandon the join.

    Raises:
        InvalidArgument, NotFound: as :func:`point_in_time_join`.
        Unavailable: a shard failed on the cluster (its worker kept dying); names the shard.
    """
    join = columns.kwargs()
    entity_column, timestamp_column = columns.entity_column, columns.timestamp_column
    # The checks that need no rows, on empty slices: the same errors as the whole join.
    empty = point_in_time_join(samples.slice(0, 0), history=history.slice(0, 0), **join)
    if samples.num_rows == 0:
        return empty
    s_time, _ = timestamps_to_micros(
        samples.column(timestamp_column), what="sample timestamp column", name=timestamp_column
    )
    s_keys, h_keys = comparable_keys(
        samples.column(entity_column),
        history.column(columns.history_entity_column),
        sample_name=entity_column,
    )
    # Shards get the key and the time as int64 microseconds (already parsed and checked).
    spine = pa.table({entity_column: samples.column(entity_column), timestamp_column: s_time})
    s_shard, h_shard = shard_ids(s_keys, shards), shard_ids(h_keys, shards)
    rows_of = [np.flatnonzero(s_shard == s) for s in range(shards)]
    todo = [s for s in range(shards) if len(rows_of[s])]
    job = uuid.uuid4().hex[:12]
    futures: dict[Future, int] = {}
    for s in todo:
        shard_history = history.take(np.flatnonzero(h_shard == s))
        # Passed in the task itself (not scattered): the scheduler keeps it, so a shard whose
        # worker died can be rerun elsewhere.
        future = client.submit(
            _join_shard,
            spine.take(rows_of[s]),
            shard_history,
            join,
            key=f"atlas-match-{job}-{s}",
            pure=False,
        )
        futures[future] = s
    results = _gather(client, futures, label, shards, on_progress, should_stop)

    order = np.concatenate([rows_of[s] for s in todo])
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    joined = pa.concat_tables([results[s][0] for s in todo]).take(inverse)
    matched = np.concatenate([results[s][1] for s in todo])[inverse]
    table = pa.Table.from_arrays(
        list(samples.columns) + list(joined.columns),
        names=samples.column_names + joined.column_names,
    )
    matched_count = int(matched.sum())
    return JoinResult(table, matched_count, len(matched) - matched_count, matched)


def _gather(
    client: Client,
    futures: dict[Future, int],
    label: str,
    shards: int,
    on_progress: Callable[[int, int], None],
    should_stop: Callable[[], None],
) -> dict[int, tuple[pa.Table, np.ndarray]]:
    from distributed.scheduler import KilledWorker

    results: dict[int, tuple[pa.Table, np.ndarray]] = {}
    pending = set(futures)
    finished = threading.Event()  # set from the client's event loop as shards end
    for future in futures:
        future.add_done_callback(lambda _: finished.set())
    complete = False
    try:
        while pending:
            should_stop()
            finished.wait(_POLL_SECONDS)
            finished.clear()
            done = {f for f in pending if f.done()}
            pending -= done
            for future in done:
                shard = futures[future]
                what = f"shard {shard}/{shards}{f' of {label}' if label else ''}"
                if future.status == "finished":
                    results[shard] = future.result()
                    continue
                exc = future.exception() if future.status == "error" else None
                if isinstance(exc, AtlasError):
                    raise exc
                if isinstance(exc, KilledWorker) or exc is None:
                    raise Unavailable(
                        f"matching {what} failed: its Dask worker died (or it was cancelled on "
                        f"the cluster) too often ({exc or future.status}); nothing was "
                        "published -- retry the job",
                        reason="MATCH_SHARD_LOST",
                        metadata={"shard": str(shard)},
                    ) from exc
                raise Unavailable(
                    f"matching {what} failed on the Dask cluster: {type(exc).__name__}: {exc}",
                    reason="MATCH_SHARD_LOST",
                    metadata={"shard": str(shard)},
                ) from exc
            if done:
                on_progress(len(results), len(futures))
        complete = True
    finally:
        if not complete:  # stop the running shards and drop the finished ones' results
            client.cancel(list(futures))
    return results
