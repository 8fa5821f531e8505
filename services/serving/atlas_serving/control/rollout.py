"""Deployments: a rollout moves an endpoint from its previous variants to target variants
step by step, watching per-variant alarms (error rate, p99) over the whole fleet's
statistics, and rolls back automatically when one fires. The replica that accepted a
deployment drives it; when its heartbeat stops, another replica takes the lease over."""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Engine, select

from atlas_core.db import fetch_page, write_transaction
from atlas_core.errors import InvalidArgument, NotFound
from atlas_serving.control.endpoints import EndpointStore
from atlas_serving.control.rollout_plan import Plan, plan_for, split
from atlas_serving.domain import (
    AlarmEvent,
    Alarms,
    Alert,
    AlertKind,
    Deployment,
    DeploymentState,
    Endpoint,
    EndpointRef,
    EndpointState,
    InsufficientLabelsAction,
    JobError,
    QualityGate,
    TrafficPolicy,
    Variant,
    VariantRole,
)
from atlas_serving.monitoring.model_quality import ModelQuality, Sides
from atlas_serving.monitoring.stats import merge, percentile_ms, read_stats
from atlas_serving.records import Codec, now, now_us
from atlas_serving.tables import deployments

log = logging.getLogger("atlas.serving.rollout")
S = DeploymentState
TERMINAL = frozenset({S.SUCCEEDED, S.ROLLED_BACK, S.FAILED, S.CANCELLED})
DEFAULT_ALARM_WINDOW_S = 10.0
DEFAULT_GATE_MIN_LABELED = 50
DEFAULT_PROMOTE_MIN_LABELED = 100
QUALITY_EVERY_S = 1.0  # quality comparisons (bootstraps) at most this often per deployment
# A step watched by alarms advances only when each new variant served this many requests
# during it (AlarmConfig.min_requests when set); a step short of traffic is extended up to
# EXTEND_FACTOR times its hold (at least EXTEND_MIN_S), then the deployment rolls back.
DEFAULT_MIN_REQUESTS = 20
EXTEND_FACTOR, EXTEND_MIN_S = 10.0, 60.0
AlertSink = Callable[[Alert], None]
# The state column holds the proto enum names (DEPLOYMENT_STATE_SHIFTING, ...).
_STATE_PREFIX = "DEPLOYMENT_STATE_"


def _state_name(state: DeploymentState) -> str:
    return _STATE_PREFIX + state.name


