"""Static checks on what ships: every rendered overlay is valid Kubernetes (kubernetes-validate,
strict, its schemas ship in the package) and passes checkov's Kubernetes and Dockerfile
policies, less the checks deploy/checkov.yaml skips, each with its reason."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .manifests import DEPLOY, OVERLAYS, ROOT, _rendered

BIN = Path(sys.executable).parent
# Kubernetes release the schemas are checked against (a recent one kubernetes-validate ships).
K8S_VERSION = "1.30.0"


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return str(path)


def _checkov() -> str:
    # Its own venv (make test creates it): its pins conflict with the dev extra's.
    path = ROOT / "build" / "checkov" / "bin" / "checkov"
    if not path.exists():
        pytest.skip("checkov is not installed in build/checkov (make test installs it)")
    return str(path)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rendered")
    for overlay in OVERLAYS:
        (out / f"{overlay}.yaml").write_text(_rendered(overlay))
    # checkov finds Dockerfiles by name
    shutil.copy(DEPLOY / "container" / "Containerfile", out / "Dockerfile")
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_is_valid_kubernetes(rendered: Path, overlay: str) -> None:
    result = subprocess.run(
        [
            _tool("kubernetes-validate"),
            "--strict",
            "-k",
            K8S_VERSION,
            str(rendered / f"{overlay}.yaml"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "INFO" in result.stdout and "ERROR" not in result.stdout


def test_validation_catches_a_broken_manifest(tmp_path: Path) -> None:
    """The validator really checks: a misspelled field fails strict validation."""
    docs = list(yaml.safe_load_all(_rendered("dev")))
    deployment = next(d for d in docs if d and d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Never"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(deployment))
    result = subprocess.run(
        [_tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, str(bad)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "imagePullPolicyy" in result.stdout + result.stderr


@pytest.mark.slow  # checkov loads its whole policy set: 15-40 s here
def test_checkov_passes_with_justified_skips(rendered: Path) -> None:
    config = DEPLOY / "checkov.yaml"
    result = subprocess.run(
        [
            _checkov(),
            "-d",
            str(rendered),
            "--framework",
            "kubernetes",
            "dockerfile",
            "--skip-download",
            "--config-file",
            str(config),
            "-o",
            "json",
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    ]
    assert result.returncode == 0 and not failed, "\n".join(failed) or result.stderr
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}
    # Every skipped check is preceded by the comment that justifies it.
    skipped = yaml.safe_load(config.read_text())["skip-check"]
    text = config.read_text()
    for check in skipped:
        assert re.search(rf"#[^\n]+\n(?:\s*#[^\n]*\n)*\s*- {check}\n", text), check
