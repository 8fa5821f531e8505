"""The labeling demo step, small, against a real suite started by the launcher: keeps `make
demo` from rotting and checks that what it prints is true."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from atlas_core.launcher import Launcher, implemented_services

pytestmark = pytest.mark.slow
DEMO = Path(__file__).resolve().parents[2] / "demo"


@pytest.fixture(scope="module")
def step() -> Any:
    sys.path.insert(0, str(DEMO))
    try:
        import labeling_step

        yield labeling_step
    finally:
        sys.path.remove(str(DEMO))


def test_labeling_step_on_a_real_suite(tmp_path, step, capsys):
    if "labeling" not in {s.name for s in implemented_services()}:
        pytest.fail("the labeling service is not launchable: the demo step would be skipped")
    launcher = Launcher(tmp_path / "suite", s3_port=0, base_port=0)
    try:
        state = launcher.up(echo=lambda *_: None)
        shared: dict[str, Any] = {}
        step.run(state, tmp_path / "suite", shared, digits=60, texts=40)
    finally:
        launcher.down(echo=lambda *_: None)
    out = capsys.readouterr().out

    digits = shared["digit_labels"]
    q = digits["quality"]
    assert q["items"] == 60
    # The adversary answers every gold item wrong and gets caught by it.
    assert q["gold"]["adversary"][0] == 0 and q["gold"]["adversary"][1] >= 3
    flagged, truly_wrong = q["flagged"]["low_gold_accuracy"]
    assert flagged > 0 and truly_wrong > 0.6 * flagged
    # Consensus plus correction beats the plain majority of the first three votes.
    assert q["final_right"] >= q["first_three_right"]
    assert q["final_right"] >= 0.85 * q["items"]
    export = digits["export"]
    assert export.rows >= 60 and export.dataset.dataset_id
    assert sum(export.label_counts.values()) == export.rows
    # Point-in-time: the features ingested after the labels are unknown "as known at"...
    rows, with_features = digits["as known at"]
    assert rows == export.rows and 0 < with_features < rows
    # ... and there "as of" each label's event time.
    assert digits["as of"] == (export.rows, export.rows)

    tweets = shared["tweet_labels"]
    assert tweets["quality"]["items"] == 40
    assert tweets["export"].rows >= 40
    for line in ("Fleiss' kappa", "correction queue:", "point-in-time match as known at"):
        assert line in out
