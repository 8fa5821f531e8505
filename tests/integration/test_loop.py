"""One turn of the loop (demo/loop_step.py) at a small budget on a real suite started by the
launcher: keeps `make demo`'s loop from rotting and checks that what it reports is true --
bad cases reached labeling, the labels reached serving as ground truth and v2's dataset, the
trainer warm-started v2 from v1 and registered it, the canary was judged on outcomes, and the
lineage of one prediction reaches the labels and the features."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from atlas_core.launcher import Launcher

pytestmark = pytest.mark.slow
DEMO = Path(__file__).resolve().parents[2] / "demo"


@pytest.fixture(scope="module")
def loop_step() -> Any:
    sys.path.insert(0, str(DEMO))
    try:
        import loop_step

        yield loop_step
    finally:
        sys.path.remove(str(DEMO))


def test_one_turn_of_the_loop(tmp_path: Path, loop_step: Any) -> None:
    launcher = Launcher(tmp_path / "suite", s3_port=0, base_port=0)
    config = loop_step.LoopConfig(
        seed_labels=80, traffic=300, holdout=300, budget_s=15.0, gate_min_labeled=40
    )
    try:
        state = launcher.up(echo=lambda *_: None)
        figures = loop_step.run(state, tmp_path / "suite", {}, config)
    finally:
        launcher.down(echo=lambda *_: None)
    assert figures.bad_cases > 0 and figures.labelled == figures.bad_cases
    assert figures.ground_truth_accepted > 0
    assert figures.warm_started_from == figures.v1_job
    assert figures.canary in ("succeeded", "rolled_back")
    lo, hi = figures.gain_interval
    assert lo <= figures.gain <= hi
    assert 0 < figures.v1_accuracy < 1 and 0 < figures.v2_accuracy <= 1
    kinds = figures.lineage_kinds
    assert {"prediction", "model_version", "training_job", "dataset", "label_export"} <= kinds
