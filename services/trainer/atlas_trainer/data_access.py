"""Reading a training table: a data-service dataset (through its client) or a Parquet
artifact. Parent datasets (for warm starts) come from the dataset, and so do its
meta-features when the data service has them for this target and feature set under the
current definition; else they are computed here from the Arrow table (the same function).

A dataset's entity id and sample timestamp columns (a matched labeling export has both) are
never features: the id would be memorised and the time leaks when each label was made."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from atlas.data.v1 import data_service_pb2 as data_pb
from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.errors import FailedPrecondition, InvalidArgument
from atlas_core.meta_features import (
    META_FEATURES_VERSION,
    VERSION_KEY,
    Landmarker,
    MetaFeatures,
    compute_meta_features,
)
from atlas_trainer.runtime import TrainerRuntime


@dataclass
class TrainingData:
    frame: pd.DataFrame
    dataset_key: str  # "<dataset_id>@<version>" or the artifact URI
    dataset: tuple[str, int] | None = None
    artifact_uri: str = ""
    parent_keys: list[str] = field(default_factory=list)
    meta_features: MetaFeatures | None = None
    # Columns the dataset marks as keys (never features): column -> why.
    key_columns: dict[str, str] = field(default_factory=dict)


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


def meta_features_from_pb(msg: data_pb.MetaFeatures) -> MetaFeatures:
    """The data service's ``MetaFeatures`` message as the shared dataclass; a message without
    a version predates versioning (version 1)."""
    extra = dict(msg.extra)
    version = int(extra.pop(VERSION_KEY, 1))
    # The message's scalar fields that the dataclass mirrors (a field added to the contract
    # later is not part of this definition version).
    scalars = set(MetaFeatures.__dataclass_fields__) - {"landmarkers", "extra", "task", "version"}
    names = [f.name for f in msg.DESCRIPTOR.fields if f.name in scalars]
    task = "none"
    if msg.target_column:
        task = "classification" if msg.classes else "regression"
    return MetaFeatures(
        **{name: getattr(msg, name) for name in names},
        landmarkers=[Landmarker(lm.name, lm.metric, lm.score) for lm in msg.landmarkers],
        extra=extra,
        task=task,
        version=version,
    )


def _feature_columns_dropped(spec: pb.TrainingJobSpec, keys: dict[str, str]) -> set[str]:
    """Columns the job leaves out of the features, besides the target."""
    dropped = {*spec.ignore_columns, spec.weight_column, spec.group_column, *keys}
    return dropped - {"", spec.target_column}


def key_columns(ds: data_pb.Dataset) -> dict[str, str]:
    """The dataset's entity id and sample timestamp columns, with why they are left out."""
    keys = {
        ds.entity_column: "the dataset's entity id column",
        ds.timestamp_column: "the dataset's sample timestamp column",
    }
    return {name: why for name, why in keys.items() if name}


def refuse_unmatched_export(ds: data_pb.Dataset) -> None:
    """FAILED_PRECONDITION for a registered labeling export that was never joined to
    features: labels alone (plus annotators, agreement, the label as JSON) are nothing to
    learn from, and some of them leak the label."""
    parents = ds.lineage.parents
    export = next((p.label_set for p in parents if p.HasField("label_set")), None)
    if export is None or any(p.HasField("feature_group") for p in parents):
        return
    raise FailedPrecondition(
        f"dataset {ds.ref.dataset_id} v{ds.ref.version} is labeling export "
        f"{export.export_id or '?'} of project {export.project_id}: labels without features. "
        "Match it to a feature group first (data SubmitMatchSamplesJob with this dataset as "
        f"sample_source, entity_column={ds.entity_column or 'entity_key'!r}, "
        f"timestamp_column={ds.timestamp_column or 'event_time'!r}, "
        f"label_column={ds.label_column or 'label'!r}) and train on the matched dataset",
        reason="LABEL_EXPORT_NOT_MATCHED",
        metadata={"dataset": ds.ref.dataset_id, "export_id": export.export_id},
    )


def job_meta_features(
    table: pa.Table,
    spec: pb.TrainingJobSpec,
    recorded: data_pb.MetaFeatures | None,
    keys: dict[str, str] | None = None,
) -> MetaFeatures | None:
    """The data service's meta-features when they describe exactly this job's features and
    target under the current definition; else computed from ``table`` (None without a
    usable target: ``split_target`` refuses the job then)."""
    dropped = _feature_columns_dropped(spec, keys or {})
    if recorded is not None and recorded.target_column == spec.target_column and not dropped:
        meta = meta_features_from_pb(recorded)
        if meta.version == META_FEATURES_VERSION:
            return meta
    if not spec.target_column or spec.target_column not in table.column_names:
        return None
    return compute_meta_features(
        table.drop_columns([c for c in dropped if c in table.column_names]), spec.target_column
    )


def load_training_data(
    rt: TrainerRuntime, spec: pb.TrainingJobSpec, *, with_meta_features: bool = False
) -> TrainingData:
    """The job's table; ``with_meta_features`` also gives its meta-features (for warm
    starts and the meta-store)."""
    if spec.HasField("dataset") and spec.dataset.dataset_id:
        with rt.data_client() as client:
            ds = client.get_dataset(spec.dataset.dataset_id, spec.dataset.version)
        refuse_unmatched_export(ds)
        table = _read_parquet(rt, [a.uri for a in ds.artifacts])
        keys = {k: why for k, why in key_columns(ds).items() if k in table.column_names}
        parents = [
            f"{p.dataset.dataset_id}@{p.dataset.version}"
            for p in ds.lineage.parents
            if p.HasField("dataset")
        ]
        recorded = ds.meta_features if ds.HasField("meta_features") else None
        return TrainingData(
            _vectors_to_columns(table),
            f"{ds.ref.dataset_id}@{ds.ref.version}",
            (ds.ref.dataset_id, ds.ref.version),
            parent_keys=parents,
            meta_features=(
                job_meta_features(table, spec, recorded, keys) if with_meta_features else None
            ),
            key_columns=keys,
        )
    if spec.dataset_artifact.uri:
        table = _read_parquet(rt, [spec.dataset_artifact.uri])
        return TrainingData(
            _vectors_to_columns(table),
            spec.dataset_artifact.uri,
            artifact_uri=spec.dataset_artifact.uri,
            meta_features=job_meta_features(table, spec, None) if with_meta_features else None,
        )
    raise InvalidArgument(
        "spec: give dataset (a data-service dataset) or dataset_artifact", reason="NO_DATASET"
    )


def conflicting_labels(data: TrainingData, target: str) -> int:
    """Samples (same entity and time) that carry more than one label: a relabelled item in
    an export holding every label version. Each row still trains as it is; the report says so."""
    keys = [c for c in data.key_columns if c in data.frame.columns]
    if len(keys) < 2 or target not in data.frame.columns:
        return 0
    labels = data.frame.groupby(keys, dropna=False, sort=False)[target].nunique(dropna=False)
    return int((labels > 1).sum())


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
    drop = {target, *_feature_columns_dropped(spec, data.key_columns)}
    missing = [c for c in spec.ignore_columns if c not in frame.columns]
    if missing:
        raise InvalidArgument(
            f"ignore_columns: '{missing[0]}' is not in the dataset", reason="UNKNOWN_COLUMN"
        )
    return frame.drop(columns=[c for c in drop if c in frame.columns]), frame[target]
