"""What the registry records of a bundle: its input schema as common data types, and its
lineage (bundle, training data, trial) from the manifest."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from atlas_core.storage import ArtifactRef
from atlas_serving.domain import Column, Lineage, LineageParent

_KIND_TYPES = {
    "categorical": "DATA_TYPE_CATEGORICAL",
    "boolean": "DATA_TYPE_BOOL",
    "datetime": "DATA_TYPE_TIMESTAMP",
}
_NUMERIC_TYPES = {
    "int64": "DATA_TYPE_INT64",
    "int32": "DATA_TYPE_INT64",
    "float32": "DATA_TYPE_FLOAT32",
}


def table_schema(schema: Any) -> list[Column]:
    """A bundle InputSchema as columns of common DataType names."""
    out = []
    for column in schema.columns:
        if column.kind == "numeric":
            dtype = _NUMERIC_TYPES.get(column.dtype, "DATA_TYPE_FLOAT64")
        else:
            dtype = _KIND_TYPES.get(column.kind, "DATA_TYPE_STRING")
        out.append(
            Column(
                name=column.name,
                data_type=dtype,
                nullable=bool(column.nullable),
                categories=tuple(str(c) for c in (column.categories or ())),
            )
        )
    return out


def lineage_from_manifest(
    manifest: Mapping[str, Any], bundle: ArtifactRef, extra: Iterable[LineageParent]
) -> Lineage:
    lineage = Lineage(operation="register_model_version")
    lineage.parents.append(
        LineageParent(
            "bundle",
            "artifact",
            {"uri": bundle.uri, "sha256": bundle.sha256, "size_bytes": str(bundle.size)},
        )
    )
    recorded = manifest.get("lineage") or {}
    dataset = recorded.get("dataset") or {}
    if dataset.get("name") or dataset.get("dataset_id"):
        lineage.parents.append(
            LineageParent(
                "training_data",
                "dataset",
                {
                    "dataset_id": str(dataset.get("dataset_id") or dataset.get("name")),
                    "version": str(int(dataset.get("version") or 0)),
                },
            )
        )
    if recorded.get("graph_id"):  # a graph service train job's node-lookup bundle
        lineage.parents.append(
            LineageParent(
                "training_graph",
                "graph",
                {
                    "graph_id": str(recorded["graph_id"]),
                    "partitioning_id": str(recorded.get("partitioning_id") or ""),
                },
            )
        )
        if recorded.get("graph_job_id"):
            lineage.produced_by = ("graph", str(recorded["graph_job_id"]))
    if recorded.get("study_name") or recorded.get("job_id"):
        lineage.parents.append(
            LineageParent(
                "trial",
                "trial",
                {
                    "job_id": str(recorded.get("job_id") or ""),
                    "study_name": str(recorded.get("study_name") or ""),
                    "trial_number": int(recorded.get("trial_number") or 0),
                },
            )
        )
        if recorded.get("job_id"):
            lineage.produced_by = ("trainer", str(recorded["job_id"]))
    lineage.parents.extend(extra)
    return lineage
