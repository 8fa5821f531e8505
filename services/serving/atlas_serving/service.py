"""The serving service's domain facade (no grpc): what every front end (gRPC, CLI, tests)
uses. It owns the runtime, the data plane of this replica, the rollout drivers and the job
runner, and runs the replica's background loops (convergence, statistics, schedules)."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from sqlalchemy import func, select

from atlas_core import lineage as lin
from atlas_core.clients.labeling import LabelingClient
from atlas_core.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from atlas_core.jobs import JobRecord, JobState
from atlas_serving.bundle_access import BundleLoader
from atlas_serving.config import ServingSettings
from atlas_serving.control.lineage import ServingLineage
from atlas_serving.control.operations import Control
from atlas_serving.control.rollout import Driver
from atlas_serving.dataplane.capture import CaptureWriter
from atlas_serving.dataplane.lookup import FeatureFetcher
from atlas_serving.dataplane.loop_lag import LoopLag
from atlas_serving.dataplane.models import ModelCache, settle_heap
from atlas_serving.dataplane.predict import DataPlane
from atlas_serving.dataplane.prediction_log import PredictionLog
from atlas_serving.dataplane.replica import Replica
from atlas_serving.domain import (
    Alert,
    AlertKind,
    BadCaseReason,
    BadCaseSelection,
    CaptureFile,
    Deployment,
    DeploymentRequest,
    EndpointRef,
    EndpointSpec,
    GroundTruth,
    GroundTruthResult,
    GroundTruthStatus,
    JobError,
    ModelVersion,
    MonitoringSpec,
    QualityReport,
    Registration,
    ShadowComparison,
    Variant,
    VariantRole,
    VariantStats,
)
from atlas_serving.jobs import JOBS, KIND_BAD_CASES, KIND_MONITOR, MONITORING_KINDS
from atlas_serving.monitoring.alerts import list_capture_files
from atlas_serving.monitoring.bad_cases import NEEDS_PREDICTION_INDEX, check_selection
from atlas_serving.monitoring.ground_truth import GroundTruthStore
from atlas_serving.monitoring.metrics import ServingMetrics
from atlas_serving.monitoring.model_quality import ModelQuality
from atlas_serving.monitoring.quality import worse_than
from atlas_serving.monitoring.schedule import submit_due
from atlas_serving.monitoring.stats import merge, percentile_ms, read_stats
from atlas_serving.records import now, now_us
from atlas_serving.runtime import ServingRuntime, open_runtime
from atlas_serving.tables import alerts

log = logging.getLogger("atlas.serving")
MAX_LISTED_JOBS = 1000
DEFAULT_QUALITY_WINDOW_S = 3600.0
DEFAULT_ALERT_MIN_LABELED = 30
PRUNE_EVERY_S = 600.0


class ServingService:
    def __init__(self, runtime: ServingRuntime) -> None:
        self.rt = runtime
        settings = runtime.settings
        self.settings = settings
        self.engine = runtime.engine
        self.store = runtime.artifacts
        self.data_client = runtime.data_client
        self.registry = runtime.registry
        self.endpoints = runtime.endpoints
        self.deployments = runtime.deployments
        self.alerts = runtime.alerts
        self.idem = runtime.idempotency
        self.metrics = ServingMetrics()
        rt = settings.runtime
        self.models = ModelCache(
            runtime.artifacts,
            runtime.loader,
            budget_bytes=settings.capacity.memory_budget_bytes,
            on_cold_start=self._cold_start,
            compile_models=rt.compile_models,
            refit_full_tolerance=rt.refit_full_tolerance,
        )
        self.capture = CaptureWriter(self.engine, self.store, rt.capture_prefix, rt.replica_id)
        self.executor = ThreadPoolExecutor(rt.inference_threads, "atlas-infer")
        self.prediction_log = PredictionLog(self.engine)
        quality = settings.quality
        self.truth = GroundTruthStore(
            self.engine,
            self._model_info,
            quality.retention_days * 86400,
            indexing_delay_s=2 * quality.flush_seconds + 1.0,
        )
        self.quality = ModelQuality(self.truth, self._model_info, quality.bootstrap_resamples)
        self._model_infos: dict[tuple[str, int], tuple[str, list[str]]] = {}
        self.plane = DataPlane(
            self.models,
            FeatureFetcher(self.data_client),
            self.capture,
            self.metrics,
            self.prediction_log,
            LoopLag(settings.capacity.max_loop_lag_ms / 1000, self.metrics.loop_lag),
        )
        self.replica = Replica(
            settings, self.engine, self.endpoints, self.registry, self.plane, self.executor
        )
        self.control = Control(
            self.registry,
            self.endpoints,
            self.deployments,
            self.models,
            self.data_client,
            self.idem,
        )
        self.driver = Driver(
            self.deployments,
            self.endpoints,
            self.engine,
            rt.replica_id,
            rt.rollout_tick_seconds,
            self._alert,
            self.quality,
        )
        self.jobs = JOBS.runner(self.engine, settings, settings.jobs)
        self.lineage_index = ServingLineage(self.engine, self.registry, self.endpoints, self.jobs)
        self._drivers: dict[str, asyncio.Task[None]] = {}
        self._last_alert_poll = 0.0
        self._last_quality = time.monotonic()
        self._last_prune = 0.0
        self._flusher: asyncio.Task[None] | None = None
        self._stopped = False

    @classmethod
    def open(
        cls, settings: ServingSettings, *, loader: BundleLoader | None = None, migrate: bool = True
    ) -> ServingService:
        """Open the runtime (DB, object store, data service) and wire the service over it.

        Raises Unavailable / Unauthenticated / ConfigError saying what to fix."""
        runtime = open_runtime(settings, loader=loader, migrate=migrate)
        runtime.artifacts.exists("atlas-startup-probe")  # fail fast on wrong S3 credentials
        return cls(runtime)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.jobs.start()
        self.replica.on_tick.append(self._tick)
        await self.replica.start()
        self.plane.loop_lag.start()
        self._flusher = asyncio.ensure_future(self._flush_predictions())
        settle_heap()
        # Background threads (DB polls, job runner, batches) hand the GIL back to the event
        # loop within 1 ms instead of the default 5 ms: a bound on their latency spikes.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))

    async def stop(self) -> None:
        """Stop loops, drivers and jobs; release connections. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for task in self._drivers.values():
            task.cancel()
        if self._flusher is not None:
            self._flusher.cancel()
        await self.plane.loop_lag.stop()
        await self.replica.stop()
        await asyncio.to_thread(self.prediction_log.flush)
        await asyncio.to_thread(self.jobs.stop)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.rt.close()

    def _cold_start(self, key: tuple[str, int], seconds: float) -> None:
        self.metrics.cold_starts.labels(key[0], str(key[1])).inc()
        self.metrics.cold_start_seconds.labels(key[0]).observe(seconds)
        for (endpoint, variant), stats in self.replica.stats.items():
            ep = self.plane.endpoints.get(endpoint)
            v = ep.variants.get(variant) if ep else None
            if v is not None and v.key == key:
                stats.count("cold_starts")
                stats.last_cold_start_s = seconds

    def _alert(self, alert: Alert) -> None:
        self.alerts.add(alert)

    async def _flush_predictions(self) -> None:
        """Write the prediction index buffer every quality.flush_seconds (off the loop)."""
        while True:
            await asyncio.sleep(self.settings.quality.flush_seconds)
            if self.prediction_log.pending():
                await asyncio.to_thread(self.prediction_log.flush)

    def _model_info(self, model: str, version: int) -> tuple[str, list[str]]:
        """(task, classes) of a model version (versions are immutable: cached)."""
        key = (model, version)
        if key not in self._model_infos:
            v = self.registry.get(model, version)
            self._model_infos[key] = (v.task_type, list(v.classes))
        return self._model_infos[key]

    def _tick(self) -> None:
        """Drive orphaned rollouts; refresh alert gauges (every few seconds)."""
        for dep_id in list(self._drivers):
            if self._drivers[dep_id].done():
                del self._drivers[dep_id]
        asyncio.ensure_future(self._adopt_orphans())
        if time.monotonic() - self._last_alert_poll > 2:
            self._last_alert_poll = time.monotonic()
            asyncio.ensure_future(self._refresh_alert_gauges())
            asyncio.ensure_future(asyncio.to_thread(self._monitoring_tick))
        if time.monotonic() - self._last_quality >= self.settings.quality.evaluate_seconds:
            self._last_quality = time.monotonic()
            asyncio.ensure_future(asyncio.to_thread(self._quality_tick))

    def _quality_tick(self) -> None:
        """Export quality per variant and raise alerts on thresholds; prune the index."""
        try:
            if time.monotonic() - self._last_prune >= PRUNE_EVERY_S:
                self._last_prune = time.monotonic()
                retention_us = self.settings.quality.retention_days * 86400 * 1e6
                self.prediction_log.prune(int(now_us() - retention_us))
            for ep in list(self.plane.endpoints.values()):
                if ep.spec.quality.enabled:
                    self._evaluate_quality(ep.spec)
        except Exception:  # noqa: BLE001 - retried next tick
            log.exception("quality tick failed")

    def _evaluate_quality(self, spec: EndpointSpec) -> None:
        config = spec.quality
        window = config.window_s or DEFAULT_QUALITY_WINDOW_S
        end = now_us()
        report = self.quality.report(spec, int(end - window * 1e6), end)
        need = config.min_labeled or DEFAULT_ALERT_MIN_LABELED
        open_alerts = {
            (a.endpoint.variant_name, a.feature)
            for a in self.alerts.open_of_kind(spec.name, AlertKind.MODEL_QUALITY.name)
        }
        for vq in report.variants:
            version = str(vq.model_version)
            self.metrics.labeled.labels(spec.name, vq.variant, version).set(vq.labeled)
            for m in vq.metrics:
                for bound, value in (("value", m.value), ("lower", m.lower), ("upper", m.upper)):
                    self.metrics.quality.labels(
                        spec.name, vq.variant, version, m.metric, bound
                    ).set(value)
            if vq.paired is not None:
                c = vq.paired
                for bound, value in (
                    ("value", c.difference),
                    ("lower", c.lower),
                    ("upper", c.upper),
                ):
                    self.metrics.paired_difference.labels(
                        spec.name, vq.variant, c.metric, bound
                    ).set(value)
            if vq.shadow or vq.labeled < need:
                continue
            values = {m.metric: m.value for m in vq.metrics}
            for t in config.thresholds:
                observed = values.get(t.metric)
                if observed is None or (vq.variant, t.metric) in open_alerts:
                    continue
                if worse_than(t.metric, observed, t.threshold):
                    self.alerts.add(
                        Alert(
                            alert_id=uuid.uuid4().hex[:16],
                            kind=AlertKind.MODEL_QUALITY,
                            endpoint=EndpointRef(spec.name, vq.variant),
                            observed=observed,
                            threshold=t.threshold,
                            feature=t.metric,
                            message=(
                                f"{t.metric} of variant {vq.variant} (v{vq.model_version}) is "
                                f"{observed:.4g} on {vq.labeled} labeled predictions "
                                f"(threshold {t.threshold:.4g})"
                            ),
                            create_time=now(),
                        )
                    )

    def _monitoring_tick(self) -> None:
        """Submit due scheduled monitoring runs; export the latest PSI per feature."""
        try:
            for kind in MONITORING_KINDS:
                submit_due(
                    self.jobs,
                    kind,
                    self.rt.codecs.monitoring_spec,
                    resumable=JOBS.kind(kind).resumable,
                )
            seen: set[str] = set()
            for record in self.jobs.list(KIND_MONITOR, JobState.SUCCEEDED, 100, 0):
                endpoint = record.spec.get("endpoint", "")
                if endpoint in seen or not record.result:
                    continue
                seen.add(endpoint)
                for f in record.result.get("report", {}).get("features", []):
                    self.metrics.drift.labels(endpoint, f["feature"]).set(f.get("psi", 0.0))
        except Exception:  # noqa: BLE001 - retried next tick
            log.exception("monitoring schedule tick failed")

    async def _adopt_orphans(self) -> None:
        lease = self.settings.runtime.rollout_lease_seconds
        for dep_id in await asyncio.to_thread(self.deployments.orphans, lease):
            if dep_id not in self._drivers and await asyncio.to_thread(
                self.deployments.claim, dep_id, self.settings.runtime.replica_id, lease
            ):
                log.info("taking over rollout %s", dep_id)
                self.drive(dep_id)

    async def _refresh_alert_gauges(self) -> None:
        def counts() -> list[Any]:
            with self.engine.connect() as conn:
                return list(
                    conn.execute(
                        select(alerts.c.endpoint_name, alerts.c.kind, func.count())
                        .where(alerts.c.acknowledged.is_(False))
                        .group_by(alerts.c.endpoint_name, alerts.c.kind)
                    ).all()
                )

        for endpoint, kind, n in await asyncio.to_thread(counts):
            self.metrics.alerts.labels(endpoint, kind).set(n)

    def drive(self, deployment_id: str) -> None:
        self._drivers[deployment_id] = asyncio.ensure_future(self.driver.run(deployment_id))

    # -- registry --------------------------------------------------------------------------

    def register(self, req: Registration, request_id: str) -> ModelVersion:
        """Verify and record a bundle as the next version; a repeated request id returns the
        version it created."""
        seen = self.idem.recall("register", request_id)
        if seen is not None:
            return self.registry.get(seen["name"], seen["version"])
        version = self.registry.register(req)
        self.idem.remember(
            "register", request_id, {"name": version.model_name, "version": version.version}
        )
        return version

    def delete_alias(self, model: str, alias: str) -> int:
        """FAILED_PRECONDITION while an endpoint serves through the alias."""
        return self.registry.delete_alias(model, alias, self.control.alias_users(model, alias))

    def delete_version(self, model: str, version: int, *, delete_bundle: bool) -> ModelVersion:
        """FAILED_PRECONDITION while an endpoint serves the version or an alias points at it."""
        served = self.control.served_versions(model)
        return self.registry.delete_version(
            model, version, served.get(version, []), delete_bundle=delete_bundle
        )

    # -- deployments (async wrappers) ------------------------------------------------------

    async def submit_deployment(self, req: DeploymentRequest) -> Deployment:
        dep = await asyncio.to_thread(self.control.submit, req, self.settings.runtime.replica_id)
        if dep.deployment_id not in self._drivers:
            self.drive(dep.deployment_id)
        return dep

    async def rollback(self, endpoint: str, request_id: str) -> Deployment:
        dep = await asyncio.to_thread(
            self.control.rollback, endpoint, request_id, self.settings.runtime.replica_id
        )
        if dep.deployment_id not in self._drivers:
            self.drive(dep.deployment_id)
        return dep

    # -- statistics ------------------------------------------------------------------------

    def endpoint_stats(
        self, name: str, window_s: float, quality_window_s: float | None = None
    ) -> list[VariantStats]:
        """Per-variant statistics over the last ``window_s`` seconds, merged over every
        replica that published recently (queue depth: this replica's); with the quality of
        each variant's model version over the quality window when the endpoint records
        predictions."""
        if window_s <= 0 or (quality_window_s is not None and quality_window_s <= 0):
            raise InvalidArgument("window must be positive", reason="BAD_WINDOW")
        endpoint = self.endpoints.get(name)
        qualities = {}
        if endpoint.spec.quality.enabled:
            window = quality_window_s or endpoint.spec.quality.window_s or DEFAULT_QUALITY_WINDOW_S
            end = now_us()
            self.prediction_log.flush()
            report = self.quality.report(endpoint.spec, int(end - window * 1e6), end)
            qualities = {(vq.variant, vq.model_version): vq for vq in report.variants}
        published = read_stats(self.engine, name)
        live = self.plane.endpoints.get(name)
        out = []
        for v in endpoint.spec.variants:
            exports = published.get(v.name, [])
            stats = summarize(
                v,
                merge(exports, window_s),
                sum(cast(int, e.get("loaded", 0)) for e in exports),
                window_s,
            )
            if live is not None:
                stats.queue_depth = live.admission.waiting
            stats.quality = qualities.get((v.name, v.resolved_version))
            out.append(stats)
        return out

    # -- ground truth and model quality ----------------------------------------------------

    def lineage(
        self, lineage_id: str, children_limit: int, ancestor_depth: int = 0
    ) -> lin.LineageView:
        """GetLineage (blocking): this replica's pending predictions are indexed first."""
        if lin.parse(lineage_id).kind in ("prediction", "endpoint", "model_version"):
            self.prediction_log.flush()
        return lin.answer(self.lineage_index.view, lineage_id, children_limit, ancestor_depth)

    def attach_ground_truth(
        self, endpoint: str, items: Sequence[GroundTruth], request_id: str, first_index: int = 0
    ) -> list[GroundTruthResult]:
        """Attach outcomes (blocking). A repeated request id returns the first results."""
        spec = self.endpoints.get(endpoint).spec
        if not spec.quality.enabled:
            raise FailedPrecondition(
                f"endpoint {endpoint} does not record predictions (quality.enabled is false)",
                reason="QUALITY_DISABLED",
            )
        operation = f"ground_truth:{endpoint}"
        seen = self.idem.recall(operation, request_id)
        if seen is not None:
            return [_result_from_dict(r) for r in seen["results"]]
        self.prediction_log.flush()  # this replica's latest predictions become attachable
        results = self.truth.attach(endpoint, items, request_id, first_index)
        self.idem.remember(
            operation, request_id, {"results": [_result_to_dict(r) for r in results]}
        )
        for r in results:
            self.metrics.ground_truth.labels(endpoint, r.status.name.lower()).inc()
        return results

    def model_quality(
        self,
        endpoint: str,
        start_us: int | None,
        end_us: int | None,
        variant: str = "",
        metric: str = "",
    ) -> QualityReport:
        spec = self.endpoints.get(endpoint).spec
        end = end_us if end_us is not None else now_us()
        window = spec.quality.window_s or DEFAULT_QUALITY_WINDOW_S
        start = start_us if start_us is not None else int(end - window * 1e6)
        if end < start:
            raise InvalidArgument("end_time is before start_time", reason="INVERTED_WINDOW")
        self.prediction_log.flush()
        return self.quality.report(spec, start, end, variant, metric)

    # -- capture and monitoring ------------------------------------------------------------

    def capture_files(
        self, endpoint: str, start_us: int | None, end_us: int | None, offset: int, limit: int
    ) -> tuple[list[CaptureFile], int]:
        self.endpoints.get(endpoint)  # NOT_FOUND
        return list_capture_files(self.engine, endpoint, start_us, end_us, offset, limit)

    def submit_monitoring(self, spec: MonitoringSpec, request_id: str) -> str:
        """Check the spec against the endpoint and submit a monitor job; returns its id.

        The job compares the live variant with the most traffic (or the named one) against
        the training statistics of the bundle it serves."""
        if spec.start_us is not None and spec.end_us is not None and spec.end_us < spec.start_us:
            raise InvalidArgument(
                "spec.end_time is before spec.start_time", reason="INVERTED_WINDOW"
            )
        if spec.psi_threshold < 0 or spec.ks_p_value_threshold < 0:
            raise InvalidArgument("thresholds must not be negative", reason="BAD_THRESHOLD")
        if spec.bad_cases is not None:
            check_selection(spec.bad_cases)
        if spec.min_rows_per_feature < 0:
            raise InvalidArgument(
                "spec.min_rows_per_feature must not be negative (0 = the default, 100)",
                reason="BAD_THRESHOLD",
            )
        endpoint = self.endpoints.get(spec.endpoint.endpoint_name)
        if not endpoint.spec.capture.enabled:
            raise FailedPrecondition(
                f"endpoint {endpoint.spec.name} does not capture data", reason="CAPTURE_DISABLED"
            )
        variants = [
            v
            for v in endpoint.spec.variants
            if v.role != VariantRole.SHADOW
            and (not spec.endpoint.variant_name or v.name == spec.endpoint.variant_name)
        ]
        if not variants:
            raise InvalidArgument(
                f"endpoint has no live variant {spec.endpoint.variant_name}",
                reason="UNKNOWN_VARIANT",
            )
        top = max(variants, key=lambda v: v.weight)
        version = self.registry.get(top.model.model_name, top.resolved_version)
        if spec.bad_cases is not None:
            return self._submit_bad_cases(spec, spec.bad_cases, endpoint.spec, version, request_id)
        if not version.has_training_stats:
            raise FailedPrecondition(
                "the served bundle has no training statistics", reason="NO_TRAINING_STATS"
            )
        codecs = self.rt.codecs
        return self.jobs.submit(
            KIND_MONITOR,
            {
                "spec": codecs.monitoring_spec.to_dict(spec),
                "bundle": codecs.bundle.to_dict(version.bundle),
                "endpoint": endpoint.spec.name,
            },
            request_id=request_id or None,
        )

    def _submit_bad_cases(
        self,
        spec: MonitoringSpec,
        selection: BadCaseSelection,
        endpoint: EndpointSpec,
        version: ModelVersion,
        request_id: str,
    ) -> str:
        """Check that the endpoint records what the reasons need and that the labeling
        project exists (when labeling answers: otherwise the job retries), then submit."""
        reasons = set(selection.reasons)
        if reasons & NEEDS_PREDICTION_INDEX and not endpoint.quality.enabled:
            raise FailedPrecondition(
                f"endpoint {endpoint.name} does not record predictions (quality.enabled), which "
                "shadow disagreement and ground truth need",
                reason="QUALITY_DISABLED",
            )
        if BadCaseReason.LOW_CONFIDENCE in reasons and version.task_type == "regression":
            raise FailedPrecondition(
                f"{version.model_name}:{version.version} is a regression model: it has no "
                "confidence",
                reason="NO_CONFIDENCE",
            )
        if BadCaseReason.HIGH_DRIFT in reasons and not version.has_training_stats:
            raise FailedPrecondition(
                "the served bundle has no training statistics to measure drift against",
                reason="NO_TRAINING_STATS",
            )
        peer = self.settings.labeling
        if peer is None or not peer.target:
            raise FailedPrecondition(
                "bad cases go to the labeling service, and none is configured (labeling.target)",
                reason="NO_LABELING_SERVICE",
            )
        with LabelingClient(peer, timeout=5.0) as labeling:
            try:
                labeling.get_project(selection.labeling_project_id)
            except NotFound:
                raise NotFound(
                    f"labeling has no project {selection.labeling_project_id}",
                    reason="LABELING_PROJECT_NOT_FOUND",
                ) from None
            except (Unavailable, DeadlineExceeded):
                log.warning("labeling unreachable: the bad-case job will check the project")
        return self.jobs.submit(
            KIND_BAD_CASES,
            {
                "spec": self.rt.codecs.monitoring_spec.to_dict(spec),
                "endpoint": endpoint.name,
            },
            request_id=request_id or None,
            resumable=JOBS.kind(KIND_BAD_CASES).resumable,
        )

    def monitoring_job(self, job_id: str) -> JobRecord:
        if not job_id:
            raise InvalidArgument("job_id is required", reason="ID_REQUIRED")
        return self.jobs.get(job_id)

    def monitoring_jobs(self, states: Collection[JobState], endpoint: str) -> list[JobRecord]:
        """Monitor jobs, newest first, of the given states (all when empty) and endpoint."""
        records = sorted(
            (
                r
                for kind in MONITORING_KINDS
                for r in self.jobs.list(kind, None, MAX_LISTED_JOBS, 0)
            ),
            key=lambda r: r.created_at,
            reverse=True,
        )
        return [
            r
            for r in records[:MAX_LISTED_JOBS]
            if (not states or r.state in states)
            and (not endpoint or r.spec.get("endpoint") == endpoint)
        ]


