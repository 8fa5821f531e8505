"""Reading an import manifest (Parquet or JSON Lines) as a stream of row batches, starting at
any row, with bounded memory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from atlas_core.errors import InvalidArgument

Row = dict[str, Any]


def is_jsonl(key: str) -> bool:
    return key.lower().endswith((".jsonl", ".json", ".ndjson"))


def read_batches(
    path: Path, jsonl: bool, columns: list[str], start_row: int, batch_size: int
) -> Iterator[tuple[int, list[Row]]]:
    """(first row number, rows) batches from ``start_row`` on; each row holds ``columns``.

    Raises:
        InvalidArgument: a column is missing (named) or a JSONL line is not an object.
    """
    if jsonl:
        yield from _jsonl_batches(path, columns, start_row, batch_size)
    else:
        yield from _parquet_batches(path, columns, start_row, batch_size)


def _parquet_batches(
    path: Path, columns: list[str], start_row: int, batch_size: int
) -> Iterator[tuple[int, list[Row]]]:
    try:
        yield from _parquet_batches_unchecked(path, columns, start_row, batch_size)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        # a damaged file: an unreadable footer, page or string value
        raise InvalidArgument(
            f"manifest is not a readable Parquet file: {exc}", reason="BAD_MANIFEST"
        ) from None


def _parquet_batches_unchecked(
    path: Path, columns: list[str], start_row: int, batch_size: int
) -> Iterator[tuple[int, list[Row]]]:
    handle = pq.ParquetFile(path)
    names = set(handle.schema_arrow.names)
    for column in columns:
        if column not in names:
            raise InvalidArgument(
                f"manifest has no column {column!r} (columns: {sorted(names)})",
                reason="MISSING_COLUMN",
            )
    row = 0
    for batch in handle.iter_batches(batch_size=batch_size, columns=columns):
        if row + batch.num_rows <= start_row:
            row += batch.num_rows
            continue
        records = batch.to_pylist()
        skip = max(0, start_row - row)
        yield row + skip, records[skip:]
        row += batch.num_rows


def _jsonl_batches(
    path: Path, columns: list[str], start_row: int, batch_size: int
) -> Iterator[tuple[int, list[Row]]]:
    batch: list[Row] = []
    first = start_row
    row = -1
    with open(path, "rb") as handle:
        for raw in handle:
            if not raw.strip():
                continue
            row += 1
            if row < start_row:
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
                why = "is nested too deeply" if isinstance(exc, RecursionError) else f"({exc})"
                raise InvalidArgument(
                    f"manifest line {row + 1} is not UTF-8 JSON {why}", reason="BAD_MANIFEST"
                ) from None
            if not isinstance(record, dict):
                raise InvalidArgument(
                    f"manifest line {row + 1} is not a JSON object", reason="BAD_MANIFEST"
                )
            for column in columns:
                if column not in record:
                    raise InvalidArgument(
                        f"manifest line {row + 1} has no column {column!r}",
                        reason="MISSING_COLUMN",
                    )
            batch.append(record)
            if len(batch) == batch_size:
                yield first, batch
                first, batch = row + 1, []
    if batch:
        yield first, batch


def to_datetime(value: Any, where: str) -> datetime | None:
    """A label time from a manifest cell: a timestamp, Unix microseconds or ISO-8601."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value / 1e6, tz=timezone.utc)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"{where} {value!r} is not a time", reason="BAD_TIME") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
