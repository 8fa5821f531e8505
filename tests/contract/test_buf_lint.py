"""The protos pass `buf lint` (STANDARD rules, configured in the root buf.yaml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _buf() -> str | None:
    beside_python = Path(sys.executable).parent / "buf"
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("buf")


def _run_buf(repo_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    buf = _buf()
    if buf is None:
        pytest.skip("buf binary not found (install the dev extra: buf-bin)")
    return subprocess.run(
        [buf, *args], cwd=repo_root, capture_output=True, text=True, timeout=120, check=False
    )


def test_buf_lint_passes(repo_root: Path) -> None:
    result = _run_buf(repo_root, "lint")
    assert result.returncode == 0, f"buf lint failed:\n{result.stdout}{result.stderr}"


def test_protos_are_buf_formatted(repo_root: Path) -> None:
    result = _run_buf(repo_root, "format", "--diff", "--exit-code")
    assert result.returncode == 0, f"run `buf format -w`:\n{result.stdout}{result.stderr}"


def test_no_breaking_change_against_the_released_contract(repo_root: Path) -> None:
    result = _run_buf(repo_root, "breaking", "--against", "protos/baseline.binpb")
    assert result.returncode == 0, (
        "the contract breaks the released one (protos/baseline.binpb); add a v2 package or, "
        f"for an unreleased service, refresh it with `make contract-baseline`:\n{result.stdout}"
    )


def test_breaking_check_catches_a_renumbered_field(repo_root: Path, tmp_path: Path) -> None:
    # The check above must be able to fail: renumber one field in a copy of the protos.
    shutil.copytree(repo_root / "protos", tmp_path / "protos")
    shutil.copy(repo_root / "buf.yaml", tmp_path / "buf.yaml")
    common = tmp_path / "protos" / "atlas" / "common" / "v1" / "common.proto"
    text = common.read_text()
    assert "page_size = 1;" in text
    common.write_text(text.replace("page_size = 1;", "page_size = 99;", 1))
    result = _run_buf(tmp_path, "breaking", "--against", str(repo_root / "protos/baseline.binpb"))
    assert result.returncode != 0
    assert "page_size" in result.stdout
