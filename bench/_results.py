"""Where every benchmark script writes its results: ``bench/results/<name>-<YYYY-MM-DD>.json``
(kept: the record of that day's run) and ``bench/results/<name>.json`` (the latest), both
committed. Each file carries when (UTC date and time), at which commit and on which machine it
was measured, and the command, so a figure quoted in bench/README.md can be traced back.

Quick runs (``--quick``, ``make bench``) are smoke runs, not accepted figures: they write under
``<name>_quick`` so they never replace a full run's record.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def commit() -> dict[str, Any]:
    """The checked-out commit, and whether the working tree differed from it (a figure from a
    dirty tree is not reproducible from the commit alone)."""
    sha = _git("rev-parse", "--short=10", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": bool(status) if status is not None else None}


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError):
        pass
    return None


def machine() -> dict[str, Any]:
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """Date, commit, machine and command of the run being recorded."""
    now = datetime.now(timezone.utc)
    args = sys.argv if argv is None else argv
    return {
        "date": now.date().isoformat(),
        "recorded_at": now.isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": machine(),
        "command": " ".join(["python", f"bench/{Path(args[0]).name}", *args[1:]]),
    }


def result_paths(name: str, date: str, results_dir: Path = RESULTS_DIR) -> tuple[Path, Path]:
    """(dated record, latest) for result ``name`` measured on ``date`` (YYYY-MM-DD)."""
    return results_dir / f"{name}-{date}.json", results_dir / f"{name}.json"


def write_results(
    name: str,
    payload: dict[str, Any],
    *,
    quick: bool = False,
    results_dir: Path = RESULTS_DIR,
    argv: list[str] | None = None,
) -> Path:
    """Write ``payload`` plus its provenance (key ``run``) to the dated file and the latest
    one; returns the dated path. A second run on the same day replaces that day's record."""
    name = f"{name}_quick" if quick else name
    record = {"run": provenance(argv), **payload}
    dated, latest = result_paths(name, record["run"]["date"], results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=2, default=str) + "\n"
    dated.write_text(text)
    latest.write_text(text)
    return dated
