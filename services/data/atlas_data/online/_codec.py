"""Byte format of one entity's latest record in the online store, and fast decoding.

Layout of an encoded record (all little-endian)::

    offset  size  field
    0       1     magic/format version (0xA1 = v1)
    1       1     flags (0)
    2       2     reserved (0)
    4       4     schema version (int32)
    8       8     event time, Unix microseconds (int64)   <- compared by the writers
    16      8     ingestion time, Unix microseconds (int64)
    24      16    widths: float32, float64, int64, string (4 x uint32)
    40      4*f   float32 block, raw
    ..      0|4   padding so the 8-byte blocks start 8-aligned
    ..      8*d   float64 block
    ..      8*i   int64 block
    ..      ...   strings: s x (uint32 length + UTF-8 bytes)
    ..      4+m   null mask: uint32 length + bitmap

The header has a fixed size and the event time a fixed offset, so a store can compare event
times by reading 8 bytes (LMDB) or ``GETRANGE key 8 15`` (Redis). The float32 block starts at
a fixed 8-aligned offset, so readers take it with ``np.frombuffer(..., offset=40)`` straight
from a memory-mapped page.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from atlas_core.errors import DataLoss, FailedPrecondition
from atlas_data.records import RecordBatch
from atlas_data.schema import LayoutSubset, RecordLayout

FORMAT_V1 = 0xA1
HEADER = struct.Struct("<BBHiqqIIII")
HEADER_SIZE = HEADER.size
EVENT_TIME_OFFSET = 8
EVENT_TIME = struct.Struct("<q")
_U32 = struct.Struct("<I")
_EMPTY_MASK = _U32.pack(0)

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class RecordHeader:
    """The fixed-size head of an encoded record."""

    schema_version: int
    event_time_us: int
    ingestion_time_us: int
    float32_width: int
    float64_width: int
    int64_width: int
    string_width: int


def _padding(float32_width: int) -> bytes:
    return b"\0\0\0\0" if float32_width % 2 else b""


def encode_batch(batch: RecordBatch, *, ingestion_time_us: int, schema_version: int) -> list[bytes]:
    """Encode every record of ``batch``, in order."""
    f32w, f64w, i64w = batch.float32.shape[1], batch.float64.shape[1], batch.int64.shape[1]
    strw = len(batch.strings[0]) if len(batch) else 0
    pad = _padding(f32w)
    out = []
    for i in range(len(batch)):
        head = HEADER.pack(
            FORMAT_V1,
            0,
            0,
            schema_version,
            int(batch.event_time_us[i]),
            ingestion_time_us,
            f32w,
            f64w,
            i64w,
            strw,
        )
        mask = batch.null_masks[i] if batch.null_masks is not None else b""
        # numpy rows are C-contiguous buffers: join copies each block once, no tobytes().
        out.append(
            b"".join(
                (
                    head,
                    batch.float32[i],
                    pad,
                    batch.float64[i],
                    batch.int64[i],
                    _encode_strings(batch.strings[i]) if strw else b"",
                    _U32.pack(len(mask)) + mask if mask else _EMPTY_MASK,
                )
            )
        )
    return out


def _encode_strings(values: Sequence[str]) -> bytes:
    parts = []
    for value in values:
        raw = value.encode("utf-8")
        parts.append(_U32.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def read_event_time(buf: Buffer) -> int:
    """Event time of an encoded record, reading only its header."""
    return EVENT_TIME.unpack_from(buf, EVENT_TIME_OFFSET)[0]


def decode_header(buf: Buffer) -> RecordHeader:
    """Parse the fixed header.

    Raises:
        DataLoss: the bytes are not an encoded record of a known format version.
    """
    if len(buf) < HEADER_SIZE or buf[0] != FORMAT_V1:
        raise DataLoss(
            f"online record is corrupt or of an unknown format ({len(buf)} bytes)",
            reason="CORRUPT_ONLINE_RECORD",
        )
    _, _, _, version, event, ingested, f32w, f64w, i64w, strw = HEADER.unpack_from(buf, 0)
    return RecordHeader(version, event, ingested, f32w, f64w, i64w, strw)


@dataclass(eq=False)
class OnlineRows:
    """Latest records of ``n`` requested entities, decoded into blocks by ``layout``.

    Missing (or expired) entities have ``found`` False, times 0, NaN floats, 0 ints and
    empty strings. ``null_masks`` is None when no found record carries a null mask.
    """

    layout: RecordLayout
    found: np.ndarray
    event_time_us: np.ndarray
    ingestion_time_us: np.ndarray
    schema_version: np.ndarray
    float32: np.ndarray
    float64: np.ndarray
    int64: np.ndarray
    strings: list[tuple[str, ...]]
    null_masks: list[bytes] | None


def gather_rows(
    buffers: Sequence[Buffer | None],
    layout: RecordLayout,
    subset: LayoutSubset | None = None,
    *,
    min_event_time_us: int | None = None,
) -> OnlineRows:
    """Decode encoded records (``None`` = missing) into contiguous blocks.

    ``layout`` is the group's full layout the records were written with; ``subset`` (from
    ``layout.subset(names)``) selects features. Records with an event time before
    ``min_event_time_us`` (TTL) count as not found. Buffers may be memory-mapped views: all
    values are copied out, so the result outlives them.

    Raises:
        FailedPrecondition: a record was written with different block widths (an older
            schema version); the message names the stored schema version.
        DataLoss: a record is corrupt.
    """
    subset = subset or LayoutSubset.identity(layout)
    out_layout = subset.layout
    n = len(buffers)
    rows = OnlineRows(
        layout=out_layout,
        found=np.zeros(n, dtype=bool),
        event_time_us=np.zeros(n, dtype=np.int64),
        ingestion_time_us=np.zeros(n, dtype=np.int64),
        schema_version=np.zeros(n, dtype=np.int32),
        # Filled below: found rows by decoding, the others with NaN (an np.full per read is a
        # noticeable share of a one-entity read).
        float32=np.empty((n, out_layout.float32_width), dtype="<f4"),
        float64=np.empty((n, out_layout.float64_width), dtype="<f8"),
        int64=np.zeros((n, out_layout.int64_width), dtype="<i8"),
        strings=[("",) * out_layout.string_width] * n,
        null_masks=None,
    )
    widths = (layout.float32_width, layout.float64_width, layout.int64_width, layout.string_width)
    hits = 0
    for i, buf in enumerate(buffers):
        if buf is None:
            continue
        header = decode_header(buf)
        if min_event_time_us is not None and header.event_time_us < min_event_time_us:
            continue
        stored = (
            header.float32_width,
            header.float64_width,
            header.int64_width,
            header.string_width,
        )
        if stored != widths:
            raise FailedPrecondition(
                f"online record of feature group '{layout.group_name}' was written with schema "
                f"version {header.schema_version} whose layout differs (block widths {stored}, "
                f"expected {widths})",
                reason="ONLINE_SCHEMA_MISMATCH",
            )
        rows.found[i] = True
        rows.event_time_us[i] = header.event_time_us
        rows.ingestion_time_us[i] = header.ingestion_time_us
        rows.schema_version[i] = header.schema_version
        _decode_values_into(rows, i, buf, layout, subset)
        hits += 1
    if hits < n:
        missing = ~rows.found
        rows.float32[missing] = np.nan
        rows.float64[missing] = np.nan
    return rows


def _decode_values_into(
    rows: OnlineRows, i: int, buf: Buffer, layout: RecordLayout, subset: LayoutSubset
) -> None:
    pos = HEADER_SIZE
    f32w, f64w, i64w = layout.float32_width, layout.float64_width, layout.int64_width
    if f32w:
        # A view on the stored bytes (zero copy); the assignment is the only copy.
        _take(np.frombuffer(buf, "<f4", f32w, pos), subset.float32_index, rows.float32[i])
    pos += 4 * f32w + len(_padding(f32w))
    if f64w:
        _take(np.frombuffer(buf, "<f8", f64w, pos), subset.float64_index, rows.float64[i])
    pos += 8 * f64w
    if i64w:
        _take(np.frombuffer(buf, "<i8", i64w, pos), subset.int64_index, rows.int64[i])
    pos += 8 * i64w
    strings: list[str] = []
    for _ in range(layout.string_width):
        (length,) = _U32.unpack_from(buf, pos)
        strings.append(bytes(buf[pos + 4 : pos + 4 + length]).decode("utf-8"))
        pos += 4 + length
    if strings:
        index = subset.string_index
        rows.strings[i] = tuple(strings) if index is None else tuple(strings[j] for j in index)
    (mask_len,) = _U32.unpack_from(buf, pos)
    if mask_len:
        mask = bytes(buf[pos + 4 : pos + 4 + mask_len])
        if rows.null_masks is None:
            rows.null_masks = [b""] * len(rows.found)
        rows.null_masks[i] = _project_mask(mask, len(layout.slots), subset)


def _take(values: np.ndarray, index: np.ndarray | None, out: np.ndarray) -> None:
    if index is None:
        out[:] = values
    else:
        np.take(values, index, out=out)


def _project_mask(mask: bytes, n_slots: int, subset: LayoutSubset) -> bytes:
    if subset.slot_index is None:
        return mask
    bits = np.unpackbits(np.frombuffer(mask, np.uint8), count=n_slots, bitorder="little")
    picked = bits[subset.slot_index]
    return np.packbits(picked, bitorder="little").tobytes() if picked.any() else b""
