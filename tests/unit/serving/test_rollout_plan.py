"""Traffic arithmetic of the rollout policies."""

from __future__ import annotations

import pytest
from google.protobuf import duration_pb2

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.errors import InvalidArgument
from atlas_serving.control.rollout_plan import plan_for, split


def _d(seconds: float) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=int(seconds))


def _v(name: str, weight: float = 100, shadow: bool = False) -> pb.Variant:
    return pb.Variant(
        name=name,
        model=common_pb2.ModelRef(model_name="m", version=1),
        weight=weight,
        role=pb.VARIANT_ROLE_SHADOW if shadow else pb.VARIANT_ROLE_LIVE,
    )


def test_canary_plan_holds_then_shifts_everything() -> None:
    plan = plan_for(pb.TrafficPolicy(canary=pb.CanaryPolicy(canary_percent=10, bake_time=_d(30))))
    assert plan.percents == [10.0, 100.0] and plan.holds == [30.0, 0.0]


def test_linear_plan_steps_to_one_hundred() -> None:
    plan = plan_for(pb.TrafficPolicy(linear=pb.LinearPolicy(step_percent=30, step_interval=_d(5))))
    assert plan.percents == [30.0, 60.0, 90.0, 100.0]
    assert plan.holds == [5.0, 5.0, 5.0, 0.0]


def test_blue_green_keeps_old_variants_loaded_while_baking() -> None:
    plan = plan_for(pb.TrafficPolicy(blue_green=pb.BlueGreenPolicy(bake_time=_d(20))))
    assert plan.percents == [100.0] and plan.keep_old_s == 20.0
    variants = split([_v("blue")], [_v("green")], 100.0, keep_old=True)
    assert [(v.name, v.weight) for v in variants] == [("blue", 0.0), ("green", 100.0)]


def test_all_at_once_is_the_default() -> None:
    plan = plan_for(pb.TrafficPolicy())
    assert plan.percents == [100.0] and plan.keep_old_s == 0


@pytest.mark.parametrize(
    "policy",
    [
        pb.TrafficPolicy(canary=pb.CanaryPolicy(canary_percent=0)),
        pb.TrafficPolicy(canary=pb.CanaryPolicy(canary_percent=100)),
        pb.TrafficPolicy(linear=pb.LinearPolicy(step_percent=-1)),
        pb.TrafficPolicy(linear=pb.LinearPolicy(step_percent=120)),
    ],
)
def test_invalid_policies_are_refused(policy: pb.TrafficPolicy) -> None:
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
