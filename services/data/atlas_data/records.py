"""Columnar record batches: validated, packed feature records of one feature group.

A :class:`RecordBatch` is what ingestion hands to the online and offline stores: the entity
keys and event times of ``n`` records plus one 2-D array per value block, laid out by the
group's :class:`~atlas_data.schema.RecordLayout`. :meth:`RecordBatch.from_records` builds
one from :class:`RawRecord` values (the domain twin of the proto ``FeatureRecord``) and is the
single place where a client's records are checked; its errors name the record index and field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from atlas_core.errors import InvalidArgument
from atlas_data.schema import (
    EntityKeyType,
    FeatureSlot,
    FeatureType,
    RecordLayout,
    ValueBlock,
)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# LMDB keys are limited to 511 bytes; keep a margin so every backend can store any key.
MAX_STRING_KEY_BYTES = 500


@dataclass(frozen=True)
class RawRecord:
    """One record as a client sent it; values packed by the group's layout."""

    entity_key: int | str | None
    event_time_us: int | None
    float32_bytes: bytes = b""
    float64: Sequence[float] = ()
    int64: Sequence[int] = ()
    strings: Sequence[str] = ()
    null_mask: bytes = b""


def null_mask_length(layout: RecordLayout) -> int:
    """Bytes of a non-empty null bitmap over ``layout``'s slots (bit i of byte i//8, LSB first)."""
    return (len(layout.slots) + 7) // 8


@dataclass(eq=False)
class RecordBatch:
    """``n`` records of one group, column by column.

    Attributes:
        keys: ``np.int64`` array ``[n]`` or a list of ``n`` strings.
        event_time_us: ``np.int64`` array ``[n]`` (Unix microseconds).
        float32: C-contiguous little-endian float32 ``[n, float32_width]``.
        float64: float64 ``[n, float64_width]``.
        int64: int64 ``[n, int64_width]`` (bools as 0/1).
        strings: ``n`` tuples of ``string_width`` strings (or an object array ``[n, w]``).
        null_masks: ``None`` or ``n`` bitmaps (``b""`` = no nulls besides NaN floats).

    Blocks built by :meth:`from_records` are read-only views on the joined client bytes.
    Construction checks only that the shapes agree with each other; use
    :meth:`from_records` to validate client input against a layout.
    """

    keys: np.ndarray | list[str]
    event_time_us: np.ndarray
    float32: np.ndarray
    float64: np.ndarray
    int64: np.ndarray
    strings: Sequence[Sequence[str]] | np.ndarray
    null_masks: list[bytes] | None = None

    def __post_init__(self) -> None:
        n = len(self.keys)
        if self.event_time_us.shape != (n,) or self.event_time_us.dtype != np.int64:
            raise InvalidArgument(f"event_time_us must be int64 of shape ({n},)")
        for name, dtype in (("float32", "<f4"), ("float64", "<f8"), ("int64", "<i8")):
            block = getattr(self, name)
            if block.ndim != 2 or block.shape[0] != n or block.dtype != np.dtype(dtype):
                raise InvalidArgument(f"{name} block must be {dtype} of shape ({n}, width)")
            if not block.flags.c_contiguous:
                raise InvalidArgument(f"{name} block must be C-contiguous")
        if len(self.strings) != n:
            raise InvalidArgument(f"strings must have {n} rows, got {len(self.strings)}")
        if self.null_masks is not None and len(self.null_masks) != n:
            raise InvalidArgument(f"null_masks must have {n} entries, got {len(self.null_masks)}")

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def from_records(
        cls,
        layout: RecordLayout,
        key_type: EntityKeyType,
        records: Sequence[RawRecord],
        *,
        categories: Mapping[str, frozenset[str]] | None = None,
    ) -> RecordBatch:
        """Validate ``records`` against ``layout`` and pack them column by column.

        ``categories`` maps categorical features with a closed vocabulary to their allowed
        values (see :func:`atlas_data.schema.categories_of`).

        Raises:
            InvalidArgument: a record is malformed; the message starts with
                ``record <index>:`` and names the field (and feature where one is affected).
        """
        n = len(records)
        mask_len = null_mask_length(layout)
        keys: list[int | str] = []
        times: list[int] = []
        for index, record in enumerate(records):
            keys.append(_checked_key(index, record.entity_key, key_type, layout.group_name))
            times.append(_checked_event_time(index, record.event_time_us))
            _check_lengths(index, record, layout, mask_len)
        # One join + one frombuffer: no per-value Python work on the wide float32 block.
        float32 = np.frombuffer(b"".join([r.float32_bytes for r in records]), dtype="<f4").reshape(
            n, layout.float32_width
        )
        batch = cls(
            # string keys stay a list of str (the field's other type)
            keys=np.array(keys, dtype=np.int64) if key_type is EntityKeyType.INT64 else keys,  # type: ignore[arg-type]
            event_time_us=np.array(times, dtype=np.int64),
            float32=float32,
            float64=_float64_block(records, layout),
            int64=_int64_block(records, layout),
            strings=[tuple(r.strings) for r in records],
            null_masks=[bytes(r.null_mask) for r in records]
            if any(r.null_mask for r in records)
            else None,
        )
        _check_bools(batch, layout)
        _check_categories(batch, layout, categories or {})
        return batch


