"""The one bridge between atlas.serving.v1 protobuf messages and the domain (``domain.py``):
requests become domain objects, domain objects become responses, and the stored records are
encoded as canonical proto JSON (the metadata DB's format) by the codecs at the bottom."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from google.protobuf import duration_pb2, json_format
from google.protobuf.message import Message

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.errors import AtlasError
from atlas_core.jobs import JobRecord
from atlas_core.proto_convert import (
    dt_to_ts,
    duration_seconds,
    enum_member,
    job_status,
    ts_datetime,
    ts_to_us,
    us_to_ts,
)
from atlas_serving import domain as d
from atlas_serving.dataplane.artifact_batch import PARQUET, ArtifactAnswer
from atlas_serving.dataplane.inference import RowResult
from atlas_serving.dataplane.predict import Answer, row_error
from atlas_serving.dataplane.variants import ServedVersion
from atlas_serving.records import Codecs

BUNDLE_MEDIA_TYPE = "application/x-atlas-bundle"

# -- scalars -------------------------------------------------------------------------------


def _seconds(message: Message, name: str) -> float | None:
    if not message.HasField(name):
        return None
    value: duration_pb2.Duration = getattr(message, name)
    return duration_seconds(value, name)


def _duration(seconds: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromNanoseconds(round(seconds * 1e9))
    return out


def _time(message: Message, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    return ts_datetime(getattr(message, name), name)


def _set_time(message: Message, name: str, value: datetime | None) -> None:
    if value is not None:
        getattr(message, name).CopyFrom(dt_to_ts(value))


def _us(message: Message, name: str) -> int | None:
    return ts_to_us(getattr(message, name)) if message.HasField(name) else None


def optional_us(message: Message, name: str) -> int | None:
    """A Timestamp field in microseconds, None when unset."""
    return _us(message, name)


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


def entity_key(value: common_pb2.Value) -> Any:
    """An entity id as the data service's key: int64 stays an int, anything else a string."""
    kind = value.WhichOneof("kind")
    return (
        value.int64_value if kind == "int64_value" else str(getattr(value, kind or "string_value"))
    )


# -- references ----------------------------------------------------------------------------


def model_ref_from_pb(ref: common_pb2.ModelRef) -> d.ModelRef:
    which = ref.WhichOneof("selector")
    return d.ModelRef(
        ref.model_name,
        version=ref.version if which == "version" else 0,
        alias=ref.alias if which == "alias" else "",
    )


def model_ref_to_pb(ref: d.ModelRef) -> common_pb2.ModelRef:
    if ref.alias:
        return common_pb2.ModelRef(model_name=ref.model_name, alias=ref.alias)
    if ref.version:
        return common_pb2.ModelRef(model_name=ref.model_name, version=ref.version)
    return common_pb2.ModelRef(model_name=ref.model_name)


def version_ref(model_name: str, version: int) -> common_pb2.ModelRef:
    return common_pb2.ModelRef(model_name=model_name, version=version)


def bundle_from_pb(ref: common_pb2.ArtifactRef) -> d.BundleRef:
    return d.BundleRef(ref.uri, ref.sha256, ref.size_bytes)


def bundle_to_pb(ref: d.BundleRef, media_type: str = "") -> common_pb2.ArtifactRef:
    return common_pb2.ArtifactRef(
        uri=ref.uri, sha256=ref.sha256, size_bytes=ref.size, media_type=media_type
    )


def endpoint_ref_from_pb(ref: common_pb2.EndpointRef) -> d.EndpointRef:
    return d.EndpointRef(ref.endpoint_name, ref.variant_name)


def endpoint_ref_to_pb(ref: d.EndpointRef) -> common_pb2.EndpointRef:
    return common_pb2.EndpointRef(endpoint_name=ref.endpoint_name, variant_name=ref.variant_name)


def job_error(exc: AtlasError) -> common_pb2.JobError:
    return common_pb2.JobError(
        code=exc.code.value, reason=exc.reason, message=exc.message, metadata=exc.metadata
    )


# -- registry ------------------------------------------------------------------------------


def lineage_parent_from_pb(parent: common_pb2.LineageParent) -> d.LineageParent:
    kind = parent.WhichOneof("ref") or ""
    ref = (
        json_format.MessageToDict(getattr(parent, kind), preserving_proto_field_name=True)
        if kind
        else {}
    )
    return d.LineageParent(parent.role, kind, ref)


def lineage_parent_to_pb(parent: d.LineageParent) -> common_pb2.LineageParent:
    out = common_pb2.LineageParent(role=parent.role)
    if parent.kind:
        json_format.ParseDict(dict(parent.ref), getattr(out, parent.kind))
    return out


