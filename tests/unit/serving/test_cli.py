"""`atlas deploy` / `atlas predict` argument handling (no server)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.cli import _serving
from atlas_core.errors import InvalidArgument


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    _serving.register(parser.add_subparsers())
    return parser


def test_model_references() -> None:
    assert _serving.parse_model("credit") == ("credit", 0, "")
    assert _serving.parse_model("credit:3") == ("credit", 3, "")
    assert _serving.parse_model("credit@production") == ("credit", 0, "production")
    with pytest.raises(InvalidArgument):
        _serving.parse_model("credit:latest")


@pytest.mark.parametrize(
    "policy,field",
    [
        ("canary", "canary"),
        ("linear", "linear"),
        ("blue-green", "blue_green"),
        ("all-at-once", "all_at_once"),
    ],
)
def test_update_builds_the_policy_and_alarms(policy: str, field: str) -> None:
    args = _parser().parse_args(
        [
            "deploy",
            "update",
            "ep",
            "--model",
            "m@candidate",
            "--policy",
            policy,
            "--percent",
            "20",
            "--bake",
            "2m",
            "--max-p99-ms",
            "25",
        ]
    )
    built = _serving.policy_from_args(args)
    assert built.WhichOneof("policy") == field
    if field == "canary":
        assert built.canary.canary_percent == 20 and built.canary.bake_time.seconds == 120
    alarms = _serving.alarms_from_args(args)
    assert alarms.max_p99_latency.ToMilliseconds() == 25 and alarms.max_error_rate == 0.05


def test_rows_from_files(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("a,b\n1,x\n2.5,y\n")
    assert _serving.read_rows(tmp_path / "rows.csv") == [{"a": 1.0, "b": "x"}, {"a": 2.5, "b": "y"}]
    (tmp_path / "rows.jsonl").write_text('{"a": 1}\n\n{"a": 2}\n')
    assert _serving.read_rows(tmp_path / "rows.jsonl") == [{"a": 1}, {"a": 2}]


def test_every_command_parses() -> None:
    p = _parser()
    for argv in (
        ["deploy", "register", "m", "s3://b/k.tar", "--alias", "production"],
        ["deploy", "models"],
        ["deploy", "alias", "m", "production", "2"],
        ["deploy", "create", "ep", "--model", "m:1", "--warm", "--capture", "0.1"],
        ["deploy", "status"],
        ["deploy", "history", "ep"],
        ["deploy", "rollback", "ep"],
        ["deploy", "cancel", "dep1"],
        ["deploy", "alerts", "--ack", "a1"],
        ["deploy", "monitor", "ep"],
        ["predict", "row", "ep", "--entity", "7"],
        ["predict", "batch", "ep", "--artifact", "s3://b/x.parquet"],
    ):
        assert callable(p.parse_args(argv).func)
    assert pb.VARIANT_ROLE_SHADOW  # the shadow flag maps onto the proto role
