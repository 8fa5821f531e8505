"""Fuzzing the readers of user-supplied Parquet and JSON Lines files (issue #33, capability 3):
damaged (bit-flipped, truncated) Parquet files and arbitrary JSONL bytes (invalid UTF-8,
non-objects, deep nesting, huge numbers) given to the data service's ingest, the labeling
import manifests, serving's batch inputs and the graph service's tables are either read or
refused with INVALID_ARGUMENT naming the file; no other exception escapes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from atlas_core.errors import InvalidArgument
from atlas_core.storage import LocalArtifactStore
from tests.support.parser_fuzz import fuzz_settings


def _parquet() -> bytes:
    n = 300
    table = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "text": [f"row {i} " * (i % 5) for i in range(n)],
            "score": pa.array([i / 7 for i in range(n)]),
            "tags": [[str(i), "x"] if i % 3 else None for i in range(n)],
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=64)
    return buf.getvalue()


GOOD = _parquet()
DAMAGE = st.tuples(
    st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(1, 255)), max_size=12),
    st.none() | st.integers(0, len(GOOD)),
)


def damaged(damage: tuple[list[tuple[int, int]], int | None]) -> bytes:
    flips, cut = damage
    raw = bytearray(GOOD)
    for offset, xor in flips:
        raw[offset] ^= xor
    return bytes(raw[:cut] if cut is not None else raw)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> LocalArtifactStore:  # type: ignore[no-untyped-def]
    return LocalArtifactStore(tmp_path_factory.mktemp("inputs"))


def _refused_or_read(read: Any) -> Any:
    try:
        return read()
    except InvalidArgument as err:
        assert err.message
        return None


@fuzz_settings
@given(damage=DAMAGE)
def test_labeling_parquet_manifests(tmp_path_factory, damage) -> None:  # type: ignore[no-untyped-def]
    from atlas_labeling.manifests import read_batches

    path = tmp_path_factory.mktemp("m") / "manifest.parquet"
    path.write_bytes(damaged(damage))
    batches = _refused_or_read(lambda: list(read_batches(path, False, ["id", "text"], 0, 50)))
    for _, rows in batches or []:
        assert all({"id", "text"} <= set(row) for row in rows)


JSONL_LINES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [
            b'{"text": "ok", "id": 1}',
            b"[1, 2]",
            b"null",
            b'"text"',
            b"{",
            b"\xff\xfe{}",
            b'{"text": 1e999999}',
            b'{"text": "\\ud800"}',
            b"[" * 5000 + b"]" * 5000,
            b'{"text": ' + b"[" * 3000 + b"]" * 3000 + b"}",
            b'{"text": NaN}',
        ]
    ),  # fmt: skip
)


@fuzz_settings
@given(lines=st.lists(JSONL_LINES, max_size=8), start=st.integers(0, 4))
def test_labeling_jsonl_manifests(tmp_path_factory, lines: list[bytes], start: int) -> None:  # type: ignore[no-untyped-def]
    from atlas_labeling.manifests import read_batches

    path = tmp_path_factory.mktemp("m") / "manifest.jsonl"
    path.write_bytes(b"\n".join(lines))
    batches = _refused_or_read(lambda: list(read_batches(path, True, ["text"], start, 3)))
    for _, rows in batches or []:
        assert all(isinstance(row, dict) and "text" in row for row in rows)


@fuzz_settings
@given(damage=DAMAGE)
def test_data_ingest_parquet(store: LocalArtifactStore, damage) -> None:  # type: ignore[no-untyped-def]
    from atlas_data.job_work import _open_parquet, _read_row_group

    key = store.put_bytes("uploads/ingest.parquet", damaged(damage)).key

    class Runtime:
        artifacts = store

    def read() -> int:
        handle = _open_parquet(Runtime(), key)  # type: ignore[arg-type]
        return sum(_read_row_group(handle, rg, key).num_rows for rg in range(handle.num_row_groups))

    _refused_or_read(read)


@fuzz_settings
@given(damage=DAMAGE)
def test_serving_batch_inputs(store: LocalArtifactStore, damage) -> None:  # type: ignore[no-untyped-def]
    from atlas_serving.dataplane.artifact_batch import _read_rows
    from atlas_serving.domain import BundleRef

    ref = store.put_bytes("uploads/batch.parquet", damaged(damage))
    rows = _refused_or_read(lambda: _read_rows(store, BundleRef(uri=ref.uri)))
    assert rows is None or all(isinstance(row, dict) for row in rows)


@fuzz_settings
@given(damage=DAMAGE, csv=st.booleans())
def test_graph_tables(store: LocalArtifactStore, damage, csv: bool) -> None:  # type: ignore[no-untyped-def]
    from atlas_graph.ingest import TableInput, read_table

    data = damaged(damage)
    if csv:  # the same damage applied to a CSV rendering
        data = bytes(b ^ 0 for b in data[: len(data) // 4]) or b"a,b\n1"
    key = store.put_bytes("uploads/edges." + ("csv" if csv else "parquet"), data).key
    _refused_or_read(lambda: read_table(store, TableInput(keys=[key])))


def test_a_good_file_reads_everywhere(store: LocalArtifactStore, tmp_path: Path) -> None:
    from atlas_labeling.manifests import read_batches

    path = tmp_path / "m.parquet"
    path.write_bytes(GOOD)
    assert sum(len(rows) for _, rows in read_batches(path, False, ["id"], 0, 50)) == 300