def lineage_from_pb(lineage: common_pb2.Lineage) -> d.Lineage:
    produced = (
        (lineage.produced_by.service, lineage.produced_by.job_id)
        if lineage.HasField("produced_by")
        else None
    )
    return d.Lineage(
        lineage.operation, [lineage_parent_from_pb(p) for p in lineage.parents], produced
    )


def lineage_to_pb(lineage: d.Lineage) -> common_pb2.Lineage:
    out = common_pb2.Lineage(
        operation=lineage.operation, parents=[lineage_parent_to_pb(p) for p in lineage.parents]
    )
    if lineage.produced_by is not None:
        out.produced_by.CopyFrom(
            common_pb2.JobRef(service=lineage.produced_by[0], job_id=lineage.produced_by[1])
        )
    return out


def registration_from_pb(req: pb.RegisterModelVersionRequest) -> d.Registration:
    return d.Registration(
        model_name=req.model_name,
        bundle=bundle_from_pb(req.bundle),
        description=req.description,
        labels=dict(req.labels),
        aliases=list(req.aliases),
        parents=[lineage_parent_from_pb(p) for p in req.parents],
    )


def model_version_to_pb(v: d.ModelVersion) -> pb.ModelVersion:
    out = pb.ModelVersion(
        ref=version_ref(v.model_name, v.version),
        bundle=bundle_to_pb(v.bundle, BUNDLE_MEDIA_TYPE),
        input_schema=common_pb2.TableSchema(
            columns=[
                common_pb2.ColumnSchema(
                    name=c.name,
                    data_type=common_pb2.DataType.Value(c.data_type),
                    nullable=c.nullable,
                    categories=list(c.categories),
                )
                for c in v.input_schema
            ]
        ),
        task_type=v.task_type,
        classes=v.classes,
        metrics=v.metrics,
        lineage=lineage_to_pb(v.lineage),
        aliases=v.aliases,
        description=v.description,
        labels=v.labels,
        has_training_stats=v.has_training_stats,
    )
    _set_time(out, "create_time", v.create_time)
    return out


def model_version_from_pb(v: pb.ModelVersion) -> d.ModelVersion:
    return d.ModelVersion(
        model_name=v.ref.model_name,
        version=v.ref.version,
        bundle=bundle_from_pb(v.bundle),
        input_schema=[
            d.Column(
                c.name,
                common_pb2.DataType.Name(c.data_type),
                c.nullable,
                tuple(c.categories),
            )
            for c in v.input_schema.columns
        ],
        task_type=v.task_type,
        classes=list(v.classes),
        metrics=dict(v.metrics),
        lineage=lineage_from_pb(v.lineage),
        aliases=list(v.aliases),
        description=v.description,
        labels=dict(v.labels),
        create_time=_time(v, "create_time"),
        has_training_stats=v.has_training_stats,
    )


def model_to_pb(m: d.Model) -> pb.Model:
    out = pb.Model(
        name=m.name, latest_version=m.latest_version, aliases=m.aliases, description=m.description
    )
    _set_time(out, "create_time", m.create_time)
    return out


# -- endpoints -----------------------------------------------------------------------------


def capacity_from_pb(c: pb.CapacityConfig) -> d.Capacity:
    return d.Capacity(
        max_concurrency=c.max_concurrency,
        max_queue=c.max_queue,
        idle_ttl_s=_seconds(c, "idle_ttl"),
        warm=c.warm,
        memory_budget_bytes=c.memory_budget_bytes,
    )


def capacity_to_pb(c: d.Capacity) -> pb.CapacityConfig:
    out = pb.CapacityConfig(
        max_concurrency=c.max_concurrency,
        max_queue=c.max_queue,
        warm=c.warm,
        memory_budget_bytes=c.memory_budget_bytes,
    )
    if c.idle_ttl_s is not None:
        out.idle_ttl.CopyFrom(_duration(c.idle_ttl_s))
    return out


def batching_from_pb(b: pb.BatchingConfig) -> d.Batching:
    return d.Batching(b.disabled, b.max_batch_size, _seconds(b, "max_delay"))


def batching_to_pb(b: d.Batching) -> pb.BatchingConfig:
    out = pb.BatchingConfig(disabled=b.disabled, max_batch_size=b.max_batch_size)
    if b.max_delay_s is not None:
        out.max_delay.CopyFrom(_duration(b.max_delay_s))
    return out


def lookup_from_pb(lookup: pb.FeatureLookup) -> d.FeatureLookup:
    return d.FeatureLookup(
        feature_groups=tuple(d.FeatureGroupRef(g.name, g.version) for g in lookup.feature_groups),
        feature_mapping=dict(lookup.feature_mapping),
        timeout_s=_seconds(lookup, "timeout"),
        fallback=enum_member(d.FallbackPolicy, lookup.fallback, "feature_lookup.fallback"),
    )


