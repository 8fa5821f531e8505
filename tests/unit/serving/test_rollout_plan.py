"""Traffic arithmetic of the rollout policies."""

from __future__ import annotations

import pytest

from atlas_core.errors import InvalidArgument
from atlas_serving.control.rollout_plan import plan_for, split
from atlas_serving.domain import ModelRef, TrafficPolicy, Variant, VariantRole


def _v(name: str, weight: float = 100, shadow: bool = False) -> Variant:
    return Variant(
        name=name,
        model=ModelRef("m", version=1),
        weight=weight,
        role=VariantRole.SHADOW if shadow else VariantRole.LIVE,
    )


def test_canary_plan_holds_then_shifts_everything() -> None:
    plan = plan_for(TrafficPolicy("canary", canary_percent=10, bake_time_s=30))
    assert plan.percents == [10.0, 100.0] and plan.holds == [30.0, 0.0]


def test_linear_plan_steps_to_one_hundred() -> None:
    plan = plan_for(TrafficPolicy("linear", step_percent=30, step_interval_s=5))
    assert plan.percents == [30.0, 60.0, 90.0, 100.0]
    assert plan.holds == [5.0, 5.0, 5.0, 0.0]


def test_blue_green_keeps_old_variants_loaded_while_baking() -> None:
    plan = plan_for(TrafficPolicy("blue_green", bake_time_s=20))
    assert plan.percents == [100.0] and plan.keep_old_s == 20.0
    variants = split([_v("blue")], [_v("green")], 100.0, keep_old=True)
    assert [(v.name, v.weight) for v in variants] == [("blue", 0.0), ("green", 100.0)]


def test_all_at_once_is_the_default() -> None:
    plan = plan_for(TrafficPolicy())
    assert plan.percents == [100.0] and plan.keep_old_s == 0


@pytest.mark.parametrize(
    "policy",
    [
        TrafficPolicy("canary", canary_percent=0),
        TrafficPolicy("canary", canary_percent=100),
        TrafficPolicy("linear", step_percent=-1),
        TrafficPolicy("linear", step_percent=120),
        TrafficPolicy("blue_green", bake_time_s=-1),
        TrafficPolicy(final_bake_time_s=-1),
    ],
)
def test_invalid_policies_are_refused(policy: TrafficPolicy) -> None:
    with pytest.raises(InvalidArgument):
        plan_for(policy)


def test_split_scales_weights_and_drops_empty_old_variants() -> None:
    old = [_v("a", 60), _v("b", 40)]
    new = [_v("green")]
    mid = {v.name: v.weight for v in split(old, new, 25.0, keep_old=False)}
    assert mid == {"a": 45.0, "b": 30.0, "green": 25.0}
    done = {v.name: v.weight for v in split(old, new, 100.0, keep_old=False)}
    assert done == {"green": 100.0}


def test_split_keeps_shadows_of_the_target_only_at_the_end() -> None:
    old = [_v("blue"), _v("old-shadow", 0, shadow=True)]
    new = [_v("green"), _v("new-shadow", 0, shadow=True)]
    assert {v.name for v in split(old, new, 50.0, keep_old=False)} == {
        "blue",
        "old-shadow",
        "green",
        "new-shadow",
    }
    assert {v.name for v in split(old, new, 100.0, keep_old=False)} == {"green", "new-shadow"}
