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
import pyarrow.ipc as ipc
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


def publish_dataset_file(
    artifacts: ArtifactStore,
    catalog: DatasetCatalog,
    path: Path,
    *,
    label_column: str = "",
    skip_meta_features: bool = False,
    **record: Any,
) -> DatasetRecord:
    """:func:`publish_dataset` of a table in an Arrow IPC file, without loading it: the file is
    memory-mapped (its pages are the page cache's, not the process's heap) for the label
    distribution and the meta-features, and converted to Parquet one batch at a time."""
    with pa.memory_map(str(path)) as source, ipc.open_file(source) as reader:
        table = reader.read_all()  # zero-copy over the mapping
        labels, meta = describe_table(table, label_column, skip_meta=skip_meta_features)
        with tempfile.TemporaryDirectory(prefix="atlas-data-", dir=path.parent) as tmp:
            out = Path(tmp) / "data.parquet"
            with pq.ParquetWriter(out, table.schema, compression="zstd") as writer:
                for i in range(reader.num_record_batches):
                    writer.write_table(parquet_safe(pa.table(reader.get_batch(i))))
            return _register(
                artifacts,
                catalog,
                out,
                table,
                labels=labels,
                meta=meta,
                label_column=label_column,
                **record,
            )


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
    label_dist, meta = describe_table(table, label_column, skip_meta=skip_meta_features)
    with tempfile.TemporaryDirectory(prefix="atlas-data-") as tmp:
        path = Path(tmp) / "data.parquet"
        pq.write_table(parquet_safe(table), path, compression="zstd")
        return _register(
            artifacts,
            catalog,
            path,
            table,
            labels=label_dist,
            meta=meta,
            name=name,
            parents=parents,
            operation=operation,
            job_id=job_id,
            entity_column=entity_column,
            timestamp_column=timestamp_column,
            label_column=label_column,
            description=description,
            dataset_labels=labels,
        )


def _register(
    artifacts: ArtifactStore,
    catalog: DatasetCatalog,
    path: Path,
    table: pa.Table,
    *,
    labels: dict[str, Any] | None,
    meta: dict[str, Any] | None,
    name: str,
    parents: Sequence[LineageParent],
    operation: str,
    job_id: str = "",
    entity_column: str = "",
    timestamp_column: str = "",
    label_column: str = "",
    description: str = "",
    dataset_labels: dict[str, str] | None = None,
) -> DatasetRecord:
    """Upload the Parquet file, then register the version (last: nothing half-visible)."""
    dataset_id = dataset_id_for(name)
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
        label_distribution=labels,
        meta_features=meta,
        parents=tuple(parents),
        operation=operation,
        produced_by_job=job_id,
        description=description,
        labels=dict(dataset_labels or {}),
    )
    return catalog.register(record)