def lookup_to_pb(lookup: d.FeatureLookup) -> pb.FeatureLookup:
    out = pb.FeatureLookup(
        feature_groups=[
            common_pb2.FeatureGroupRef(name=g.name, version=g.version)
            for g in lookup.feature_groups
        ],
        feature_mapping=dict(lookup.feature_mapping),
        fallback=pb.FallbackPolicy.ValueType(lookup.fallback),
    )
    if lookup.timeout_s is not None:
        out.timeout.CopyFrom(_duration(lookup.timeout_s))
    return out


def capture_from_pb(c: pb.CaptureConfig) -> d.Capture:
    return d.Capture(c.enabled, c.sample_fraction, c.flush_rows, _seconds(c, "flush_interval"))


def capture_to_pb(c: d.Capture) -> pb.CaptureConfig:
    out = pb.CaptureConfig(
        enabled=c.enabled, sample_fraction=c.sample_fraction, flush_rows=c.flush_rows
    )
    if c.flush_interval_s is not None:
        out.flush_interval.CopyFrom(_duration(c.flush_interval_s))
    return out


def quality_from_pb(q: pb.QualityConfig) -> d.QualityConfig:
    return d.QualityConfig(
        enabled=q.enabled,
        sample_fraction=q.sample_fraction,
        entity_feature=q.entity_feature,
        thresholds=tuple(d.QualityThreshold(t.metric, t.threshold) for t in q.thresholds),
        window_s=_seconds(q, "window"),
        min_labeled=q.min_labeled,
    )


def quality_to_pb(q: d.QualityConfig) -> pb.QualityConfig:
    out = pb.QualityConfig(
        enabled=q.enabled,
        sample_fraction=q.sample_fraction,
        entity_feature=q.entity_feature,
        thresholds=[
            pb.QualityThreshold(metric=t.metric, threshold=t.threshold) for t in q.thresholds
        ],
        min_labeled=q.min_labeled,
    )
    if q.window_s is not None:
        out.window.CopyFrom(_duration(q.window_s))
    return out


def variant_from_pb(v: pb.Variant) -> d.Variant:
    return d.Variant(
        name=v.name,
        model=model_ref_from_pb(v.model),
        role=enum_member(d.VariantRole, v.role, f"variant {v.name!r} role"),
        weight=v.weight,
        shadow_fraction=v.shadow_fraction,
        replicas=v.replicas,
        batching=batching_from_pb(v.batching),
        resolved_version=v.resolved_version,
        capacity=capacity_from_pb(v.capacity),
    )


def variant_to_pb(v: d.Variant) -> pb.Variant:
    out = pb.Variant(
        name=v.name,
        model=model_ref_to_pb(v.model),
        role=pb.VariantRole.ValueType(v.role),
        weight=v.weight,
        shadow_fraction=v.shadow_fraction,
        replicas=v.replicas,
        resolved_version=v.resolved_version,
    )
    if v.batching != d.Batching():
        out.batching.CopyFrom(batching_to_pb(v.batching))
    if v.capacity != d.Capacity():
        out.capacity.CopyFrom(capacity_to_pb(v.capacity))
    return out


def variants_from_pb(variants: Iterable[pb.Variant]) -> tuple[d.Variant, ...]:
    return tuple(variant_from_pb(v) for v in variants)


def spec_from_pb(spec: pb.EndpointSpec) -> d.EndpointSpec:
    return d.EndpointSpec(
        name=spec.name,
        variants=variants_from_pb(spec.variants),
        capacity=capacity_from_pb(spec.capacity),
        feature_lookup=lookup_from_pb(spec.feature_lookup),
        capture=capture_from_pb(spec.capture),
        description=spec.description,
        labels=dict(spec.labels),
        quality=quality_from_pb(spec.quality),
    )


def spec_to_pb(spec: d.EndpointSpec) -> pb.EndpointSpec:
    out = pb.EndpointSpec(
        name=spec.name,
        variants=[variant_to_pb(v) for v in spec.variants],
        description=spec.description,
        labels=dict(spec.labels),
    )
    if spec.capacity != d.Capacity():
        out.capacity.CopyFrom(capacity_to_pb(spec.capacity))
    if spec.feature_lookup != d.FeatureLookup():
        out.feature_lookup.CopyFrom(lookup_to_pb(spec.feature_lookup))
    if spec.capture != d.Capture():
        out.capture.CopyFrom(capture_to_pb(spec.capture))
    if spec.quality != d.QualityConfig():
        out.quality.CopyFrom(quality_to_pb(spec.quality))
    return out


def endpoint_to_pb(ep: d.Endpoint) -> pb.Endpoint:
    out = pb.Endpoint(
        spec=spec_to_pb(ep.spec),
        state=pb.EndpointState.ValueType(ep.state),
        active_deployment_id=ep.active_deployment_id,
        last_deployment_id=ep.last_deployment_id,
        etag=ep.etag,
    )
    _set_time(out, "create_time", ep.create_time)
    _set_time(out, "update_time", ep.update_time)
    return out


