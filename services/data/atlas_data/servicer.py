"""gRPC front end of the data service: translation only (see convert.py and service.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from atlas.data.v1 import data_service_pb2 as pb
from atlas.data.v1 import data_service_pb2_grpc as pb_grpc
from atlas.data.v1 import online_service_pb2 as online_pb
from atlas.data.v1 import online_service_pb2_grpc as online_grpc
from atlas_core import lineage
from atlas_core import proto_convert as pc
from atlas_core.errors import InvalidArgument, NotFound, ResourceExhausted
from atlas_core.rpc import ServiceDef
from atlas_data import convert
from atlas_data._servicer_datasets import DatasetRpcs
from atlas_data.datasets import DatasetRecord
from atlas_data.jobs import (
    JOBS,
    KIND_COMPACTION,
    KIND_DERIVE,
    KIND_INGEST,
    KIND_MATCH,
)
from atlas_data.service import DataService, job_uses_group

to_thread = asyncio.to_thread


class DataServicer(DatasetRpcs, pb_grpc.DataServiceServicer):
    def __init__(self, service: DataService) -> None:
        self.svc = service
        self.rt = service.rt
        self.online = OnlineFeatureServicer(service)

    # ---- lineage ----------------------------------------------------------------------------

    async def GetLineage(self, request: Any, context: Any) -> Any:
        view = await to_thread(
            self.svc.lineage, request.id, request.children_limit, request.ancestor_depth
        )
        return pb.GetLineageResponse(
            lineage=lineage.to_pb(view), ancestors=[lineage.to_pb(a) for a in view.ancestors]
        )

    # ---- feature groups ---------------------------------------------------------------------

    async def CreateFeatureGroup(self, request: Any, context: Any) -> Any:
        spec = convert.spec_from_pb(request.spec)
        seen = await to_thread(
            self.svc.idempotency.recall, "CreateFeatureGroup", request.request_id
        )
        if seen is not None:
            group = await to_thread(self.rt.groups.get, seen["name"], seen["version"])
        else:
            group = await to_thread(
                self.svc.create_feature_group, spec, new_version=request.new_version
            )
            await to_thread(
                self.svc.idempotency.remember,
                "CreateFeatureGroup",
                request.request_id,
                {"name": group.spec.name, "version": group.version},
            )
        return pb.CreateFeatureGroupResponse(feature_group=convert.group_to_pb(group))

    async def _stats(self, group: Any) -> pb.FeatureGroupStats:
        def compute() -> pb.FeatureGroupStats:
            parts = self.rt.offline.partitions(group.spec.name)
            stats = pb.FeatureGroupStats(
                online_entities=self.rt.online.count(group.store_key),
                offline_rows=sum(p.row_count for p in parts),
                offline_partitions=len(parts),
            )
            if parts:
                stats.max_event_time.CopyFrom(pc.us_to_ts(max(p.max_event_us for p in parts)))
            return stats

        return await to_thread(compute)

    async def GetFeatureGroup(self, request: Any, context: Any) -> Any:
        name, version = convert.group_ref(request.ref, "ref")
        group = await to_thread(self.rt.groups.get, name, version)
        return pb.GetFeatureGroupResponse(
            feature_group=convert.group_to_pb(group, await self._stats(group))
        )

    async def ListFeatureGroups(self, request: Any, context: Any) -> Any:
        scope = pc.list_scope(request)
        offset, limit = pc.page_window(request.page, scope)
        groups, total = await to_thread(
            self.rt.groups.list,
            name_prefix=request.name_prefix,
            all_versions=request.all_versions,
            labels=dict(request.labels),
            offset=offset,
            limit=limit,
        )
        return pb.ListFeatureGroupsResponse(
            feature_groups=[convert.group_to_pb(g) for g in groups],
            page=pc.page_response(offset, limit, offset + limit < total, total, scope=scope),
        )

    async def DeleteFeatureGroup(self, request: Any, context: Any) -> Any:
        if not request.name:
            raise InvalidArgument("name is empty", reason="EMPTY_NAME")
        seen = await to_thread(
            self.svc.idempotency.recall, "DeleteFeatureGroup", request.request_id
        )
        if seen is not None:
            return pb.DeleteFeatureGroupResponse(deleted_versions=seen["deleted"])
        deleted = await to_thread(
            self.svc.delete_feature_group, request.name, keep_offline=request.keep_offline
        )
        await to_thread(
            self.svc.idempotency.remember,
            "DeleteFeatureGroup",
            request.request_id,
            {"deleted": deleted},
        )
        return pb.DeleteFeatureGroupResponse(deleted_versions=deleted)

    # ---- ingestion ----------------------------------------------------------------------------

    async def PutRecords(self, request_iterator: Any, context: Any) -> Any:
        """All-or-nothing: every batch is validated while the stream arrives; nothing is
        written until the client half-closes."""
        limit = self.rt.settings.ingest.max_stream_bytes
        group, batches, size, request_id = None, [], 0, ""
        async for request in request_iterator:
            size += request.ByteSize()
            if size > limit:
                raise ResourceExhausted(
                    f"PutRecords stream exceeds {limit} bytes (ingest.max_stream_bytes); split "
                    "it or use WriteRecords",
                    reason="STREAM_TOO_LARGE",
                )
            if group is None:
                name, version = convert.group_ref(request.feature_group)
                group = await to_thread(self.rt.groups.get, name, version)
                request_id = request.request_id
            records = convert.raw_records(request.records)
            batches.append(await to_thread(self.svc.rt.ingestor.validate, group, records))
        if group is None:
            return pb.PutRecordsResponse()
        seen = await to_thread(self.svc.idempotency.recall, "PutRecords", request_id)
        if seen is not None:
            return pb.PutRecordsResponse(**seen)
        written = stale = 0
        for batch in batches:
            outcome = await to_thread(self.rt.ingestor.write_batch, group, batch)
            written, stale = written + outcome.written, stale + outcome.stale
        result = {
            "records_written": written,
            "records_stale": stale,
            "feature_group_version": group.version,
        }
        await to_thread(self.svc.idempotency.remember, "PutRecords", request_id, result)
        return pb.PutRecordsResponse(**result)

    async def WriteRecords(
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[pb.WriteRecordsResponse]:
        group, last_seq = None, None
        async for request in request_iterator:
            if group is None:
                name, version = convert.group_ref(request.feature_group)
                group = await to_thread(self.rt.groups.get, name, version)
            if last_seq is not None and request.sequence <= last_seq:
                raise InvalidArgument(
                    f"sequence {request.sequence} does not increase (last acknowledged {last_seq})",
                    reason="SEQUENCE_NOT_INCREASING",
                )
            last_seq = request.sequence
            batch = await to_thread(
                self.rt.ingestor.validate, group, convert.raw_records(request.records)
            )
            outcome = await to_thread(self.rt.ingestor.write_batch, group, batch)
            yield pb.WriteRecordsResponse(
                sequence=request.sequence,
                records_written=outcome.written,
                records_stale=outcome.stale,
            )

    async def SubmitIngestJob(self, request: Any, context: Any) -> Any:
        spec = request.spec
        name, version = convert.group_ref(spec.feature_group, "spec.feature_group")
        if not spec.source.artifacts and not spec.source.uri_prefix:
            raise InvalidArgument("spec.source: give artifacts or uri_prefix", reason="NO_INPUT")
        await to_thread(self.rt.groups.get, name, version)
        job = await self._submit(KIND_INGEST, spec, request.request_id)
        return pb.SubmitIngestJobResponse(job=job)

    # ---- online reads -------------------------------------------------------------------------

    async def GetFeatures(self, request: Any, context: Any) -> Any:
        return self.online.read(request)

    # ---- offline store ------------------------------------------------------------------------

    async def ListOfflinePartitions(self, request: Any, context: Any) -> Any:
        name, version = convert.group_ref(request.feature_group)
        group = await to_thread(self.rt.groups.get, name, version)
        scope = pc.list_scope(request)
        offset, limit = pc.page_window(request.page, scope)
        parts = await to_thread(
            self.rt.offline.partitions,
            name,
            start_us=pc.opt_ts_us(request, "start_time"),
            end_us=pc.opt_ts_us(request, "end_time"),
        )
        if request.feature_group.version:
            parts = [p for p in parts if p.group_version == group.version]
        page = parts[offset : offset + limit]
        return pb.ListOfflinePartitionsResponse(
            partitions=[
                pb.OfflinePartition(
                    artifact=pc.artifact_to_pb(p.ref),
                    row_count=p.row_count,
                    min_event_time=pc.us_to_ts(p.min_event_us),
                    max_event_time=pc.us_to_ts(p.max_event_us),
                    compacted=p.compacted,
                    feature_group_version=p.group_version,
                )
                for p in page
            ],
            page=pc.page_response(
                offset, limit, offset + limit < len(parts), len(parts), scope=scope
            ),
        )

    async def SubmitCompactionJob(self, request: Any, context: Any) -> Any:
        spec = request.spec
        name, version = convert.group_ref(spec.feature_group, "spec.feature_group")
        start, end = pc.opt_ts_us(spec, "start_time"), pc.opt_ts_us(spec, "end_time")
        if start is not None and end is not None and end <= start:
            raise InvalidArgument(
                "spec.end_time must be after spec.start_time", reason="INVERTED_WINDOW"
            )
        await to_thread(self.rt.groups.get, name, version)
        job = await self._submit(KIND_COMPACTION, spec, request.request_id)
        return pb.SubmitCompactionJobResponse(job=job)

    # ---- sample matching and derivation -------------------------------------------------------

    async def SubmitMatchSamplesJob(self, request: Any, context: Any) -> Any:
        spec = request.spec
        if spec.WhichOneof("samples") is None:
            raise InvalidArgument("spec: give sample_source or spine_free", reason="NO_SAMPLES")
        if not spec.features:
            raise InvalidArgument(
                "spec.features: select at least one feature group", reason="NO_FEATURES"
            )
        for i, sel in enumerate(spec.features):
            name, version = convert.group_ref(sel.feature_group, f"spec.features[{i}]")
            group = await to_thread(self.rt.groups.get, name, version)
            for feature in sel.feature_names:
                group.layout.slot(feature)  # NotFound naming the feature and group
        source = spec.sample_source
        if spec.HasField("sample_source") and source.HasField("dataset"):
            await to_thread(self.rt.datasets.get, source.dataset.dataset_id, source.dataset.version)
        job = await self._submit(KIND_MATCH, spec, request.request_id)
        return pb.SubmitMatchSamplesJobResponse(job=job)

    async def SubmitDeriveDatasetJob(self, request: Any, context: Any) -> Any:
        spec = request.spec
        op = spec.WhichOneof("operation")
        if op is None:
            raise InvalidArgument(
                "spec: give one of merge, sample, filter, split, project", reason="NO_OPERATION"
            )
        message = getattr(spec, op)
        for ref in message.inputs if op == "merge" else [message.input]:
            await to_thread(self.rt.datasets.get, ref.dataset_id, ref.version)
        job = await self._submit(KIND_DERIVE, spec, request.request_id)
        return pb.SubmitDeriveDatasetJobResponse(job=job)

    # ---- jobs ---------------------------------------------------------------------------------

    def _lookup_dataset(self, dataset_id: str, version: int) -> DatasetRecord | None:
        try:
            return self.rt.datasets.get(dataset_id, version)
        except NotFound:
            return None

    def _job(self, job_id: str) -> pb.DataJob:
        if not job_id:
            raise InvalidArgument("job_id is empty", reason="EMPTY_JOB_ID")
        return convert.job_to_pb(self.svc.jobs.get(job_id), self._lookup_dataset)

    async def _submit(self, kind: str, spec: Any, request_id: str) -> pb.DataJob:
        job_id = await to_thread(JOBS.submit, self.svc.jobs, kind, spec, request_id)
        return await to_thread(self._job, job_id)

    async def GetDataJob(self, request: Any, context: Any) -> Any:
        return pb.GetDataJobResponse(job=await to_thread(self._job, request.job_id))

    async def WatchDataJob(
        self, request: Any, context: Any
    ) -> AsyncIterator[pb.WatchDataJobResponse]:
        job = await to_thread(self._job, request.job_id)
        yield pb.WatchDataJobResponse(job=job)
        last = job.SerializeToString()
        async for _event in self.svc.jobs.awatch(request.job_id):
            job = await to_thread(self._job, request.job_id)
            if job.SerializeToString() != last:
                last = job.SerializeToString()
                yield pb.WatchDataJobResponse(job=job)

    async def CancelDataJob(self, request: Any, context: Any) -> Any:
        record = await to_thread(self.svc.jobs.get, request.job_id or "-")
        if not record.finished:
            await to_thread(self.svc.jobs.cancel, request.job_id)
        return pb.CancelDataJobResponse(job=await to_thread(self._job, request.job_id))

    async def ListDataJobs(self, request: Any, context: Any) -> Any:
        scope = pc.list_scope(request)
        offset, limit = pc.page_window(request.page, scope)
        kind = convert.JOB_KINDS_FROM_PB.get(request.kind)
        states = {pc.JOB_STATES_FROM_PB[s] for s in request.states if s in pc.JOB_STATES_FROM_PB}

        def collect() -> tuple[list[pb.DataJob], int]:
            records = self.svc.jobs.list_all(kind=kind)
            records = [
                r
                for r in records
                if (not states or r.state in states)
                and (not request.feature_group or job_uses_group(r.spec, request.feature_group))
            ]
            records.sort(key=lambda r: r.created_at, reverse=True)
            page = records[offset : offset + limit]
            return (
                [convert.job_to_pb(r, self._lookup_dataset) for r in page],
                len(records),
            )

        jobs, total = await to_thread(collect)
        page = pc.page_response(offset, limit, offset + limit < total, total, scope=scope)
        return pb.ListDataJobsResponse(jobs=jobs, page=page)


class OnlineFeatureServicer(online_grpc.OnlineFeatureServiceServicer):
    """OnlineFeatureService in Python: the contract the native reader also serves."""

    def __init__(self, service: DataService) -> None:
        self.svc = service
        self._layouts: dict[tuple[str, tuple[str, ...]], pb.RecordLayout] = {}

    async def GetOnlineFeatures(self, request: Any, context: Any) -> Any:
        return online_pb.GetOnlineFeaturesResponse(features=self.read(request.read))

    def read(self, request: pb.GetFeaturesRequest) -> pb.GetFeaturesResponse:
        name, version = convert.group_ref(request.feature_group)
        keys = convert.entity_keys(request.entity_keys)
        # Cached layouts + a memory-mapped LMDB read: microseconds, so no thread hop.
        group, rows = self.svc.reader.get(name, version, keys, list(request.feature_names))
        response = pb.GetFeaturesResponse(
            layout=self._layout_pb(group.store_key, tuple(request.feature_names), rows.layout),
            found=rows.found.tolist(),
            event_time_micros=rows.event_time_us.tolist(),
            float32_values=rows.float32.tobytes(),
            feature_group_version=group.version,
        )
        if rows.float64.size:
            response.float64_values.extend(rows.float64.ravel().tolist())
        if rows.int64.size:
            response.int64_values.extend(rows.int64.ravel().tolist())
        if rows.layout.string_width:
            response.string_values.extend(s for row in rows.strings for s in row)
        if request.include_ingestion_times:
            response.ingestion_time_micros.extend(rows.ingestion_time_us.tolist())
        if rows.null_masks is not None:
            response.null_masks.extend(rows.null_masks)
        return response

    def _layout_pb(self, store_key: str, names: tuple[str, ...], layout: Any) -> pb.RecordLayout:
        # Building a layout message of thousands of slots costs more than the read; it only
        # changes with the group version and the requested subset, so it is built once.
        key = (store_key, names)
        cached = self._layouts.get(key)
        if cached is None:
            if len(self._layouts) > 1024:
                self._layouts.clear()
            cached = self._layouts[key] = convert.layout_to_pb(layout)
        return cached


def data_service_defs(service: DataService) -> list[ServiceDef]:
    """DataService, and OnlineFeatureService on the same server (the native reader, when
    running, serves the latter on its own port too)."""
    main = DataServicer(service)
    return [
        ServiceDef(
            main,
            pb_grpc.add_DataServiceServicer_to_server,
            pb.DESCRIPTOR.services_by_name["DataService"].full_name,
            on_stop=service.stop,
        ),
        ServiceDef(
            main.online,
            online_grpc.add_OnlineFeatureServiceServicer_to_server,
            online_pb.DESCRIPTOR.services_by_name["OnlineFeatureService"].full_name,
        ),
    ]
