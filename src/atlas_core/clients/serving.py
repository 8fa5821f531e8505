"""Python client of the serving service (the SDK): registry, endpoints, deployments and
predictions with plain dicts in and out. Several replicas in ``target`` are balanced
round-robin with health checks (see ClientSettings)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as pb
from atlas.serving.v1 import serving_service_pb2_grpc as pb_grpc
from atlas_core.clients._base import ServiceClient, mapped_errors, mapped_stream
from atlas_core.errors import DeadlineExceeded, InvalidArgument
from atlas_core.rpc.channel import ClientSettings

TERMINAL = {
    pb.DEPLOYMENT_STATE_SUCCEEDED,
    pb.DEPLOYMENT_STATE_ROLLED_BACK,
    pb.DEPLOYMENT_STATE_FAILED,
    pb.DEPLOYMENT_STATE_CANCELLED,
}


JOB_TERMINAL = {
    common_pb2.JOB_STATE_SUCCEEDED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
    common_pb2.JOB_STATE_INTERRUPTED,
}


def model_ref(model_name: str, version: int = 0, alias: str = "") -> common_pb2.ModelRef:
    """A version (> 0), an alias, or neither (the latest version)."""
    if alias:
        return common_pb2.ModelRef(model_name=model_name, alias=alias)
    if version:
        return common_pb2.ModelRef(model_name=model_name, version=version)
    return common_pb2.ModelRef(model_name=model_name)


def variant(
    name: str,
    model_name: str,
    *,
    version: int = 0,
    alias: str = "",
    weight: float = 100.0,
    shadow: bool = False,
) -> pb.Variant:
    return pb.Variant(
        name=name,
        model=model_ref(model_name, version, alias),
        weight=weight,
        role=pb.VARIANT_ROLE_SHADOW if shadow else pb.VARIANT_ROLE_LIVE,
    )


def value(v: Any) -> common_pb2.Value:
    """A feature value as the wire carries it; None (a missing value) is the empty Value, which
    the server reads as missing, not the text "None"."""
    if v is None:
        return common_pb2.Value()
    if isinstance(v, bool):
        return common_pb2.Value(bool_value=v)
    if isinstance(v, int):
        return common_pb2.Value(int64_value=v)
    if isinstance(v, float):
        return common_pb2.Value(double_value=v)
    return common_pb2.Value(string_value=str(v))


def feature_row(features: Mapping[str, Any]) -> pb.PredictRow:
    return pb.PredictRow(
        features=pb.InlineFeatures(values={k: value(v) for k, v in features.items()})
    )


def entity_row(entity_id: int | str, overrides: Mapping[str, Any] | None = None) -> pb.PredictRow:
    return pb.PredictRow(
        entity_id=value(entity_id), overrides={k: value(v) for k, v in (overrides or {}).items()}
    )


MAX_GROUND_TRUTH_ITEMS = 1000  # per call or stream message (the server's limit)


def _timestamp_us(value: Any, field: str) -> int:
    """Epoch seconds (number or numeric text) or ISO-8601 text (UTC when no offset)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float)):
        return int(value * 1e6)
    else:
        text = str(value).strip()
        try:
            return int(float(text) * 1e6)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidArgument(
                f"{field}: {text!r} is neither epoch seconds nor an ISO-8601 time",
                reason="INVALID_ARGUMENT",
            ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1e6)


def ground_truth(
    outcome: Any,
    *,
    prediction_id: str = "",
    row: int = 0,
    entity_id: int | str | None = None,
    start: Any = None,
    end: Any = None,
) -> pb.GroundTruth:
    """A true outcome for a prediction (id and row) or for an entity's predictions in
    [start, end) (epoch seconds, ISO-8601 text or datetimes; unset: open)."""
    item = pb.GroundTruth(outcome=value(outcome))
    if entity_id is not None:
        target = pb.EntityTarget(entity_id=value(entity_id))
        if start is not None:
            target.start_time.FromMicroseconds(_timestamp_us(start, "start_time"))
        if end is not None:
            target.end_time.FromMicroseconds(_timestamp_us(end, "end_time"))
        item.entity.CopyFrom(target)
    else:
        item.prediction.CopyFrom(pb.PredictionTarget(prediction_id=prediction_id, row=row))
    return item


