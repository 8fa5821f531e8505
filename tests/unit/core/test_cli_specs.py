"""What people type, read by the CLI: friendly feature-group specs, model names first in the
live view, the ensemble named, partial scores marked, files of every supported type."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from atlas.data.v1 import data_service_pb2 as pb
from atlas.trainer.v1 import trainer_service_pb2 as tpb
from atlas_core.cli._files import dataset_name, read_table
from atlas_core.cli._groupspec import parse_group_spec
from atlas_core.cli._trainer import model_first, trial_line
from atlas_core.errors import InvalidArgument

SPEC = """
name: salaries
entity_key: id
entity_key_type: string
event_time_column: ts
features:
  salary: float
  years: int
  sex: string
  rank: {type: category, categories: [AsstProf, Prof]}
  embedding: vector[5000]
  score: FEATURE_TYPE_FLOAT64
"""


def test_a_yaml_spec_with_friendly_type_names_becomes_a_feature_group_spec() -> None:
    spec = parse_group_spec(SPEC)
    assert (spec.name, spec.entity_key, spec.event_time_column) == ("salaries", "id", "ts")
    assert spec.entity_key_type == pb.ENTITY_KEY_TYPE_STRING
    got = {f.name: (f.dtype, f.dims, list(f.categories)) for f in spec.features}
    assert got == {
        "salary": (pb.FEATURE_TYPE_FLOAT32, 0, []),
        "years": (pb.FEATURE_TYPE_INT64, 0, []),
        "sex": (pb.FEATURE_TYPE_STRING, 0, []),
        "rank": (pb.FEATURE_TYPE_CATEGORICAL, 0, ["AsstProf", "Prof"]),
        "embedding": (pb.FEATURE_TYPE_FLOAT32_VECTOR, 5000, []),
        "score": (pb.FEATURE_TYPE_FLOAT64, 0, []),
    }
    as_list = parse_group_spec('{"name": "g", "features": [{"name": "a", "type": "bool"}]}')
    assert as_list.features[0].dtype == pb.FEATURE_TYPE_BOOL
    assert as_list.entity_key_type == pb.ENTITY_KEY_TYPE_INT64  # the default


@pytest.mark.parametrize(
    "text,fix",
    [
        ("name: g\nfeatures: {a: strng}", "unknown type 'strng'; use one of float, int, string"),
        ("name: g\nfeatures: {a: {type: int, colour: red}}", "unknown keys ['colour']"),
        ("- a\n- b", "a mapping with name, entity_key, features"),
        ("name: g\nfeatures: 3", "give a mapping name: type"),
    ],
)
def test_a_wrong_spec_names_the_fix(text: str, fix: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_group_spec(text)
    assert fix in info.value.message


def test_the_live_view_names_the_model_first_the_ensemble_and_partial_scores() -> None:
    assert model_first("mean-impute > scale > xgboost") == "xgboost (mean-impute > scale)"
    ensemble = "ensemble(0.52*impute > enc(a,b) > linear(l2) + 0.48*impute > extra_trees)"
    assert model_first(ensemble) == "ensemble: 0.52 linear(l2) + 0.48 extra_trees"
    long = "median-impute+ind > encode(oh<=10,ord<=256,te) > quantile-scale > linear(l2)"
    cut = model_first(long, 60)
    assert cut == "linear(l2) (median-impute+ind > ...)"
    assert model_first(long, 20) == "linear(l2) (...)"  # the family survives any width
    assert model_first(long, 200) == model_first(long)
    ev = tpb.WatchTrainingJobResponse(trial=tpb.Trial(number=3, score=0.99, pipeline="a > lgbm"))
    pruned = trial_line(ev, "pruned")
    assert "0.9900*" in pruned and "partial" in pruned and "lgbm (a)" in pruned
    ev.trial.number, ev.trial.pipeline = -2, ensemble
    assert trial_line(ev, "finished").startswith("ensemble finished")


def test_csv_parquet_and_jsonl_read_alike(tmp_path: Path) -> None:
    table = pa.table({"a": [1, 2], "b": ["x", "y"]})
    (tmp_path / "t.csv").write_text("a,b\n1,x\n2,y\n")
    (tmp_path / "t.jsonl").write_text('{"a": 1, "b": "x"}\n{"a": 2, "b": "y"}\n')
    pq.write_table(table, tmp_path / "t.parquet")
    for name in ("t.csv", "t.jsonl", "t.parquet"):
        assert read_table(tmp_path / name).to_pylist() == table.to_pylist()
    with pytest.raises(InvalidArgument, match="give a .csv, .parquet or .jsonl file"):
        read_table(tmp_path / "t.xlsx")
    assert dataset_name(Path("My Salaries (2).csv")) == "my_salaries_2"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "run", "--dataset", "d", "--budget", "0"], "--budget: must be more than 0"),
        (["train", "run", "--dataset", "d", "--budget", "nan"], "--budget: must be more than 0"),
        (["train", "run", "--dataset", "d", "--trials", "-1"], "--trials: must be a whole"),
        (["deploy", "update", "e", "--model", "m", "--percent", "0"], "--percent: must be more"),
        (["deploy", "create", "e", "--model", "m", "--capture", "2"], "between 0 and 1"),
        (["deploy", "monitor", "e", "--min-rows", "-5"], "--min-rows: must be a whole"),
    ],
)
def test_nonsensical_numbers_are_refused_before_anything_is_sent(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from atlas_core.cli import main

    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "--help" in err  # one line, no usage block


def test_a_budget_of_zero_reaches_the_trainer_as_zero_not_as_the_default() -> None:
    from atlas_core.clients import automl_spec

    assert automl_spec(wall_seconds=0).budget.HasField("wall_time")  # the trainer refuses it
    assert not automl_spec().budget.HasField("wall_time")  # unset: the trainer's default


def test_one_output_style_snake_case_json_yaml_and_a_readable_tree(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse
    import json

    import yaml

    from atlas_core.cli._output import show, structured

    group = pb.FeatureGroup(version=2)
    group.spec.name, group.spec.entity_key = "salaries", "id"
    group.spec.features.add(name="rank", dtype=pb.FEATURE_TYPE_CATEGORICAL)
    assert structured(argparse.Namespace(output="json"), [group])
    assert json.loads(capsys.readouterr().out)[0]["spec"]["entity_key"] == "id"  # not entityKey
    show(argparse.Namespace(output="yaml"), group)
    assert yaml.safe_load(capsys.readouterr().out)["spec"]["features"][0]["dtype"] == (
        "FEATURE_TYPE_CATEGORICAL"
    )
    assert not structured(argparse.Namespace(output=None), [group])  # the caller's table
    show(argparse.Namespace(output=None), group)
    tree = capsys.readouterr().out.splitlines()
    assert tree[:3] == ["spec:", "  name: salaries", "  entity_key: id"]
    assert "    - name: rank" in tree and "version: 2" in tree


def test_the_report_summary_reads_well_and_lists_only_used_features() -> None:
    from atlas_core.cli._trainer import report_summary

    report = tpb.TrainingReport(importance_method="permutation", warnings=["few rows"])
    report.feature_importance.add(feature="rank", importance=0.5)
    report.feature_importance.add(feature="row_id", importance=0.0)
    report.dropped_columns["row_id"] = "identifier"
    report.plots.add(name="leaderboard")
    board = tpb.GetLeaderboardResponse(metric="rmse")
    board.entries.add(number=-2, score=1.5, pipeline="ensemble(0.6*a > xgboost + 0.4*a > ridge)")
    board.entries.add(number=4, score=2.0, pipeline="a > xgboost")
    text = "\n".join(report_summary(report, board))
    assert "1. ensemble   1.5000  ensemble: 0.6 xgboost + 0.4 ridge" in text
    assert "2. trial 4    2.0000  xgboost (a)" in text
    importance = text.split("importance (permutation):")[1].split("dropped columns:")[0]
    assert "rank" in importance and "row_id" not in importance
    assert "row_id: identifier" in text and "- few rows" in text and "leaderboard" in text
