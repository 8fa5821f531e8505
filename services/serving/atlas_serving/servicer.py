"""gRPC front end of atlas.serving.v1.ServingService: translation only (see convert.py and
service.py). Domain errors become statuses in the handler wrapper the shared server factory
applies when the handlers are registered (atlas_core.rpc.wrapping)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from atlas.serving.v1 import serving_service_pb2 as pb
from atlas.serving.v1 import serving_service_pb2_grpc as pb_grpc
from atlas_core import lineage
from atlas_core.errors import AtlasError, InvalidArgument
from atlas_core.proto_convert import (
    JOB_STATES_FROM_PB,
    dt_to_ts,
    duration_seconds,
    list_scope,
    opt_ts_us,
    page_response,
    page_window,
)
from atlas_core.rpc import ServiceDef
from atlas_serving import convert
from atlas_serving.control.rollout import TERMINAL, events_of
from atlas_serving.dataplane.artifact_batch import predict_artifact
from atlas_serving.records import now
from atlas_serving.service import ServingService

th = asyncio.to_thread


def _timeout(context: Any) -> float | None:
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < 1e6 else None


class ServingServicer(pb_grpc.ServingServiceServicer):
    def __init__(self, service: ServingService) -> None:
        self.svc = service

    # -- registry --------------------------------------------------------------------------

    async def RegisterModelVersion(self, request, context):
        version = await th(
            self.svc.register, convert.registration_from_pb(request), request.request_id
        )
        return pb.RegisterModelVersionResponse(model_version=convert.model_version_to_pb(version))

    async def GetLineage(self, request, context):
        view = await th(
            self.svc.lineage, request.id, request.children_limit, request.ancestor_depth
        )
        return pb.GetLineageResponse(
            lineage=lineage.to_pb(view), ancestors=[lineage.to_pb(a) for a in view.ancestors]
        )

    async def GetModelVersion(self, request, context):
        version = await th(self.svc.registry.get_ref, convert.model_ref_from_pb(request.ref))
        return pb.GetModelVersionResponse(model_version=convert.model_version_to_pb(version))

    async def ListModels(self, request, context):
        scope = list_scope(request)
        offset, limit = page_window(request.page, scope)
        models, total = await th(self.svc.registry.list_models, request.name_prefix, offset, limit)
        return pb.ListModelsResponse(
            models=[convert.model_to_pb(m) for m in models],
            page=page_response(offset, limit, offset + limit < total, total, scope=scope),
        )

    async def ListModelVersions(self, request, context):
        scope = list_scope(request)
        offset, limit = page_window(request.page, scope)
        versions, total = await th(
            self.svc.registry.list_versions, request.model_name, offset, limit
        )
        return pb.ListModelVersionsResponse(
            model_versions=[convert.model_version_to_pb(v) for v in versions],
            page=page_response(offset, limit, offset + limit < total, total, scope=scope),
        )

    async def SetModelAlias(self, request, context):
        version, previous = await th(
            self.svc.registry.set_alias, request.model_name, request.alias, request.version
        )
        return pb.SetModelAliasResponse(
            model_version=convert.model_version_to_pb(version), previous_version=previous
        )

    async def DeleteModelAlias(self, request, context):
        previous = await th(self.svc.delete_alias, request.model_name, request.alias)
        return pb.DeleteModelAliasResponse(previous_version=previous)

    async def DeleteModelVersion(self, request, context):
        version = await th(
            self.svc.delete_version,
            request.ref.model_name,
            request.ref.version,
            delete_bundle=request.delete_bundle,
        )
        return pb.DeleteModelVersionResponse(model_version=convert.model_version_to_pb(version))

    # -- endpoints -------------------------------------------------------------------------

    async def CreateEndpoint(self, request, context):
        endpoint = await th(
            self.svc.control.create_endpoint, convert.spec_from_pb(request.spec), request.request_id
        )
        await self.svc.replica.sync()  # serve from this replica at once
        return pb.CreateEndpointResponse(endpoint=convert.endpoint_to_pb(endpoint))

    async def GetEndpoint(self, request, context):
        endpoint = await th(self.svc.endpoints.get, request.name)
        return pb.GetEndpointResponse(endpoint=convert.endpoint_to_pb(endpoint))

    async def ListEndpoints(self, request, context):
        scope = list_scope(request)
        offset, limit = page_window(request.page, scope)
        endpoints, total = await th(self.svc.endpoints.list, request.name_prefix, offset, limit)
        return pb.ListEndpointsResponse(
            endpoints=[convert.endpoint_to_pb(e) for e in endpoints],
            page=page_response(offset, limit, offset + limit < total, total, scope=scope),
        )

    async def UpdateEndpoint(self, request, context):
        endpoint = await th(
            self.svc.control.update_endpoint, convert.endpoint_update_from_pb(request)
        )
        await self.svc.replica.sync()
        return pb.UpdateEndpointResponse(endpoint=convert.endpoint_to_pb(endpoint))

    async def DeleteEndpoint(self, request, context):
        endpoint = await th(self.svc.control.delete_endpoint, request.name, request.request_id)
        await self.svc.replica.sync()
        return pb.DeleteEndpointResponse(endpoint=convert.endpoint_to_pb(endpoint))

    async def GetEndpointStats(self, request, context):
        window = duration_seconds(request.window, "window") if request.HasField("window") else 60.0
        quality_window = (
            duration_seconds(request.quality_window, "quality_window")
            if request.HasField("quality_window")
            else None
        )
        stats = await th(self.svc.endpoint_stats, request.name, window, quality_window)
        out = pb.GetEndpointStatsResponse(variants=[convert.variant_stats_to_pb(s) for s in stats])
        end = now()
        out.end_time.CopyFrom(dt_to_ts(end))
        out.start_time.FromSeconds(int(end.timestamp() - window))
        return out

    # -- deployments -----------------------------------------------------------------------

    async def SubmitDeployment(self, request, context):
        dep = await self.svc.submit_deployment(convert.deployment_request_from_pb(request))
        return pb.SubmitDeploymentResponse(deployment=convert.deployment_to_pb(dep))

    async def GetDeployment(self, request, context):
        dep, _ = await th(self.svc.deployments.get, request.deployment_id)
        return pb.GetDeploymentResponse(deployment=convert.deployment_to_pb(dep))

    async def WatchDeployment(self, request, context):
        seen = -1
        last_body = b""
        while True:
            state, driver = await th(self.svc.deployments.get, request.deployment_id)
            dep = convert.deployment_to_pb(state)
            events = events_of(driver)
            body = dep.SerializeToString(deterministic=True)
            if len(events) > seen or body != last_body:
                new = events[max(seen, 0) :] if seen >= 0 else events[-1:] or [""]
                for event in new or [""]:
                    yield pb.WatchDeploymentResponse(deployment=dep, event=event)
                seen, last_body = len(events), body
            if state.state in TERMINAL:
                return
            await asyncio.sleep(0.1)

    async def CancelDeployment(self, request, context):
        dep = await th(self.svc.control.cancel, request.deployment_id)
        return pb.CancelDeploymentResponse(deployment=convert.deployment_to_pb(dep))

    async def ListDeployments(self, request, context):
        scope = list_scope(request)
        offset, limit = page_window(request.page, scope)
        await th(self.svc.endpoints.get, request.endpoint_name)
        deps, total = await th(self.svc.deployments.list, request.endpoint_name, offset, limit)
        return pb.ListDeploymentsResponse(
            deployments=[convert.deployment_to_pb(d) for d in deps],
            page=page_response(offset, limit, offset + limit < total, total, scope=scope),
        )

    async def RollbackEndpoint(self, request, context):
        dep = await self.svc.rollback(request.endpoint_name, request.request_id)
        return pb.RollbackEndpointResponse(deployment=convert.deployment_to_pb(dep))

    # -- predictions -----------------------------------------------------------------------

    async def Predict(self, request, context):
        answer = await self.svc.plane.predict(
            request.endpoint_name,
            convert.rows_from_pb([request.row]),
            convert.options_from_pb(request.options),
            timeout=_timeout(context),
        )
        return convert.predict_response(answer)

    async def PredictBatch(self, request, context):
        options = convert.options_from_pb(request.options)
        if request.HasField("input_artifact"):
            if request.rows:
                raise InvalidArgument(
                    "send rows or input_artifact, not both", reason="ROWS_AND_ARTIFACT"
                )
            done = await predict_artifact(
                self.svc.plane,
                self.svc.store,
                self.svc.settings.runtime.batch_output_prefix,
                request.endpoint_name,
                convert.bundle_from_pb(request.input_artifact),
                options,
                _timeout(context),
            )
            return convert.artifact_response(done)
        answer = await self.svc.plane.predict(
            request.endpoint_name,
            convert.rows_from_pb(request.rows),
            options,
            timeout=_timeout(context),
        )
        return convert.batch_response(answer)

    async def PredictStream(
        self, request_iterator, context
    ) -> AsyncIterator[pb.PredictStreamResponse]:
        endpoint = ""
        async for request in request_iterator:
            if not endpoint:
                if not request.endpoint_name:
                    raise InvalidArgument(
                        "the first message must name the endpoint", reason="NAME_REQUIRED"
                    )
                endpoint = request.endpoint_name
                self.svc.plane.endpoint(endpoint)  # NOT_FOUND ends the stream
            elif request.endpoint_name and request.endpoint_name != endpoint:
                raise InvalidArgument(
                    f"stream is bound to endpoint {endpoint}, not {request.endpoint_name}",
                    reason="ENDPOINT_CHANGED",
                )
            try:
                answer = await self.svc.plane.predict(
                    endpoint,
                    convert.rows_from_pb([request.row]),
                    convert.options_from_pb(request.options),
                    timeout=_timeout(context),
                )
            except AtlasError as exc:
                if exc.reason == "ENDPOINT_NOT_FOUND":
                    raise
                yield pb.PredictStreamResponse(
                    correlation_id=request.correlation_id, error=convert.job_error(exc)
                )
                continue
            yield pb.PredictStreamResponse(
                correlation_id=request.correlation_id,
                prediction=convert.prediction(answer.results[0]),
                model=convert.model_ref(answer),
                variant=answer.variant,
                prediction_id=answer.prediction_id,
                served_version=convert.served_version(answer.served),
            )

    # -- capture and monitoring ------------------------------------------------------------

    async def ListCaptureFiles(self, request, context):
        scope = list_scope(request)
        offset, limit = page_window(request.page, scope)
        files, total = await th(
            self.svc.capture_files,
            request.endpoint_name,
            opt_ts_us(request, "start_time"),
            opt_ts_us(request, "end_time"),
            offset,
            limit,
        )
        return pb.ListCaptureFilesResponse(
            files=[convert.capture_file_to_pb(f) for f in files],
            page=page_response(offset, limit, offset + limit < total, total, scope=scope),
        )

    async def SubmitMonitoringJob(self, request, context):
        job_id = await th(
            self.svc.submit_monitoring,
            convert.monitoring_spec_from_pb(request.spec),
            request.request_id,
        )
        return pb.SubmitMonitoringJobResponse(job=await self._job(job_id))

    async def _job(self, job_id: str) -> pb.MonitoringJob:
        return convert.monitoring_job_to_pb(await th(self.svc.monitoring_job, job_id))

    async def GetMonitoringJob(self, request, context):
        return pb.GetMonitoringJobResponse(job=await self._job(request.job_id))

    async def WatchMonitoringJob(self, request, context):
        yield pb.WatchMonitoringJobResponse(job=await self._job(request.job_id))
        async for _event in self.svc.jobs.awatch(request.job_id):
            yield pb.WatchMonitoringJobResponse(job=await self._job(request.job_id))

    async def CancelMonitoringJob(self, request, context):
        await th(self.svc.monitoring_job, request.job_id)
        record = await th(self.svc.jobs.cancel, request.job_id)
        return pb.CancelMonitoringJobResponse(job=convert.monitoring_job_to_pb(record))

    async def ListMonitoringJobs(self, request, context):
        scope = list_scope(request)
        offset, limit = page_window(request.page, scope)
        states = {JOB_STATES_FROM_PB[s] for s in request.states if s in JOB_STATES_FROM_PB}
        records = await th(self.svc.monitoring_jobs, states, request.endpoint_name)
        return pb.ListMonitoringJobsResponse(
            jobs=[convert.monitoring_job_to_pb(r) for r in records[offset : offset + limit]],
            page=page_response(
                offset, limit, offset + limit < len(records), len(records), scope=scope
            ),
        )

    async def ListAlerts(self, request, context):
        scope = list_scope(request)
        offset, limit = page_window(request.page, scope)
        if request.endpoint_name:
            await th(self.svc.endpoints.get, request.endpoint_name)
        alerts, total = await th(
            self.svc.alerts.list, request.endpoint_name, request.include_acknowledged, offset, limit
        )
        return pb.ListAlertsResponse(
            alerts=[convert.alert_to_pb(a) for a in alerts],
            page=page_response(offset, limit, offset + limit < total, total, scope=scope),
        )

    async def AcknowledgeAlert(self, request, context):
        alert = await th(self.svc.alerts.acknowledge, request.alert_id)
        return pb.AcknowledgeAlertResponse(alert=convert.alert_to_pb(alert))

    # -- ground truth and model quality ---------------------------------------------------------

    async def AttachGroundTruth(self, request, context):
        if not request.endpoint_name:
            raise InvalidArgument("endpoint_name is required", reason="NAME_REQUIRED")
        results = await th(
            self.svc.attach_ground_truth,
            request.endpoint_name,
            [convert.ground_truth_from_pb(g) for g in request.items],
            request.request_id,
        )
        return convert.attach_response(results)

    async def AttachGroundTruthStream(self, request_iterator, context):
        endpoint = ""
        results = []
        async for request in request_iterator:
            if not endpoint:
                if not request.endpoint_name:
                    raise InvalidArgument(
                        "the first message must name the endpoint", reason="NAME_REQUIRED"
                    )
                endpoint = request.endpoint_name
            elif request.endpoint_name and request.endpoint_name != endpoint:
                raise InvalidArgument(
                    f"stream is bound to endpoint {endpoint}, not {request.endpoint_name}",
                    reason="ENDPOINT_CHANGED",
                )
            results.extend(
                await th(
                    self.svc.attach_ground_truth,
                    endpoint,
                    [convert.ground_truth_from_pb(g) for g in request.items],
                    request.request_id,
                    len(results),
                )
            )
        if not endpoint:
            raise InvalidArgument("the stream sent no message", reason="NAME_REQUIRED")
        return convert.stream_response(results)

    async def GetModelQuality(self, request, context):
        if not request.endpoint_name:
            raise InvalidArgument("endpoint_name is required", reason="NAME_REQUIRED")
        report = await th(
            self.svc.model_quality,
            request.endpoint_name,
            convert.optional_us(request, "start_time"),
            convert.optional_us(request, "end_time"),
            request.variant,
            request.metric,
        )
        return convert.quality_report_to_pb(report)


def serving_service_def(service: ServingService) -> ServiceDef:
    return ServiceDef(
        servicer=ServingServicer(service),
        add_to_server=pb_grpc.add_ServingServiceServicer_to_server,
        full_name=pb.DESCRIPTOR.services_by_name["ServingService"].full_name,
        # One /metrics: the serving metrics join the server's registry.
        on_start=lambda server: service.metrics.attach(server.metrics.registry),
        # The service's loops stop after the server has drained.
        on_stop=service.stop,
    )