def _checked_key(index: int, key: object, key_type: EntityKeyType, group: str) -> int | str:
    if key is None:
        raise InvalidArgument(f"record {index}: entity_key is missing")
    if key_type is EntityKeyType.INT64:
        if isinstance(key, str):
            raise InvalidArgument(
                f"record {index}: entity_key is a string but group '{group}' has int64 keys"
            )
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
            raise InvalidArgument(
                f"record {index}: entity_key must be an int64, got {type(key).__name__}"
            )
        if not INT64_MIN <= key <= INT64_MAX:
            raise InvalidArgument(f"record {index}: entity_key {key} is outside the int64 range")
        return int(key)
    if not isinstance(key, str):
        raise InvalidArgument(
            f"record {index}: entity_key is {_kind(key)} but group '{group}' has string keys"
        )
    if not key:
        raise InvalidArgument(f"record {index}: entity_key is an empty string")
    if len(key.encode("utf-8")) > MAX_STRING_KEY_BYTES:
        raise InvalidArgument(
            f"record {index}: entity_key is longer than {MAX_STRING_KEY_BYTES} bytes (UTF-8)"
        )
    return key


def _kind(value: object) -> str:
    return "an integer" if isinstance(value, (int, np.integer)) else f"a {type(value).__name__}"


def _checked_event_time(index: int, value: object) -> int:
    if value is None:
        raise InvalidArgument(f"record {index}: event_time is missing")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgument(
            f"record {index}: event_time must be integer microseconds, got {type(value).__name__}"
        )
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidArgument(f"record {index}: event_time {value} is outside the int64 range")
    return int(value)


def _check_lengths(index: int, record: RawRecord, layout: RecordLayout, mask_len: int) -> None:
    if len(record.float32_bytes) != 4 * layout.float32_width:
        raise InvalidArgument(_float32_length_problem(index, len(record.float32_bytes), layout))
    for field, values, block in (
        ("float64_values", record.float64, ValueBlock.FLOAT64),
        ("int64_values", record.int64, ValueBlock.INT64),
        ("string_values", record.strings, ValueBlock.STRING),
    ):
        if len(values) != layout.width(block):
            names = ", ".join(f"'{s.name}'" for s in layout.slots_in(block)) or "none"
            raise InvalidArgument(
                f"record {index}: {field} has {len(values)} values, expected "
                f"{layout.width(block)} (features {names})"
            )
    if record.null_mask and len(record.null_mask) != mask_len:
        raise InvalidArgument(
            f"record {index}: null_mask has {len(record.null_mask)} bytes, expected 0 or "
            f"{mask_len} (one bit per feature, {len(layout.slots)} features)"
        )


def _float32_length_problem(index: int, got_bytes: int, layout: RecordLayout) -> str:
    width = layout.float32_width
    head = (
        f"record {index}: float32_values has {got_bytes} bytes, expected {4 * width} "
        f"({width} float32 values"
    )
    if got_bytes % 4:
        return head + (
            "); the length is not a multiple of 4: float32_values must hold raw little-endian "
            "float32 (wrong dtype?)"
        )
    got = got_bytes // 4
    slots = layout.slots_in(ValueBlock.FLOAT32)
    if got > width:
        hint = " (float64 sent instead of float32?)" if got == 2 * width else ""
        last = f" after the last feature '{slots[-1].name}'" if slots else ""
        return head + f"); {got - width} values too many{last}{hint}"
    slot = next(s for s in slots if s.stop > got)
    where = f"feature '{slot.name}' (dims {slot.dims} at offset {slot.offset})"
    if got == slot.offset:
        return head + f"); the values end before {where}: it and every later feature are missing"
    return head + (
        f"); the values end inside {where} after {got - slot.offset} of its {slot.dims} values"
    )