def ground_truth_from_record(record: Mapping[str, Any]) -> pb.GroundTruth:
    """One CSV/JSONL record: ``outcome`` plus ``prediction_id`` (and ``row``) or
    ``entity_id`` (and ``start_time``/``end_time``). Empty fields count as absent."""
    present = {k: v for k, v in record.items() if v is not None and v != ""}
    if "outcome" not in present:
        raise InvalidArgument("a ground truth record needs an outcome", reason="INVALID_ARGUMENT")
    if "prediction_id" not in present and "entity_id" not in present:
        raise InvalidArgument(
            "a ground truth record needs a prediction_id or an entity_id",
            reason="INVALID_ARGUMENT",
        )
    try:
        row = int(present.get("row", 0))
    except (TypeError, ValueError):
        raise InvalidArgument(
            f"row {present.get('row')!r} is not an integer", reason="INVALID_ARGUMENT"
        ) from None
    return ground_truth(
        _typed(present["outcome"]),
        prediction_id=str(present.get("prediction_id", "")),
        row=row,
        entity_id=_typed(present["entity_id"]) if "entity_id" in present else None,
        start=present.get("start_time"),
        end=present.get("end_time"),
    )


def _typed(v: Any) -> Any:
    """CSV text as the number it spells (``1`` -> 1, ``2.5`` -> 2.5), else unchanged."""
    if not isinstance(v, str):
        return v
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            continue
    return v


