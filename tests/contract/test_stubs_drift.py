"""The committed stubs under src/atlas are exactly what `make protos` generates."""

from __future__ import annotations

from pathlib import Path

from atlas_core.tools import protos as protos_tool


def test_committed_stubs_match_protos() -> None:
    problems = protos_tool.check()
    assert not problems, "src/atlas drifted from protos/ (run `make protos`):\n" + "\n".join(
        problems
    )


def test_generation_is_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    written = protos_tool.generate(first)
    protos_tool.generate(second)
    assert written, "generator wrote nothing"
    assert protos_tool.diff(first, second) == []


def test_every_generated_directory_is_a_package(tmp_path: Path) -> None:
    protos_tool.generate(tmp_path)
    directories = [tmp_path / "atlas", *(p for p in (tmp_path / "atlas").rglob("*") if p.is_dir())]
    missing = [d for d in directories if not (d / "__init__.py").is_file()]
    assert not missing, f"directories without __init__.py: {missing}"
    assert (tmp_path / "atlas" / "py.typed").is_file()


def test_check_names_differing_files(tmp_path: Path) -> None:
    fresh, committed = tmp_path / "fresh", tmp_path / "committed"
    fresh.mkdir()
    committed.mkdir()
    protos_tool.generate(fresh)
    protos_tool.generate(committed)
    changed = committed / "atlas" / "data" / "v1" / "data_service_pb2.py"
    changed.write_text(changed.read_text() + "# edited by hand\n")
    (committed / "atlas" / "common" / "v1" / "common_pb2.pyi").unlink()
    (committed / "atlas" / "data" / "v1" / "old_pb2.py").write_text("")
    assert protos_tool.diff(fresh, committed) == [
        "atlas/common/v1/common_pb2.pyi: missing",
        "atlas/data/v1/data_service_pb2.py: differs",
        "atlas/data/v1/old_pb2.py: stale (no longer generated)",
    ]
