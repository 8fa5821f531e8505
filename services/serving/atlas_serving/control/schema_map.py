"""Translations between a bundle's input schema, the data service's feature types and the
common proto schema/lineage messages."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as data_pb
from atlas_core.storage import ArtifactRef

_KIND_TYPES = {
    "categorical": common_pb2.DATA_TYPE_CATEGORICAL,
    "boolean": common_pb2.DATA_TYPE_BOOL,
    "datetime": common_pb2.DATA_TYPE_TIMESTAMP,
}
_NUMERIC_TYPES = {
    "int64": common_pb2.DATA_TYPE_INT64,
    "int32": common_pb2.DATA_TYPE_INT64,
    "float32": common_pb2.DATA_TYPE_FLOAT32,
}

# Data-service feature types as the dtype names the bundle schema understands.
FEATURE_TYPE_NAMES = {
    data_pb.FEATURE_TYPE_FLOAT32: "float32",
    data_pb.FEATURE_TYPE_FLOAT32_VECTOR: "float32_vector",
    data_pb.FEATURE_TYPE_FLOAT64: "float64",
    data_pb.FEATURE_TYPE_INT64: "int64",
    data_pb.FEATURE_TYPE_STRING: "string",
    data_pb.FEATURE_TYPE_CATEGORICAL: "categorical",
    data_pb.FEATURE_TYPE_BOOL: "bool",
}


def table_schema(schema: Any) -> common_pb2.TableSchema:
    """A bundle InputSchema as a proto TableSchema."""
    out = common_pb2.TableSchema()
    for column in schema.columns:
        if column.kind == "numeric":
            dtype = _NUMERIC_TYPES.get(column.dtype, common_pb2.DATA_TYPE_FLOAT64)
        else:
            dtype = _KIND_TYPES.get(column.kind, common_pb2.DATA_TYPE_STRING)
        out.columns.add(
            name=column.name,
            data_type=dtype,
            nullable=column.nullable,
            categories=[str(c) for c in (column.categories or ())],
        )
    return out


def lineage_from_manifest(
    manifest: Mapping[str, Any], bundle: ArtifactRef, extra: Iterable[common_pb2.LineageParent]
) -> common_pb2.Lineage:
    lineage = common_pb2.Lineage(operation="register_model_version")
    lineage.parents.add(
        role="bundle",
        artifact=common_pb2.ArtifactRef(
            uri=bundle.uri, sha256=bundle.sha256, size_bytes=bundle.size
        ),
    )
    recorded = manifest.get("lineage") or {}
    dataset = recorded.get("dataset") or {}
    if dataset.get("name") or dataset.get("dataset_id"):
        lineage.parents.add(
            role="training_data",
            dataset=common_pb2.DatasetRef(
                dataset_id=str(dataset.get("dataset_id") or dataset.get("name")),
                version=int(dataset.get("version") or 0),
            ),
        )
    if recorded.get("study_name") or recorded.get("job_id"):
        lineage.parents.add(
            role="trial",
            trial=common_pb2.TrialRef(
                job_id=str(recorded.get("job_id") or ""),
                study_name=str(recorded.get("study_name") or ""),
                trial_number=int(recorded.get("trial_number") or 0),
            ),
        )
        if recorded.get("job_id"):
            lineage.produced_by.CopyFrom(
                common_pb2.JobRef(service="trainer", job_id=str(recorded["job_id"]))
            )
    lineage.parents.extend(extra)
    return lineage


def value_to_python(value: common_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "float32_vector":
        raise ValueError("vector values are not supported as model inputs")
    return getattr(value, kind)


def values_to_python(values: Any) -> dict[str, Any]:
    """A ``map<string, Value>`` as a dict (the hot path: no per-item generator)."""
    out: dict[str, Any] = {}
    for key in values:
        value = values[key]
        kind = value.WhichOneof("kind")
        if kind is None:
            out[key] = None
        elif kind == "float32_vector":
            raise ValueError("vector values are not supported as model inputs")
        else:
            out[key] = getattr(value, kind)
    return out


def python_kind(value: Any) -> str:
    return type(value).__name__