def endpoint_update_from_pb(req: pb.UpdateEndpointRequest) -> d.EndpointUpdate:
    return d.EndpointUpdate(
        name=req.name,
        capacity=capacity_from_pb(req.capacity) if req.HasField("capacity") else None,
        feature_lookup=(
            lookup_from_pb(req.feature_lookup) if req.HasField("feature_lookup") else None
        ),
        capture=capture_from_pb(req.capture) if req.HasField("capture") else None,
        description=req.description,
        etag=req.etag,
        quality=quality_from_pb(req.quality) if req.HasField("quality") else None,
    )


def variant_stats_to_pb(s: d.VariantStats) -> pb.VariantStats:
    out = pb.VariantStats(
        variant=s.variant,
        model_version=s.model_version,
        qps=s.qps,
        p50_ms=s.p50_ms,
        p99_ms=s.p99_ms,
        error_rate=s.error_rate,
        rejected=s.rejected,
        mean_batch_size=s.mean_batch_size,
        queue_depth=s.queue_depth,
        loaded_replicas=s.loaded_replicas,
        cold_starts=s.cold_starts,
        traffic_percent=s.traffic_percent,
    )
    out.last_cold_start.FromNanoseconds(int(s.last_cold_start_s * 1e9))
    if s.shadow is not None:
        sh = s.shadow
        out.shadow.CopyFrom(
            pb.ShadowComparison(
                compared=sh.compared,
                label_agreement=sh.label_agreement,
                mean_abs_score_diff=sh.mean_abs_score_diff,
                p50_ms=sh.p50_ms,
                p99_ms=sh.p99_ms,
                errors=sh.errors,
            )
        )
    if s.quality is not None:
        out.quality.CopyFrom(variant_quality_to_pb(s.quality))
    return out


# -- ground truth and model quality --------------------------------------------------------


def ground_truth_from_pb(g: pb.GroundTruth) -> d.GroundTruth:
    kind = g.outcome.WhichOneof("kind") if g.HasField("outcome") else None
    # a vector is never a valid outcome: kept as bytes, the domain refuses it by its type
    outcome = g.outcome.float32_vector if kind == "float32_vector" else value_to_python(g.outcome)
    event_us = _us(g, "event_time")
    if g.WhichOneof("target") == "entity":
        e = g.entity
        return d.GroundTruth(
            outcome=outcome,
            entity_id=entity_key(e.entity_id) if e.HasField("entity_id") else None,
            start_us=_us(e, "start_time"),
            end_us=_us(e, "end_time"),
            event_us=event_us,
        )
    return d.GroundTruth(
        outcome=outcome,
        prediction_id=g.prediction.prediction_id,
        row=g.prediction.row,
        event_us=event_us,
    )


def ground_truth_result_to_pb(r: d.GroundTruthResult) -> pb.GroundTruthResult:
    out = pb.GroundTruthResult(
        index=r.index,
        status=pb.GroundTruthStatus.ValueType(r.status),
        matched=r.matched,
        version=r.version,
    )
    if r.error is not None:
        out.error.CopyFrom(
            common_pb2.JobError(
                code=r.error.code,
                reason=r.error.reason,
                message=r.error.message,
                metadata=dict(r.error.metadata),
            )
        )
    return out


def _counts(results: Sequence[d.GroundTruthResult]) -> dict[str, int]:
    s = d.GroundTruthStatus
    return {
        "accepted": sum(r.status == s.ACCEPTED for r in results),
        "updated": sum(r.status == s.UPDATED for r in results),
        "duplicates": sum(r.status == s.DUPLICATE for r in results),
        "rejected": sum(r.status == s.REJECTED for r in results),
    }


def attach_response(results: Sequence[d.GroundTruthResult]) -> pb.AttachGroundTruthResponse:
    return pb.AttachGroundTruthResponse(
        results=[ground_truth_result_to_pb(r) for r in results], **_counts(results)
    )


def stream_response(results: Sequence[d.GroundTruthResult]) -> pb.AttachGroundTruthStreamResponse:
    return pb.AttachGroundTruthStreamResponse(
        rejected_items=[
            ground_truth_result_to_pb(r)
            for r in results
            if r.status == d.GroundTruthStatus.REJECTED
        ],
        **_counts(results),
    )


def variant_quality_to_pb(v: d.VariantQuality) -> pb.VariantQuality:
    out = pb.VariantQuality(
        variant=v.variant,
        model_version=v.model_version,
        labeled=v.labeled,
        shadow=v.shadow,
        metrics=[
            pb.MetricEstimate(
                metric=m.metric,
                value=m.value,
                lower=m.lower,
                upper=m.upper,
                higher_is_better=m.higher_is_better,
            )
            for m in v.metrics
        ],
    )
    if v.paired is not None:
        c = v.paired
        out.paired.CopyFrom(
            pb.PairedComparison(
                baseline_variant=c.baseline_variant,
                metric=c.metric,
                pairs=c.pairs,
                difference=c.difference,
                lower=c.lower,
                upper=c.upper,
                significant=c.significant,
                challenger_better=c.challenger_better,
            )
        )
    return out


