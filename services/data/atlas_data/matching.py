"""Point-in-time sample matching: join feature history to labelled samples without leakage.

For each sample (entity, sample time) the join picks, from one feature group's offline
history, the latest record of that entity whose event time is <= the sample time (and, with a
TTL, no older than ``ttl_seconds``). In *as-known-at* mode a record is eligible only if it had
also been ingested by the sample time; the winner is the latest eligible record, which is not
necessarily the as-of winner (a late-arriving newer record makes an older one win).

Ordering among eligible records: latest event time, then latest ingestion time; if both are
equal, the record that comes later in the history table wins (last write wins). History rows
with a null key or event time never match; in as-known-at mode neither do rows with a null
ingestion time (in as-of mode a null ingestion time ranks lowest among ties).

The work is vectorised in numpy: entity keys are factorised to dense ints, times are
compressed to dense ranks so (entity, time) fits one int64 sort key, history is sorted once
and samples are located with one ``searchsorted``; the feature columns are gathered with a
single ``take`` per column. As-known-at uses a sweep: history sorted by the time a record
became usable, ``max(event_time, ingestion_time)``, with a running maximum of each record's
as-of rank, so "the best record usable by time t" is one lookup.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from atlas_core.errors import InvalidArgument, NotFound

__all__ = [
    "JoinColumns",
    "JoinResult",
    "comparable_keys",
    "point_in_time_join",
    "timestamps_to_micros",
]

_INT64_MIN = np.iinfo(np.int64).min
_US_PER_S = 1_000_000


@dataclass(frozen=True)
class JoinColumns:
    """What a point-in-time join matches on, shared by the in-memory, out-of-core and Dask
    joins (the arguments of :func:`point_in_time_join` other than the two tables)."""

    entity_column: str
    timestamp_column: str
    history_entity_column: str
    event_time_column: str
    features: Sequence[str] = field(default=())
    ttl_seconds: float | None = None
    as_known_at: bool = False
    column_prefix: str = ""

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`point_in_time_join` (picklable, for Dask tasks)."""
        return {
            "entity_column": self.entity_column,
            "timestamp_column": self.timestamp_column,
            "history_entity_column": self.history_entity_column,
            "event_time_column": self.event_time_column,
            "features": list(self.features),
            "ttl_seconds": self.ttl_seconds,
            "as_known_at": self.as_known_at,
            "column_prefix": self.column_prefix,
        }


@dataclass(frozen=True)
class JoinResult:
    """Output of :func:`point_in_time_join`.

    ``table`` holds every sample row (original columns, original order) followed by the joined
    feature columns; unmatched rows carry nulls. ``matched`` is a boolean mask over the rows
    so a caller joining several groups can drop rows unmatched in all of them.
    """

    table: pa.Table
    matched_count: int
    unmatched_count: int
    matched: np.ndarray


# ---------------------------------------------------------------- input normalisation