class ServingClient(ServiceClient):
    lineage_request = pb.GetLineageRequest

    def __init__(self, settings: ClientSettings, *, timeout: float = 30.0) -> None:
        super().__init__(settings, timeout=timeout)
        self.stub = pb_grpc.ServingServiceStub(self._channel)

    # -- registry --------------------------------------------------------------------------

    @mapped_errors
    def register(
        self,
        model_name: str,
        bundle: str | common_pb2.ArtifactRef,
        *,
        aliases: Sequence[str] = (),
        description: str = "",
        parents: Sequence[common_pb2.LineageParent] = (),
        labels: Mapping[str, str] | None = None,
        request_id: str = "",
    ) -> pb.ModelVersion:
        """``bundle`` is a URI, or a full ref whose checksum the registry verifies."""
        return self.stub.RegisterModelVersion(
            pb.RegisterModelVersionRequest(
                model_name=model_name,
                bundle=common_pb2.ArtifactRef(uri=bundle) if isinstance(bundle, str) else bundle,
                aliases=list(aliases),
                description=description,
                parents=list(parents),
                labels=dict(labels or {}),
                request_id=request_id,
            ),
            timeout=self.timeout,
        ).model_version

    @mapped_errors
    def set_alias(self, model_name: str, alias: str, version: int) -> pb.ModelVersion:
        return self.stub.SetModelAlias(
            pb.SetModelAliasRequest(model_name=model_name, alias=alias, version=version),
            timeout=self.timeout,
        ).model_version

    @mapped_errors
    def get_version(self, model_name: str, version: int = 0, alias: str = "") -> pb.ModelVersion:
        return self.stub.GetModelVersion(
            pb.GetModelVersionRequest(ref=model_ref(model_name, version, alias)),
            timeout=self.timeout,
        ).model_version

    @mapped_errors
    def list_models(self, prefix: str = "") -> list[pb.Model]:
        return list(
            self.stub.ListModels(
                pb.ListModelsRequest(name_prefix=prefix), timeout=self.timeout
            ).models
        )

    @mapped_errors
    def list_versions(self, model_name: str) -> list[pb.ModelVersion]:
        return list(
            self.stub.ListModelVersions(
                pb.ListModelVersionsRequest(model_name=model_name), timeout=self.timeout
            ).model_versions
        )

    # -- endpoints and deployments ---------------------------------------------------------

    @mapped_errors
    def create_endpoint(self, spec: pb.EndpointSpec, *, request_id: str = "") -> pb.Endpoint:
        return self.stub.CreateEndpoint(
            pb.CreateEndpointRequest(spec=spec, request_id=request_id), timeout=self.timeout
        ).endpoint

    @mapped_errors
    def get_endpoint(self, name: str) -> pb.Endpoint:
        return self.stub.GetEndpoint(
            pb.GetEndpointRequest(name=name), timeout=self.timeout
        ).endpoint

    @mapped_errors
    def list_endpoints(self) -> list[pb.Endpoint]:
        return list(
            self.stub.ListEndpoints(pb.ListEndpointsRequest(), timeout=self.timeout).endpoints
        )

    @mapped_errors
    def delete_endpoint(self, name: str) -> pb.Endpoint:
        return self.stub.DeleteEndpoint(
            pb.DeleteEndpointRequest(name=name), timeout=self.timeout
        ).endpoint

    @mapped_errors
    def stats(
        self, name: str, window_s: float = 60.0, *, quality_window_s: float | None = None
    ) -> list[pb.VariantStats]:
        req = pb.GetEndpointStatsRequest(name=name)
        req.window.FromNanoseconds(int(window_s * 1e9))
        if quality_window_s is not None:
            req.quality_window.FromNanoseconds(int(quality_window_s * 1e9))
        return list(self.stub.GetEndpointStats(req, timeout=self.timeout).variants)

    # -- ground truth and model quality ----------------------------------------------------

    @mapped_errors
    def attach_ground_truth(
        self, endpoint: str, items: Sequence[pb.GroundTruth], *, request_id: str = ""
    ) -> pb.AttachGroundTruthResponse:
        """Up to 1000 outcomes in one call; per-item results (rejections included)."""
        return self.stub.AttachGroundTruth(
            pb.AttachGroundTruthRequest(
                endpoint_name=endpoint, items=list(items), request_id=request_id
            ),
            timeout=self.timeout,
        )

    @mapped_errors
    def attach_ground_truth_stream(
        self,
        endpoint: str,
        items: Iterable[pb.GroundTruth],
        *,
        request_id: str = "",
        chunk: int = MAX_GROUND_TRUTH_ITEMS,
        timeout: float | None = None,
    ) -> pb.AttachGroundTruthStreamResponse:
        """Any number of outcomes over one client stream, ``chunk`` per message; with a
        ``request_id``, message i carries ``<request_id>-<i>`` so a retried stream counts
        nothing twice."""
        size = max(1, min(chunk, MAX_GROUND_TRUTH_ITEMS))

        def messages() -> Iterator[pb.AttachGroundTruthStreamRequest]:
            batch: list[pb.GroundTruth] = []
            n = 0

            def message() -> pb.AttachGroundTruthStreamRequest:
                return pb.AttachGroundTruthStreamRequest(
                    endpoint_name=endpoint,
                    items=batch,
                    request_id=f"{request_id}-{n}" if request_id else "",
                )

            for item in items:
                batch.append(item)
                if len(batch) == size:
                    yield message()
                    batch, n = [], n + 1
            if batch or not n:
                yield message()

        return self.stub.AttachGroundTruthStream(
            messages(), timeout=timeout or max(self.timeout, 300.0)
        )

    @mapped_errors
    def model_quality(
        self,
        endpoint: str,
        *,
        start: Any = None,
        end: Any = None,
        variant: str = "",
        metric: str = "",
    ) -> pb.GetModelQualityResponse:
        """Quality per variant over [start, end) of prediction times (default: the
        endpoint's quality window up to now)."""
        req = pb.GetModelQualityRequest(endpoint_name=endpoint, variant=variant, metric=metric)
        if start is not None:
            req.start_time.FromMicroseconds(_timestamp_us(start, "start"))
        if end is not None:
            req.end_time.FromMicroseconds(_timestamp_us(end, "end"))
        return self.stub.GetModelQuality(req, timeout=self.timeout)

    @mapped_errors
    def deploy(
        self,
        endpoint: str,
        variants: Sequence[pb.Variant],
        *,
        policy: pb.TrafficPolicy | None = None,
        alarms: pb.AlarmConfig | None = None,
        request_id: str = "",
    ) -> pb.Deployment:
        return self.stub.SubmitDeployment(
            pb.SubmitDeploymentRequest(
                endpoint_name=endpoint,
                variants=variants,
                policy=policy,
                alarms=alarms,
                request_id=request_id,
            ),
            timeout=self.timeout,
        ).deployment

    @mapped_errors
    def get_deployment(self, deployment_id: str) -> pb.Deployment:
        return self.stub.GetDeployment(
            pb.GetDeploymentRequest(deployment_id=deployment_id), timeout=self.timeout
        ).deployment

    def watch_deployment(self, deployment_id: str) -> Iterator[pb.WatchDeploymentResponse]:
        yield from mapped_stream(
            self.stub.WatchDeployment(pb.WatchDeploymentRequest(deployment_id=deployment_id))
        )

    def wait_deployment(self, deployment_id: str, timeout: float = 600.0) -> pb.Deployment:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dep = self.get_deployment(deployment_id)
            if dep.state in TERMINAL:
                return dep
            time.sleep(0.2)
        raise DeadlineExceeded(f"deployment {deployment_id} still running after {timeout:.0f}s")

    @mapped_errors
    def cancel_deployment(self, deployment_id: str) -> pb.Deployment:
        return self.stub.CancelDeployment(
            pb.CancelDeploymentRequest(deployment_id=deployment_id), timeout=self.timeout
        ).deployment

    @mapped_errors
    def list_deployments(self, endpoint: str) -> list[pb.Deployment]:
        return list(
            self.stub.ListDeployments(
                pb.ListDeploymentsRequest(endpoint_name=endpoint), timeout=self.timeout
            ).deployments
        )

    @mapped_errors
    def rollback(self, endpoint: str) -> pb.Deployment:
        return self.stub.RollbackEndpoint(
            pb.RollbackEndpointRequest(endpoint_name=endpoint), timeout=self.timeout
        ).deployment

    @mapped_errors
    def alerts(self, endpoint: str = "") -> list[pb.Alert]:
        return list(
            self.stub.ListAlerts(
                pb.ListAlertsRequest(endpoint_name=endpoint), timeout=self.timeout
            ).alerts
        )

    @mapped_errors
    def acknowledge_alert(self, alert_id: str) -> pb.Alert:
        return self.stub.AcknowledgeAlert(
            pb.AcknowledgeAlertRequest(alert_id=alert_id), timeout=self.timeout
        ).alert

    @mapped_errors
    def monitor(
        self,
        endpoint: str,
        *,
        variant: str = "",
        window_s: float = 0.0,
        psi_threshold: float = 0.0,
        repeat_every_s: float = 0.0,
        min_rows_per_feature: int = 0,
        request_id: str = "",
    ) -> pb.MonitoringJob:
        """Submit a drift job over the last ``window_s`` seconds of capture (0: all)."""
        spec = pb.MonitoringSpec(
            psi_threshold=psi_threshold, min_rows_per_feature=min_rows_per_feature
        )
        spec.endpoint.endpoint_name, spec.endpoint.variant_name = endpoint, variant
        if window_s:
            spec.start_time.FromNanoseconds(int((time.time() - window_s) * 1e9))
        if repeat_every_s:
            spec.repeat_every.FromNanoseconds(int(repeat_every_s * 1e9))
        return self.stub.SubmitMonitoringJob(
            pb.SubmitMonitoringJobRequest(spec=spec, request_id=request_id), timeout=self.timeout
        ).job

    @mapped_errors
    def bad_cases(
        self,
        endpoint: str,
        project_id: str,
        reasons: Sequence[pb.BadCaseReason],
        *,
        window_s: float = 0.0,
        max_confidence: float = 0.0,
        min_drift_score: float = 0.0,
        regression_tolerance: float = 0.0,
        content_feature: str = "",
        max_items: int = 0,
        repeat_every_s: float = 0.0,
        request_id: str = "",
    ) -> pb.MonitoringJob:
        """Submit a bad-case job: the captured requests of the last ``window_s`` seconds (0:
        all) matching any of ``reasons`` (pb.BadCaseReason values) go to the labeling project
        ``project_id``; 0 thresholds mean the defaults."""
        spec = pb.MonitoringSpec(
            bad_cases=pb.BadCaseSelection(
                reasons=list(reasons),
                labeling_project_id=project_id,
                max_confidence=max_confidence,
                min_drift_score=min_drift_score,
                regression_tolerance=regression_tolerance,
                content_feature=content_feature,
                max_items=max_items,
            )
        )
        spec.endpoint.endpoint_name = endpoint
        if window_s:
            spec.start_time.FromNanoseconds(int((time.time() - window_s) * 1e9))
        if repeat_every_s:
            spec.repeat_every.FromNanoseconds(int(repeat_every_s * 1e9))
        return self.stub.SubmitMonitoringJob(
            pb.SubmitMonitoringJobRequest(spec=spec, request_id=request_id), timeout=self.timeout
        ).job

    def watch_monitoring_job(self, job_id: str) -> Iterator[pb.MonitoringJob]:
        """The job as it progresses, until its terminal state."""
        for event in mapped_stream(
            self.stub.WatchMonitoringJob(pb.WatchMonitoringJobRequest(job_id=job_id))
        ):
            yield event.job

    @mapped_errors
    def get_monitoring_job(self, job_id: str) -> pb.MonitoringJob:
        return self.stub.GetMonitoringJob(
            pb.GetMonitoringJobRequest(job_id=job_id), timeout=self.timeout
        ).job

    @mapped_errors
    def list_monitoring_jobs(self, endpoint: str = "", limit: int = 100) -> list[pb.MonitoringJob]:
        """The endpoint's drift jobs (every endpoint's when empty)."""
        return list(
            self.stub.ListMonitoringJobs(
                pb.ListMonitoringJobsRequest(
                    endpoint_name=endpoint, page=common_pb2.PageRequest(page_size=limit)
                ),
                timeout=self.timeout,
            ).jobs
        )

    def wait_monitoring_job(self, job_id: str, timeout: float = 600.0) -> pb.MonitoringJob:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get_monitoring_job(job_id)
            if job.status.state in JOB_TERMINAL:
                return job
            time.sleep(0.2)
        raise DeadlineExceeded(f"monitoring job {job_id} still running after {timeout:.0f}s")

    @mapped_errors
    def capture_files(self, endpoint: str) -> list[pb.CaptureFile]:
        return list(
            self.stub.ListCaptureFiles(
                pb.ListCaptureFilesRequest(endpoint_name=endpoint), timeout=self.timeout
            ).files
        )

    # -- predictions -----------------------------------------------------------------------

    @mapped_errors
    def predict(
        self,
        endpoint: str,
        features: Mapping[str, Any] | None = None,
        *,
        entity_id: int | str | None = None,
        explain: bool = False,
        all_scores: bool = False,
        timeout: float | None = None,
    ) -> pb.PredictResponse:
        row = entity_row(entity_id) if entity_id is not None else feature_row(features or {})
        return self.stub.Predict(
            pb.PredictRequest(
                endpoint_name=endpoint,
                row=row,
                options=pb.PredictOptions(explain=explain, return_all_scores=all_scores),
            ),
            timeout=timeout or self.timeout,
        )

    @mapped_errors
    def predict_batch(
        self, endpoint: str, rows: Iterable[Mapping[str, Any]], *, all_scores: bool = False
    ) -> pb.PredictBatchResponse:
        return self.stub.PredictBatch(
            pb.PredictBatchRequest(
                endpoint_name=endpoint,
                rows=[feature_row(r) for r in rows],
                options=pb.PredictOptions(return_all_scores=all_scores),
            ),
            timeout=self.timeout,
        )

    @mapped_errors
    def predict_artifact(
        self,
        endpoint: str,
        input_uri: str,
        *,
        all_scores: bool = False,
        timeout: float | None = None,
    ) -> pb.PredictBatchResponse:
        """Predict every row of a Parquet artifact; the response names the output artifact."""
        return self.stub.PredictBatch(
            pb.PredictBatchRequest(
                endpoint_name=endpoint,
                input_artifact=common_pb2.ArtifactRef(uri=input_uri),
                options=pb.PredictOptions(return_all_scores=all_scores),
            ),
            timeout=timeout or max(self.timeout, 300.0),
        )