def quality_report_to_pb(r: d.QualityReport) -> pb.GetModelQualityResponse:
    out = pb.GetModelQualityResponse(
        variants=[variant_quality_to_pb(v) for v in r.variants], task=r.task
    )
    out.start_time.FromMicroseconds(r.start_us)
    out.end_time.FromMicroseconds(r.end_us)
    return out


# -- deployments ---------------------------------------------------------------------------


def policy_from_pb(p: pb.TrafficPolicy) -> d.TrafficPolicy:
    kind = p.WhichOneof("policy") or ""
    final = _seconds(p, "final_bake_time")
    if kind == "canary":
        return d.TrafficPolicy(
            kind,
            canary_percent=p.canary.canary_percent,
            bake_time_s=duration_seconds(p.canary.bake_time, "policy.canary.bake_time"),
            final_bake_time_s=final,
        )
    if kind == "linear":
        return d.TrafficPolicy(
            kind,
            step_percent=p.linear.step_percent,
            step_interval_s=duration_seconds(p.linear.step_interval, "policy.linear.step_interval"),
            final_bake_time_s=final,
        )
    if kind == "blue_green":
        return d.TrafficPolicy(
            kind,
            bake_time_s=duration_seconds(p.blue_green.bake_time, "policy.blue_green.bake_time"),
            final_bake_time_s=final,
        )
    if kind == "promote_if_better":
        pib = p.promote_if_better
        return d.TrafficPolicy(
            kind,
            final_bake_time_s=final,
            metric=pib.metric,
            min_labeled=pib.min_labeled,
            max_duration_s=_seconds(pib, "max_duration"),
            shadow_fraction=pib.shadow_fraction,
        )
    return d.TrafficPolicy(kind, final_bake_time_s=final)


def policy_to_pb(p: d.TrafficPolicy) -> pb.TrafficPolicy:
    out = pb.TrafficPolicy()
    if p.kind == "canary":
        out.canary.CopyFrom(
            pb.CanaryPolicy(canary_percent=p.canary_percent, bake_time=_duration(p.bake_time_s))
        )
    elif p.kind == "linear":
        out.linear.CopyFrom(
            pb.LinearPolicy(step_percent=p.step_percent, step_interval=_duration(p.step_interval_s))
        )
    elif p.kind == "blue_green":
        out.blue_green.CopyFrom(pb.BlueGreenPolicy(bake_time=_duration(p.bake_time_s)))
    elif p.kind == "promote_if_better":
        pib = pb.PromoteIfBetterPolicy(
            metric=p.metric, min_labeled=p.min_labeled, shadow_fraction=p.shadow_fraction
        )
        if p.max_duration_s is not None:
            pib.max_duration.CopyFrom(_duration(p.max_duration_s))
        out.promote_if_better.CopyFrom(pib)
    elif p.kind == "all_at_once":
        out.all_at_once.SetInParent()
    if p.final_bake_time_s is not None:
        out.final_bake_time.CopyFrom(_duration(p.final_bake_time_s))
    return out


def alarms_from_pb(a: pb.AlarmConfig) -> d.Alarms:
    return d.Alarms(
        max_error_rate=a.max_error_rate,
        max_p99_latency_s=_seconds(a, "max_p99_latency"),
        window_s=_seconds(a, "window"),
        min_requests=a.min_requests,
        disable_auto_rollback=a.disable_auto_rollback,
        quality_gate=(
            d.QualityGate(
                metric=a.quality_gate.metric,
                min_labeled=a.quality_gate.min_labeled,
                max_drop=a.quality_gate.max_drop,
                on_insufficient_labels=enum_member(
                    d.InsufficientLabelsAction,
                    a.quality_gate.on_insufficient_labels,
                    "alarms.quality_gate.on_insufficient_labels",
                ),
            )
            if a.HasField("quality_gate")
            else None
        ),
    )


def alarms_to_pb(a: d.Alarms) -> pb.AlarmConfig:
    out = pb.AlarmConfig(
        max_error_rate=a.max_error_rate,
        min_requests=a.min_requests,
        disable_auto_rollback=a.disable_auto_rollback,
    )
    if a.quality_gate is not None:
        g = a.quality_gate
        out.quality_gate.CopyFrom(
            pb.QualityGate(
                metric=g.metric,
                min_labeled=g.min_labeled,
                max_drop=g.max_drop,
                on_insufficient_labels=pb.InsufficientLabelsAction.ValueType(
                    g.on_insufficient_labels
                ),
            )
        )
    if a.max_p99_latency_s is not None:
        out.max_p99_latency.CopyFrom(_duration(a.max_p99_latency_s))
    if a.window_s is not None:
        out.window.CopyFrom(_duration(a.window_s))
    return out