class DeploymentStore:
    def __init__(self, engine: Engine, codec: Codec[Deployment]) -> None:
        self.engine = engine
        self.codec = codec

    def insert(self, dep: Deployment, driver: dict[str, Any], owner: str) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                deployments.insert().values(
                    deployment_id=dep.deployment_id,
                    endpoint_name=dep.endpoint_name,
                    state=_state_name(dep.state),
                    body=self.codec.dumps(dep),
                    driver=json.dumps(driver),
                    owner=owner,
                    heartbeat_us=now_us(),
                    created_at=now(),
                )
            )

    def get(self, deployment_id: str) -> tuple[Deployment, dict[str, Any]]:
        with self.engine.connect() as conn:
            return self._read(conn, deployment_id)

    def _read(
        self, conn: Connection, deployment_id: str, *, lock: bool = False
    ) -> tuple[Deployment, dict[str, Any]]:
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
        return self.codec.loads(row.body), json.loads(row.driver)

    def save(self, dep: Deployment, driver: dict[str, Any], owner: str = "") -> None:
        dep.update_time = now()
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
                state=_state_name(dep.state),
                body=self.codec.dumps(dep),
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

    def request_cancel(self, deployment_id: str) -> Deployment:
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

    def list(self, endpoint: str, offset: int, limit: int) -> tuple[list[Deployment], int]:
        query = (
            select(deployments.c.body)
            .where(deployments.c.endpoint_name == endpoint)
            .order_by(deployments.c.created_at.desc())
        )
        with self.engine.connect() as conn:
            rows, total = fetch_page(conn, query, offset, limit)
        return [self.codec.loads(r.body) for r in rows], total

    def orphans(self, lease_s: float) -> builtins.list[str]:
        """Unfinished deployments whose driver stopped heartbeating."""
        stale = now_us() - int(lease_s * 1e6)
        names = [_state_name(s) for s in TERMINAL]
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
    endpoint: Endpoint,
    target: list[Variant],
    policy: TrafficPolicy,
    alarms: Alarms,
    request_id: str,
) -> tuple[Deployment, dict[str, Any]]:
    plan = plan_for(policy)
    dep = Deployment(
        deployment_id=uuid.uuid4().hex[:16],
        endpoint_name=endpoint.spec.name,
        state=S.SHIFTING,
        target_variants=list(target),
        previous_variants=list(endpoint.spec.variants),
        policy=policy,
        alarms=alarms,
        total_steps=len(plan.percents),
        request_id=request_id,
        create_time=now(),
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
        quality: ModelQuality | None = None,
    ) -> None:
        self.store = store
        self.endpoints = endpoints
        self.engine = engine
        self.owner = owner
        self.tick_s = tick_s
        self.alert = alert
        self.quality = quality
        self._sides: dict[str, tuple[float, Sides]] = {}

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
            self._finish(dep, drv, S.CANCELLED, "cancelled: rolled back", rollback=True)
            return True
        if dep.policy.kind == "promote_if_better" and not drv.get("promoted"):
            return self._shadow_phase(dep, drv)
        alarm = self._alarm(dep, drv) or self._quality_alarm(dep, drv)
        if alarm is not None:
            dep.alarm_events.append(alarm)
            drv["events"].append(
                f"alarm {alarm.metric} on {alarm.variant}: "
                f"{alarm.observed:.4g} > {alarm.threshold:.4g}"
            )
            self._raise_alert(dep, alarm)
            if not dep.alarms.disable_auto_rollback:
                dep.error = JobError(
                    code="ABORTED",
                    reason="ALARM",
                    message=f"alarm {alarm.metric} on variant {alarm.variant}",
                )
                self._finish(dep, drv, S.ROLLED_BACK, "rolled back", rollback=True)
                return True
        elapsed = (now_us() - drv["phase_start_us"]) / 1e6
        step = drv["step"]
        if dep.state == S.SHIFTING and not drv.get("applied"):
            self._apply(dep, plan, step)
            drv["applied"] = True
            drv["events"].append(f"shifted to {plan.percents[step]:g}%")
        elif dep.state == S.SHIFTING and elapsed >= plan.holds[step]:
            short = self._short_of_traffic(dep, plan.percents[step], elapsed)
            if short is not None:
                if elapsed < max(EXTEND_FACTOR * plan.holds[step], EXTEND_MIN_S):
                    if drv.get("extended") != step:
                        drv["extended"] = step
                        drv["events"].append(f"bake extended: {short}")
                    self.store.save(dep, drv, self.owner)
                    return False
                dep.error = JobError(
                    code="ABORTED",
                    reason="INSUFFICIENT_TRAFFIC",
                    message=f"no evidence to promote on: {short} by the end of the extended bake",
                )
                self._finish(
                    dep, drv, S.ROLLED_BACK, "rolled back: too little traffic", rollback=True
                )
                return True
            verdict = self._gate(dep, drv, plan.percents[step])
            if verdict == "wait":
                if not drv.get("waiting"):
                    drv["waiting"] = True
                    drv["events"].append("waiting for ground truth")
            elif verdict == "give_up":
                dep.error = JobError(
                    code="ABORTED",
                    reason="QUALITY_GATE_UNDECIDED",
                    message="too few labeled predictions to judge the new variants",
                )
                self._finish(dep, drv, S.ROLLED_BACK, "rolled back: too few labels", rollback=True)
                return True
            elif step + 1 < len(plan.percents):
                drv["waiting"] = False
                drv.update(step=step + 1, phase_start_us=now_us(), applied=False)
                dep.step = step + 1
            else:
                drv["waiting"] = False
                dep.state = S.BAKING
                drv.update(phase_start_us=now_us())
                drv["events"].append("baking")
        elif dep.state == S.BAKING and elapsed >= max(plan.final_bake_s, plan.keep_old_s):
            self._finish(dep, drv, S.SUCCEEDED, "succeeded", rollback=False)
            return True
        self.store.save(dep, drv, self.owner)
        return False

    def _apply(self, dep: Deployment, plan: Plan, step: int) -> None:
        percent = plan.percents[step]
        variants = split(
            dep.previous_variants, dep.target_variants, percent, keep_old=plan.keep_old_s > 0
        )
        dep.traffic = _live(variants)

        def change(ep: Endpoint) -> None:
            ep.spec = replace(ep.spec, variants=tuple(variants))
            ep.state = EndpointState.UPDATING
            ep.active_deployment_id = dep.deployment_id

        self.endpoints.mutate(dep.endpoint_name, change)

    def _finish(
        self,
        dep: Deployment,
        drv: dict[str, Any],
        state: DeploymentState,
        event: str,
        *,
        rollback: bool,
    ) -> None:
        final = list(dep.previous_variants if rollback else dep.target_variants)

        def change(ep: Endpoint) -> None:
            ep.spec = replace(ep.spec, variants=tuple(final))
            ep.state = EndpointState.SERVING
            ep.active_deployment_id = ""
            ep.last_deployment_id = dep.deployment_id

        try:
            self.endpoints.mutate(dep.endpoint_name, change)
        except NotFound:
            pass  # the endpoint was deleted meanwhile
        self._sides.pop(dep.deployment_id, None)
        dep.state = state
        dep.traffic = _live(final)
        dep.end_time = now()
        drv["events"].append(event)
        drv["end_us"] = now_us()
        self.store.save(dep, drv, self.owner)
        log.info("deployment %s %s", dep.deployment_id, state.name)

    def _short_of_traffic(self, dep: Deployment, percent: float, elapsed: float) -> str | None:
        """Why a canary or linear step watched by alarms cannot advance yet: a new live
        variant served fewer than min_requests requests during the step (None: enough)."""
        cfg = dep.alarms
        watched = cfg.max_error_rate > 0 or cfg.max_p99_latency_s is not None
        if dep.policy.kind not in ("canary", "linear") or percent >= 100:
            return None
        if not watched and cfg.min_requests <= 0:
            return None
        need = cfg.min_requests if cfg.min_requests > 0 else DEFAULT_MIN_REQUESTS
        stats = read_stats(self.engine, dep.endpoint_name)
        for v in dep.target_variants:
            if v.role == VariantRole.SHADOW:
                continue
            served = merge(stats.get(v.name, []), elapsed + 1)["requests"]
            if served < need:
                return f"variant {v.name} served {served} of the {need} requests needed"
        return None

    def _alarm(self, dep: Deployment, drv: dict[str, Any]) -> AlarmEvent | None:
        cfg = dep.alarms
        watch_latency = cfg.max_p99_latency_s is not None
        if cfg.max_error_rate <= 0 and not watch_latency:
            return None
        window = cfg.window_s if cfg.window_s is not None else DEFAULT_ALARM_WINDOW_S
        since_start = (now_us() - drv["start_us"]) / 1e6
        stats = read_stats(self.engine, dep.endpoint_name)
        for v in dep.target_variants:
            if v.role == VariantRole.SHADOW or v.name not in stats:
                continue
            total = merge(stats[v.name], min(window, since_start + 1))
            if total["requests"] < max(cfg.min_requests, 1):
                continue
            rate = total["errors"] / total["requests"]
            if cfg.max_error_rate > 0 and rate > cfg.max_error_rate:
                return AlarmEvent(
                    variant=v.name,
                    metric="error_rate",
                    observed=rate,
                    threshold=cfg.max_error_rate,
                    fire_time=now(),
                )
            if cfg.max_p99_latency_s is not None:
                limit = cfg.max_p99_latency_s * 1000
                p99 = percentile_ms(total["lat"], 0.99)
                if p99 > limit:
                    return AlarmEvent(
                        variant=v.name,
                        metric="p99_latency",
                        observed=p99,
                        threshold=limit,
                        fire_time=now(),
                    )
        return None

    # -- ground truth ------------------------------------------------------------------------

    def _sides_of(
        self,
        dep: Deployment,
        drv: dict[str, Any],
        metric: str,
        paired: bool,
    ) -> Sides | None:
        """New variants against the previous live ones on labeled predictions since the
        deployment started (cached for QUALITY_EVERY_S: each is a bootstrap)."""
        if self.quality is None:
            return None
        cached = self._sides.get(dep.deployment_id)
        if cached is not None and time.monotonic() - cached[0] < QUALITY_EVERY_S:
            return cached[1]
        endpoint = self.endpoints.get(dep.endpoint_name)
        sides = self.quality.compare(
            endpoint.spec,
            drv["start_us"],
            {v.name for v in dep.target_variants if v.role != VariantRole.SHADOW},
            {v.name for v in dep.previous_variants if v.role != VariantRole.SHADOW},
            metric,
            paired=paired,
        )
        self._sides[dep.deployment_id] = (time.monotonic(), sides)
        return sides

    def _quality_alarm(self, dep: Deployment, drv: dict[str, Any]) -> AlarmEvent | None:
        """A significant drop beyond the gate's max_drop, once both sides have the labels."""
        gate = dep.alarms.quality_gate
        if gate is None or dep.policy.kind not in ("canary", "linear"):
            return None
        sides = self._sides_of(dep, drv, gate.metric, paired=False)
        if sides is None or sides.difference is None or not _enough(gate, sides):
            return None
        drop, lower, _ = sides.difference.drop()
        if drop > gate.max_drop and lower > 0:
            return AlarmEvent(
                variant=",".join(v.name for v in dep.target_variants),
                metric=f"quality_{sides.difference.metric}",
                observed=drop,
                threshold=gate.max_drop,
                fire_time=now(),
            )
        return None

    def _gate(self, dep: Deployment, drv: dict[str, Any], percent: float) -> str:
        """Whether a step whose hold ended may advance: "pass", "wait" or "give_up"."""
        gate = dep.alarms.quality_gate
        if gate is None or dep.policy.kind not in ("canary", "linear") or percent >= 100:
            return "pass"
        sides = self._sides_of(dep, drv, gate.metric, paired=False)
        if sides is not None and sides.difference is not None and _enough(gate, sides):
            drop, lower, _ = sides.difference.drop()
            if drop <= gate.max_drop or lower <= 0:  # no significant drop beyond max_drop
                return "pass"
        if gate.on_insufficient_labels == InsufficientLabelsAction.ROLL_BACK:
            return "give_up"
        return "wait"

    def _shadow_phase(self, dep: Deployment, drv: dict[str, Any]) -> bool:
        """promote_if_better: the new variants shadow the live ones until the paired
        comparison on the same labeled requests decides."""
        policy = dep.policy
        if not drv.get("shadowed"):
            shadows = [
                replace(
                    v,
                    role=VariantRole.SHADOW,
                    weight=0.0,
                    shadow_fraction=policy.shadow_fraction or 1.0,
                )
                for v in dep.target_variants
                if v.role != VariantRole.SHADOW
            ]
            variants = list(dep.previous_variants) + shadows

            def change(ep: Endpoint) -> None:
                ep.spec = replace(ep.spec, variants=tuple(variants))
                ep.state = EndpointState.UPDATING
                ep.active_deployment_id = dep.deployment_id

            self.endpoints.mutate(dep.endpoint_name, change)
            dep.traffic = _live(list(dep.previous_variants))
            drv.update(shadowed=True, phase_start_us=now_us())
            drv["events"].append("shadowing the live variants")
            self.store.save(dep, drv, self.owner)
            return False
        sides = self._sides_of(dep, drv, policy.metric, paired=True)
        need = policy.min_labeled or DEFAULT_PROMOTE_MIN_LABELED
        diff = sides.difference if sides is not None else None
        if diff is not None and sides is not None and sides.challenger >= need:
            if diff.challenger_better:
                drv.update(promoted=True, step=0, applied=False, phase_start_us=now_us())
                drv["events"].append(
                    f"better on {diff.n} labeled requests: {diff.metric} "
                    f"{diff.difference:+.4g} [{diff.lower:+.4g}, {diff.upper:+.4g}]; promoting"
                )
                self.store.save(dep, drv, self.owner)
                return False
            if diff.significant:
                return self._not_promoted(
                    dep,
                    drv,
                    f"significantly worse on {diff.n} labeled requests: {diff.metric} "
                    f"{diff.difference:+.4g} [{diff.lower:+.4g}, {diff.upper:+.4g}]",
                )
        elapsed = (now_us() - drv["phase_start_us"]) / 1e6
        if policy.max_duration_s is not None and elapsed >= policy.max_duration_s:
            labeled = sides.challenger if sides is not None else 0
            why = (
                f"no significant difference on {labeled} labeled requests"
                if labeled >= need
                else f"only {labeled} of {need} labeled requests"
            )
            return self._not_promoted(dep, drv, why)
        self.store.save(dep, drv, self.owner)
        return False

    def _not_promoted(self, dep: Deployment, drv: dict[str, Any], why: str) -> bool:
        dep.error = JobError(code="ABORTED", reason="NOT_PROMOTED", message=f"not promoted: {why}")
        self._finish(dep, drv, S.ROLLED_BACK, f"not promoted: {why}", rollback=True)
        return True

    def _raise_alert(self, dep: Deployment, alarm: AlarmEvent) -> None:
        kind = (
            AlertKind.ERROR_RATE
            if alarm.metric == "error_rate"
            else AlertKind.MODEL_QUALITY
            if alarm.metric.startswith("quality_")
            else AlertKind.LATENCY
        )
        if not dep.alarms.disable_auto_rollback:
            kind = AlertKind.ROLLBACK
        self.alert(
            Alert(
                alert_id=uuid.uuid4().hex[:16],
                kind=kind,
                endpoint=EndpointRef(dep.endpoint_name, alarm.variant),
                observed=alarm.observed,
                threshold=alarm.threshold,
                source_id=dep.deployment_id,
                message=(
                    f"{alarm.metric} of variant {alarm.variant} is {alarm.observed:.4g} "
                    f"(threshold {alarm.threshold:.4g})"
                    + ("; rolled back" if kind == AlertKind.ROLLBACK else "")
                ),
                create_time=now(),
            )
        )


def _enough(gate: QualityGate, sides: Sides) -> bool:
    need = gate.min_labeled or DEFAULT_GATE_MIN_LABELED
    return sides.challenger >= need and sides.champion >= need


def events_of(drv: dict[str, Any]) -> list[str]:
    return list(drv.get("events", []))


def _live(variants: list[Variant]) -> dict[str, float]:
    return {v.name: v.weight for v in variants if v.role != VariantRole.SHADOW}
