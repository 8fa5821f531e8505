"""Row layout of the offline history: one Arrow column per feature, plus the entity key, the
event time and the ingestion time. Vectors are ``fixed_size_list<float32>[dims]``."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from atlas_core.errors import InvalidArgument
from atlas_data.offline import INGESTION_TIME_COLUMN
from atlas_data.records import RecordBatch
from atlas_data.schema import (
    EntityKeyType,
    FeatureGroupSpec,
    FeatureType,
    RecordLayout,
    ValueBlock,
)

TIMESTAMP = pa.timestamp("us", tz="UTC")

_SCALAR_ARROW = {
    FeatureType.FLOAT32: pa.float32(),
    FeatureType.FLOAT64: pa.float64(),
    FeatureType.INT64: pa.int64(),
    FeatureType.BOOL: pa.bool_(),
    FeatureType.STRING: pa.string(),
    FeatureType.CATEGORICAL: pa.string(),
}


def history_schema(spec: FeatureGroupSpec) -> pa.Schema:
    key_type = pa.int64() if spec.entity_key_type is EntityKeyType.INT64 else pa.string()
    fields = [
        pa.field(spec.entity_key, key_type, nullable=False),
        pa.field(spec.event_time_column, TIMESTAMP, nullable=False),
        pa.field(INGESTION_TIME_COLUMN, TIMESTAMP, nullable=False),
    ]
    for feature in spec.features:
        if feature.dtype is FeatureType.FLOAT32_VECTOR:
            fields.append(pa.field(feature.name, pa.list_(pa.float32(), feature.dims)))
        else:
            fields.append(pa.field(feature.name, _SCALAR_ARROW[feature.dtype]))
    return pa.schema(fields)


def _null_rows(batch: RecordBatch, slot_index: int) -> np.ndarray | None:
    if not batch.null_masks:
        return None
    byte, bit = divmod(slot_index, 8)
    nulls = np.array([len(m) > byte and bool(m[byte] >> bit & 1) for m in batch.null_masks])
    return nulls if nulls.any() else None


def history_table(
    spec: FeatureGroupSpec, layout: RecordLayout, batch: RecordBatch, ingestion_time_us: int
) -> pa.Table:
    """The offline rows for ``batch`` (one per record, in batch order)."""
    n = len(batch)
    schema = history_schema(spec)
    columns: list[pa.Array] = [
        pa.array(batch.keys, type=schema.field(0).type),
        pa.array(batch.event_time_us, type=pa.int64()).cast(TIMESTAMP),
        pa.array(np.full(n, ingestion_time_us, dtype=np.int64)).cast(TIMESTAMP),
    ]
    strings = np.asarray(batch.strings, dtype=object).reshape(n, layout.string_width)
    for index, slot in enumerate(layout.slots):
        stop = slot.offset + slot.dims
        mask = _null_rows(batch, index)
        if slot.dtype is FeatureType.FLOAT32_VECTOR:
            flat = np.ascontiguousarray(batch.float32[:, slot.offset : stop]).reshape(-1)
            values = pa.FixedSizeListArray.from_arrays(pa.array(flat), slot.dims)
            if mask is not None:
                values = pa.array(values.to_pylist(), type=values.type, mask=mask)
        elif slot.dtype is FeatureType.FLOAT32:
            values = pa.array(batch.float32[:, slot.offset], mask=mask)
        elif slot.dtype is FeatureType.FLOAT64:
            values = pa.array(batch.float64[:, slot.offset], mask=mask)
        elif slot.dtype is FeatureType.INT64:
            values = pa.array(batch.int64[:, slot.offset], mask=mask)
        elif slot.dtype is FeatureType.BOOL:
            values = pa.array(batch.int64[:, slot.offset].astype(bool), mask=mask)
        else:
            values = pa.array(list(strings[:, slot.offset]), type=pa.string(), mask=mask)
        columns.append(values)
    return pa.Table.from_arrays(columns, schema=schema)


def _column_values(table: pa.Table, column: str, feature: str) -> pa.Array:
    if column not in table.column_names:
        raise InvalidArgument(
            f"input has no column '{column}' for feature '{feature}' "
            f"(columns: {', '.join(table.column_names[:20])}); map it with column_mapping",
            reason="UNKNOWN_COLUMN",
            metadata={"column": column},
        )
    return table.column(column).combine_chunks()


def batch_from_table(
    spec: FeatureGroupSpec, layout: RecordLayout, table: pa.Table, mapping: Mapping[str, str]
) -> RecordBatch:
    """Records from an input table (one row per record) for batch ingest. ``mapping`` maps
    group column names (entity key, event time, features) to input column names.

    Raises InvalidArgument naming the column (and row) that does not fit the schema.
    """
    from atlas_data.matching import timestamps_to_micros

    def source(name: str) -> str:
        return mapping.get(name, name)

    n = table.num_rows
    keys_arr = _column_values(table, source(spec.entity_key), spec.entity_key)
    if keys_arr.null_count:
        raise InvalidArgument(
            f"entity key column '{source(spec.entity_key)}' has {keys_arr.null_count} null values",
            reason="NULL_KEY",
        )
    if spec.entity_key_type is EntityKeyType.INT64:
        try:
            keys: np.ndarray | list[str] = keys_arr.cast(pa.int64()).to_numpy()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise InvalidArgument(
                f"entity key column '{source(spec.entity_key)}' is {keys_arr.type}, expected int64",
                reason="BAD_KEY",
            ) from None
    else:
        keys = [str(k) for k in keys_arr.to_pylist()]
    times, _ = timestamps_to_micros(
        _column_values(table, source(spec.event_time_column), spec.event_time_column),
        what="event time column",
        name=source(spec.event_time_column),
    )
    f32 = np.full((n, layout.float32_width), np.nan, dtype="<f4")
    f64 = np.full((n, layout.float64_width), np.nan, dtype="<f8")
    i64 = np.zeros((n, layout.int64_width), dtype="<i8")
    strings = np.full((n, layout.string_width), "", dtype=object)
    for slot in layout.slots:
        col = _column_values(table, source(slot.name), slot.name)
        where = f"column '{source(slot.name)}' (feature '{slot.name}')"
        try:
            if slot.dtype is FeatureType.FLOAT32_VECTOR:
                if not (
                    pa.types.is_list(col.type)
                    or pa.types.is_fixed_size_list(col.type)
                    or pa.types.is_large_list(col.type)
                ):
                    raise InvalidArgument(
                        f"{where} is {col.type}, expected a list of {slot.dims} floats",
                        reason="BAD_DTYPE",
                    )
                lengths = (
                    np.full(n, col.type.list_size)
                    if pa.types.is_fixed_size_list(col.type)
                    else pc.list_value_length(col).fill_null(0).to_numpy()
                )
                bad = np.flatnonzero(lengths != slot.dims)
                if bad.size:
                    raise InvalidArgument(
                        f"{where}: row {int(bad[0])} has {int(lengths[bad[0]])} values, "
                        f"expected {slot.dims}",
                        reason="BAD_VECTOR_LENGTH",
                    )
                flat = pc.list_flatten(col).cast(pa.float32()).to_numpy(zero_copy_only=False)
                f32[:, slot.offset : slot.offset + slot.dims] = flat.reshape(n, slot.dims)
            elif slot.block is ValueBlock.FLOAT32:
                f32[:, slot.offset] = col.cast(pa.float32()).to_numpy(zero_copy_only=False)
            elif slot.block is ValueBlock.FLOAT64:
                f64[:, slot.offset] = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
            elif slot.block is ValueBlock.INT64:
                i64[:, slot.offset] = col.cast(pa.int64()).fill_null(0).to_numpy()
            else:
                strings[:, slot.offset] = [("" if v is None else str(v)) for v in col.to_pylist()]
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InvalidArgument(
                f"{where} cannot be read as {slot.dtype.value}: {exc}", reason="BAD_DTYPE"
            ) from None
    return RecordBatch(
        keys=keys,
        event_time_us=times,
        float32=f32,
        float64=f64,
        int64=i64,
        strings=[tuple(row) for row in strings],
    )
