"""gRPC front end of atlas.serving.v1.ServingService: translation only (see convert.py and
service.py). Domain errors become statuses in the handler wrapper the shared server factory
applies when the handlers are registered (atlas_core.rpc.wrapping)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import json_format

from atlas.serving.v1 import serving_service_pb2 as pb
from atlas.serving.v1 import serving_service_pb2_grpc as pb_grpc
from atlas_core.errors import AtlasError, FailedPrecondition, InvalidArgument
from atlas_core.jobs import JobRecord
from atlas_core.proto_convert import (
    JOB_STATES_FROM_PB,
    dt_to_ts,
    job_status,
    opt_ts_us,
    page_response,
    page_window,
)
from atlas_core.rpc import ServiceDef
from atlas_serving import convert
from atlas_serving.control.rollout import TERMINAL, events_of
from atlas_serving.dataplane.artifact_batch import predict_artifact
from atlas_serving.jobs import KIND_MONITOR
from atlas_serving.monitoring.alerts import list_capture_files
from atlas_serving.records import now
from atlas_serving.service import ServingService, summarize

th = asyncio.to_thread


def _timeout(context: Any) -> float | None:
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < 1e6 else None


class ServingServicer(pb_grpc.ServingServiceServicer):
    def __init__(self, service: ServingService) -> None:
        self.svc = service

    # -- registry --------------------------------------------------------------------------

    async def RegisterModelVersion(self, request, context):  # type: ignore[no-untyped-def]
        seen = await th(self.svc.idem.recall, "register", request.request_id)
        if seen is not None:
            version = await th(self.svc.registry.get, seen["name"], seen["version"])
        else:
            version = await th(self.svc.registry.register, request)
            await th(
                self.svc.idem.remember,
                "register",
                request.request_id,
                {"name": version.ref.model_name, "version": version.ref.version},
            )
        return pb.RegisterModelVersionResponse(model_version=version)

    async def GetModelVersion(self, request, context):  # type: ignore[no-untyped-def]
        return pb.GetModelVersionResponse(
            model_version=await th(self.svc.registry.get_ref, request.ref)
        )

    async def ListModels(self, request, context):  # type: ignore[no-untyped-def]
        offset, limit = page_window(request.page)
        models, more = await th(self.svc.registry.list_models, request.name_prefix, offset, limit)
        return pb.ListModelsResponse(models=models, page=page_response(offset, limit, more))

    async def ListModelVersions(self, request, context):  # type: ignore[no-untyped-def]
        offset, limit = page_window(request.page)
        versions, more = await th(
            self.svc.registry.list_versions, request.model_name, offset, limit
        )
        return pb.ListModelVersionsResponse(
            model_versions=versions, page=page_response(offset, limit, more)
        )

    async def SetModelAlias(self, request, context):  # type: ignore[no-untyped-def]
        version, previous = await th(
            self.svc.registry.set_alias, request.model_name, request.alias, request.version
        )
        return pb.SetModelAliasResponse(model_version=version, previous_version=previous)

    async def DeleteModelAlias(self, request, context):  # type: ignore[no-untyped-def]
        users = await th(self.svc.control.alias_users, request.model_name, request.alias)
        previous = await th(
            self.svc.registry.delete_alias, request.model_name, request.alias, users
        )
        return pb.DeleteModelAliasResponse(previous_version=previous)

    async def DeleteModelVersion(self, request, context):  # type: ignore[no-untyped-def]
        ref = request.ref
        served = await th(self.svc.control.served_versions, ref.model_name)
        version = await th(
            self.svc.registry.delete_version,
            ref.model_name,
            ref.version,
            served.get(ref.version, []),
            delete_bundle=request.delete_bundle,
        )
        return pb.DeleteModelVersionResponse(model_version=version)

    # -- endpoints -------------------------------------------------------------------------

    async def CreateEndpoint(self, request, context):  # type: ignore[no-untyped-def]
        endpoint = await th(self.svc.control.create_endpoint, request.spec, request.request_id)
        await self.svc.replica.sync()  # serve from this replica at once
        return pb.CreateEndpointResponse(endpoint=endpoint)

    async def GetEndpoint(self, request, context):  # type: ignore[no-untyped-def]
        return pb.GetEndpointResponse(endpoint=await th(self.svc.endpoints.get, request.name))

    async def ListEndpoints(self, request, context):  # type: ignore[no-untyped-def]
        offset, limit = page_window(request.page)
        endpoints, more = await th(self.svc.endpoints.list, request.name_prefix, offset, limit)
        return pb.ListEndpointsResponse(
            endpoints=endpoints, page=page_response(offset, limit, more)
        )

    async def UpdateEndpoint(self, request, context):  # type: ignore[no-untyped-def]
        endpoint = await th(self.svc.control.update_endpoint, request)
        await self.svc.replica.sync()
        return pb.UpdateEndpointResponse(endpoint=endpoint)

    async def DeleteEndpoint(self, request, context):  # type: ignore[no-untyped-def]
        endpoint = await th(self.svc.control.delete_endpoint, request.name, request.request_id)
        await self.svc.replica.sync()
        return pb.DeleteEndpointResponse(endpoint=endpoint)

    async def GetEndpointStats(self, request, context):  # type: ignore[no-untyped-def]
        window = (
            request.window.ToTimedelta().total_seconds() if request.HasField("window") else 60.0
        )
        if window <= 0:
            raise InvalidArgument("window must be positive", reason="BAD_WINDOW")
        windows = await th(self.svc.variant_windows, request.name, window)
        live = self.svc.plane.endpoints.get(request.name)
        out = pb.GetEndpointStatsResponse()
        for w in windows:
            stats = summarize(w, window)
            if live is not None:
                stats.queue_depth = live.admission.waiting
            out.variants.append(stats)
        end = now()
        out.end_time.CopyFrom(dt_to_ts(end))
        out.start_time.FromSeconds(int(end.timestamp() - window))
        return out

    # -- deployments -----------------------------------------------------------------------

    async def SubmitDeployment(self, request, context):  # type: ignore[no-untyped-def]
        return pb.SubmitDeploymentResponse(deployment=await self.svc.submit_deployment(request))

    async def GetDeployment(self, request, context):  # type: ignore[no-untyped-def]
        dep, _ = await th(self.svc.deployments.get, request.deployment_id)
        return pb.GetDeploymentResponse(deployment=dep)

    async def WatchDeployment(self, request, context):  # type: ignore[no-untyped-def]
        seen = -1
        last_body = b""
        while True:
            dep, driver = await th(self.svc.deployments.get, request.deployment_id)
            events = events_of(driver)
            body = dep.SerializeToString(deterministic=True)
            if len(events) > seen or body != last_body:
                new = events[max(seen, 0) :] if seen >= 0 else events[-1:] or [""]
                for event in new or [""]:
                    yield pb.WatchDeploymentResponse(deployment=dep, event=event)
                seen, last_body = len(events), body
            if dep.state in TERMINAL:
                return
            await asyncio.sleep(0.1)

    async def CancelDeployment(self, request, context):  # type: ignore[no-untyped-def]
        return pb.CancelDeploymentResponse(
            deployment=await th(self.svc.control.cancel, request.deployment_id)
        )

    async def ListDeployments(self, request, context):  # type: ignore[no-untyped-def]
        offset, limit = page_window(request.page)
        await th(self.svc.endpoints.get, request.endpoint_name)
        deps, more = await th(self.svc.deployments.list, request.endpoint_name, offset, limit)
        return pb.ListDeploymentsResponse(deployments=deps, page=page_response(offset, limit, more))

    async def RollbackEndpoint(self, request, context):  # type: ignore[no-untyped-def]
        return pb.RollbackEndpointResponse(
            deployment=await self.svc.rollback(request.endpoint_name, request.request_id)
        )

    # -- predictions -----------------------------------------------------------------------

    async def Predict(self, request, context):  # type: ignore[no-untyped-def]
        answer = await self.svc.plane.predict(
            request.endpoint_name, [request.row], request.options, timeout=_timeout(context)
        )
        return convert.predict_response(answer)

    async def PredictBatch(self, request, context):  # type: ignore[no-untyped-def]
        if request.HasField("input_artifact"):
            if request.rows:
                raise InvalidArgument(
                    "send rows or input_artifact, not both", reason="ROWS_AND_ARTIFACT"
                )
            done = await predict_artifact(
                self.svc.plane,
                self.svc.store,
                self.svc.settings.runtime.batch_output_prefix,
                request,
                _timeout(context),
            )
            return convert.artifact_response(done)
        answer = await self.svc.plane.predict(
            request.endpoint_name, list(request.rows), request.options, timeout=_timeout(context)
        )
        return convert.batch_response(answer)

    async def PredictStream(
        self, request_iterator, context
    ) -> AsyncIterator[pb.PredictStreamResponse]:  # type: ignore[override]
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
                    endpoint, [request.row], request.options, timeout=_timeout(context)
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
            )

    # -- capture and monitoring ------------------------------------------------------------

    async def ListCaptureFiles(self, request, context):  # type: ignore[no-untyped-def]
        offset, limit = page_window(request.page)
        await th(self.svc.endpoints.get, request.endpoint_name)
        files, more = await th(
            list_capture_files,
            self.svc.engine,
            request.endpoint_name,
            opt_ts_us(request, "start_time"),
            opt_ts_us(request, "end_time"),
            offset,
            limit,
        )
        return pb.ListCaptureFilesResponse(files=files, page=page_response(offset, limit, more))

    async def SubmitMonitoringJob(self, request, context):  # type: ignore[no-untyped-def]
        spec = request.spec
        start, end = opt_ts_us(spec, "start_time"), opt_ts_us(spec, "end_time")
        if start is not None and end is not None and end < start:
            raise InvalidArgument(
                "spec.end_time is before spec.start_time", reason="INVERTED_WINDOW"
            )
        if spec.psi_threshold < 0 or spec.ks_p_value_threshold < 0:
            raise InvalidArgument("thresholds must not be negative", reason="BAD_THRESHOLD")
        endpoint = await th(self.svc.endpoints.get, spec.endpoint.endpoint_name)
        if not endpoint.spec.capture.enabled:
            raise FailedPrecondition(
                f"endpoint {endpoint.spec.name} does not capture data", reason="CAPTURE_DISABLED"
            )
        variants = [
            v
            for v in endpoint.spec.variants
            if v.role != pb.VARIANT_ROLE_SHADOW
            and (not spec.endpoint.variant_name or v.name == spec.endpoint.variant_name)
        ]
        if not variants:
            raise InvalidArgument(
                f"endpoint has no live variant {spec.endpoint.variant_name}",
                reason="UNKNOWN_VARIANT",
            )
        top = max(variants, key=lambda v: v.weight)
        version = await th(self.svc.registry.get, top.model.model_name, top.resolved_version)
        if not version.has_training_stats:
            raise FailedPrecondition(
                "the served bundle has no training statistics", reason="NO_TRAINING_STATS"
            )
        job_id = await th(
            self.svc.jobs.submit,
            KIND_MONITOR,
            {
                "spec": json_format.MessageToDict(spec, preserving_proto_field_name=True),
                "bundle": json_format.MessageToDict(
                    version.bundle, preserving_proto_field_name=True
                ),
                "endpoint": endpoint.spec.name,
            },
            request_id=request.request_id or None,
        )
        return pb.SubmitMonitoringJobResponse(job=await th(self._job, job_id))

    def _job(self, job_id: str) -> pb.MonitoringJob:
        if not job_id:
            raise InvalidArgument("job_id is required", reason="ID_REQUIRED")
        return monitoring_job(self.svc.jobs.get(job_id))

    async def GetMonitoringJob(self, request, context):  # type: ignore[no-untyped-def]
        return pb.GetMonitoringJobResponse(job=await th(self._job, request.job_id))

    async def WatchMonitoringJob(self, request, context):  # type: ignore[no-untyped-def]
        yield pb.WatchMonitoringJobResponse(job=await th(self._job, request.job_id))
        async for _event in self.svc.jobs.awatch(request.job_id):
            yield pb.WatchMonitoringJobResponse(job=await th(self._job, request.job_id))

    async def CancelMonitoringJob(self, request, context):  # type: ignore[no-untyped-def]
        await th(self._job, request.job_id)
        record = await th(self.svc.jobs.cancel, request.job_id)
        return pb.CancelMonitoringJobResponse(job=monitoring_job(record))

    async def ListMonitoringJobs(self, request, context):  # type: ignore[no-untyped-def]
        offset, limit = page_window(request.page)
        states = {JOB_STATES_FROM_PB[s] for s in request.states if s in JOB_STATES_FROM_PB}
        records = await th(self.svc.jobs.list, KIND_MONITOR, None, 1000, 0)
        jobs = [
            monitoring_job(r)
            for r in records
            if (not states or r.state in states)
            and (not request.endpoint_name or r.spec.get("endpoint") == request.endpoint_name)
        ]
        return pb.ListMonitoringJobsResponse(
            jobs=jobs[offset : offset + limit],
            page=page_response(offset, limit, len(jobs) > offset + limit),
        )

    async def ListAlerts(self, request, context):  # type: ignore[no-untyped-def]
        offset, limit = page_window(request.page)
        if request.endpoint_name:
            await th(self.svc.endpoints.get, request.endpoint_name)
        alerts, more = await th(
            self.svc.alerts.list, request.endpoint_name, request.include_acknowledged, offset, limit
        )
        return pb.ListAlertsResponse(alerts=alerts, page=page_response(offset, limit, more))

    async def AcknowledgeAlert(self, request, context):  # type: ignore[no-untyped-def]
        return pb.AcknowledgeAlertResponse(
            alert=await th(self.svc.alerts.acknowledge, request.alert_id)
        )


def monitoring_job(record: JobRecord) -> pb.MonitoringJob:
    job = pb.MonitoringJob(
        status=job_status(record),
        spec=json_format.ParseDict(record.spec.get("spec", {}), pb.MonitoringSpec()),
    )
    if record.result and "report" in record.result:
        job.report.CopyFrom(json_format.ParseDict(record.result["report"], pb.DriftReport()))
    return job


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
