"""Work around Arrow's Parquet round trip of nullable fixed-size lists.

pyarrow (<= 25) writes a null ``fixed_size_list`` entry as an empty list and then refuses to
read the file back ("Expected all lists to be of size=N but index i had size=0"). Before
writing Parquet we therefore store a missing vector as a vector of NaN, which every consumer
(imputers, models) already treats as missing.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def _fill(column: pa.ChunkedArray) -> pa.ChunkedArray:
    dims = column.type.list_size
    chunks = []
    for chunk in column.chunks:
        if not chunk.null_count:
            chunks.append(chunk)
            continue
        flat = np.full((len(chunk), dims), np.nan, dtype=np.float32)
        valid = chunk.is_valid().to_numpy(zero_copy_only=False)
        if valid.any():
            present = chunk.filter(pa.array(valid))
            flat[valid] = present.flatten().to_numpy(zero_copy_only=False).reshape(-1, dims)
        chunks.append(pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), dims))
    return pa.chunked_array(chunks, type=pa.list_(pa.float32(), dims))


def parquet_safe(table: pa.Table) -> pa.Table:
    for i, field in enumerate(table.schema):
        if pa.types.is_fixed_size_list(field.type) and table.column(i).null_count:
            table = table.set_column(i, field, _fill(table.column(i)))
    return table
