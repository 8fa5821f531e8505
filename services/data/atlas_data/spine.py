"""Spine-free matching: build a sample set ("spine") from a feature group's own history over
a time window, to be point-in-time joined like any other sample set."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa

from atlas_core.errors import InvalidArgument, NotFound
from atlas_data.matching import (
    _US_PER_S,
    _require_columns,
    point_in_time_join,
    timestamps_to_micros,
)

__all__ = ["MAX_SPINE_SAMPLES", "SpineSampling", "spine_from_history"]

SpineSampling = Literal["every_record", "latest_per_entity", "fixed_interval"]
MAX_SPINE_SAMPLES = 100_000_000  # fixed_interval guard against a huge window x short interval


def spine_from_history(
    history: pa.Table,
    *,
    entity_column: str,
    event_time_column: str,
    start_us: int,
    end_us: int,
    sampling: SpineSampling,
    interval_s: float | None = None,
    label_feature: str | None = None,
    max_samples: int = 0,
    seed: int = 0,
    ingestion_time_column: str = "_ingestion_time",
) -> pa.Table:
    """Build a sample set ("spine") from a feature group's own history over [start, end).

    Entities are those with at least one record whose event time is in the window.

    * ``every_record``: one sample per record in the window, at its event time; the label is
      that record's ``label_feature`` value.
    * ``latest_per_entity``: one sample per entity at the end of the window (``end_us - 1``,
      since the window is end-exclusive); the label is the as-of value at that time.
    * ``fixed_interval``: samples at ``start + k * interval`` (< end) for each entity, from
      its first record in the window onwards; the label is the as-of value.

    Returns a table with columns ``entity_column``, ``event_time_column`` (timestamp[us,
    UTC]) and, when ``label_feature`` is set, ``label_feature``; sorted by (entity, time).
    ``max_samples`` > 0 keeps a uniform random subset of that size (seeded), order kept.

    Raises:
        InvalidArgument: bad window, sampling or interval, or missing columns.
        NotFound: ``label_feature`` is not in the history.
    """
    _require_columns(history, [entity_column, event_time_column], "feature history")
    if label_feature and label_feature not in history.column_names:
        raise NotFound(
            f"label feature '{label_feature}' is not in the feature group history",
            reason="FEATURE_NOT_FOUND",
            metadata={"feature": label_feature},
        )
    if end_us <= start_us:
        raise InvalidArgument(
            f"spine window is empty: end ({end_us}) must be after start ({start_us})",
            reason="BAD_WINDOW",
        )
    if max_samples < 0:
        raise InvalidArgument(f"max_samples must be >= 0, got {max_samples}")
    event, nulls = timestamps_to_micros(
        history.column(event_time_column),
        what="history event-time column",
        name=event_time_column,
        allow_nulls=True,
    )
    in_window = (event >= start_us) & (event < end_us)
    if nulls is not None:
        in_window &= ~nulls
    window = history.filter(pa.array(in_window))
    window_event = event[in_window]

    if sampling == "every_record":
        spine = pa.table(
            {
                entity_column: window.column(entity_column),
                event_time_column: _utc(window_event),
            }
        )
        if label_feature:
            spine = spine.append_column(label_feature, window.column(label_feature))
    elif sampling in ("latest_per_entity", "fixed_interval"):
        spine = _entity_time_grid(
            window,
            window_event,
            entity_column,
            event_time_column,
            start_us,
            end_us,
            sampling,
            interval_s,
        )
        if label_feature:
            joined = point_in_time_join(
                spine,
                entity_column=entity_column,
                timestamp_column=event_time_column,
                history=history,
                history_entity_column=entity_column,
                event_time_column=event_time_column,
                features=[label_feature],
                ttl_seconds=None,
                as_known_at=False,
                ingestion_time_column=ingestion_time_column,
            )
            spine = joined.table
    else:
        raise InvalidArgument(
            f"unknown spine sampling '{sampling}'; expected every_record, latest_per_entity "
            "or fixed_interval",
            reason="BAD_SAMPLING",
        )
    spine = spine.sort_by([(entity_column, "ascending"), (event_time_column, "ascending")])
    if max_samples and spine.num_rows > max_samples:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(spine.num_rows, size=max_samples, replace=False))
        spine = spine.take(pa.array(keep))
    return spine


def _utc(micros: np.ndarray) -> pa.Array:
    return pa.array(micros, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _entity_time_grid(
    window: pa.Table,
    window_event: np.ndarray,
    entity_column: str,
    event_time_column: str,
    start_us: int,
    end_us: int,
    sampling: str,
    interval_s: float | None,
) -> pa.Table:
    """(entity, time) pairs for latest_per_entity / fixed_interval sampling."""
    keys = window.column(entity_column).combine_chunks().dictionary_encode()
    codes = keys.indices.to_numpy(zero_copy_only=False)
    valid = ~keys.indices.is_null().to_numpy(zero_copy_only=False)
    n_entities = len(keys.dictionary)
    first_seen = np.full(n_entities, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_seen, codes[valid].astype(np.int64), window_event[valid])
    entity_ids = np.arange(n_entities)
    if sampling == "latest_per_entity":
        times = np.full(n_entities, end_us - 1, dtype=np.int64)
        owners = entity_ids
    else:
        if not interval_s or interval_s <= 0:
            raise InvalidArgument(
                "fixed_interval sampling needs an interval > 0", reason="BAD_INTERVAL"
            )
        step = max(1, int(round(interval_s * _US_PER_S)))
        n_points = -(-(end_us - start_us) // step)  # grid: start + k * step < end
        # Per entity, grid points from its first record in the window onwards.
        first_index = -(-(first_seen - start_us) // step)
        counts = np.maximum(n_points - first_index, 0)
        total = int(counts.sum())
        if total > MAX_SPINE_SAMPLES:
            raise InvalidArgument(
                f"fixed_interval sampling would make {total:,} samples (limit "
                f"{MAX_SPINE_SAMPLES:,}); narrow the window or widen the interval",
                reason="SPINE_TOO_LARGE",
            )
        owners = np.repeat(entity_ids, counts)
        offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        times = start_us + (np.repeat(first_index, counts) + offsets) * step
    return pa.table(
        {
            entity_column: keys.dictionary.take(pa.array(owners, type=pa.int64())),
            event_time_column: _utc(times),
        }
    )
