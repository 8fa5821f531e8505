"""Traffic policies, alarms and automatic rollback, shadows, refused deployments."""

from __future__ import annotations

import asyncio
import time

import grpc
import pandas as pd
import pytest
from google.protobuf import duration_pb2

from atlas.serving.v1 import serving_service_pb2 as pb

from .conftest import ServingHarness, breast_cancer, live, row, write_model
from .faulty import FailsOnline

S = pb.DeploymentState


def _d(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


async def _endpoint_v1(h: ServingHarness) -> None:
    await h.register("bc", write_model(h.settings.s3, "models/bc/v1.tar"))
    await h.stub.CreateEndpoint(
        pb.CreateEndpointRequest(spec=pb.EndpointSpec(name="bc", variants=[live("blue", "bc", 1)]))
    )


async def _load(h: ServingHarness, features: pd.DataFrame, seconds: float) -> dict[str, int]:
    seen: dict[str, int] = {}
    rows = [row(r) for r in features.iloc[:20].to_dict("records")]
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        try:
            resp = await h.stub.Predict(pb.PredictRequest(endpoint_name="bc", row=rows[i % 20]))
            seen[resp.variant] = seen.get(resp.variant, 0) + 1
        except grpc.aio.AioRpcError as exc:
            seen[exc.code().name] = seen.get(exc.code().name, 0) + 1
        i += 1
    return seen


async def _wait_state(h: ServingHarness, dep_id: str, timeout: float = 20) -> pb.Deployment:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        dep = (await h.stub.GetDeployment(pb.GetDeploymentRequest(deployment_id=dep_id))).deployment
        if dep.state in (
            S.DEPLOYMENT_STATE_SUCCEEDED,
            S.DEPLOYMENT_STATE_ROLLED_BACK,
            S.DEPLOYMENT_STATE_FAILED,
            S.DEPLOYMENT_STATE_CANCELLED,
        ):
            return dep
        await asyncio.sleep(0.1)
    raise AssertionError("deployment did not finish")


async def test_canary_succeeds_and_shifts_traffic(
    serving: ServingHarness, features: pd.DataFrame
) -> None:
    await _endpoint_v1(serving)
    await serving.register("bc", write_model(serving.settings.s3, "models/bc/v2.tar", trees=30))
    dep = (
        await serving.stub.SubmitDeployment(
            pb.SubmitDeploymentRequest(
                endpoint_name="bc",
                variants=[live("green", "bc", 2)],
                policy=pb.TrafficPolicy(
                    canary=pb.CanaryPolicy(canary_percent=30, bake_time=_d(1.5))
                ),
                alarms=pb.AlarmConfig(max_error_rate=0.05, min_requests=5),
            )
        )
    ).deployment
    seen = await _load(serving, features, 1.2)
    assert seen.get("blue", 0) > seen.get("green", 0) > 0, seen
    final = await _wait_state(serving, dep.deployment_id)
    assert final.state == S.DEPLOYMENT_STATE_SUCCEEDED
    await asyncio.sleep(0.3)
    assert set(await _load(serving, features, 0.3)) == {"green"}
    events = [
        e.event
        async for e in serving.stub.WatchDeployment(
            pb.WatchDeploymentRequest(deployment_id=dep.deployment_id)
        )
    ]
    assert "succeeded" in events[-1]


async def test_erroring_canary_rolls_back(serving: ServingHarness, features: pd.DataFrame) -> None:
    await _endpoint_v1(serving)
    X, y = breast_cancer()
    from xgboost import XGBClassifier

    bad = FailsOnline(XGBClassifier(n_estimators=5, n_jobs=1).fit(X, y))
    await serving.register("bc", write_model(serving.settings.s3, "models/bc/bad.tar", model=bad))
    dep = (
        await serving.stub.SubmitDeployment(
            pb.SubmitDeploymentRequest(
                endpoint_name="bc",
                variants=[live("green", "bc", 2)],
                policy=pb.TrafficPolicy(
                    canary=pb.CanaryPolicy(canary_percent=20, bake_time=_d(30))
                ),
                alarms=pb.AlarmConfig(max_error_rate=0.1, min_requests=5, window=_d(5)),
            )
        )
    ).deployment
    await _load(serving, features, 2.0)
    final = await _wait_state(serving, dep.deployment_id, timeout=10)
    assert final.state == S.DEPLOYMENT_STATE_ROLLED_BACK
    assert final.alarm_events[0].metric == "error_rate"
    await asyncio.sleep(0.3)
    assert set(await _load(serving, features, 0.3)) == {"blue"}
    alerts = (await serving.stub.ListAlerts(pb.ListAlertsRequest(endpoint_name="bc"))).alerts
    assert alerts and alerts[0].kind == pb.ALERT_KIND_ROLLBACK


async def test_corrupted_bundle_deployment_is_refused(
    serving: ServingHarness, features: pd.DataFrame
) -> None:
    await _endpoint_v1(serving)
    ref = write_model(serving.settings.s3, "models/bc/v2.tar", trees=30)
    await serving.register("bc", ref)
    store = serving.service.store
    data = bytearray(store.get_bytes(ref))
    data[len(data) // 2] ^= 0xFF
    store.put_bytes("models/bc/v2.tar", bytes(data))  # replaced after registration
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await serving.stub.SubmitDeployment(
            pb.SubmitDeploymentRequest(endpoint_name="bc", variants=[live("green", "bc", 2)])
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert set(await _load(serving, features, 0.3)) == {"blue"}


async def test_shadow_gets_copies_never_answers(
    serving: ServingHarness, features: pd.DataFrame
) -> None:
    await _endpoint_v1(serving)
    await serving.register("bc", write_model(serving.settings.s3, "models/bc/v2.tar", trees=30))
    shadow = live("shadow", "bc", 2, weight=0)
    shadow.role = pb.VARIANT_ROLE_SHADOW
    dep = (
        await serving.stub.SubmitDeployment(
            pb.SubmitDeploymentRequest(endpoint_name="bc", variants=[live("blue", "bc", 1), shadow])
        )
    ).deployment
    await _wait_state(serving, dep.deployment_id)
    await asyncio.sleep(0.3)
    assert set(await _load(serving, features, 1.0)) == {"blue"}
    await asyncio.sleep(0.4)
    stats = (await serving.stub.GetEndpointStats(pb.GetEndpointStatsRequest(name="bc"))).variants
    by_name = {s.variant: s for s in stats}
    assert by_name["shadow"].shadow.compared > 10
    assert by_name["shadow"].shadow.label_agreement > 0.8
    assert by_name["blue"].qps > 0 and by_name["blue"].p99_ms > 0


async def _watched_canary(h: ServingHarness) -> tuple[str, asyncio.Task[list[str]]]:
    """A 50% canary watched by an error-rate alarm (min_requests 10) and a task collecting its
    events from the start."""
    await _endpoint_v1(h)
    await h.register("bc", write_model(h.settings.s3, "models/bc/v2.tar", trees=30))
    dep_id = (
        await h.stub.SubmitDeployment(
            pb.SubmitDeploymentRequest(
                endpoint_name="bc",
                variants=[live("green", "bc", 2)],
                policy=pb.TrafficPolicy(
                    canary=pb.CanaryPolicy(canary_percent=50, bake_time=_d(0.3))
                ),
                alarms=pb.AlarmConfig(max_error_rate=0.05, min_requests=10),
            )
        )
    ).deployment.deployment_id

    async def events() -> list[str]:
        watch = h.stub.WatchDeployment(pb.WatchDeploymentRequest(deployment_id=dep_id))
        return [e.event async for e in watch]

    return dep_id, asyncio.create_task(events())


async def test_canary_without_traffic_is_never_promoted(
    serving: ServingHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atlas_serving.control import rollout

    monkeypatch.setattr(rollout, "EXTEND_MIN_S", 1.5)
    dep_id, events = await _watched_canary(serving)
    final = await _wait_state(serving, dep_id, timeout=15)
    assert final.state == S.DEPLOYMENT_STATE_ROLLED_BACK
    assert final.error.reason == "INSUFFICIENT_TRAFFIC"
    assert "variant green served 0 of the 10 requests needed" in final.error.message
    assert "bake extended: variant green served 0 of the 10 requests needed" in await events
    assert dict(final.traffic) == {"blue": 100.0}


async def test_extended_bake_promotes_once_traffic_arrives(
    serving: ServingHarness, features: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atlas_serving.control import rollout

    monkeypatch.setattr(rollout, "EXTEND_MIN_S", 30.0)
    dep_id, events = await _watched_canary(serving)
    await asyncio.sleep(1.0)  # the bake is over, nothing served: extended, not promoted
    held = (
        await serving.stub.GetDeployment(pb.GetDeploymentRequest(deployment_id=dep_id))
    ).deployment
    assert held.state == S.DEPLOYMENT_STATE_SHIFTING
    assert dict(held.traffic) == {"blue": 50.0, "green": 50.0}
    await serving.service.replica.sync()
    seen = await _load(serving, features, 1.5)
    assert seen.get("green", 0) >= 10, seen
    final = await _wait_state(serving, dep_id, timeout=15)
    assert final.state == S.DEPLOYMENT_STATE_SUCCEEDED
    assert any(e.startswith("bake extended") for e in await events)
