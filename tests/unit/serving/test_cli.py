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
        ["deploy", "quality", "ep", "--since", "2d", "--metric", "auc"],
        ["predict", "truth", "ep", "--file", "t.csv", "--request-id", "r1"],
        ["predict", "truth", "ep", "--entity", "7", "--start", "0", "--outcome", "1"],
        ["deploy", "create", "ep", "--model", "m:1", "--quality", "--quality-alert", "auc=0.8"],
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


def test_quality_gate_and_promote_if_better_from_args() -> None:
    args = _parser().parse_args(
        ["deploy", "update", "ep", "--model", "m:2", "--gate", "--metric", "auc"]
        + ["--min-labeled", "40", "--max-drop", "0.02", "--on-few-labels", "rollback"]
    )
    gate = _serving.alarms_from_args(args).quality_gate
    assert (gate.metric, gate.min_labeled, gate.max_drop) == ("auc", 40, 0.02)
    assert gate.on_insufficient_labels == pb.INSUFFICIENT_LABELS_ACTION_ROLL_BACK
    args = _parser().parse_args(
        ["deploy", "update", "ep", "--model", "m:2", "--policy", "promote-if-better"]
        + ["--min-labeled", "100", "--max-duration", "2h"]
    )
    policy = _serving.policy_from_args(args).promote_if_better
    assert policy.min_labeled == 100 and policy.max_duration.seconds == 7200
    assert not _serving.alarms_from_args(args).HasField("quality_gate")


def test_quality_alerts_and_ground_truth_files(tmp_path: Path) -> None:
    args = _parser().parse_args(
        ["deploy", "create", "ep", "--model", "m:1", "--quality", "--quality-alert", "rmse=3"]
    )
    config = _serving.quality_from_args(args)
    assert config is not None and config.thresholds[0].metric == "rmse"
    args.quality_alert = ["precision=0.5"]
    with pytest.raises(InvalidArgument, match="quality-alert"):
        _serving.quality_from_args(args)
    (tmp_path / "t.csv").write_text("prediction_id,row,outcome\n00ab,1,yes\n,,\n")
    with pytest.raises(InvalidArgument, match="record 2"):
        _serving.read_ground_truth(tmp_path / "t.csv")
    (tmp_path / "t.csv").write_text(
        "entity_id,start_time,end_time,outcome\n7,2026-12-01T00:00:00Z,1796601600,2.5\n"
    )
    (item,) = _serving.read_ground_truth(tmp_path / "t.csv")
    assert item.entity.entity_id.int64_value == 7 and item.outcome.double_value == 2.5
    assert item.entity.start_time.seconds == 1796083200
    assert item.entity.end_time.seconds == 1796601600