def alarm_event_from_pb(e: pb.AlarmEvent) -> d.AlarmEvent:
    return d.AlarmEvent(e.variant, e.metric, e.observed, e.threshold, _time(e, "fire_time"))


def alarm_event_to_pb(e: d.AlarmEvent) -> pb.AlarmEvent:
    out = pb.AlarmEvent(
        variant=e.variant, metric=e.metric, observed=e.observed, threshold=e.threshold
    )
    _set_time(out, "fire_time", e.fire_time)
    return out


def deployment_request_from_pb(req: pb.SubmitDeploymentRequest) -> d.DeploymentRequest:
    return d.DeploymentRequest(
        endpoint_name=req.endpoint_name,
        variants=variants_from_pb(req.variants),
        policy=policy_from_pb(req.policy),
        alarms=alarms_from_pb(req.alarms),
        request_id=req.request_id,
    )


def deployment_to_pb(dep: d.Deployment) -> pb.Deployment:
    out = pb.Deployment(
        deployment_id=dep.deployment_id,
        endpoint_name=dep.endpoint_name,
        state=pb.DeploymentState.ValueType(dep.state),
        target_variants=[variant_to_pb(v) for v in dep.target_variants],
        previous_variants=[variant_to_pb(v) for v in dep.previous_variants],
        policy=policy_to_pb(dep.policy),
        alarms=alarms_to_pb(dep.alarms),
        traffic=dep.traffic,
        step=dep.step,
        total_steps=dep.total_steps,
        alarm_events=[alarm_event_to_pb(e) for e in dep.alarm_events],
        request_id=dep.request_id,
    )
    if dep.error is not None:
        out.error.CopyFrom(
            common_pb2.JobError(
                code=dep.error.code,
                reason=dep.error.reason,
                message=dep.error.message,
                metadata=dict(dep.error.metadata),
            )
        )
    _set_time(out, "create_time", dep.create_time)
    _set_time(out, "update_time", dep.update_time)
    _set_time(out, "end_time", dep.end_time)
    return out


def deployment_from_pb(dep: pb.Deployment) -> d.Deployment:
    return d.Deployment(
        deployment_id=dep.deployment_id,
        endpoint_name=dep.endpoint_name,
        state=d.DeploymentState(dep.state),
        target_variants=list(variants_from_pb(dep.target_variants)),
        previous_variants=list(variants_from_pb(dep.previous_variants)),
        policy=policy_from_pb(dep.policy),
        alarms=alarms_from_pb(dep.alarms),
        traffic=dict(dep.traffic),
        step=dep.step,
        total_steps=dep.total_steps,
        alarm_events=[alarm_event_from_pb(e) for e in dep.alarm_events],
        error=(
            d.JobError(
                dep.error.code, dep.error.reason, dep.error.message, dict(dep.error.metadata)
            )
            if dep.HasField("error")
            else None
        ),
        create_time=_time(dep, "create_time"),
        update_time=_time(dep, "update_time"),
        end_time=_time(dep, "end_time"),
        request_id=dep.request_id,
    )


# -- predictions ---------------------------------------------------------------------------


def options_from_pb(options: pb.PredictOptions) -> d.PredictOptions:
    return d.PredictOptions(options.explain, options.target_variant, options.return_all_scores)


def row_from_pb(row: pb.PredictRow) -> d.Row:
    """Raises ValueError for a value a model cannot take (vectors)."""
    if row.WhichOneof("input") == "entity_id":
        return d.Row(
            entity_id=entity_key(row.entity_id),
            overrides={k: value_to_python(v) for k, v in row.overrides.items()},
        )
    return d.Row(features=values_to_python(row.features.values))


def rows_from_pb(rows: Sequence[pb.PredictRow]) -> list[d.Row]:
    """Raises InvalidArgument naming the row whose values a model cannot take."""
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(row_from_pb(row))
        except ValueError as exc:
            raise row_error(i, len(rows), exc) from None
    return out


def prediction(result: RowResult) -> pb.Prediction:
    return pb.Prediction(
        label=result.label,
        value=result.value,
        scores=result.scores,
        contributions=result.contributions,
        fallback_used=result.fallback_used,
        warnings=result.warnings,
    )


def model_ref(answer: Answer) -> common_pb2.ModelRef:
    return version_ref(*answer.model)


def served_version(served: ServedVersion) -> pb.ServedVersion:
    return pb.ServedVersion(name=served.name, reason=served.reason, scoring=served.scoring)


def predict_response(answer: Answer) -> pb.PredictResponse:
    return pb.PredictResponse(
        prediction=prediction(answer.results[0]),
        model=model_ref(answer),
        variant=answer.variant,
        prediction_id=answer.prediction_id,
        served_version=served_version(answer.served),
    )


