import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from atlas_data.parquet_safe import parquet_safe


def test_null_vectors_survive_a_parquet_round_trip_as_nan():
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(8, dtype="f4")), 4)
    column = pa.chunked_array([vectors]).take(pa.array([0, None, 1], pa.int64()))
    table = pa.table({"v": column, "k": [1, 2, 3]})
    buf = io.BytesIO()
    pq.write_table(parquet_safe(table), buf)
    back = pq.read_table(io.BytesIO(buf.getvalue())).column("v").to_pylist()
    assert back[0] == [0, 1, 2, 3] and back[2] == [4, 5, 6, 7]
    assert np.isnan(back[1]).all()
