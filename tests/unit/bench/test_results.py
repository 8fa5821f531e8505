"""Benchmark results are written dated and as the latest, with their provenance."""

from __future__ import annotations

import json
from pathlib import Path

from bench._results import write_results


def test_results_are_written_dated_and_latest_with_date_commit_and_machine(
    tmp_path: Path,
) -> None:
    dated = write_results(
        "demo", {"ratio": 0.5}, results_dir=tmp_path, argv=["bench/demo.py", "--x", "1"]
    )
    record = json.loads(dated.read_text())
    assert dated.name == f"demo-{record['run']['date']}.json"
    assert (tmp_path / "demo.json").read_text() == dated.read_text()
    assert record["ratio"] == 0.5
    run = record["run"]
    assert run["command"] == "python bench/demo.py --x 1"
    assert len(run["commit"]["sha"]) >= 7  # the test runs inside the repository
    assert run["machine"]["cpus"] >= 1


def test_quick_runs_never_replace_a_full_record(tmp_path: Path) -> None:
    write_results("demo", {"full": True}, results_dir=tmp_path, argv=["bench/demo.py"])
    write_results("demo", {"full": False}, quick=True, results_dir=tmp_path, argv=["x"])
    assert json.loads((tmp_path / "demo.json").read_text())["full"] is True
    assert json.loads((tmp_path / "demo_quick.json").read_text())["full"] is False
