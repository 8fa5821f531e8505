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