def _result_to_dict(r: GroundTruthResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": r.index,
        "status": r.status.value,
        "matched": r.matched,
        "version": r.version,
    }
    if r.error is not None:
        out["error"] = [r.error.code, r.error.reason, r.error.message, dict(r.error.metadata)]
    return out


def _result_from_dict(raw: dict[str, Any]) -> GroundTruthResult:
    error = raw.get("error")
    return GroundTruthResult(
        index=raw["index"],
        status=GroundTruthStatus(raw["status"]),
        matched=raw["matched"],
        version=raw["version"],
        error=JobError(*error) if error else None,
    )


def summarize(v: Variant, t: dict[str, Any], loaded: int, window_s: float) -> VariantStats:
    """One variant's merged counters (stats.merge) as its statistics over the window."""
    shadow = v.role == VariantRole.SHADOW
    return VariantStats(
        variant=v.name,
        model_version=v.resolved_version,
        qps=t["requests"] / window_s,
        p50_ms=percentile_ms(t["lat"], 0.5),
        p99_ms=percentile_ms(t["lat"], 0.99),
        error_rate=t["errors"] / t["requests"] if t["requests"] else 0.0,
        rejected=t["rejected"],
        mean_batch_size=t["batch_rows"] / t["batches"] if t["batches"] else 0.0,
        loaded_replicas=loaded,
        cold_starts=t["cold_starts"],
        last_cold_start_s=t["last_cold_start_s"],
        traffic_percent=0.0 if shadow else v.weight,
        shadow=(
            ShadowComparison(
                compared=t["compared"],
                label_agreement=t["agreed"] / t["compared"] if t["compared"] else 0.0,
                mean_abs_score_diff=t["score_diff"] / t["compared"] if t["compared"] else 0.0,
                p50_ms=percentile_ms(t["shadow_lat"], 0.5),
                p99_ms=percentile_ms(t["shadow_lat"], 0.99),
                errors=t["shadow_errors"],
            )
            if shadow
            else None
        ),
    )
