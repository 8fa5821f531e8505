"""Row layout of the offline history: one Arrow column per feature, plus the entity key, the
event time and the ingestion time. Vectors are ``fixed_size_list<float32>[dims]``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from atlas_data.offline import INGESTION_TIME_COLUMN
from atlas_data.records import RecordBatch
from atlas_data.schema import EntityKeyType, FeatureGroupSpec, FeatureType, RecordLayout

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


def history_table(spec: FeatureGroupSpec, layout: RecordLayout, batch: RecordBatch,
                  ingestion_time_us: int) -> pa.Table:
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
            flat = np.ascontiguousarray(batch.float32[:, slot.offset:stop]).reshape(-1)
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
