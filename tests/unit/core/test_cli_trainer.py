"""The `atlas train` live view's trial lines."""

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
