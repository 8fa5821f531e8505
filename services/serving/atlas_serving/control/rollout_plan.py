"""Pure rollout arithmetic: the traffic steps of a policy and the live split at a step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from atlas_core.errors import InvalidArgument
from atlas_serving.domain import TrafficPolicy, Variant, VariantRole


@dataclass(frozen=True)
class Plan:
    percents: list[float]  # new variants' share of live traffic at each step
    holds: list[float]  # seconds to stay at each step (alarms watched)
    keep_old_s: float  # blue/green: old variants stay loaded (weight 0) this long
    final_bake_s: float


def plan_for(policy: TrafficPolicy) -> Plan:
    final = policy.final_bake_time_s or 0.0
    if final < 0:
        raise InvalidArgument(
            "policy.final_bake_time must not be negative", reason="INVALID_POLICY"
        )
    if policy.kind == "canary":
        p, bake = policy.canary_percent, policy.bake_time_s
        if not 0 < p < 100 or bake < 0:
            raise InvalidArgument(
                "policy.canary: canary_percent must be in (0, 100) and bake_time >= 0",
                reason="INVALID_POLICY",
            )
        return Plan([p, 100.0], [bake, 0.0], 0.0, final)
    if policy.kind == "linear":
        step, every = policy.step_percent, policy.step_interval_s
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
    if policy.kind == "promote_if_better":
        if (
            policy.min_labeled < 0
            or not 0 <= policy.shadow_fraction <= 1
            or (policy.max_duration_s is not None and policy.max_duration_s < 0)
        ):
            raise InvalidArgument(
                "policy.promote_if_better: min_labeled >= 0, shadow_fraction in [0, 1] and "
                "max_duration >= 0",
                reason="INVALID_POLICY",
            )
        return Plan([100.0], [0.0], 0.0, final)
    if policy.kind == "blue_green":
        bake = policy.bake_time_s
        if bake < 0:
            raise InvalidArgument(
                "policy.blue_green.bake_time must not be negative", reason="INVALID_POLICY"
            )
        return Plan([100.0], [0.0], bake, final)
    return Plan([100.0], [0.0], 0.0, final)


def split(
    previous: Sequence[Variant], target: Sequence[Variant], percent: float, keep_old: bool
) -> list[Variant]:
    """The endpoint's variants with ``percent`` of live traffic on the target variants."""
    out: list[Variant] = []
    for v, share in [(v, 100.0 - percent) for v in previous] + [(v, percent) for v in target]:
        if v.role == VariantRole.SHADOW:
            if v in target or percent < 100:
                out.append(v)
            continue
        weight = v.weight * share / 100.0
        if weight <= 0 and not keep_old and v not in target:
            continue
        out.append(replace(v, weight=weight))
    return out
