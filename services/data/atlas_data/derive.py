"""Dataset derivations on pyarrow Tables: merge, sample, filter, split, project (the filter
expression language lives in :mod:`atlas_data.filter_expr`).

Every function is pure (table in, table(s) out) and deterministic for a given seed. Row
order: outputs keep the input's relative row order (sampling and splitting select rows,
they do not shuffle them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from atlas_core.errors import InvalidArgument
from atlas_data.filter_expr import filter_rows

__all__ = ["filter_rows", "merge", "project", "sample", "split"]

SampleMethod = Literal["random", "stratified"]


def _require(table: pa.Table, column: str, role: str) -> None:
    if column not in table.column_names:
        raise InvalidArgument(
            f"{role} column '{column}' is not in the dataset (columns: "
            f"{', '.join(table.column_names)})",
            reason="UNKNOWN_COLUMN",
            metadata={"column": column},
        )


def _largest_remainder(total: int, weights: Sequence[float]) -> np.ndarray:
    """Integer counts summing to ``total``, each within 1 of ``total * weight / sum``."""
    w = np.asarray(weights, dtype=np.float64)
    exact = total * w / w.sum() if w.sum() > 0 else np.zeros_like(w)
    counts = np.floor(exact + 1e-9).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        # Stable order: earlier entries win ties, so results are reproducible.
        order = np.argsort(-(exact - counts), kind="stable")
        counts[order[:short]] += 1
    return counts


def _class_codes(table: pa.Table, column: str) -> np.ndarray:
    """Dense code per row of ``column``; nulls form their own class."""
    arr = table.column(column).combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if _is_nested(arr.type):
        raise InvalidArgument(f"column '{column}' holds {arr.type} values; cannot group by it")
    indices = arr.dictionary_encode().indices
    return indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _is_nested(typ: pa.DataType) -> bool:
    return pa.types.is_nested(typ)


def _take_sorted(table: pa.Table, rows: np.ndarray) -> pa.Table:
    return table.take(pa.array(np.sort(rows), type=pa.int64()))


# ---------------------------------------------------------------- merge


def _unified_type(name: str, types: list[pa.DataType]) -> pa.DataType:
    """The common type of one column across inputs (promotion rules in :func:`merge`)."""
    known = [t for t in types if not pa.types.is_null(t)]
    if not known:
        return pa.null()
    decoded = [t.value_type if pa.types.is_dictionary(t) else t for t in known]
    first = decoded[0]
    if all(t == first for t in decoded):
        return first
    if all(pa.types.is_integer(t) for t in decoded):
        return pa.int64()
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in decoded):
        return pa.float64()
    if all(pa.types.is_string(t) or pa.types.is_large_string(t) for t in decoded):
        return (
            pa.large_string() if any(pa.types.is_large_string(t) for t in decoded) else pa.string()
        )
    if all(pa.types.is_timestamp(t) for t in decoded) and len({t.tz for t in decoded}) == 1:
        finest = max(decoded, key=lambda t: ["s", "ms", "us", "ns"].index(t.unit))
        return finest
    other = next(i for i, t in enumerate(types) if t != types[0] and not pa.types.is_null(t))
    raise InvalidArgument(
        f"column '{name}' has incompatible types: {types[0]} (input 0) vs {types[other]} "
        f"(input {other})",
        reason="INCOMPATIBLE_SCHEMA",
        metadata={"column": name, "type_a": str(types[0]), "type_b": str(types[other])},
    )


def merge(tables: Sequence[pa.Table], *, deduplicate: bool = False) -> pa.Table:
    """Union of at least two tables with the same column names (order may differ).

    Columns follow the first input's order. Types must match, with these promotions:
    integers of any width -> int64; integers mixed with floats, or float32 with float64 ->
    float64; string with large_string -> large_string; dictionary columns -> their value
    type; timestamps with one time zone -> the finest unit; an all-null column -> the
    others' type. ``deduplicate`` drops exact duplicate rows, keeping the first.

    Raises:
        InvalidArgument: fewer than two inputs, a column missing from an input (named with
            the input index), or incompatible types (naming the column and both types).
    """
    if len(tables) < 2:
        raise InvalidArgument(f"merge needs at least two datasets, got {len(tables)}")
    names = tables[0].column_names
    for i, table in enumerate(tables[1:], start=1):
        for name in names:
            if name not in table.column_names:
                raise InvalidArgument(
                    f"input {i} has no column '{name}' (input 0 has it)",
                    reason="INCOMPATIBLE_SCHEMA",
                    metadata={"column": name},
                )
        for name in table.column_names:
            if name not in names:
                raise InvalidArgument(
                    f"input {i} has column '{name}' that input 0 lacks",
                    reason="INCOMPATIBLE_SCHEMA",
                    metadata={"column": name},
                )
    schema = pa.schema(
        [(name, _unified_type(name, [t.schema.field(name).type for t in tables])) for name in names]
    )
    try:
        merged = pa.concat_tables([t.select(names).cast(schema) for t in tables])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidArgument(
            f"inputs do not convert to one schema: {exc}", reason="INCOMPATIBLE_SCHEMA"
        ) from exc
    if deduplicate and merged.num_rows:
        merged = merged.filter(pa.array(~_duplicated(merged)))
    return merged


def _duplicated(table: pa.Table) -> np.ndarray:
    """True for rows equal to an earlier row (vectors compared by their bytes)."""
    frame = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(column.type) and not _is_nested(column.type.value_type):
            width = column.type.list_size
            flat = column.fill_null(pa.scalar([None] * width, column.type)).flatten()
            values = flat.to_numpy(zero_copy_only=False).reshape(len(column), width)
            nulls = column.is_null().to_numpy(zero_copy_only=False)
            frame[name] = [
                None if n else row.tobytes() for row, n in zip(values, nulls, strict=True)
            ]
        elif _is_nested(column.type):
            frame[name] = [None if v is None else repr(v) for v in column.to_pylist()]
        else:
            frame[name] = column.to_pandas()
    return pd.DataFrame(frame).duplicated(keep="first").to_numpy()


# ---------------------------------------------------------------- sample


def sample(
    table: pa.Table,
    *,
    fraction: float | None = None,
    rows: int | None = None,
    method: SampleMethod = "random",
    stratify_column: str | None = None,
    seed: int = 0,
) -> pa.Table:
    """Rows drawn without replacement: ``fraction`` in (0, 1] (size rounded, at least one
    row of a non-empty table) or an exact ``rows`` count.

    ``stratified`` allocates the size over the classes of ``stratify_column`` (null is a
    class) by largest remainder, so each class gets its proportional share within one row.

    Raises:
        InvalidArgument: both or neither of fraction/rows, out-of-range size, unknown method,
            or a missing/unknown stratify column.
    """
    n = table.num_rows
    if (fraction is None) == (rows is None):
        raise InvalidArgument("give exactly one of fraction or rows", reason="BAD_SAMPLE_SIZE")
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise InvalidArgument(
                f"fraction must be in (0, 1], got {fraction}", reason="BAD_SAMPLE_SIZE"
            )
        size = min(n, max(1, int(round(fraction * n)))) if n else 0
    else:
        assert rows is not None
        if rows < 1 or rows > n:
            raise InvalidArgument(
                f"rows must be in [1, {n}] for this dataset, got {rows}", reason="BAD_SAMPLE_SIZE"
            )
        size = rows
    rng = np.random.default_rng(seed)
    if method == "random":
        return _take_sorted(table, rng.choice(n, size=size, replace=False))
    if method != "stratified":
        raise InvalidArgument(f"unknown sample method '{method}'; expected random or stratified")
    if not stratify_column:
        raise InvalidArgument(
            "stratified sampling needs a stratify column", reason="MISSING_STRATIFY_COLUMN"
        )
    _require(table, stratify_column, "stratify")
    codes = _class_codes(table, stratify_column)
    classes, counts = np.unique(codes, return_counts=True)
    quota = _largest_remainder(size, counts)
    picked = [
        rng.choice(np.flatnonzero(codes == cls), size=int(q), replace=False)
        for cls, q in zip(classes, quota, strict=True)
    ]
    return _take_sorted(table, np.concatenate(picked) if picked else np.empty(0, np.int64))


# ---------------------------------------------------------------- split


def split(
    table: pa.Table,
    *,
    train: float,
    valid: float,
    test: float,
    stratify_column: str | None = None,
    group_column: str | None = None,
    time_column: str | None = None,
    seed: int = 0,
) -> dict[str, pa.Table]:
    """Split rows into ``train``/``valid``/``test``; only parts with a non-zero fraction are
    returned. Part sizes are the fractions of the row count, rounded by largest remainder.

    * default: uniformly at random;
    * ``stratify_column``: each class split by the fractions (within one row per class);
    * ``group_column``: whole groups (null is one group) go to one part: groups are shuffled
      and a group lands in the part where the middle of its rows falls, so part sizes are
      approximate at group granularity;
    * ``time_column``: the earliest rows to train, then valid, then test (rows with equal
      times may straddle a boundary; nulls are rejected).

    At most one of stratify/group/time may be given.

    Raises:
        InvalidArgument: a fraction outside [0, 1], fractions not summing to 1 (±1e-6),
            several modes at once, unknown columns, or nulls in the time column.
    """
    fractions = {"train": train, "valid": valid, "test": test}
    for name, value in fractions.items():
        if not 0 <= value <= 1:
            raise InvalidArgument(
                f"{name} fraction must be in [0, 1], got {value}", reason="BAD_SPLIT_FRACTIONS"
            )
    if abs(sum(fractions.values()) - 1) > 1e-6:
        raise InvalidArgument(
            f"split fractions must sum to 1, got {train} + {valid} + {test} = "
            f"{sum(fractions.values())}",
            reason="BAD_SPLIT_FRACTIONS",
        )
    modes = [m for m in (stratify_column, group_column, time_column) if m]
    if len(modes) > 1:
        raise InvalidArgument(
            "choose one of stratify_column, group_column and time_column", reason="BAD_SPLIT_MODE"
        )
    n = table.num_rows
    weights = list(fractions.values())
    rng = np.random.default_rng(seed)
    if time_column:
        _require(table, time_column, "time")
        if table.column(time_column).null_count:
            raise InvalidArgument(
                f"time column '{time_column}' has null values",
                reason="NULL_TIMESTAMP",
                metadata={"column": time_column},
            )
        order = pc.sort_indices(table, [(time_column, "ascending")]).to_numpy()
        parts = np.split(order, np.cumsum(_largest_remainder(n, weights))[:-1])
    elif group_column:
        _require(table, group_column, "group")
        parts = _group_parts(_class_codes(table, group_column), weights, rng)
    elif stratify_column:
        _require(table, stratify_column, "stratify")
        codes = _class_codes(table, stratify_column)
        buckets: list[list[np.ndarray]] = [[], [], []]
        for cls in np.unique(codes):
            members = rng.permutation(np.flatnonzero(codes == cls))
            cuts = np.cumsum(_largest_remainder(len(members), weights))[:-1]
            for bucket, chunk in zip(buckets, np.split(members, cuts), strict=True):
                bucket.append(chunk)
        parts = [np.concatenate(b) if b else np.empty(0, np.int64) for b in buckets]
    else:
        parts = np.split(rng.permutation(n), np.cumsum(_largest_remainder(n, weights))[:-1])
    return {
        name: _take_sorted(table, part)
        for (name, fraction), part in zip(fractions.items(), parts, strict=True)
        if fraction > 0
    }


def _group_parts(
    codes: np.ndarray, weights: list[float], rng: np.random.Generator
) -> list[np.ndarray]:
    groups, inverse, sizes = np.unique(codes, return_inverse=True, return_counts=True)
    shuffled = rng.permutation(len(groups))
    ends = np.cumsum(sizes[shuffled])
    middles = ends - sizes[shuffled] / 2
    bounds = np.cumsum(weights)[:-1] * len(codes)
    part_of_group = np.empty(len(groups), dtype=np.int64)
    part_of_group[shuffled] = np.searchsorted(bounds, middles, side="right")
    part_of_row = part_of_group[inverse]
    return [np.flatnonzero(part_of_row == p) for p in range(3)]


# ---------------------------------------------------------------- project


def project(
    table: pa.Table, columns: Sequence[str] | None = None, drop: Sequence[str] | None = None
) -> pa.Table:
    """Keep ``columns`` (in that order) or drop ``drop``; exactly one must be non-empty.

    Raises:
        InvalidArgument: both/neither given, an unknown or repeated column, or no column left.
    """
    columns, drop = list(columns or []), list(drop or [])
    if bool(columns) == bool(drop):
        raise InvalidArgument(
            "give exactly one of columns to keep or columns to drop", reason="BAD_PROJECTION"
        )
    for name in columns or drop:
        _require(table, name, "projected")
    chosen = columns or drop
    if len(set(chosen)) != len(chosen):
        raise InvalidArgument("a column is listed twice", reason="BAD_PROJECTION")
    if columns:
        return table.select(columns)
    if len(drop) == table.num_columns:
        raise InvalidArgument(
            "dropping every column leaves an empty dataset", reason="BAD_PROJECTION"
        )
    return table.drop_columns(drop)
