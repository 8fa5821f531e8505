"""Rollouts judged on ground truth: a canary gated on labeled quality (rolled back on a
significant drop, promoted when it holds, waiting or rolling back without labels) and the
promote-if-better policy (a shadow promoted only on a significant paired gain)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.config import S3Settings

from .conftest import (
    ServingHarness,
    breast_cancer,
    live,
    row,
    serving_settings,
    start_harness,
    stop_harness,
    write_model,
)
from .test_ground_truth import attach, by_id, quality_config
from .test_rollout import _d, _wait_state

S = pb.DeploymentState


def _shuffled_model() -> Any:
    """Same inputs, useless answers: trained on permuted labels."""
    from xgboost import XGBClassifier

    X, y = breast_cancer()
    return XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1).fit(
        X, y.sample(frac=1.0, random_state=0).to_numpy()
    )


async def _endpoint(h: ServingHarness, good_first: bool) -> None:
    """bc v1 and v2 (one trained on the labels, one on permuted labels); endpoint on v1."""
    good = write_model(h.settings.s3, "models/bc/good.tar")
    bad = write_model(h.settings.s3, "models/bc/bad.tar", model=_shuffled_model())
    for ref in (good, bad) if good_first else (bad, good):
        await h.register("bc", ref)
    spec = pb.EndpointSpec(name="bc", variants=[live("blue", "bc", 1)], quality=quality_config())
    await h.stub.CreateEndpoint(pb.CreateEndpointRequest(spec=spec))


async def _traffic_with_truth(
    h: ServingHarness, n: int, offset: int = 0, label: bool = True
) -> dict[str, int]:
    """n predictions of breast-cancer rows; their true labels attached when ``label``."""
    X, y = breast_cancer()
    seen: dict[str, int] = {}
    items = []
    for i in range(offset, offset + n):
        j = i % len(X)
        resp = await h.stub.Predict(
            pb.PredictRequest(endpoint_name="bc", row=row(X.iloc[j].to_dict()))
        )
        seen[resp.variant] = seen.get(resp.variant, 0) + 1
        items.append(by_id(resp.prediction_id, int(y.iloc[j])))
    if label:
        await asyncio.sleep(0.3)  # shadows answer asynchronously
        for start in range(0, len(items), 500):
            await attach(h, items[start : start + 500])
    return seen


def _gate(**kw: Any) -> pb.AlarmConfig:
    return pb.AlarmConfig(quality_gate=pb.QualityGate(metric="auc", **kw))


async def _canary(h: ServingHarness, alarms: pb.AlarmConfig, bake: float) -> str:
    return (
        await h.stub.SubmitDeployment(
            pb.SubmitDeploymentRequest(
                endpoint_name="bc",
                variants=[live("green", "bc", 2)],
                alarms=alarms,
                policy=pb.TrafficPolicy(
                    canary=pb.CanaryPolicy(canary_percent=50, bake_time=_d(bake))
                ),
            )
        )
    ).deployment.deployment_id


async def _state(h: ServingHarness, dep_id: str) -> pb.Deployment:
    return (await h.stub.GetDeployment(pb.GetDeploymentRequest(deployment_id=dep_id))).deployment


async def test_canary_rolled_back_on_a_ground_truth_drop(serving: ServingHarness) -> None:
    await _endpoint(serving, good_first=True)
    dep_id = await _canary(serving, _gate(min_labeled=30, max_drop=0.05), bake=60)
    await asyncio.sleep(0.5)
    await serving.service.replica.sync()
    seen = await _traffic_with_truth(serving, 160)
    assert seen.get("green") and seen.get("blue")
    final = await _wait_state(serving, dep_id, timeout=15)
    assert final.state == S.DEPLOYMENT_STATE_ROLLED_BACK
    assert final.error.reason == "ALARM"
    (event,) = final.alarm_events
    assert event.metric == "quality_auc" and event.observed > 0.05
    alerts = (await serving.stub.ListAlerts(pb.ListAlertsRequest(endpoint_name="bc"))).alerts
    assert alerts[0].kind == pb.ALERT_KIND_ROLLBACK and "quality_auc" in alerts[0].message
    assert dict(final.traffic) == {"blue": 100.0}


async def test_canary_waits_for_labels_then_is_promoted_when_better(
    serving: ServingHarness,
) -> None:
    await _endpoint(serving, good_first=False)  # v1 is the bad one
    dep_id = await _canary(serving, _gate(min_labeled=30, max_drop=0.0), bake=0.5)
    await asyncio.sleep(0.5)
    await serving.service.replica.sync()
    await _traffic_with_truth(serving, 40, label=False)
    await asyncio.sleep(1.5)  # the bake time is over, but no label arrived: the step waits
    waiting = await _state(serving, dep_id)
    assert waiting.state == S.DEPLOYMENT_STATE_SHIFTING and waiting.step == 0
    assert dict(waiting.traffic) == {"blue": 50.0, "green": 50.0}
    await _traffic_with_truth(serving, 160, offset=40)
    final = await _wait_state(serving, dep_id, timeout=15)
    assert final.state == S.DEPLOYMENT_STATE_SUCCEEDED
    assert dict(final.traffic) == {"green": 100.0}


async def test_linear_rollout_steps_only_with_labels_on_each_database(
    tmp_path: Path, s3_settings: S3Settings, db_url: str
) -> None:
    h = await start_harness(serving_settings(tmp_path, s3_settings, db_url))
    try:
        await _endpoint(h, good_first=False)
        dep_id = (
            await h.stub.SubmitDeployment(
                pb.SubmitDeploymentRequest(
                    endpoint_name="bc",
                    variants=[live("green", "bc", 2)],
                    alarms=_gate(min_labeled=20),
                    policy=pb.TrafficPolicy(
                        linear=pb.LinearPolicy(step_percent=50, step_interval=_d(0.3))
                    ),
                )
            )
        ).deployment.deployment_id
        await asyncio.sleep(1.2)
        held = await _state(h, dep_id)
        assert held.state == S.DEPLOYMENT_STATE_SHIFTING and held.step == 0
        await h.service.replica.sync()
        await _traffic_with_truth(h, 120)
        final = await _wait_state(h, dep_id, timeout=15)
        assert final.state == S.DEPLOYMENT_STATE_SUCCEEDED
        assert dict(final.traffic) == {"green": 100.0}
    finally:
        await stop_harness(h)


async def test_canary_without_labels_rolls_back_when_configured(
    serving: ServingHarness,
) -> None:
    await _endpoint(serving, good_first=True)
    alarms = _gate(min_labeled=30, on_insufficient_labels=pb.INSUFFICIENT_LABELS_ACTION_ROLL_BACK)
    dep_id = await _canary(serving, alarms, bake=0.5)
    final = await _wait_state(serving, dep_id, timeout=10)
    assert final.state == S.DEPLOYMENT_STATE_ROLLED_BACK
    assert final.error.reason == "QUALITY_GATE_UNDECIDED"


async def _promote(h: ServingHarness, **policy: Any) -> str:
    return (
        await h.stub.SubmitDeployment(
            pb.SubmitDeploymentRequest(
                endpoint_name="bc",
                variants=[live("green", "bc", 2)],
                policy=pb.TrafficPolicy(promote_if_better=pb.PromoteIfBetterPolicy(**policy)),
            )
        )
    ).deployment.deployment_id


async def test_promote_if_better_promotes_a_significantly_better_shadow(
    serving: ServingHarness,
) -> None:
    await _endpoint(serving, good_first=False)
    dep_id = await _promote(serving, metric="auc", min_labeled=40)
    await asyncio.sleep(0.4)
    await serving.service.replica.sync()
    endpoint = (await serving.stub.GetEndpoint(pb.GetEndpointRequest(name="bc"))).endpoint
    roles = {v.name: v.role for v in endpoint.spec.variants}
    assert roles == {"blue": pb.VARIANT_ROLE_LIVE, "green": pb.VARIANT_ROLE_SHADOW}
    seen = await _traffic_with_truth(serving, 80)
    assert set(seen) == {"blue"}  # a shadow never answers
    final = await _wait_state(serving, dep_id, timeout=15)
    assert final.state == S.DEPLOYMENT_STATE_SUCCEEDED
    assert dict(final.traffic) == {"green": 100.0}


async def test_promote_if_better_keeps_the_champion_with_too_few_labels(
    serving: ServingHarness,
) -> None:
    await _endpoint(serving, good_first=False)
    dep_id = await _promote(serving, metric="auc", min_labeled=100, max_duration=_d(3))
    await asyncio.sleep(0.4)
    await serving.service.replica.sync()
    await _traffic_with_truth(serving, 30)  # better, but only 30 labeled pairs
    final = await _wait_state(serving, dep_id, timeout=15)
    assert final.state == S.DEPLOYMENT_STATE_ROLLED_BACK
    assert final.error.reason == "NOT_PROMOTED" and "only 30 of 100" in final.error.message
    endpoint = (await serving.stub.GetEndpoint(pb.GetEndpointRequest(name="bc"))).endpoint
    assert [v.name for v in endpoint.spec.variants] == ["blue"]


async def test_promote_if_better_needs_a_significant_difference(
    serving: ServingHarness,
) -> None:
    # v2 is the same model as v1: identical answers, a difference of exactly 0
    ref = write_model(serving.settings.s3, "models/bc/v1.tar")
    await serving.register("bc", ref)
    await serving.register("bc", ref)
    spec = pb.EndpointSpec(name="bc", variants=[live("blue", "bc", 1)], quality=quality_config())
    await serving.stub.CreateEndpoint(pb.CreateEndpointRequest(spec=spec))
    dep_id = await _promote(serving, metric="accuracy", min_labeled=30, max_duration=_d(4))
    await asyncio.sleep(0.4)
    await serving.service.replica.sync()
    await _traffic_with_truth(serving, 60)
    stats = await serving.stub.GetEndpointStats(pb.GetEndpointStatsRequest(name="bc"))
    shadow = next(v for v in stats.variants if v.variant == "green")
    paired = shadow.quality.paired
    assert shadow.quality.shadow and paired.baseline_variant == "blue"
    assert paired.pairs == 60 and paired.difference == 0.0
    assert not paired.significant and not paired.challenger_better
    final = await _wait_state(serving, dep_id, timeout=15)
    # decided by max_duration, not by the labels
    took = final.end_time.ToMicroseconds() - final.create_time.ToMicroseconds()
    assert took >= 4_000_000
    assert final.state == S.DEPLOYMENT_STATE_ROLLED_BACK
    assert "no significant difference" in final.error.message


async def test_stats_pair_a_shadow_with_the_champion_on_the_same_requests(
    serving: ServingHarness,
) -> None:
    await _endpoint(serving, good_first=True)
    shadow = live("green", "bc", 2)
    shadow.role = pb.VARIANT_ROLE_SHADOW
    shadow.weight = 0
    await serving.stub.SubmitDeployment(
        pb.SubmitDeploymentRequest(endpoint_name="bc", variants=[live("blue", "bc", 1), shadow])
    )
    await asyncio.sleep(0.5)
    await serving.service.replica.sync()
    await _traffic_with_truth(serving, 120)
    report = (
        await serving.stub.GetModelQuality(pb.GetModelQualityRequest(endpoint_name="bc"))
    ).variants
    by_name = {v.variant: v for v in report}
    assert by_name["blue"].labeled == by_name["green"].labeled == 120
    paired = by_name["green"].paired
    assert paired.metric == "auc" and paired.pairs == 120
    blue_auc = next(m.value for m in by_name["blue"].metrics if m.metric == "auc")
    green_auc = next(m.value for m in by_name["green"].metrics if m.metric == "auc")
    assert paired.difference == pytest.approx(green_auc - blue_auc)
    assert paired.lower <= paired.difference <= paired.upper < 0
    assert paired.significant and not paired.challenger_better
    assert blue_auc > 0.9 > green_auc
    await asyncio.to_thread(serving.service._quality_tick)
    sample = serving.service.metrics.registry.get_sample_value
    labels = {"endpoint": "bc", "variant": "green", "metric": "auc"}
    exported = sample("atlas_serving_shadow_quality_difference", {**labels, "bound": "value"})
    assert exported == pytest.approx(paired.difference)


async def test_rollouts_judged_on_outcomes_are_checked_at_submit(
    serving: ServingHarness,
) -> None:
    import grpc

    await _endpoint(serving, good_first=True)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _canary(serving, _gate_on("rmse"), bake=1)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "rmse" in (info.value.details() or "")
    await serving.stub.UpdateEndpoint(
        pb.UpdateEndpointRequest(name="bc", quality=pb.QualityConfig(enabled=False))
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _promote(serving, min_labeled=10)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    endpoint = (await serving.stub.GetEndpoint(pb.GetEndpointRequest(name="bc"))).endpoint
    assert not endpoint.active_deployment_id and not endpoint.spec.quality.enabled


def _gate_on(metric: str) -> pb.AlarmConfig:
    return pb.AlarmConfig(quality_gate=pb.QualityGate(metric=metric, min_labeled=10))
