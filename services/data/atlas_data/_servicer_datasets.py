"""Dataset RPCs of the data servicer (translation only)."""

from __future__ import annotations

import asyncio
from typing import Any

from atlas.common.v1 import common_pb2
from atlas.data.v1 import data_service_pb2 as pb
from atlas_core import proto_convert as pc
from atlas_core.errors import DataLoss, InvalidArgument
from atlas_core.meta_features import META_FEATURES_VERSION
from atlas_data import convert
from atlas_data.builds import (
    describe_table,
    read_dataset,
    read_parquet_artifacts,
    table_schema,
)
from atlas_data.datasets import DatasetRecord, LineageParent, artifact_dict, dataset_id_for
from atlas_data.service import DataService

to_thread = asyncio.to_thread


def _parent_from_pb(parent: Any) -> LineageParent:
    which = parent.WhichOneof("ref")
    if which == "dataset":
        return LineageParent(
            parent.role,
            "dataset",
            {"dataset_id": parent.dataset.dataset_id, "version": parent.dataset.version},
        )
    if which == "feature_group":
        return LineageParent(
            parent.role,
            "feature_group",
            {"name": parent.feature_group.name, "version": parent.feature_group.version},
        )
    if which == "artifact":
        return LineageParent(
            parent.role, "artifact", {"uri": parent.artifact.uri, "sha256": parent.artifact.sha256}
        )
    if which == "label_set":
        return LineageParent(
            parent.role,
            "label_set",
            {"project_id": parent.label_set.project_id, "export_id": parent.label_set.export_id},
        )
    raise InvalidArgument(
        f"parents: lineage kind '{which}' is not accepted for datasets", reason="BAD_PARENT"
    )


class DatasetRpcs:
    svc: DataService

    async def RegisterDataset(self, request: Any, context: Any) -> Any:
        if not request.artifacts:
            raise InvalidArgument(
                "artifacts: give at least one Parquet artifact", reason="NO_INPUT"
            )
        if not request.name:
            raise InvalidArgument("name is empty", reason="EMPTY_NAME")
        rt = self.svc.rt
        seen = await to_thread(self.svc.idempotency.recall, "RegisterDataset", request.request_id)
        if seen is not None:
            record = await to_thread(rt.datasets.get, seen["dataset_id"], seen["version"])
            return pb.RegisterDatasetResponse(dataset=convert.dataset_to_pb(record))

        def register() -> DatasetRecord:
            refs = []
            for art in request.artifacts:
                ref = rt.artifacts.stat(rt.artifacts.key_for_uri(art.uri))
                if art.sha256 and art.sha256 != ref.sha256:
                    raise DataLoss(
                        f"artifact {art.uri}: sha256 {ref.sha256} does not match "
                        f"the expected {art.sha256}",
                        reason="CHECKSUM_MISMATCH",
                    )
                refs.append(ref)
            table = read_parquet_artifacts(rt.artifacts, refs)
            for column in (request.entity_column, request.timestamp_column):
                if column and column not in table.column_names:
                    raise InvalidArgument(
                        f"column '{column}' is not in the files", reason="UNKNOWN_COLUMN"
                    )
            label_dist, meta = describe_table(table, request.label_column, skip_meta=False)
            parents = [_parent_from_pb(p) for p in request.parents] or [
                LineageParent("source", "artifact", {"uri": r.uri, "sha256": r.sha256})
                for r in refs
            ]
            return rt.datasets.register(
                DatasetRecord(
                    dataset_id=dataset_id_for(request.name),
                    version=0,
                    name=request.name,
                    artifacts=tuple(artifact_dict(r) for r in refs),
                    schema=table_schema(table),
                    row_count=table.num_rows,
                    entity_column=request.entity_column,
                    timestamp_column=request.timestamp_column,
                    label_column=request.label_column,
                    label_distribution=label_dist,
                    meta_features=meta,
                    parents=tuple(parents),
                    operation="register",
                    description=request.description,
                    labels=dict(request.labels),
                )
            )

        record = await to_thread(register)
        await to_thread(
            self.svc.idempotency.remember,
            "RegisterDataset",
            request.request_id,
            {"dataset_id": record.dataset_id, "version": record.version},
        )
        return pb.RegisterDatasetResponse(dataset=convert.dataset_to_pb(record))

    async def GetDataset(self, request: Any, context: Any) -> Any:
        record = await to_thread(
            self.svc.rt.datasets.get, request.ref.dataset_id, request.ref.version
        )
        return pb.GetDatasetResponse(dataset=convert.dataset_to_pb(record))

    async def ListDatasets(self, request: Any, context: Any) -> Any:
        scope = pc.list_scope(request)
        offset, limit = pc.page_window(request.page, scope)
        parent = (
            (request.parent.dataset_id, request.parent.version)
            if request.HasField("parent") and request.parent.dataset_id
            else None
        )
        records, total = await to_thread(
            self.svc.rt.datasets.list,
            dataset_id=request.dataset_id,
            name_prefix=request.name_prefix,
            parent=parent,
            labels=dict(request.labels),
            offset=offset,
            limit=limit,
        )
        return pb.ListDatasetsResponse(
            datasets=[convert.dataset_to_pb(r) for r in records],
            page=pc.page_response(offset, limit, offset + limit < total, total, scope=scope),
        )

    async def DeleteDataset(self, request: Any, context: Any) -> Any:
        rt = self.svc.rt
        seen = await to_thread(self.svc.idempotency.recall, "DeleteDataset", request.request_id)
        if seen is not None:
            return pb.DeleteDatasetResponse(deleted_versions=seen["deleted"])

        def delete() -> int:
            doomed = rt.datasets.delete(request.ref.dataset_id, request.ref.version)
            for record in doomed:
                for art in record.artifacts:
                    rt.artifacts.delete(art["key"])
            return len(doomed)

        deleted = await to_thread(delete)
        await to_thread(
            self.svc.idempotency.remember, "DeleteDataset", request.request_id, {"deleted": deleted}
        )
        return pb.DeleteDatasetResponse(deleted_versions=deleted)

    async def GetDatasetMetaFeatures(self, request: Any, context: Any) -> Any:
        rt = self.svc.rt

        def compute() -> DatasetRecord:
            record = rt.datasets.get(request.ref.dataset_id, request.ref.version)
            target = request.target_column or record.label_column
            cached = record.meta_features
            if (
                cached
                and (cached.get("target_column") or "") == (target or "")
                and cached.get("version") == META_FEATURES_VERSION  # else: recompute
            ):
                return record
            table = read_dataset(rt.artifacts, record)
            _, meta = describe_table(table, target, skip_meta=False)
            return rt.datasets.update_meta_features(record, meta or {})

        record = await to_thread(compute)
        return pb.GetDatasetMetaFeaturesResponse(
            meta_features=convert.meta_to_pb(record.meta_features),
            ref=common_pb2.DatasetRef(dataset_id=record.dataset_id, version=record.version),
        )
