"""Reading a training table: a data-service dataset (through its client) or a Parquet
artifact. Parent datasets (for warm starts) and meta-features come from the dataset."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.errors import InvalidArgument
from atlas_trainer.runtime import TrainerRuntime


@dataclass
class TrainingData:
    frame: pd.DataFrame
    dataset_key: str  # "<dataset_id>@<version>" or the artifact URI
    dataset: tuple[str, int] | None = None
    artifact_uri: str = ""
    parent_keys: list[str] = field(default_factory=list)
    meta_features: dict[str, float] | None = None


def dataset_pair(key: str) -> list[Any] | None:
    """``[dataset_id, version]`` of a ``"<dataset_id>@<version>"`` key; None for an artifact
    URI (the key of a study trained on a bare Parquet artifact)."""
    name, sep, version = key.rpartition("@")
    return [name, int(version)] if sep and version.isdigit() else None


def _read_parquet(rt: TrainerRuntime, uris: list[str]) -> pa.Table:
    tables = []
    with tempfile.TemporaryDirectory(prefix="atlas-trainer-") as tmp:
        for i, uri in enumerate(uris):
            path = Path(tmp) / f"{i}.parquet"
            rt.artifacts.download_to_file(rt.artifacts.key_for_uri(uri), path)
            try:
                tables.append(pq.read_table(path))
            except (pa.ArrowInvalid, OSError) as exc:
                raise InvalidArgument(
                    f"training data {uri} is not readable Parquet: {exc}", reason="CORRUPT_PARQUET"
                ) from None
    return pa.concat_tables(tables, promote_options="default")


def _vectors_to_columns(table: pa.Table) -> pd.DataFrame:
    """Fixed-size float vectors become one numeric column per dimension."""
    frame = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_fixed_size_list(column.type):
            values = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
            dims = column.type.list_size
            matrix = values.reshape(-1, dims)
            for d in range(dims):
                frame[f"{name}_{d}"] = matrix[:, d]
        else:
            frame[name] = column.to_pandas()
    return pd.DataFrame(frame)


def load_training_data(rt: TrainerRuntime, spec: pb.TrainingJobSpec) -> TrainingData:
    if spec.HasField("dataset") and spec.dataset.dataset_id:
        with rt.data_client() as client:
            ds = client.get_dataset(spec.dataset.dataset_id, spec.dataset.version)
        table = _read_parquet(rt, [a.uri for a in ds.artifacts])
        parents = [
            f"{p.dataset.dataset_id}@{p.dataset.version}"
            for p in ds.lineage.parents
            if p.HasField("dataset")
        ]
        meta = None
        if ds.HasField("meta_features") and ds.meta_features.target_column == spec.target_column:
            mf = ds.meta_features
            meta = {
                f.name: float(getattr(mf, f.name))
                for f in mf.DESCRIPTOR.fields
                if f.type in (f.TYPE_DOUBLE, f.TYPE_INT64)
            }
        return TrainingData(
            _vectors_to_columns(table),
            f"{ds.ref.dataset_id}@{ds.ref.version}",
            (ds.ref.dataset_id, ds.ref.version),
            parent_keys=parents,
            meta_features=meta,
        )
    if spec.dataset_artifact.uri:
        table = _read_parquet(rt, [spec.dataset_artifact.uri])
        return TrainingData(
            _vectors_to_columns(table),
            spec.dataset_artifact.uri,
            artifact_uri=spec.dataset_artifact.uri,
        )
    raise InvalidArgument(
        "spec: give dataset (a data-service dataset) or dataset_artifact", reason="NO_DATASET"
    )


def split_target(data: TrainingData, spec: pb.TrainingJobSpec) -> tuple[pd.DataFrame, pd.Series]:
    frame = data.frame
    target = spec.target_column
    if not target:
        raise InvalidArgument("spec.target_column is empty", reason="NO_TARGET")
    if target not in frame.columns:
        raise InvalidArgument(
            f"target column '{target}' is not in the dataset (columns: "
            f"{', '.join(map(str, frame.columns[:20]))})",
            reason="UNKNOWN_TARGET",
            metadata={"column": target},
        )
    drop = {target, *spec.ignore_columns}
    for extra in (spec.weight_column, spec.group_column):
        if extra:
            drop.add(extra)
    missing = [c for c in spec.ignore_columns if c not in frame.columns]
    if missing:
        raise InvalidArgument(
            f"ignore_columns: '{missing[0]}' is not in the dataset", reason="UNKNOWN_COLUMN"
        )
    return frame.drop(columns=[c for c in drop if c in frame.columns]), frame[target]
