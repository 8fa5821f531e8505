"""A user's own file into the platform: read CSV / Parquet / JSONL, publish it as Parquet in
the suite's object store (the only way services accept files: sha256-recorded artifacts)."""

from __future__ import annotations

import argparse
import hashlib
import io
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq
from pydantic import SecretStr

from atlas.common.v1 import common_pb2
from atlas_core.cli._connect import data_dir
from atlas_core.config import S3Settings
from atlas_core.errors import FailedPrecondition, InvalidArgument
from atlas_core.launcher import RunState, ensure_credentials
from atlas_core.storage import ArtifactStore, open_artifact_store

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl"}
FORMATS[".ndjson"] = "jsonl"


def read_table(path: Path) -> pa.Table:
    """The file as an Arrow table; the format follows the extension."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InvalidArgument(
            f"{path.name}: unknown file type {path.suffix or '(none)'}; "
            "give a .csv, .parquet or .jsonl file"
        )
    if not path.is_file():
        raise FileNotFoundError(2, "No such file", str(path))
    try:
        if fmt == "csv":
            return pcsv.read_csv(path)
        if fmt == "jsonl":
            return pjson.read_json(path)
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidArgument(f"{path.name} is not a readable {fmt} file: {exc}") from None


def dataset_name(path: Path) -> str:
    """A dataset name from a file name: `Salaries (2).csv` -> `salaries_2`."""
    return re.sub(r"[^a-z0-9]+", "_", path.stem.lower()).strip("_") or "dataset"


def suite_store(args: argparse.Namespace) -> ArtifactStore:
    """The object store of the suite in --data-dir (the CLI reaches it with the suite's keys)."""
    root = data_dir(args)
    state = RunState.load(root / "run" / "state.json")
    if state is None:
        raise FailedPrecondition(
            f"files go through the object store of a suite started by `atlas up`; none runs "
            f"from {root} (pass --data-dir or set ATLAS_DATA_DIR to where it ran)"
        )
    creds = ensure_credentials(root)
    return open_artifact_store(
        S3Settings(
            endpoint=state.s3_endpoint,
            access_key=SecretStr(creds.s3_access_key),
            secret_key=SecretStr(creds.s3_secret_key),
        )
    )


def publish(args: argparse.Namespace, table: pa.Table, stem: str) -> common_pb2.ArtifactRef:
    """Write ``table`` as Parquet into the object store of the suite in --data-dir."""
    store = suite_store(args)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    data = buf.getvalue()
    # Content-addressed: uploading the same file twice writes one object.
    key = f"uploads/{stem}-{hashlib.sha256(data).hexdigest()[:16]}.parquet"
    ref = store.put_bytes(key, data)
    return common_pb2.ArtifactRef(uri=ref.uri, sha256=ref.sha256, size_bytes=ref.size)
