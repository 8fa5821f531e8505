"""Reading and publishing dataset versions: Parquet in the object store + a catalog entry.

``publish_dataset`` uploads first and registers last, so a build that fails or is cancelled
part-way never leaves a visible dataset (an orphaned object at worst, never a half one).
"""

from __future__ import annotations

import dataclasses
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from atlas_core.errors import InvalidArgument
from atlas_core.storage import ArtifactRef, ArtifactStore
from atlas_data.datasets import (
    DatasetCatalog,
    DatasetRecord,
    LineageParent,
    artifact_dict,
    dataset_id_for,
)
from atlas_data.meta_features import compute_meta_features, label_distribution
from atlas_data.parquet_safe import parquet_safe


def read_parquet_artifacts(
    artifacts: ArtifactStore, refs: Sequence[ArtifactRef | str], columns: list[str] | None = None
) -> pa.Table:
    """Download (verified) and concatenate Parquet artifacts.

    Raises NotFound / DataLoss from the store, InvalidArgument for a file that is not valid
    Parquet (naming it).
    """
    tables = []
    with tempfile.TemporaryDirectory(prefix="atlas-data-") as tmp:
        for i, ref in enumerate(refs):
            path = Path(tmp) / f"{i}.parquet"
            artifacts.download_to_file(ref, path)
            try:
                tables.append(pq.read_table(path, columns=columns))
            except (pa.ArrowInvalid, OSError) as exc:
                name = ref.key if isinstance(ref, ArtifactRef) else ref
                raise InvalidArgument(
                    f"artifact '{name}' is not a readable Parquet file: {exc}",
                    reason="CORRUPT_PARQUET",
                ) from None
    if not tables:
        raise InvalidArgument("no input files", reason="NO_INPUT")
    try:
        return pa.concat_tables(tables, promote_options="default")
    except pa.ArrowInvalid as exc:
        raise InvalidArgument(
            f"input files have incompatible schemas: {exc}", reason="SCHEMA_MISMATCH"
        ) from None


def read_dataset(artifacts: ArtifactStore, record: DatasetRecord) -> pa.Table:
    return read_parquet_artifacts(artifacts, record.artifact_refs())


def table_schema(table: pa.Table) -> tuple[dict[str, Any], ...]:
    columns = []
    for f in table.schema:
        dims = f.type.list_size if pa.types.is_fixed_size_list(f.type) else 0
        columns.append({"name": f.name, "type": str(f.type), "dims": dims, "nullable": f.nullable})
    return tuple(columns)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def describe_table(
    table: pa.Table, label_column: str, *, skip_meta: bool
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(label distribution, meta-features) as JSON-ready dicts."""
    labels = None
    if label_column:
        if label_column not in table.column_names:
            raise InvalidArgument(
                f"label column '{label_column}' is not in the dataset "
                f"(columns: {', '.join(table.column_names[:20])})",
                reason="UNKNOWN_COLUMN",
            )
        labels = _jsonable(label_distribution(table, label_column))
    meta = (
        None
        if skip_meta
        else _jsonable(compute_meta_features(table, label_column or None).to_dict())
    )
    return labels, meta


def publish_dataset(
    artifacts: ArtifactStore,
    catalog: DatasetCatalog,
    table: pa.Table,
    *,
    name: str,
    parents: Sequence[LineageParent],
    operation: str,
    job_id: str = "",
    entity_column: str = "",
    timestamp_column: str = "",
    label_column: str = "",
    skip_meta_features: bool = False,
    description: str = "",
    labels: dict[str, str] | None = None,
) -> DatasetRecord:
    dataset_id = dataset_id_for(name)
    label_dist, meta = describe_table(table, label_column, skip_meta=skip_meta_features)
    with tempfile.TemporaryDirectory(prefix="atlas-data-") as tmp:
        path = Path(tmp) / "data.parquet"
        pq.write_table(parquet_safe(table), path, compression="zstd")
        ref = artifacts.put_file(f"datasets/{dataset_id}/{uuid.uuid4().hex}.parquet", path)
    record = DatasetRecord(
        dataset_id=dataset_id,
        version=0,
        name=name,
        artifacts=(artifact_dict(ref),),
        schema=table_schema(table),
        row_count=table.num_rows,
        entity_column=entity_column,
        timestamp_column=timestamp_column,
        label_column=label_column,
        label_distribution=label_dist,
        meta_features=meta,
        parents=tuple(parents),
        operation=operation,
        produced_by_job=job_id,
        description=description,
        labels=dict(labels or {}),
    )
    return catalog.register(record)
