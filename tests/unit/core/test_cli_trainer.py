"""`atlas train`: the live view's trial lines, the job `run` submits, the registration line."""

from __future__ import annotations

from atlas.trainer.v1 import trainer_service_pb2 as pb
from atlas_core.cli._trainer import trial_line


def _event(**trial: object) -> pb.WatchTrainingJobResponse:
    t = pb.Trial(number=7, pipeline="mean-impute > xgboost", **trial)
    ev = pb.WatchTrainingJobResponse(trial=t)
    ev.elapsed.FromSeconds(12)
    return ev


def test_a_finished_trial_shows_its_score() -> None:
    line = trial_line(_event(score=0.9731), "finished")
    assert line.startswith("trial   7 finished") and "0.9731" in line and "xgboost" in line


def test_a_model_error_shows_as_failed_with_the_error() -> None:
    line = trial_line(_event(error="RuntimeError: boom"), "failed")
    assert " failed " in line and "RuntimeError: boom" in line


def test_a_trial_cut_before_any_score_shows_as_interrupted_with_the_reason() -> None:
    line = trial_line(_event(error="interrupted: deadline"), "failed")
    assert " interrupted " in line and "deadline" in line
    assert " failed " not in line and "interrupted: " not in line


def _run_args(*argv: str):
    import argparse

    from atlas_core.cli import _trainer

    parser = argparse.ArgumentParser()
    _trainer.register(parser.add_subparsers())
    return _trainer.run_spec(parser.parse_args(["train", "run", *argv]))


def test_run_registers_under_candidate_and_names_the_model_it_replaces() -> None:
    spec = _run_args(
        "--dataset", "reviews-train@2", "--register", "churn", "--replaces", "churn@production"
    )
    assert (spec.dataset.dataset_id, spec.dataset.version) == ("reviews-train", 2)
    assert spec.target_column == ""  # the dataset's label column, resolved by the trainer
    assert (spec.register.model_name, spec.register.alias) == ("churn", "candidate")
    assert (spec.replaces_model.model_name, spec.replaces_model.alias) == ("churn", "production")
    pinned = _run_args(
        "--artifact",
        "s3://b/k",
        "--target",
        "y",
        "--register",
        "churn",
        "--alias",
        "next",
        "--replaces",
        "churn:3",
    )
    assert pinned.register.alias == "next" and pinned.replaces_model.version == 3
    plain = _run_args("--artifact", "s3://b/k", "--target", "y")
    assert not plain.HasField("register") and not plain.HasField("replaces_model")


def test_the_registration_line_says_which_version_or_why_not() -> None:
    from atlas_core.cli._trainer import registration_line

    done = pb.ModelRegistration(state=pb.REGISTRATION_STATE_REGISTERED, alias="candidate")
    done.model_version.model_name, done.model_version.version = "churn", 4
    assert registration_line(done) == "registered churn:4 (alias candidate)"
    failed = pb.ModelRegistration(
        state=pb.REGISTRATION_STATE_FAILED, attempts=6, error="UNAVAILABLE: down"
    )
    failed.model_version.model_name = "churn"
    assert "failed after 6 attempt(s): UNAVAILABLE: down" in registration_line(failed)


def test_run_sends_role_overrides_and_the_report_lists_the_derived_roles() -> None:
    import pytest

    from atlas_core.cli._trainer import report_summary

    spec = _run_args("--artifact", "s3://b/k", "--role", "when=datetime", "--role", "id=identifier")
    assert dict(spec.automl.column_roles) == {"when": "datetime", "id": "identifier"}
    with pytest.raises(SystemExit):  # argparse: not COLUMN=ROLE
        _run_args("--artifact", "s3://b/k", "--role", "when")
    report = pb.TrainingReport(
        column_roles=[
            pb.ColumnRole(column="x", role="numeric", detail="numbers", features=["x"]),
            pb.ColumnRole(
                column="when",
                role="datetime",
                overridden=True,
                detail="set in the spec; format ISO8601",
                features=["when.hour", "when.elapsed_days"],
            ),
            pb.ColumnRole(column="id", role="identifier", detail="nearly unique strings"),
        ]
    )
    lines = report_summary(report, pb.GetLeaderboardResponse())
    assert "  when: datetime (set in the spec; format ISO8601) -> 2 features" in lines
    assert "  id: identifier (nearly unique strings) -> dropped" in lines
    assert not any(line.startswith("  x:") for line in lines)


def test_run_sends_the_stacking_mode_and_the_report_shows_layers_and_the_curve() -> None:
    from atlas_core.cli._trainer import report_summary

    assert _run_args("--artifact", "s3://b/k", "--stacking", "on").automl.stacking == (
        pb.STACKING_MODE_ON
    )
    assert _run_args("--artifact", "s3://b/k").automl.stacking == pb.STACKING_MODE_AUTO
    board = pb.GetLeaderboardResponse(
        metric="roc_auc",
        entries=[
            pb.Trial(number=-2, score=0.93, pipeline="stack[2 layers]", stack_level=0),
            pb.Trial(number=-201, score=0.92, pipeline="L2[lightgbm]", stack_level=2),
            pb.Trial(number=3, score=0.91, pipeline="lightgbm", stack_level=1),
        ],
    )
    report = pb.TrainingReport(
        stacking="stacked 1 layer: 3 models",
        stack_levels=2,
        score_curve=[
            pb.ScorePoint(elapsed_seconds=4, score=0.9, series="search", stack_level=1, trial=0),
            pb.ScorePoint(elapsed_seconds=20, score=0.93, series="ensemble", stack_level=2),
        ],
    )
    text = "\n".join(report_summary(report, board))
    assert "1. ensemble" in text and "2. L2 m1" in text and "3. trial 3" in text
    assert "stacking: stacked 1 layer: 3 models (final model: 2 layer(s))" in text
    assert "4s 0.9000" in text and "L2 0.9300" in text