def batch_response(answer: Answer) -> pb.PredictBatchResponse:
    return pb.PredictBatchResponse(
        predictions=[prediction(r) for r in answer.results],
        model=model_ref(answer),
        variant=answer.variant,
        prediction_id=answer.prediction_id,
        served_version=served_version(answer.served),
    )


def artifact_response(done: ArtifactAnswer) -> pb.PredictBatchResponse:
    out = done.output
    return pb.PredictBatchResponse(
        output_artifact=common_pb2.ArtifactRef(
            uri=out.uri, sha256=out.sha256, size_bytes=out.size, media_type=PARQUET
        ),
        model=version_ref(*done.model),
        variant=done.variant,
        prediction_id=done.prediction_id,
        served_version=served_version(done.served),
    )


# -- monitoring ----------------------------------------------------------------------------


def capture_file_to_pb(f: d.CaptureFile) -> pb.CaptureFile:
    return pb.CaptureFile(
        artifact=common_pb2.ArtifactRef(
            uri=f.uri, sha256=f.sha256, size_bytes=f.size, media_type=PARQUET
        ),
        row_count=f.row_count,
        start_time=us_to_ts(f.start_us),
        end_time=us_to_ts(f.end_us),
        variant=f.variant,
    )


def alert_to_pb(a: d.Alert) -> pb.Alert:
    out = pb.Alert(
        alert_id=a.alert_id,
        kind=pb.AlertKind.ValueType(a.kind),
        endpoint=endpoint_ref_to_pb(a.endpoint),
        feature=a.feature,
        observed=a.observed,
        threshold=a.threshold,
        message=a.message,
        source_id=a.source_id,
        acknowledged=a.acknowledged,
    )
    _set_time(out, "create_time", a.create_time)
    return out


def alert_from_pb(a: pb.Alert) -> d.Alert:
    return d.Alert(
        alert_id=a.alert_id,
        kind=d.AlertKind(a.kind),
        endpoint=endpoint_ref_from_pb(a.endpoint),
        observed=a.observed,
        threshold=a.threshold,
        message=a.message,
        source_id=a.source_id,
        feature=a.feature,
        create_time=_time(a, "create_time"),
        acknowledged=a.acknowledged,
    )


_BAD_CASE_REASONS = {r.value for r in d.BadCaseReason}


def bad_case_selection_from_pb(b: pb.BadCaseSelection) -> d.BadCaseSelection:
    return d.BadCaseSelection(
        # an unknown number is no reason: refused like UNSPECIFIED (NO_REASONS)
        reasons=tuple(
            d.BadCaseReason(r) if r in _BAD_CASE_REASONS else d.BadCaseReason.UNSPECIFIED
            for r in b.reasons
        ),
        labeling_project_id=b.labeling_project_id,
        max_confidence=b.max_confidence,
        min_drift_score=b.min_drift_score,
        regression_tolerance=b.regression_tolerance,
        content_feature=b.content_feature,
        max_items=b.max_items,
        batch_size=b.batch_size,
    )


def bad_case_selection_to_pb(b: d.BadCaseSelection) -> pb.BadCaseSelection:
    return pb.BadCaseSelection(
        reasons=[pb.BadCaseReason.ValueType(r) for r in b.reasons],
        labeling_project_id=b.labeling_project_id,
        max_confidence=b.max_confidence,
        min_drift_score=b.min_drift_score,
        regression_tolerance=b.regression_tolerance,
        content_feature=b.content_feature,
        max_items=b.max_items,
        batch_size=b.batch_size,
    )


def monitoring_spec_from_pb(spec: pb.MonitoringSpec) -> d.MonitoringSpec:
    return d.MonitoringSpec(
        endpoint=endpoint_ref_from_pb(spec.endpoint),
        start_us=_us(spec, "start_time"),
        end_us=_us(spec, "end_time"),
        psi_threshold=spec.psi_threshold,
        ks_p_value_threshold=spec.ks_p_value_threshold,
        repeat_every_s=_seconds(spec, "repeat_every"),
        bad_cases=bad_case_selection_from_pb(spec.bad_cases)
        if spec.HasField("bad_cases")
        else None,
        min_rows_per_feature=spec.min_rows_per_feature,
    )


def monitoring_spec_to_pb(spec: d.MonitoringSpec) -> pb.MonitoringSpec:
    out = pb.MonitoringSpec(
        endpoint=endpoint_ref_to_pb(spec.endpoint),
        psi_threshold=spec.psi_threshold,
        ks_p_value_threshold=spec.ks_p_value_threshold,
        min_rows_per_feature=spec.min_rows_per_feature,
    )
    if spec.start_us is not None:
        out.start_time.CopyFrom(us_to_ts(spec.start_us))
    if spec.end_us is not None:
        out.end_time.CopyFrom(us_to_ts(spec.end_us))
    if spec.repeat_every_s is not None:
        out.repeat_every.CopyFrom(_duration(spec.repeat_every_s))
    if spec.bad_cases is not None:
        out.bad_cases.CopyFrom(bad_case_selection_to_pb(spec.bad_cases))
    return out


