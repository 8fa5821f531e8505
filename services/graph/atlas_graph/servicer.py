"""gRPC front end of the graph service: translation only (see convert.py and service.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from atlas.graph.v1 import graph_service_pb2 as pb
from atlas.graph.v1 import graph_service_pb2_grpc as pb_grpc
from atlas_core import lineage
from atlas_core import proto_convert as pc
from atlas_core.errors import InvalidArgument
from atlas_core.rpc import ServiceDef
from atlas_graph import convert
from atlas_graph.service import GraphService

to_thread = asyncio.to_thread


def _require(value: str, name: str) -> str:
    if not value:
        raise InvalidArgument(f"{name} is empty", reason="EMPTY_ID")
    return value


class GraphServicer(pb_grpc.GraphServiceServicer):
    def __init__(self, service: GraphService) -> None:
        self.svc = service
        self.rt = service.rt

    # ---- jobs ---------------------------------------------------------------------------------

    def _job(self, job_id: str) -> pb.GraphJob:
        return convert.job_to_pb(self.svc.jobs.get(_require(job_id, "job_id")))

    async def SubmitGraphJob(self, request: Any, context: Any) -> Any:
        kind, spec = convert.submit_spec(request)
        record = await to_thread(self.svc.submit, kind, spec, request.request_id)
        return pb.SubmitGraphJobResponse(job=convert.job_to_pb(record))

    async def GetLineage(self, request: Any, context: Any) -> Any:
        view = await to_thread(
            self.svc.lineage, request.id, request.children_limit, request.ancestor_depth
        )
        return pb.GetLineageResponse(
            lineage=lineage.to_pb(view), ancestors=[lineage.to_pb(a) for a in view.ancestors]
        )

    async def GetGraphJob(self, request: Any, context: Any) -> Any:
        return pb.GetGraphJobResponse(job=await to_thread(self._job, request.job_id))

    async def WatchGraphJob(
        self, request: Any, context: Any
    ) -> AsyncIterator[pb.WatchGraphJobResponse]:
        job_id = _require(request.job_id, "job_id")
        seen = await to_thread(self.svc.jobs.events, job_id)
        job = await to_thread(self._job, job_id)
        yield pb.WatchGraphJobResponse(
            job=job, event_time=pc.dt_to_ts(seen[-1].time) if seen else job.status.create_time
        )
        async for event in self.svc.jobs.awatch(job_id, seen[-1].seq if seen else 0):
            job = await to_thread(self._job, job_id)
            epoch, metrics = convert.event_epoch_metrics(event.payload)
            yield pb.WatchGraphJobResponse(
                job=job, epoch=epoch, metrics=metrics, event_time=pc.dt_to_ts(event.time)
            )

    async def CancelGraphJob(self, request: Any, context: Any) -> Any:
        record = await to_thread(self.svc.cancel, _require(request.job_id, "job_id"))
        return pb.CancelGraphJobResponse(job=convert.job_to_pb(record))

    async def ListGraphJobs(self, request: Any, context: Any) -> Any:
        scope = pc.list_scope(request)
        offset, limit = pc.page_window(request.page, scope)
        kind = convert.JOB_KINDS_FROM_PB.get(request.kind)
        states = {pc.JOB_STATES_FROM_PB[s] for s in request.states if s in pc.JOB_STATES_FROM_PB}

        def collect() -> tuple[list[pb.GraphJob], int]:
            records = self.svc.all_jobs(kind=kind)
            records = [
                r
                for r in records
                if (not states or r.state in states)
                and (not request.graph_id or convert.job_graph_id(r) == request.graph_id)
            ]
            records.sort(key=lambda r: r.created_at, reverse=True)
            page = records[offset : offset + limit]
            return [convert.job_to_pb(r) for r in page], len(records)

        jobs, total = await to_thread(collect)
        page = pc.page_response(offset, limit, offset + limit < total, total, scope=scope)
        return pb.ListGraphJobsResponse(jobs=jobs, page=page)

    # ---- graphs -------------------------------------------------------------------------------

    async def GetGraph(self, request: Any, context: Any) -> Any:
        raw = await to_thread(self.rt.catalog.get_graph, _require(request.graph_id, "graph_id"))
        return pb.GetGraphResponse(graph=convert.graph_to_pb(raw))

    async def ListGraphs(self, request: Any, context: Any) -> Any:
        scope = pc.list_scope(request)
        offset, limit = pc.page_window(request.page, scope)
        graphs, total = await to_thread(
            self.rt.catalog.list_graphs, request.name_prefix, offset, limit
        )
        return pb.ListGraphsResponse(
            graphs=[convert.graph_to_pb(g) for g in graphs],
            page=pc.page_response(offset, limit, offset + limit < total, total, scope=scope),
        )

    async def DeleteGraph(self, request: Any, context: Any) -> Any:
        deleted = await to_thread(
            self.svc.delete_graph, _require(request.graph_id, "graph_id"), request.request_id
        )
        return pb.DeleteGraphResponse(deleted_partitionings=deleted)

    # ---- partitionings ------------------------------------------------------------------------

    async def EstimatePartitioning(self, request: Any, context: Any) -> Any:
        est = await to_thread(self.svc.estimate, request.spec)
        return pb.EstimatePartitioningResponse(estimate=convert.estimate_to_pb(est.__dict__))

    async def GetPartitioning(self, request: Any, context: Any) -> Any:
        raw = await to_thread(
            self.rt.catalog.get_partitioning,
            _require(request.ref.graph_id, "ref.graph_id"),
            _require(request.ref.partitioning_id, "ref.partitioning_id"),
        )
        return pb.GetPartitioningResponse(partitioning=convert.partitioning_to_pb(raw))

    async def ListPartitionings(self, request: Any, context: Any) -> Any:
        scope = pc.list_scope(request)
        offset, limit = pc.page_window(request.page, scope)
        parts, total = await to_thread(
            self.rt.catalog.list_partitionings,
            _require(request.graph_id, "graph_id"),
            offset,
            limit,
        )
        return pb.ListPartitioningsResponse(
            partitionings=[convert.partitioning_to_pb(p) for p in parts],
            page=pc.page_response(offset, limit, offset + limit < total, total, scope=scope),
        )

    async def TranslateIds(self, request: Any, context: Any) -> Any:
        return await to_thread(self._translate, request)

    def _translate(self, request: pb.TranslateIdsRequest) -> pb.TranslateIdsResponse:
        graph_id = _require(request.ref.graph_id, "ref.graph_id")
        part_id = _require(request.ref.partitioning_id, "ref.partitioning_id")
        kind = convert.KINDS.get(request.kind)
        if kind is None:
            raise InvalidArgument("kind must be ID_KIND_NODE or ID_KIND_EDGE", reason="BAD_KIND")
        kind = self.svc.translation_kind(graph_id, part_id, kind, request.type)
        count = len(request.int64_ids) + len(request.string_ids)
        limit = self.rt.settings.partition.max_translate_ids
        if count == 0:
            raise InvalidArgument("give int64_ids or string_ids", reason="NO_IDS")
        if count > limit:
            raise InvalidArgument(
                f"{count} ids exceed the limit of {limit} per request", reason="TOO_MANY_IDS"
            )
        if request.int64_ids and request.string_ids:
            raise InvalidArgument("give int64_ids or string_ids, not both", reason="MIXED_IDS")
        translation = self.svc.translation(graph_id, part_id)
        response = pb.TranslateIdsResponse()
        if request.direction == pb.TRANSLATE_DIRECTION_NEW_TO_ORIGINAL:
            if request.string_ids:
                raise InvalidArgument("new ids are int64: use int64_ids", reason="WRONG_ID_TYPE")
            new = np.asarray(request.int64_ids, dtype=np.int64)
            originals, parts, local = translation.new_to_original(kind, new)
            if originals.dtype.kind == "S":
                response.original_string_ids.extend(v.decode() for v in originals)
            else:
                response.original_int64_ids.extend(originals.tolist())
        elif request.direction == pb.TRANSLATE_DIRECTION_ORIGINAL_TO_NEW:
            string_graph = translation.original_dtype(kind).kind == "S"
            if string_graph and kind.startswith("node") and request.int64_ids:
                raise InvalidArgument(
                    "this graph has string node ids: use string_ids", reason="WRONG_ID_TYPE"
                )
            if request.string_ids and not string_graph:
                raise InvalidArgument(
                    f"this graph has int64 {kind} ids: use int64_ids", reason="WRONG_ID_TYPE"
                )
            given = list(request.string_ids) or list(request.int64_ids)
            new, parts, local = translation.original_to_new(kind, np.asarray(given))
            response.new_ids.extend(new.tolist())
        else:
            raise InvalidArgument("direction is unspecified", reason="BAD_DIRECTION")
        if request.direction == pb.TRANSLATE_DIRECTION_NEW_TO_ORIGINAL:
            response.new_ids.extend(request.int64_ids)
        response.partitions.extend(parts.tolist())
        response.local_ids.extend(local.tolist())
        return response


def graph_service_def(service: GraphService) -> ServiceDef:
    return ServiceDef(
        GraphServicer(service),
        pb_grpc.add_GraphServiceServicer_to_server,
        pb.DESCRIPTOR.services_by_name["GraphService"].full_name,
        on_stop=service.stop,
    )
