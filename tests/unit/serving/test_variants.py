"""Which version of a model a bundle serves: the relative loss of estimated quality."""

from __future__ import annotations

import pytest

from atlas_serving.dataplane.variants import relative_loss


def test_relative_loss_follows_the_metric_direction() -> None:
    auc = {"score": 0.99, "higher_is_better": True}
    assert relative_loss(auc, {"score": 0.99}) == 0.0
    assert relative_loss(auc, {"score": 0.995}) == 0.0  # better is no loss
    assert relative_loss(auc, {"score": 0.98}) == pytest.approx(0.01 / 0.99)
    log_loss = {"score": 0.2, "higher_is_better": False}
    assert relative_loss(log_loss, {"score": 0.201}) == pytest.approx(0.005)
    assert relative_loss(log_loss, {"score": 0.19}) == 0.0


def test_no_usable_estimate_is_no_decision() -> None:
    assert relative_loss({"score": None, "higher_is_better": True}, {"score": 0.9}) is None
    assert relative_loss({"score": 0.9}, {}) is None
    assert relative_loss({"score": float("nan")}, {"score": 0.9}) is None