def timestamps_to_micros(
    column: pa.ChunkedArray | pa.Array, *, what: str, name: str, allow_nulls: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Convert a time column to int64 Unix microseconds (UTC).

    Accepts timestamps of any unit (naive = UTC), dates, integers (Unix microseconds) and
    ISO-8601 strings. Returns ``(micros, null_mask)``; ``null_mask`` is None without nulls.

    Raises:
        InvalidArgument: the type is unsupported, a string does not parse (naming the first
            bad row and value), or the column has nulls and ``allow_nulls`` is False.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    typ = column.type
    label = f"{what} '{name}'"
    if column.null_count and not allow_nulls:
        raise InvalidArgument(
            f"{label} has {column.null_count} null value(s); every row needs a time",
            reason="NULL_TIMESTAMP",
            metadata={"column": name, "nulls": str(column.null_count)},
        )
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        unit_cast = pa.timestamp("us", tz=getattr(typ, "tz", None))
        micros = pc.cast(column, unit_cast, safe=False).cast(pa.int64())
    elif pa.types.is_integer(typ):
        micros = column.cast(pa.int64())
    elif pa.types.is_string(typ) or pa.types.is_large_string(typ):
        micros = _parse_time_strings(column, label=label, name=name)
    else:
        raise InvalidArgument(
            f"{label} has type {typ}; expected a timestamp, int64 Unix microseconds or "
            "ISO-8601 strings",
            reason="BAD_TIMESTAMP_TYPE",
            metadata={"column": name, "type": str(typ)},
        )
    nulls = None
    if micros.null_count:
        nulls = micros.is_null().to_numpy(zero_copy_only=False)
        micros = micros.fill_null(0)
    return micros.to_numpy(zero_copy_only=False).astype(np.int64, copy=False), nulls


def _parse_time_strings(column: pa.Array, *, label: str, name: str) -> pa.Array:
    series = column.to_pandas()
    try:
        parsed = pd.to_datetime(series, utc=True, format="ISO8601", errors="coerce")
    except (ValueError, TypeError, OverflowError):  # pragma: no cover - coerce rarely raises
        parsed = pd.Series(pd.NaT, index=series.index)
    bad = parsed.isna().to_numpy() & series.notna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InvalidArgument(
            f"{label} is not parseable: row {row} {series.iloc[row]!r}",
            reason="UNPARSEABLE_TIMESTAMP",
            metadata={"column": name, "row": str(row)},
        )
    micros = parsed.to_numpy(dtype="datetime64[us]", na_value=np.datetime64("NaT"))
    return pa.array(micros.astype(np.int64), mask=parsed.isna().to_numpy())


def _require_columns(table: pa.Table, columns: Sequence[str], what: str) -> None:
    for column in columns:
        if column not in table.column_names:
            raise InvalidArgument(
                f"{what} has no column '{column}' (columns: {', '.join(table.column_names)})",
                reason="MISSING_COLUMN",
                metadata={"column": column},
            )


def comparable_keys(
    samples_keys: pa.ChunkedArray, history_keys: pa.ChunkedArray, *, sample_name: str
) -> tuple[pa.Array, pa.Array]:
    """(sample keys, history keys) cast to one type, so equal keys compare (and hash) equal:
    integers to int64, strings to large_string, otherwise the samples to the history's type.

    Raises:
        InvalidArgument: the sample keys do not convert to the history's key type.
    """
    history_arr = history_keys.combine_chunks()
    sample_arr = samples_keys.combine_chunks()
    h_type, s_type = history_arr.type, sample_arr.type
    if pa.types.is_integer(h_type) and pa.types.is_integer(s_type):
        history_arr, sample_arr = history_arr.cast(pa.int64()), sample_arr.cast(pa.int64())
    elif _is_stringy(h_type) and _is_stringy(s_type):
        history_arr, sample_arr = (
            history_arr.cast(pa.large_string()),
            sample_arr.cast(pa.large_string()),
        )
    elif h_type != s_type:
        try:
            sample_arr = sample_arr.cast(h_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InvalidArgument(
                f"sample entity column '{sample_name}' has type {s_type}, which does not "
                f"convert to the feature group's key type {h_type}",
                reason="ENTITY_TYPE_MISMATCH",
                metadata={"column": sample_name},
            ) from exc
    return sample_arr, history_arr


def _entity_codes(
    samples_keys: pa.ChunkedArray, history_keys: pa.ChunkedArray, *, sample_name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Dense int codes for history keys and the matching codes for sample keys (-1: none)."""
    sample_arr, history_arr = comparable_keys(samples_keys, history_keys, sample_name=sample_name)
    encoded = history_arr.dictionary_encode()
    h_codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    s_codes = pc.index_in(sample_arr, value_set=encoded.dictionary)
    s_codes_np = s_codes.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return h_codes, s_codes_np


def _is_stringy(typ: pa.DataType) -> bool:
    return pa.types.is_string(typ) or pa.types.is_large_string(typ)


# ---------------------------------------------------------------- the search


def _time_keys(
    h_ent: np.ndarray, h_time: np.ndarray, s_ent: np.ndarray, s_time: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One int64 key per row ordering by (entity, time), for history and samples alike.

    ``entity * span + (time - t0)`` when it fits in 62 bits (no sort needed); otherwise
    times are first compressed to dense ranks (equal times, equal ranks).
    """
    t0 = min(int(h_time.min()), int(s_time.min()))
    span = max(int(h_time.max()), int(s_time.max())) - t0 + 1
    n_ent = int(max(h_ent.max(), s_ent.max())) + 1
    if n_ent * span < 2**62:
        return h_ent * span + (h_time - t0), s_ent * span + (s_time - t0)
    _, inverse = np.unique(np.concatenate([h_time, s_time]), return_inverse=True)
    inverse = inverse.astype(np.int64, copy=False)
    n_ranks = int(inverse.max(initial=0)) + 1
    m = len(h_time)
    return h_ent * n_ranks + inverse[:m], s_ent * n_ranks + inverse[m:]


def _sorted_with_ties(h_key: np.ndarray, h_ingest: np.ndarray) -> np.ndarray:
    """Order of ``h_key``; equal keys ordered by ingestion time, then row (later last).

    One unstable argsort, then only the runs of equal keys (rare) are re-sorted.
    """
    order = np.argsort(h_key)
    sorted_keys = h_key[order]
    tie = sorted_keys[1:] == sorted_keys[:-1]
    if tie.any():
        members = np.zeros(len(order), dtype=bool)
        members[1:] |= tie
        members[:-1] |= tie
        positions = np.flatnonzero(members)
        rows = order[positions]
        # Runs are contiguous, so sorting the members by (key, ingestion, row) keeps each
        # run on its own positions.
        order[positions] = rows[np.lexsort((rows, h_ingest[rows], h_key[rows]))]
    return order


def _last_at_or_before(history_keys_sorted: np.ndarray, sample_keys: np.ndarray) -> np.ndarray:
    """Index of the last sorted history key <= each sample key (-1 when none)."""
    query_order = np.argsort(sample_keys, kind="stable")
    found = np.searchsorted(history_keys_sorted, sample_keys[query_order], side="right") - 1
    result = np.empty_like(found)
    result[query_order] = found
    return result


def _match_indices(
    h_ent: np.ndarray,
    h_event: np.ndarray,
    h_ingest: np.ndarray,
    s_ent: np.ndarray,
    s_time: np.ndarray,
    *,
    ttl_us: int | None,
    as_known_at: bool,
) -> np.ndarray:
    """For each sample, the index into the history arrays of its record, or -1.

    The history arrays hold eligible rows only (no null keys or times); ``h_ingest`` breaks
    ties and, in as-known-at mode, also limits eligibility.
    """
    result = np.full(len(s_ent), -1, dtype=np.int64)
    if len(h_ent) == 0 or len(s_ent) == 0:
        return result
    if not as_known_at:
        h_key, s_key = _time_keys(h_ent, h_event, s_ent, s_time)
        order = _sorted_with_ties(h_key, h_ingest)
        pos = _last_at_or_before(h_key[order], s_key)
        chosen = order[np.maximum(pos, 0)]
    else:
        # As-of rank of every record: its position in (entity, event, ingestion) order.
        h_key, _ = _time_keys(h_ent, h_event, s_ent[:1], s_time[:1])
        asof_order = _sorted_with_ties(h_key, h_ingest)
        asof_rank = np.empty(len(asof_order), dtype=np.int64)
        asof_rank[asof_order] = np.arange(len(asof_order), dtype=np.int64)
        # A record is usable from max(event, ingestion); sweep history in that order.
        h_key, s_key = _time_keys(h_ent, np.maximum(h_event, h_ingest), s_ent, s_time)
        order = np.argsort(h_key)
        pos = _last_at_or_before(h_key[order], s_key)
        del h_key, s_key
        # Ranks are entity-major, so the running max at a position of entity e is a record of
        # e whenever e has a usable record there; otherwise the entity check below rejects it.
        best_rank = np.maximum.accumulate(asof_rank[order])
        del asof_rank
        chosen = asof_order[best_rank[np.maximum(pos, 0)]]
    valid = (pos >= 0) & (h_ent[chosen] == s_ent)
    if ttl_us is not None:
        valid &= s_time - h_event[chosen] <= ttl_us
    result[valid] = chosen[valid]
    return result


# ---------------------------------------------------------------- public API


def point_in_time_join(
    samples: pa.Table,
    *,
    entity_column: str,
    timestamp_column: str,
    history: pa.Table,
    history_entity_column: str,
    event_time_column: str,
    features: Sequence[str],
    ttl_seconds: float | None,
    as_known_at: bool,
    column_prefix: str = "",
    ingestion_time_column: str = "_ingestion_time",
) -> JoinResult:
    """Join each sample to the feature record valid at its timestamp (see module docstring).

    Args:
        samples: the spine; ``timestamp_column`` may be a timestamp, int64 Unix microseconds
            or ISO-8601 strings (naive times are UTC).
        history: one feature group's offline history.
        features: feature columns to join; empty means every history column except the key,
            event-time and ingestion-time columns.
        ttl_seconds: records older than this relative to the sample time do not match.
        as_known_at: also require ingestion time <= sample time.
        column_prefix: prepended to each output feature column name.

    Returns:
        :class:`JoinResult`: all sample columns in order, then the feature columns.

    Raises:
        InvalidArgument: a sample or history key/time column is missing, the sample time
            column is unparseable or has nulls, key types are incompatible, or an output
            feature name collides with a sample column.
        NotFound: a requested feature is not in the history.
    """
    _require_columns(samples, [entity_column, timestamp_column], "sample set")
    history_keys = [history_entity_column, event_time_column]
    if as_known_at:
        history_keys.append(ingestion_time_column)
    _require_columns(history, history_keys, "feature history")
    feature_names = _resolve_features(
        history, features, exclude={history_entity_column, event_time_column, ingestion_time_column}
    )
    out_names = [column_prefix + name for name in feature_names]
    for out_name in out_names:
        if out_name in samples.column_names:
            raise InvalidArgument(
                f"joined feature column '{out_name}' collides with a sample column; "
                "set a column prefix",
                reason="COLUMN_COLLISION",
                metadata={"column": out_name},
            )
    if ttl_seconds is not None and ttl_seconds < 0:
        raise InvalidArgument(f"ttl must be >= 0 seconds, got {ttl_seconds}", reason="BAD_TTL")

    s_time, _ = timestamps_to_micros(
        samples.column(timestamp_column), what="sample timestamp column", name=timestamp_column
    )
    rows = matched_history_rows(
        samples,
        entity_column=entity_column,
        s_time=s_time,
        history=history,
        history_entity_column=history_entity_column,
        event_time_column=event_time_column,
        ingestion_time_column=ingestion_time_column,
        ttl_seconds=ttl_seconds,
        as_known_at=as_known_at,
    )
    matched = rows >= 0
    feature_columns = _gather(history, feature_names, rows, matched)
    table = pa.Table.from_arrays(
        list(samples.columns) + feature_columns, names=samples.column_names + out_names
    )
    matched_count = int(matched.sum())
    return JoinResult(table, matched_count, len(rows) - matched_count, matched)


def _resolve_features(
    history: pa.Table, features: Sequence[str], *, exclude: set[str]
) -> list[str]:
    if not features:
        return [name for name in history.column_names if name not in exclude]
    names = list(features)
    for name in names:
        if name not in history.column_names or name in exclude:
            raise NotFound(
                f"feature '{name}' is not in the feature group history",
                reason="FEATURE_NOT_FOUND",
                metadata={"feature": name},
            )
    if len(set(names)) != len(names):
        raise InvalidArgument("features list the same feature twice", reason="DUPLICATE_FEATURE")
    return names


def matched_history_rows(
    samples: pa.Table,
    *,
    entity_column: str,
    s_time: np.ndarray,
    history: pa.Table,
    history_entity_column: str,
    event_time_column: str,
    ingestion_time_column: str,
    ttl_seconds: float | None,
    as_known_at: bool,
) -> np.ndarray:
    """History row index matched by each sample (-1 when none)."""
    h_ent, s_ent = _entity_codes(
        samples.column(entity_column),
        history.column(history_entity_column),
        sample_name=entity_column,
    )
    h_event, event_nulls = timestamps_to_micros(
        history.column(event_time_column),
        what="history event-time column",
        name=event_time_column,
        allow_nulls=True,
    )
    eligible = h_ent >= 0
    if event_nulls is not None:
        eligible &= ~event_nulls
    if ingestion_time_column in history.column_names:
        h_ingest, ingest_nulls = timestamps_to_micros(
            history.column(ingestion_time_column),
            what="history ingestion-time column",
            name=ingestion_time_column,
            allow_nulls=True,
        )
        if ingest_nulls is not None:
            if as_known_at:
                eligible &= ~ingest_nulls
            h_ingest[ingest_nulls] = _INT64_MIN
    else:
        h_ingest = np.zeros(len(h_ent), dtype=np.int64)
    keep = None if eligible.all() else np.flatnonzero(eligible)
    if keep is not None:
        h_ent, h_event, h_ingest = h_ent[keep], h_event[keep], h_ingest[keep]

    s_rows = np.flatnonzero(s_ent >= 0)
    ttl_us = None if ttl_seconds is None else int(round(ttl_seconds * _US_PER_S))
    found = _match_indices(
        h_ent,
        h_event,
        h_ingest,
        s_ent[s_rows],
        s_time[s_rows],
        ttl_us=ttl_us,
        as_known_at=as_known_at,
    )
    rows = np.full(len(s_ent), -1, dtype=np.int64)
    hit = found >= 0
    rows[s_rows[hit]] = found[hit] if keep is None else keep[found[hit]]
    return rows


def _gather(
    history: pa.Table, feature_names: list[str], rows: np.ndarray, matched: np.ndarray
) -> list[pa.ChunkedArray]:
    """Take the matched rows of each feature column (null where unmatched), in parallel."""
    safe_rows = np.where(matched, rows, 0)
    all_matched = bool(matched.all())
    validity = None if all_matched else pa.array(matched).buffers()[1]
    masked_indices = pa.array(safe_rows, mask=None if all_matched else ~matched)

    def take(name: str) -> pa.ChunkedArray:
        column = history.column(name)
        if (
            column.num_chunks == 1
            and len(column)  # an empty history (all unmatched) has no row 0 to gather
            and _is_plain_fixed_width(column.type)
            and not column.null_count
        ):
            # numpy gather + the match mask as validity: faster than a masked take.
            values = column.chunk(0).to_numpy(zero_copy_only=False)[safe_rows]
            data = pa.py_buffer(values)
            return pa.chunked_array(
                [pa.Array.from_buffers(column.type, len(values), [validity, data])]
            )
        return column.take(masked_indices)

    if len(feature_names) <= 2:
        return [take(name) for name in feature_names]
    with ThreadPoolExecutor(max_workers=4) as pool:  # numpy and pyarrow release the GIL
        return list(pool.map(take, feature_names))


def _is_plain_fixed_width(typ: pa.DataType) -> bool:
    return pa.types.is_integer(typ) or pa.types.is_floating(typ)
