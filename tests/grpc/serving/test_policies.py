"""Linear and blue/green rollouts, the p99 alarm, cancel and manual rollback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd
import pytest

from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.config import S3Settings

from .conftest import (
    ServingHarness,
    live,
    serving_settings,
    start_harness,
    stop_harness,
    write_model,
)
from .test_rollout import _d, _endpoint_v1, _load, _wait_state

S = pb.DeploymentState


async def _with_v2(h: ServingHarness) -> None:
    await _endpoint_v1(h)
    await h.register("bc", write_model(h.settings.s3, "models/bc/v2.tar", trees=30))


async def _traffic(h: ServingHarness, dep_id: str) -> dict[str, float]:
    return dict(
        (
            await h.stub.GetDeployment(pb.GetDeploymentRequest(deployment_id=dep_id))
        ).deployment.traffic
    )


async def test_linear_steps_through_every_share(
    serving: ServingHarness, features: pd.DataFrame
) -> None:
    await _with_v2(serving)
    dep = (
        await serving.stub.SubmitDeployment(
            pb.SubmitDeploymentRequest(
                endpoint_name="bc",
                variants=[live("green", "bc", 2)],
                policy=pb.TrafficPolicy(
                    linear=pb.LinearPolicy(step_percent=50, step_interval=_d(0.8))
                ),
            )
        )
    ).deployment
    assert dep.total_steps == 2
    await asyncio.sleep(0.4)
    assert (await _traffic(serving, dep.deployment_id)) == {"blue": 50.0, "green": 50.0}
    seen = await _load(serving, features, 0.4)
    assert seen.get("blue") and seen.get("green")
    final = await _wait_state(serving, dep.deployment_id)
    assert final.state == S.DEPLOYMENT_STATE_SUCCEEDED and dict(final.traffic) == {"green": 100.0}


async def test_blue_green_keeps_blue_loaded_while_baking(
    serving: ServingHarness, features: pd.DataFrame
) -> None:
    await _with_v2(serving)
    assert set(await _load(serving, features, 0.2)) == {"blue"}
    dep = (
        await serving.stub.SubmitDeployment(
            pb.SubmitDeploymentRequest(
                endpoint_name="bc",
                variants=[live("green", "bc", 2)],
                policy=pb.TrafficPolicy(blue_green=pb.BlueGreenPolicy(bake_time=_d(1.5))),
            )
        )
    ).deployment
    await asyncio.sleep(0.5)
    endpoint = (await serving.stub.GetEndpoint(pb.GetEndpointRequest(name="bc"))).endpoint
    assert {v.name: v.weight for v in endpoint.spec.variants} == {"blue": 0.0, "green": 100.0}
    assert set(await _load(serving, features, 0.3)) == {"green"}
    assert serving.service.models.loaded(("bc", 1))  # instant switch back is possible
    final = await _wait_state(serving, dep.deployment_id)
    assert final.state == S.DEPLOYMENT_STATE_SUCCEEDED
    endpoint = (await serving.stub.GetEndpoint(pb.GetEndpointRequest(name="bc"))).endpoint
    assert [v.name for v in endpoint.spec.variants] == ["green"]


async def test_p99_alarm_rolls_back(serving: ServingHarness, features: pd.DataFrame) -> None:
    await _with_v2(serving)
    alarms = pb.AlarmConfig(min_requests=5, window=_d(5))
    alarms.max_p99_latency.FromMicroseconds(1)  # any real request is slower
    dep = (
        await serving.stub.SubmitDeployment(
            pb.SubmitDeploymentRequest(
                endpoint_name="bc",
                variants=[live("green", "bc", 2)],
                alarms=alarms,
                policy=pb.TrafficPolicy(
                    canary=pb.CanaryPolicy(canary_percent=50, bake_time=_d(30))
                ),
            )
        )
    ).deployment
    await _load(serving, features, 1.0)
    final = await _wait_state(serving, dep.deployment_id, timeout=10)
    assert final.state == S.DEPLOYMENT_STATE_ROLLED_BACK
    assert final.alarm_events[0].metric == "p99_latency"
    alerts = (await serving.stub.ListAlerts(pb.ListAlertsRequest(endpoint_name="bc"))).alerts
    assert alerts[0].kind == pb.ALERT_KIND_ROLLBACK and "p99_latency" in alerts[0].message


async def test_cancel_returns_traffic_to_blue(
    serving: ServingHarness, features: pd.DataFrame
) -> None:
    await _with_v2(serving)
    dep = (
        await serving.stub.SubmitDeployment(
            pb.SubmitDeploymentRequest(
                endpoint_name="bc",
                variants=[live("green", "bc", 2)],
                policy=pb.TrafficPolicy(
                    canary=pb.CanaryPolicy(canary_percent=50, bake_time=_d(60))
                ),
            )
        )
    ).deployment
    await asyncio.sleep(0.4)
    with pytest.raises(Exception, match="in progress"):
        await serving.stub.SubmitDeployment(
            pb.SubmitDeploymentRequest(endpoint_name="bc", variants=[live("red", "bc", 2)])
        )
    await serving.stub.CancelDeployment(pb.CancelDeploymentRequest(deployment_id=dep.deployment_id))
    final = await _wait_state(serving, dep.deployment_id)
    assert final.state == S.DEPLOYMENT_STATE_CANCELLED
    await asyncio.sleep(0.3)
    assert set(await _load(serving, features, 0.3)) == {"blue"}


async def test_manual_rollback_restores_the_previous_version(
    serving: ServingHarness, features: pd.DataFrame
) -> None:
    await _with_v2(serving)
    dep = (
        await serving.stub.SubmitDeployment(
            pb.SubmitDeploymentRequest(endpoint_name="bc", variants=[live("green", "bc", 2)])
        )
    ).deployment
    await _wait_state(serving, dep.deployment_id)
    back = (
        await serving.stub.RollbackEndpoint(pb.RollbackEndpointRequest(endpoint_name="bc"))
    ).deployment
    final = await _wait_state(serving, back.deployment_id)
    assert final.state == S.DEPLOYMENT_STATE_SUCCEEDED
    await asyncio.sleep(0.3)
    assert set(await _load(serving, features, 0.3)) == {"blue"}
    history = (
        await serving.stub.ListDeployments(pb.ListDeploymentsRequest(endpoint_name="bc"))
    ).deployments
    assert [d.deployment_id for d in history] == [back.deployment_id, dep.deployment_id]


async def test_rollout_taken_over_when_its_driver_dies(
    tmp_path: Path, s3_settings: S3Settings
) -> None:
    h = await start_harness(serving_settings(tmp_path, s3_settings, "", rollout_lease_seconds=0.5))
    try:
        await _with_v2(h)
        dep = (
            await h.stub.SubmitDeployment(
                pb.SubmitDeploymentRequest(
                    endpoint_name="bc",
                    variants=[live("green", "bc", 2)],
                    policy=pb.TrafficPolicy(
                        canary=pb.CanaryPolicy(canary_percent=10, bake_time=_d(1))
                    ),
                )
            )
        ).deployment
        h.service._drivers.pop(dep.deployment_id).cancel()  # the driving replica "dies"
        final = await _wait_state(h, dep.deployment_id, timeout=15)
        assert final.state == S.DEPLOYMENT_STATE_SUCCEEDED
    finally:
        await stop_harness(h)
