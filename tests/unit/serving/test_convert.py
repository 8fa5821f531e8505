"""convert.py loses nothing: a fully populated message read into the domain and written back
is the same message. The metadata DB stores these messages' canonical JSON, so a dropped
field here would be a field silently dropped from every stored endpoint or deployment."""

from __future__ import annotations

from google.protobuf import duration_pb2, json_format, timestamp_pb2
from google.protobuf.message import Message

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_serving import convert


def _d(seconds: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromNanoseconds(int(seconds * 1e9))
    return out


def _t(us: int) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromMicroseconds(us)
    return out


def _same(a: Message, b: Message) -> None:
    assert json_format.MessageToDict(a) == json_format.MessageToDict(b)


def _variant(name: str, **extra: object) -> pb.Variant:
    return pb.Variant(
        name=name,
        model=common_pb2.ModelRef(model_name="bc", alias="production"),
        role=pb.VARIANT_ROLE_LIVE,
        weight=60,
        shadow_fraction=0.5,
        replicas=2,
        batching=pb.BatchingConfig(disabled=True, max_batch_size=8, max_delay=_d(0.002)),
        resolved_version=3,
        capacity=pb.CapacityConfig(
            max_concurrency=4, max_queue=9, idle_ttl=_d(30), warm=True, memory_budget_bytes=7
        ),
        **extra,  # type: ignore[arg-type]
    )


def test_endpoint_spec_round_trips() -> None:
    spec = pb.EndpointSpec(
        name="bc",
        variants=[
            _variant("blue"),
            pb.Variant(
                name="shadow",
                model=common_pb2.ModelRef(model_name="bc", version=2),
                role=pb.VARIANT_ROLE_SHADOW,
            ),
        ],
        capacity=pb.CapacityConfig(max_concurrency=1, idle_ttl=_d(0.5)),
        feature_lookup=pb.FeatureLookup(
            feature_groups=[common_pb2.FeatureGroupRef(name="patients", version=2)],
            feature_mapping={"age": "patients.age_years"},
            timeout=_d(0.2),
            fallback=pb.FALLBACK_POLICY_DEFAULTS,
        ),
        capture=pb.CaptureConfig(
            enabled=True, sample_fraction=0.25, flush_rows=10, flush_interval=_d(5)
        ),
        description="breast cancer",
        labels={"team": "ml"},
    )
    _same(convert.spec_to_pb(convert.spec_from_pb(spec)), spec)
    assert convert.SPEC_JSON.loads(convert.SPEC_JSON.dumps(convert.spec_from_pb(spec))) == (
        convert.spec_from_pb(spec)
    )


def test_deployment_round_trips_every_policy() -> None:
    policies = [
        pb.TrafficPolicy(),
        pb.TrafficPolicy(all_at_once=pb.AllAtOncePolicy(), final_bake_time=_d(1)),
        pb.TrafficPolicy(canary=pb.CanaryPolicy(canary_percent=10, bake_time=_d(30))),
        pb.TrafficPolicy(linear=pb.LinearPolicy(step_percent=25, step_interval=_d(2))),
        pb.TrafficPolicy(blue_green=pb.BlueGreenPolicy(bake_time=_d(20))),
    ]
    for policy in policies:
        dep = pb.Deployment(
            deployment_id="d1",
            endpoint_name="bc",
            state=pb.DEPLOYMENT_STATE_BAKING,
            target_variants=[_variant("green")],
            previous_variants=[_variant("blue")],
            policy=policy,
            alarms=pb.AlarmConfig(
                max_error_rate=0.1,
                max_p99_latency=_d(0.05),
                window=_d(10),
                min_requests=20,
                disable_auto_rollback=True,
            ),
            traffic={"green": 25.0, "blue": 75.0},
            step=1,
            total_steps=4,
            alarm_events=[
                pb.AlarmEvent(
                    variant="green",
                    metric="error_rate",
                    observed=0.5,
                    threshold=0.1,
                    fire_time=_t(1_000_000),
                )
            ],
            error=common_pb2.JobError(
                code="ABORTED", reason="ALARM", message="alarm", metadata={"a": "b"}
            ),
            create_time=_t(1),
            update_time=_t(2),
            end_time=_t(3),
            request_id="r1",
        )
        _same(convert.deployment_to_pb(convert.deployment_from_pb(dep)), dep)


def test_model_version_round_trips_with_its_lineage() -> None:
    version = pb.ModelVersion(
        ref=common_pb2.ModelRef(model_name="bc", version=4),
        bundle=common_pb2.ArtifactRef(
            uri="s3://b/m.tar",
            sha256="a" * 64,
            size_bytes=123,
            media_type=convert.BUNDLE_MEDIA_TYPE,
        ),
        input_schema=common_pb2.TableSchema(
            columns=[
                common_pb2.ColumnSchema(
                    name="x", data_type=common_pb2.DATA_TYPE_FLOAT32, nullable=True
                ),
                common_pb2.ColumnSchema(
                    name="c", data_type=common_pb2.DATA_TYPE_CATEGORICAL, categories=["a", "b"]
                ),
            ]
        ),
        task_type="classification",
        classes=["0", "1"],
        metrics={"auc": 0.99},
        lineage=common_pb2.Lineage(
            operation="register_model_version",
            parents=[
                common_pb2.LineageParent(
                    role="bundle", artifact=common_pb2.ArtifactRef(uri="s3://b/m.tar")
                ),
                common_pb2.LineageParent(
                    role="training_data",
                    dataset=common_pb2.DatasetRef(dataset_id="ds", version=2),
                ),
                common_pb2.LineageParent(
                    role="trial",
                    trial=common_pb2.TrialRef(job_id="j", study_name="s", trial_number=7),
                ),
                common_pb2.LineageParent(
                    role="upstream", model=common_pb2.ModelRef(model_name="base", alias="prod")
                ),
            ],
            produced_by=common_pb2.JobRef(service="trainer", job_id="j"),
        ),
        aliases=["production"],
        description="d",
        labels={"k": "v"},
        create_time=_t(5),
        has_training_stats=True,
    )
    _same(convert.model_version_to_pb(convert.model_version_from_pb(version)), version)


def test_monitoring_records_round_trip() -> None:
    alert = pb.Alert(
        alert_id="a1",
        kind=pb.ALERT_KIND_FEATURE_DRIFT,
        endpoint=common_pb2.EndpointRef(endpoint_name="bc", variant_name="blue"),
        feature="x",
        observed=0.4,
        threshold=0.2,
        message="m",
        source_id="job",
        create_time=_t(9),
        acknowledged=True,
    )
    _same(convert.alert_to_pb(convert.alert_from_pb(alert)), alert)
    spec = pb.MonitoringSpec(
        endpoint=common_pb2.EndpointRef(endpoint_name="bc"),
        start_time=_t(1_000_000),
        end_time=_t(2_000_000),
        psi_threshold=0.3,
        ks_p_value_threshold=0.05,
        repeat_every=_d(3600),
    )
    _same(convert.monitoring_spec_to_pb(convert.monitoring_spec_from_pb(spec)), spec)
    drift = pb.FeatureDrift(feature="x", psi=0.5, ks_statistic=0.1, ks_p_value=0.01, drifted=True)
    report = pb.DriftReport(features=[drift], prediction=drift, rows=10, drift_detected=True)
    _same(convert.drift_report_to_pb(convert.drift_report_from_pb(report)), report)
