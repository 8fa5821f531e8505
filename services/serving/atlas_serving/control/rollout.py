"""Deployments: a rollout moves an endpoint from its previous variants to target variants
step by step, watching per-variant alarms (error rate, p99) over the whole fleet's
statistics, and rolls back automatically when one fires. The replica that accepted a
deployment drives it; when its heartbeat stops, another replica takes the lease over."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, select

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.db import write_transaction
from atlas_core.errors import InvalidArgument, NotFound
from atlas_core.proto_convert import dt_to_ts, us_to_ts
from atlas_serving.control.endpoints import EndpointStore
from atlas_serving.control.rollout_plan import Plan, plan_for, split
from atlas_serving.monitoring.stats import merge, percentile_ms, read_stats
from atlas_serving.records import from_json, now, now_us, to_json
from atlas_serving.tables import deployments

log = logging.getLogger("atlas.serving.rollout")
S = pb.DeploymentState
TERMINAL = {
    S.DEPLOYMENT_STATE_SUCCEEDED,
    S.DEPLOYMENT_STATE_ROLLED_BACK,
    S.DEPLOYMENT_STATE_FAILED,
    S.DEPLOYMENT_STATE_CANCELLED,
}
DEFAULT_ALARM_WINDOW_S = 10.0
AlertSink = Callable[[pb.Alert], None]


class DeploymentStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def insert(self, dep: pb.Deployment, driver: dict[str, Any], owner: str) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                deployments.insert().values(
                    deployment_id=dep.deployment_id,
                    endpoint_name=dep.endpoint_name,
                    state=S.Name(dep.state),
                    body=to_json(dep),
                    driver=json.dumps(driver),
                    owner=owner,
                    heartbeat_us=now_us(),
                    created_at=now(),
                )
            )

    def get(self, deployment_id: str) -> tuple[pb.Deployment, dict[str, Any]]:
        with self.engine.connect() as conn:
            return self._read(conn, deployment_id)

    @staticmethod
    def _read(
        conn: Connection, deployment_id: str, *, lock: bool = False
    ) -> tuple[pb.Deployment, dict[str, Any]]:
        if not deployment_id:
            raise InvalidArgument("deployment_id is required", reason="ID_REQUIRED")
        query = select(deployments.c.body, deployments.c.driver).where(
            deployments.c.deployment_id == deployment_id
        )
        row = conn.execute(query.with_for_update() if lock else query).first()
        if row is None:
            raise NotFound(
                f"deployment {deployment_id} does not exist", reason="DEPLOYMENT_NOT_FOUND"
            )
        return from_json(row.body, pb.Deployment), json.loads(row.driver)

    def save(self, dep: pb.Deployment, driver: dict[str, Any], owner: str = "") -> None:
        dep.update_time.CopyFrom(dt_to_ts(now()))
        with write_transaction(self.engine) as conn:
            # A cancel requested since ``driver`` was read must survive this write.
            stored = conn.execute(
                select(deployments.c.driver)
                .where(deployments.c.deployment_id == dep.deployment_id)
                .with_for_update()
            ).scalar()
            if stored is not None and json.loads(stored).get("cancel"):
                driver["cancel"] = True
            values: dict[str, Any] = dict(
                state=S.Name(dep.state),
                body=to_json(dep),
                driver=json.dumps(driver),
                heartbeat_us=now_us(),
            )
            if owner:
                values["owner"] = owner
            conn.execute(
                deployments.update()
                .where(deployments.c.deployment_id == dep.deployment_id)
                .values(**values)
            )

    def request_cancel(self, deployment_id: str) -> pb.Deployment:
        """Flag a deployment for cancellation in one transaction (the driver may be saving
        its own progress at the same time); returns it as stored."""
        with write_transaction(self.engine) as conn:
            dep, driver = self._read(conn, deployment_id, lock=True)
            if dep.state not in TERMINAL:
                conn.execute(
                    deployments.update()
                    .where(deployments.c.deployment_id == deployment_id)
                    .values(driver=json.dumps({**driver, "cancel": True}))
                )
        return dep

    def list(self, endpoint: str, offset: int, limit: int) -> tuple[list[pb.Deployment], bool]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(deployments.c.body)
                .where(deployments.c.endpoint_name == endpoint)
                .order_by(deployments.c.created_at.desc())
                .offset(offset)
                .limit(limit + 1)
            ).all()
        return [from_json(r.body, pb.Deployment) for r in rows[:limit]], len(rows) > limit

    def orphans(self, lease_s: float) -> list[str]:
        """Unfinished deployments whose driver stopped heartbeating."""
        stale = now_us() - int(lease_s * 1e6)
        names = [S.Name(s) for s in TERMINAL]
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(deployments.c.deployment_id).where(
                        deployments.c.state.not_in(names) & (deployments.c.heartbeat_us < stale)
                    )
                ).scalars()
            )

    def claim(self, deployment_id: str, owner: str, lease_s: float) -> bool:
        stale = now_us() - int(lease_s * 1e6)
        with write_transaction(self.engine) as conn:
            done = conn.execute(
                deployments.update()
                .where(
                    (deployments.c.deployment_id == deployment_id)
                    & (deployments.c.heartbeat_us < stale)
                )
                .values(owner=owner, heartbeat_us=now_us())
            )
        return bool(done.rowcount)


def new_deployment(
    endpoint: pb.Endpoint,
    target: list[pb.Variant],
    policy: pb.TrafficPolicy,
    alarms: pb.AlarmConfig,
    request_id: str,
) -> tuple[pb.Deployment, dict]:
    plan = plan_for(policy)
    previous = [v for v in endpoint.spec.variants]
    dep = pb.Deployment(
        deployment_id=uuid.uuid4().hex[:16],
        endpoint_name=endpoint.spec.name,
        state=S.DEPLOYMENT_STATE_SHIFTING,
        target_variants=target,
        previous_variants=previous,
        policy=policy,
        alarms=alarms,
        total_steps=len(plan.percents),
        request_id=request_id,
        create_time=dt_to_ts(now()),
    )
    driver = {
        "step": 0,
        "phase_start_us": now_us(),
        "start_us": now_us(),
        "events": [],
        "cancel": False,
    }
    return dep, driver


class Driver:
    """Advances one deployment; every change goes to the DB first, then to the endpoint."""

    def __init__(
        self,
        store: DeploymentStore,
        endpoints: EndpointStore,
        engine: Engine,
        owner: str,
        tick_s: float,
        alert: AlertSink,
    ) -> None:
        self.store = store
        self.endpoints = endpoints
        self.engine = engine
        self.owner = owner
        self.tick_s = tick_s
        self.alert = alert

    async def run(self, deployment_id: str) -> None:
        while True:
            try:
                finished = await asyncio.to_thread(self.step, deployment_id)
            except Exception:  # noqa: BLE001 - retry next tick; the lease keeps it ours
                log.exception("rollout %s step failed", deployment_id)
                finished = False
            if finished:
                return
            await asyncio.sleep(self.tick_s)

    def step(self, deployment_id: str) -> bool:
        dep, drv = self.store.get(deployment_id)
        if dep.state in TERMINAL:
            return True
        plan = plan_for(dep.policy)
        if drv.get("cancel"):
            self._finish(
                dep, drv, S.DEPLOYMENT_STATE_CANCELLED, "cancelled: rolled back", rollback=True
            )
            return True
        alarm = self._alarm(dep, drv)
        if alarm is not None:
            dep.alarm_events.append(alarm)
            drv["events"].append(
                f"alarm {alarm.metric} on {alarm.variant}: "
                f"{alarm.observed:.4g} > {alarm.threshold:.4g}"
            )
            self._raise_alert(dep, alarm)
            if not dep.alarms.disable_auto_rollback:
                dep.error.CopyFrom(
                    common_pb2.JobError(
                        code="ABORTED",
                        reason="ALARM",
                        message=f"alarm {alarm.metric} on variant {alarm.variant}",
                    )
                )
                self._finish(dep, drv, S.DEPLOYMENT_STATE_ROLLED_BACK, "rolled back", rollback=True)
                return True
        elapsed = (now_us() - drv["phase_start_us"]) / 1e6
        step = drv["step"]
        if dep.state == S.DEPLOYMENT_STATE_SHIFTING and not drv.get("applied"):
            self._apply(dep, plan, step)
            drv["applied"] = True
            drv["events"].append(f"shifted to {plan.percents[step]:g}%")
        elif dep.state == S.DEPLOYMENT_STATE_SHIFTING and elapsed >= plan.holds[step]:
            if step + 1 < len(plan.percents):
                drv.update(step=step + 1, phase_start_us=now_us(), applied=False)
                dep.step = step + 1
            else:
                dep.state = S.DEPLOYMENT_STATE_BAKING
                drv.update(phase_start_us=now_us())
                drv["events"].append("baking")
        elif dep.state == S.DEPLOYMENT_STATE_BAKING and elapsed >= max(
            plan.final_bake_s, plan.keep_old_s
        ):
            self._finish(dep, drv, S.DEPLOYMENT_STATE_SUCCEEDED, "succeeded", rollback=False)
            return True
        self.store.save(dep, drv, self.owner)
        return False

    def _apply(self, dep: pb.Deployment, plan: Plan, step: int) -> None:
        percent = plan.percents[step]
        variants = split(
            list(dep.previous_variants),
            list(dep.target_variants),
            percent,
            keep_old=plan.keep_old_s > 0,
        )
        dep.traffic.clear()
        dep.traffic.update({v.name: v.weight for v in variants if v.role != pb.VARIANT_ROLE_SHADOW})

        def change(ep: pb.Endpoint) -> None:
            del ep.spec.variants[:]
            ep.spec.variants.extend(variants)
            ep.state = pb.ENDPOINT_STATE_UPDATING
            ep.active_deployment_id = dep.deployment_id

        self.endpoints.mutate(dep.endpoint_name, change)

    def _finish(
        self, dep: pb.Deployment, drv: dict[str, Any], state: int, event: str, *, rollback: bool
    ) -> None:
        final = list(dep.previous_variants if rollback else dep.target_variants)

        def change(ep: pb.Endpoint) -> None:
            del ep.spec.variants[:]
            ep.spec.variants.extend(final)
            ep.state = pb.ENDPOINT_STATE_SERVING
            ep.active_deployment_id = ""
            ep.last_deployment_id = dep.deployment_id

        try:
            self.endpoints.mutate(dep.endpoint_name, change)
        except NotFound:
            pass  # the endpoint was deleted meanwhile
        dep.state = state
        dep.traffic.clear()
        dep.traffic.update({v.name: v.weight for v in final if v.role != pb.VARIANT_ROLE_SHADOW})
        dep.end_time.CopyFrom(dt_to_ts(now()))
        drv["events"].append(event)
        drv["end_us"] = now_us()
        self.store.save(dep, drv, self.owner)
        log.info("deployment %s %s", dep.deployment_id, S.Name(state))

    def _alarm(self, dep: pb.Deployment, drv: dict[str, Any]) -> pb.AlarmEvent | None:
        cfg = dep.alarms
        watch_latency = cfg.HasField("max_p99_latency")
        if cfg.max_error_rate <= 0 and not watch_latency:
            return None
        window = (
            cfg.window.ToTimedelta().total_seconds()
            if cfg.HasField("window")
            else DEFAULT_ALARM_WINDOW_S
        )
        since_start = (now_us() - drv["start_us"]) / 1e6
        stats = read_stats(self.engine, dep.endpoint_name)
        for v in dep.target_variants:
            if v.role == pb.VARIANT_ROLE_SHADOW or v.name not in stats:
                continue
            total = merge(stats[v.name], min(window, since_start + 1))
            if total["requests"] < max(cfg.min_requests, 1):
                continue
            rate = total["errors"] / total["requests"]
            if cfg.max_error_rate > 0 and rate > cfg.max_error_rate:
                return pb.AlarmEvent(
                    variant=v.name,
                    metric="error_rate",
                    observed=rate,
                    threshold=cfg.max_error_rate,
                    fire_time=us_to_ts(now_us()),
                )
            if watch_latency:
                limit = cfg.max_p99_latency.ToTimedelta().total_seconds() * 1000
                p99 = percentile_ms(total["lat"], 0.99)
                if p99 > limit:
                    return pb.AlarmEvent(
                        variant=v.name,
                        metric="p99_latency",
                        observed=p99,
                        threshold=limit,
                        fire_time=us_to_ts(now_us()),
                    )
        return None

    def _raise_alert(self, dep: pb.Deployment, alarm: pb.AlarmEvent) -> None:
        kind = pb.ALERT_KIND_ERROR_RATE if alarm.metric == "error_rate" else pb.ALERT_KIND_LATENCY
        if not dep.alarms.disable_auto_rollback:
            kind = pb.ALERT_KIND_ROLLBACK
        self.alert(
            pb.Alert(
                alert_id=uuid.uuid4().hex[:16],
                kind=kind,
                endpoint=common_pb2.EndpointRef(
                    endpoint_name=dep.endpoint_name, variant_name=alarm.variant
                ),
                observed=alarm.observed,
                threshold=alarm.threshold,
                source_id=dep.deployment_id,
                message=(
                    f"{alarm.metric} of variant {alarm.variant} is {alarm.observed:.4g} "
                    f"(threshold {alarm.threshold:.4g})"
                    + ("; rolled back" if kind == pb.ALERT_KIND_ROLLBACK else "")
                ),
                create_time=us_to_ts(now_us()),
            )
        )


def events_of(drv: dict[str, Any]) -> list[str]:
    return list(drv.get("events", []))
