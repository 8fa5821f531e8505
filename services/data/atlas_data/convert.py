"""Proto <-> domain conversions for the data service: the only module that knows both."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from google.protobuf import duration_pb2, json_format

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as pb
from atlas_core.errors import InvalidArgument
from atlas_core.jobs import JobRecord
from atlas_core.meta_features import VERSION_KEY
from atlas_core.proto_convert import dt_to_ts, duration_seconds, job_status, ts_to_us
from atlas_data.datasets import DatasetRecord, LineageParent
from atlas_data.feature_groups import FeatureGroup
from atlas_data.records import RawRecord
from atlas_data.schema import (
    EntityKeyType,
    FeatureGroupSpec,
    FeatureSpec,
    FeatureType,
    RecordLayout,
    ValueBlock,
)

_KEY_TYPES = {
    pb.ENTITY_KEY_TYPE_INT64: EntityKeyType.INT64,
    pb.ENTITY_KEY_TYPE_STRING: EntityKeyType.STRING,
}
_KEY_TYPES_PB = {v: k for k, v in _KEY_TYPES.items()}
_FEATURE_TYPES = {
    pb.FEATURE_TYPE_FLOAT32: FeatureType.FLOAT32,
    pb.FEATURE_TYPE_FLOAT32_VECTOR: FeatureType.FLOAT32_VECTOR,
    pb.FEATURE_TYPE_FLOAT64: FeatureType.FLOAT64,
    pb.FEATURE_TYPE_INT64: FeatureType.INT64,
    pb.FEATURE_TYPE_STRING: FeatureType.STRING,
    pb.FEATURE_TYPE_CATEGORICAL: FeatureType.CATEGORICAL,
    pb.FEATURE_TYPE_BOOL: FeatureType.BOOL,
}
_FEATURE_TYPES_PB = {v: k for k, v in _FEATURE_TYPES.items()}
_BLOCKS_PB = {
    ValueBlock.FLOAT32: pb.VALUE_BLOCK_FLOAT32,
    ValueBlock.FLOAT64: pb.VALUE_BLOCK_FLOAT64,
    ValueBlock.INT64: pb.VALUE_BLOCK_INT64,
    ValueBlock.STRING: pb.VALUE_BLOCK_STRING,
}


# -- feature groups --------------------------------------------------------------------------


def spec_from_pb(msg: pb.FeatureGroupSpec) -> FeatureGroupSpec:
    if msg.entity_key_type not in _KEY_TYPES:
        raise InvalidArgument("spec.entity_key_type must be INT64 or STRING", reason="INVALID_SPEC")
    features = []
    for i, f in enumerate(msg.features):
        if f.dtype not in _FEATURE_TYPES:
            raise InvalidArgument(
                f"spec.features[{i}] ('{f.name}'): dtype is unspecified", reason="INVALID_SPEC"
            )
        features.append(
            FeatureSpec(f.name, _FEATURE_TYPES[f.dtype], f.dims, tuple(f.categories), f.description)
        )
    ttl = duration_seconds(msg.ttl, "spec.ttl") if msg.HasField("ttl") else None
    return FeatureGroupSpec(
        name=msg.name,
        entity_key=msg.entity_key,
        entity_key_type=_KEY_TYPES[msg.entity_key_type],
        event_time_column=msg.event_time_column,
        features=tuple(features),
        ttl_seconds=ttl,
        description=msg.description,
        labels=dict(msg.labels),
    )


def spec_to_pb(spec: FeatureGroupSpec) -> pb.FeatureGroupSpec:
    msg = pb.FeatureGroupSpec(
        name=spec.name,
        entity_key=spec.entity_key,
        entity_key_type=_KEY_TYPES_PB[spec.entity_key_type],
        event_time_column=spec.event_time_column,
        description=spec.description,
        labels=dict(spec.labels),
        features=[
            pb.FeatureSpec(
                name=f.name,
                dtype=_FEATURE_TYPES_PB[f.dtype],
                dims=f.dims,
                categories=list(f.categories),
                description=f.description,
            )
            for f in spec.features
        ],
    )
    if spec.ttl_seconds is not None:
        msg.ttl.CopyFrom(
            duration_pb2.Duration(
                seconds=int(spec.ttl_seconds), nanos=int(spec.ttl_seconds % 1 * 1e9)
            )
        )
    return msg


def layout_to_pb(layout: RecordLayout) -> pb.RecordLayout:
    return pb.RecordLayout(
        slots=[
            pb.FeatureSlot(
                name=s.name,
                dtype=_FEATURE_TYPES_PB[s.dtype],
                dims=s.dims,
                block=_BLOCKS_PB[s.block],
                offset=s.offset,
            )
            for s in layout.slots
        ],
        float32_width=layout.float32_width,
        float64_width=layout.float64_width,
        int64_width=layout.int64_width,
        string_width=layout.string_width,
    )


def group_to_pb(group: FeatureGroup, stats: pb.FeatureGroupStats | None = None) -> pb.FeatureGroup:
    msg = pb.FeatureGroup(
        spec=spec_to_pb(group.spec),
        version=group.version,
        layout=layout_to_pb(group.layout),
        create_time=dt_to_ts(group.created_at),
    )
    if stats is not None:
        msg.stats.CopyFrom(stats)
    return msg


# -- records ---------------------------------------------------------------------------------


def raw_records(records: Iterable[pb.FeatureRecord]) -> list[RawRecord]:
    out = []
    for r in records:
        which = r.entity_key.WhichOneof("key")
        key = None if which is None else getattr(r.entity_key, which)
        out.append(
            RawRecord(
                entity_key=key,
                event_time_us=ts_to_us(r.event_time) if r.HasField("event_time") else None,
                float32_bytes=r.float32_values,
                float64=r.float64_values,
                int64=r.int64_values,
                strings=r.string_values,
                null_mask=r.null_mask,
            )
        )
    return out


def entity_keys(msg: pb.EntityKeys) -> list[int] | list[str]:
    if msg.int64_keys and msg.string_keys:
        raise InvalidArgument(
            "entity_keys: set int64_keys or string_keys, not both", reason="INVALID_KEYS"
        )
    return list(msg.int64_keys) if msg.int64_keys else list(msg.string_keys)


def group_ref(msg: common_pb2.FeatureGroupRef, field: str = "feature_group") -> tuple[str, int]:
    if not msg.name:
        raise InvalidArgument(f"{field}.name is empty", reason="EMPTY_NAME")
    return msg.name, int(msg.version)


# -- datasets --------------------------------------------------------------------------------

_META_FIELDS = (
    "rows",
    "columns",
    "numeric_columns",
    "categorical_columns",
    "missing_ratio",
    "classes",
    "class_entropy",
    "class_imbalance_ratio",
    "skew_mean",
    "skew_min",
    "skew_max",
    "skew_std",
    "kurtosis_mean",
    "kurtosis_min",
    "kurtosis_max",
    "kurtosis_std",
    "log_rows_per_column",
    "target_column",
)


def meta_to_pb(meta: dict[str, Any] | None) -> pb.MetaFeatures | None:
    if not meta:
        return None
    msg = pb.MetaFeatures(**{k: meta[k] for k in _META_FIELDS if k in meta and meta[k] is not None})
    for lm in meta.get("landmarkers", []):
        if isinstance(lm, dict):
            msg.landmarkers.add(name=lm["name"], metric=lm["metric"], score=lm["score"])
        else:
            name, metric, score = lm
            msg.landmarkers.add(name=name, metric=metric, score=score)
    for key, value in (meta.get("extra") or {}).items():
        if isinstance(value, (int, float)):
            msg.extra[key] = float(value)
    # Records from before versioning carry no version: they are version 1.
    msg.extra[VERSION_KEY] = float(meta.get("version", 1))
    return msg


def labels_to_pb(column: str, dist: dict[str, Any] | None) -> pb.LabelDistribution | None:
    if not dist:
        return None
    msg = pb.LabelDistribution(label_column=column)
    counts = dist.get("counts") or {}
    items = counts.items() if isinstance(counts, dict) else counts
    for label, count in items:
        msg.counts.add(label=str(label), count=int(count))
    for key in ("mean", "stddev", "min", "max", "missing"):
        if dist.get(key) is not None:
            setattr(msg, key, dist[key])
    return msg


_DATA_TYPES = (
    ("fixed_size_list", common_pb2.DATA_TYPE_FLOAT32_VECTOR),
    ("timestamp", common_pb2.DATA_TYPE_TIMESTAMP),
    ("int", common_pb2.DATA_TYPE_INT64),
    ("float", common_pb2.DATA_TYPE_FLOAT32),
    ("double", common_pb2.DATA_TYPE_FLOAT64),
    ("string", common_pb2.DATA_TYPE_STRING),
    ("bool", common_pb2.DATA_TYPE_BOOL),
    ("dictionary", common_pb2.DATA_TYPE_CATEGORICAL),
)


def _data_type(arrow_type: str) -> common_pb2.DataType:
    for prefix, value in _DATA_TYPES:
        if arrow_type.startswith(prefix):
            return value
    return common_pb2.DATA_TYPE_UNSPECIFIED


def parent_to_pb(parent: LineageParent) -> common_pb2.LineageParent:
    kind, ref, role = parent.kind, parent.ref, parent.role
    msg = common_pb2.LineageParent(role=role)
    if kind == "dataset":
        msg.dataset.CopyFrom(
            common_pb2.DatasetRef(dataset_id=ref["dataset_id"], version=ref["version"])
        )
    elif kind == "feature_group":
        msg.feature_group.CopyFrom(
            common_pb2.FeatureGroupRef(name=ref["name"], version=ref["version"])
        )
    elif kind == "artifact":
        msg.artifact.CopyFrom(common_pb2.ArtifactRef(uri=ref["uri"], sha256=ref.get("sha256", "")))
    elif kind == "label_set":
        msg.label_set.CopyFrom(
            common_pb2.LabelSetRef(project_id=ref["project_id"], export_id=ref.get("export_id", ""))
        )
    return msg


def dataset_to_pb(r: DatasetRecord) -> pb.Dataset:
    msg = pb.Dataset(
        ref=common_pb2.DatasetRef(dataset_id=r.dataset_id, version=r.version),
        name=r.name,
        row_count=r.row_count,
        entity_column=r.entity_column,
        timestamp_column=r.timestamp_column,
        label_column=r.label_column,
        description=r.description,
        labels=r.labels,
        artifacts=[
            common_pb2.ArtifactRef(
                uri=a["uri"],
                sha256=a["sha256"],
                size_bytes=a["size"],
                media_type="application/vnd.apache.parquet",
            )
            for a in r.artifacts
        ],
        schema=common_pb2.TableSchema(
            columns=[
                common_pb2.ColumnSchema(
                    name=c["name"],
                    data_type=_data_type(c["type"]),
                    dims=c["dims"],
                    nullable=c["nullable"],
                )
                for c in r.schema
            ]
        ),
        lineage=common_pb2.Lineage(
            parents=[parent_to_pb(p) for p in r.parents],
            operation=r.operation,
            produced_by=common_pb2.JobRef(service="data", job_id=r.produced_by_job)
            if r.produced_by_job
            else None,
        ),
    )
    if r.created_at:
        msg.create_time.CopyFrom(dt_to_ts(datetime.fromisoformat(r.created_at)))
        msg.lineage.create_time.CopyFrom(msg.create_time)
    dist = labels_to_pb(r.label_column, r.label_distribution)
    if dist is not None:
        msg.label_distribution.CopyFrom(dist)
    meta = meta_to_pb(r.meta_features)
    if meta is not None:
        msg.meta_features.CopyFrom(meta)
    return msg


# -- jobs ------------------------------------------------------------------------------------

JOB_KINDS = {
    "ingest": pb.DATA_JOB_KIND_INGEST,
    "compaction": pb.DATA_JOB_KIND_COMPACTION,
    "match_samples": pb.DATA_JOB_KIND_MATCH_SAMPLES,
    "derive_dataset": pb.DATA_JOB_KIND_DERIVE_DATASET,
}
JOB_KINDS_FROM_PB = {v: k for k, v in JOB_KINDS.items()}
_SPEC_FIELDS = {
    "ingest": "ingest",
    "compaction": "compaction",
    "match_samples": "match_samples",
    "derive_dataset": "derive_dataset",
}


def job_to_pb(
    record: JobRecord, datasets: Callable[[str, int], DatasetRecord | None]
) -> pb.DataJob:
    """``datasets`` looks up the dataset versions a finished job produced."""
    job = pb.DataJob(
        status=job_status(record), kind=JOB_KINDS.get(record.kind, pb.DATA_JOB_KIND_UNSPECIFIED)
    )
    spec_field = _SPEC_FIELDS.get(record.kind)
    if spec_field:
        json_format.ParseDict(record.spec, getattr(job, spec_field))
    result = record.result or {}
    if record.kind == "ingest" and result:
        job.ingest_result.CopyFrom(pb.IngestResult(**result))
    elif record.kind == "compaction" and result:
        job.compaction_result.CopyFrom(pb.CompactionResult(**result))
    elif result:
        produced = [datasets(ds_id, version) for ds_id, version in result.get("datasets", [])]
        job.dataset_result.CopyFrom(
            pb.DatasetResult(
                datasets=[dataset_to_pb(d) for d in produced if d is not None],
                unmatched_samples=result.get("unmatched_samples", 0),
                warnings=result.get("warnings", []),
            )
        )
    return job
