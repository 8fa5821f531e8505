"""Pure rollout arithmetic: the traffic steps of a policy and the live split at a step."""

from __future__ import annotations

from dataclasses import dataclass

from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.errors import InvalidArgument


def _seconds(duration) -> float:  # type: ignore[no-untyped-def]
    return duration.ToTimedelta().total_seconds()


@dataclass(frozen=True)
class Plan:
    percents: list[float]  # new variants' share of live traffic at each step
    holds: list[float]  # seconds to stay at each step (alarms watched)
    keep_old_s: float  # blue/green: old variants stay loaded (weight 0) this long
    final_bake_s: float


def plan_for(policy: pb.TrafficPolicy) -> Plan:
    final = _seconds(policy.final_bake_time) if policy.HasField("final_bake_time") else 0.0
    if final < 0:
        raise InvalidArgument(
            "policy.final_bake_time must not be negative", reason="INVALID_POLICY"
        )
    which = policy.WhichOneof("policy")
    if which == "canary":
        p, bake = policy.canary.canary_percent, _seconds(policy.canary.bake_time)
        if not 0 < p < 100 or bake < 0:
            raise InvalidArgument(
                "policy.canary: canary_percent must be in (0, 100) and bake_time >= 0",
                reason="INVALID_POLICY",
            )
        return Plan([p, 100.0], [bake, 0.0], 0.0, final)
    if which == "linear":
        step, every = policy.linear.step_percent, _seconds(policy.linear.step_interval)
        if not 0 < step <= 100 or every < 0:
            raise InvalidArgument(
                "policy.linear: step_percent must be in (0, 100] and step_interval >= 0",
                reason="INVALID_POLICY",
            )
        percents, p = [], 0.0
        while p < 100:
            p = min(100.0, p + step)
            percents.append(p)
        return Plan(percents, [every] * (len(percents) - 1) + [0.0], 0.0, final)
    if which == "blue_green":
        bake = _seconds(policy.blue_green.bake_time)
        if bake < 0:
            raise InvalidArgument(
                "policy.blue_green.bake_time must not be negative", reason="INVALID_POLICY"
            )
        return Plan([100.0], [0.0], bake, final)
    return Plan([100.0], [0.0], 0.0, final)


def split(
    previous: list[pb.Variant], target: list[pb.Variant], percent: float, keep_old: bool
) -> list[pb.Variant]:
    """The endpoint's variants with ``percent`` of live traffic on the target variants."""
    out: list[pb.Variant] = []
    for v, share in [(v, 100.0 - percent) for v in previous] + [(v, percent) for v in target]:
        if v.role == pb.VARIANT_ROLE_SHADOW:
            if v in target or percent < 100:
                out.append(v)
            continue
        weight = v.weight * share / 100.0
        if weight <= 0 and not keep_old and v not in target:
            continue
        copy = pb.Variant()
        copy.CopyFrom(v)
        copy.weight = weight
        out.append(copy)
    return out