def _slot_at(layout: RecordLayout, block: ValueBlock, offset: int) -> FeatureSlot:
    return next(s for s in layout.slots_in(block) if s.offset <= offset < s.stop)


def _float64_block(records: Sequence[RawRecord], layout: RecordLayout) -> np.ndarray:
    width = layout.float64_width
    if width == 0:
        return np.empty((len(records), 0), dtype=np.float64)
    try:
        return np.array([r.float64 for r in records], dtype=np.float64).reshape(-1, width)
    except (TypeError, ValueError):
        pass
    for index, record in enumerate(records):
        for position, value in enumerate(record.float64):
            if isinstance(value, (str, bytes, bool)) or not isinstance(
                value, (int, float, np.number)
            ):
                slot = _slot_at(layout, ValueBlock.FLOAT64, position)
                raise InvalidArgument(
                    f"record {index}: float64_values[{position}] (feature '{slot.name}') is "
                    f"{value!r}, not a number"
                )
    raise InvalidArgument("float64_values could not be converted")  # unreachable in practice


def _int64_block(records: Sequence[RawRecord], layout: RecordLayout) -> np.ndarray:
    width = layout.int64_width
    if width == 0:
        return np.empty((len(records), 0), dtype=np.int64)
    # Let numpy infer first: a float or an out-of-range int shows up as a non-integer dtype,
    # which a direct int64 conversion would silently truncate or wrap.
    try:
        inferred = np.array([r.int64 for r in records])
    except (TypeError, ValueError):
        inferred = None
    # Unsigned means a value above INT64_MAX (numpy picks uint64): check those one by one.
    if inferred is not None and inferred.dtype.kind in "ib" and inferred.ndim == 2:
        return np.ascontiguousarray(inferred, dtype=np.int64)
    for index, record in enumerate(records):
        for position, value in enumerate(record.int64):
            if isinstance(value, (bool, np.bool_)):
                continue
            if not isinstance(value, (int, np.integer)) or not INT64_MIN <= value <= INT64_MAX:
                slot = _slot_at(layout, ValueBlock.INT64, position)
                raise InvalidArgument(
                    f"record {index}: int64_values[{position}] (feature '{slot.name}') is "
                    f"{value!r}, not an int64"
                )
    return np.array([[int(v) for v in r.int64] for r in records], dtype=np.int64)


def _check_bools(batch: RecordBatch, layout: RecordLayout) -> None:
    for slot in layout.slots_in(ValueBlock.INT64):
        if slot.dtype is not FeatureType.BOOL:
            continue
        column = batch.int64[:, slot.offset]
        bad = np.flatnonzero((column != 0) & (column != 1))
        if bad.size:
            index = int(bad[0])
            raise InvalidArgument(
                f"record {index}: int64_values[{slot.offset}] (bool feature '{slot.name}') is "
                f"{int(column[index])}, expected 0 or 1"
            )


def _check_categories(
    batch: RecordBatch, layout: RecordLayout, categories: Mapping[str, frozenset[str]]
) -> None:
    for slot in layout.slots_in(ValueBlock.STRING):
        allowed = categories.get(slot.name)
        for index, row in enumerate(batch.strings):
            value = row[slot.offset]
            if not isinstance(value, str):
                raise InvalidArgument(
                    f"record {index}: string_values[{slot.offset}] (feature '{slot.name}') is "
                    f"a {type(value).__name__}, not a string"
                )
            if (
                allowed is not None
                and value not in allowed
                and not _is_null(batch, index, layout, slot)
            ):
                shown = ", ".join(sorted(allowed)[:10])
                raise InvalidArgument(
                    f"record {index}: string_values[{slot.offset}] (categorical feature "
                    f"'{slot.name}') is '{value}', not one of its categories ({shown})"
                )


def _is_null(batch: RecordBatch, index: int, layout: RecordLayout, slot: FeatureSlot) -> bool:
    if batch.null_masks is None or not batch.null_masks[index]:
        return False
    position = layout.slots.index(slot)
    return bool(batch.null_masks[index][position // 8] >> (position % 8) & 1)
