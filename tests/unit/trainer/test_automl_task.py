"""Task detection, target validation and small-data policy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atlas_core.errors import InvalidArgument
from atlas_trainer.automl.task import detect_task, prepare_target, resolve_metric, target_column


def test_detects_binary_multiclass_regression() -> None:
    assert detect_task(pd.Series([0, 1, 1, 0])) == "binary"
    assert detect_task(pd.Series(["a", "b", "c", "a"])) == "multiclass"
    assert detect_task(pd.Series(np.arange(100) % 5)) == "multiclass"
    assert detect_task(pd.Series(np.linspace(0, 1, 100))) == "regression"


def test_default_metrics_are_direction_aware() -> None:
    assert resolve_metric("binary", None).name == "roc_auc"
    assert resolve_metric("binary", None).higher_is_better
    assert resolve_metric("multiclass", None).name == "log_loss"
    assert not resolve_metric("multiclass", None).higher_is_better
    assert resolve_metric("regression", None).direction == "minimize"
    with pytest.raises(InvalidArgument):
        resolve_metric("regression", "roc_auc")


def test_missing_target_column_is_named() -> None:
    with pytest.raises(InvalidArgument, match="'price'") as err:
        target_column(pd.DataFrame({"a": [1]}), "price")
    assert err.value.reason == "TARGET_MISSING"


@pytest.mark.parametrize(
    ("values", "reason"),
    [([np.nan] * 20, "TARGET_ALL_NAN"), ([3] * 20, "TARGET_CONSTANT")],
)
def test_bad_targets_are_rejected_by_name(values: list[float], reason: str) -> None:
    with pytest.raises(InvalidArgument, match="'y'") as err:
        prepare_target(pd.Series(values, name="y"))
    assert err.value.reason == reason
    assert err.value.metadata["column"] == "y"


def test_singleton_class_is_dropped_with_warning() -> None:
    y = pd.Series(["a"] * 10 + ["b"] * 10 + ["c"], name="y")
    p = prepare_target(y)
    assert p.task == "binary" and list(p.classes) == ["a", "b"]
    assert p.keep.sum() == 20 and not p.keep[-1]
    assert any("single example" in w for w in p.warnings)


def test_twenty_rows_use_fewer_folds() -> None:
    y = pd.Series([0] * 17 + [1] * 3, name="y")
    p = prepare_target(y)
    assert p.folds == 3
    assert any("3-fold" in w for w in p.warnings)


def test_missing_target_rows_dropped() -> None:
    p = prepare_target(pd.Series([0.1 * i for i in range(30)] + [np.nan], name="y"))
    assert p.task == "regression" and p.keep.sum() == 30