def _drift_to_pb(f: d.FeatureDrift) -> pb.FeatureDrift:
    return pb.FeatureDrift(
        feature=f.feature,
        psi=f.psi,
        ks_statistic=f.ks_statistic,
        ks_p_value=f.ks_p_value,
        drifted=f.drifted,
        rows=f.rows,
        not_enough_data=f.not_enough_data,
    )


def _drift_from_pb(f: pb.FeatureDrift) -> d.FeatureDrift:
    return d.FeatureDrift(
        f.feature, f.psi, f.ks_statistic, f.ks_p_value, f.drifted, f.rows, f.not_enough_data
    )


def drift_report_to_pb(r: d.DriftReport) -> pb.DriftReport:
    out = pb.DriftReport(
        rows=r.rows,
        features=[_drift_to_pb(f) for f in r.features],
        drift_detected=r.drift_detected,
    )
    if r.prediction is not None:
        out.prediction.CopyFrom(_drift_to_pb(r.prediction))
    return out


def drift_report_from_pb(r: pb.DriftReport) -> d.DriftReport:
    return d.DriftReport(
        rows=r.rows,
        features=[_drift_from_pb(f) for f in r.features],
        prediction=_drift_from_pb(r.prediction) if r.HasField("prediction") else None,
        drift_detected=r.drift_detected,
    )


# -- stored records: canonical proto JSON ----------------------------------------------------

T = TypeVar("T")
M = TypeVar("M", bound=Message)


class ProtoJson(Generic[T, M]):
    """A domain type stored as its proto message's canonical JSON (records.Codec)."""

    def __init__(
        self, message_type: type[M], to_pb: Callable[[T], M], from_pb: Callable[[M], T]
    ) -> None:
        self.message_type = message_type
        self.to_pb = to_pb
        self.from_pb = from_pb

    def dumps(self, value: T) -> str:
        return json_format.MessageToJson(
            self.to_pb(value), preserving_proto_field_name=True, indent=None, sort_keys=True
        )

    def loads(self, raw: str) -> T:
        return self.from_pb(json_format.Parse(raw, self.message_type(), ignore_unknown_fields=True))

    def to_dict(self, value: T) -> dict[str, Any]:
        return json_format.MessageToDict(self.to_pb(value), preserving_proto_field_name=True)

    def from_dict(self, raw: Mapping[str, Any]) -> T:
        return self.from_pb(
            json_format.ParseDict(dict(raw), self.message_type(), ignore_unknown_fields=True)
        )


SPEC_JSON = ProtoJson(pb.EndpointSpec, spec_to_pb, spec_from_pb)
MODEL_VERSION_JSON = ProtoJson(pb.ModelVersion, model_version_to_pb, model_version_from_pb)
DEPLOYMENT_JSON = ProtoJson(pb.Deployment, deployment_to_pb, deployment_from_pb)
ALERT_JSON = ProtoJson(pb.Alert, alert_to_pb, alert_from_pb)
MONITORING_SPEC_JSON = ProtoJson(pb.MonitoringSpec, monitoring_spec_to_pb, monitoring_spec_from_pb)
DRIFT_REPORT_JSON = ProtoJson(pb.DriftReport, drift_report_to_pb, drift_report_from_pb)
BUNDLE_JSON = ProtoJson(common_pb2.ArtifactRef, bundle_to_pb, bundle_from_pb)

CODECS = Codecs(
    endpoint_spec=SPEC_JSON,
    model_version=MODEL_VERSION_JSON,
    deployment=DEPLOYMENT_JSON,
    alert=ALERT_JSON,
    monitoring_spec=MONITORING_SPEC_JSON,
    drift_report=DRIFT_REPORT_JSON,
    bundle=BUNDLE_JSON,
)


def monitoring_job_to_pb(record: JobRecord) -> pb.MonitoringJob:
    """A monitor job record (its spec and report are stored as proto JSON dicts)."""
    job = pb.MonitoringJob(
        status=job_status(record),
        spec=json_format.ParseDict(
            record.spec.get("spec", {}), pb.MonitoringSpec(), ignore_unknown_fields=True
        ),
    )
    if record.result and "report" in record.result:
        job.report.CopyFrom(
            json_format.ParseDict(
                record.result["report"], pb.DriftReport(), ignore_unknown_fields=True
            )
        )
    if record.result and "bad_case_report" in record.result:
        json_format.ParseDict(
            record.result["bad_case_report"], job.bad_case_report, ignore_unknown_fields=True
        )
    return job
