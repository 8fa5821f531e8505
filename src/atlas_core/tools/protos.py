"""Generate the committed Python stubs of the gRPC contracts (``make protos``).

Every ``.proto`` file under ``protos/`` is compiled with ``grpc_tools.protoc`` (``-I protos`` plus
the well-known types bundled with grpcio-tools) into ``src/``: ``*_pb2.py``, ``*_pb2.pyi`` and
``*_pb2_grpc.py``, with an empty ``__init__.py`` in every generated package directory and a
``py.typed`` marker in ``src/atlas``. ``src/atlas`` holds generated code only, so files there that
the protos no longer produce are removed.

``--check`` regenerates into a temporary directory and exits 1, listing the differing files,
when the committed stubs have drifted from the protos. The output is deterministic: the same
protos and grpcio-tools version always produce byte-identical files.

Usage::

    python -m atlas_core.tools.protos            # regenerate src/atlas
    python -m atlas_core.tools.protos --check    # fail on drift
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
PROTO_DIR_NAME = "protos"
STUBS_PACKAGE = "atlas"
_PACKAGE_MARKERS = ("__init__.py",)
_ROOT_MARKERS = ("py.typed",)


class ProtocError(RuntimeError):
    """protoc rejected the protos; the message carries its output."""


def proto_files(proto_root: Path) -> list[Path]:
    """Return every ``.proto`` file under ``proto_root``, relative to it, in sorted order."""
    return sorted(path.relative_to(proto_root) for path in proto_root.rglob("*.proto"))


def grpc_tools_include() -> Path:
    """Directory of the well-known protos (google/protobuf/*.proto) shipped with grpcio-tools."""
    import grpc_tools  # deferred: only needed by this developer tool

    return Path(grpc_tools.__file__).resolve().parent / "_proto"


def generate(out_dir: Path, proto_root: Path = REPO_ROOT / PROTO_DIR_NAME) -> list[Path]:
    """Compile every proto under ``proto_root`` into ``out_dir`` and add package markers.

    Args:
        out_dir: Existing directory that receives the ``atlas/`` package tree.
        proto_root: Root of the proto sources (the ``-I`` include directory).

    Returns:
        Paths of all files written, relative to ``out_dir``, sorted.

    Raises:
        ProtocError: when protoc fails (syntax error, unresolved import, ...).
        FileNotFoundError: when ``proto_root`` contains no ``.proto`` file.
    """
    sources = proto_files(proto_root)
    if not sources:
        raise FileNotFoundError(f"no .proto files under {proto_root}")
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{grpc_tools_include()}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        # Relative names keep the descriptors (and so the output) independent of where the
        # repository lives on disk.
        *(source.as_posix() for source in sources),
    ]
    result = subprocess.run(command, cwd=proto_root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ProtocError(f"protoc failed (exit {result.returncode}):\n{result.stderr}")
    _write_package_markers(out_dir)
    return _generated_files(out_dir)


def _write_package_markers(out_dir: Path) -> None:
    """Write an empty ``__init__.py`` in every directory of the generated tree."""
    package_root = out_dir / STUBS_PACKAGE
    directories = [package_root, *(p for p in package_root.rglob("*") if p.is_dir())]
    for directory in directories:
        if directory.name == "__pycache__":
            continue
        for marker in _PACKAGE_MARKERS:
            (directory / marker).write_text("")
    for marker in _ROOT_MARKERS:
        (package_root / marker).write_text("")


def _generated_files(root: Path) -> list[Path]:
    """Files of the stubs package under ``root`` (caches excluded), relative, sorted."""
    package_root = root / STUBS_PACKAGE
    if not package_root.is_dir():
        return []
    return sorted(
        path.relative_to(root)
        for path in package_root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def diff(expected_root: Path, actual_root: Path) -> list[str]:
    """Compare a freshly generated tree with a committed one; one line per differing file.

    Each line is ``"<path>: <problem>"`` with the path relative to the trees' root and the
    problem one of ``missing`` (generated but not committed), ``stale (no longer generated)``
    or ``differs``, e.g. ``"atlas/data/v1/data_service_pb2.py: differs"``. Empty when the trees
    are identical.
    """
    expected = set(_generated_files(expected_root))
    actual = set(_generated_files(actual_root))
    problems = [f"{path.as_posix()}: missing" for path in expected - actual]
    problems += [f"{path.as_posix()}: stale (no longer generated)" for path in actual - expected]
    problems += [
        f"{path.as_posix()}: differs"
        for path in expected & actual
        if not filecmp.cmp(expected_root / path, actual_root / path, shallow=False)
    ]
    return sorted(problems)


def check(
    src_dir: Path = REPO_ROOT / "src", proto_root: Path = REPO_ROOT / PROTO_DIR_NAME
) -> list[str]:
    """Regenerate into a temporary directory and return the drift against ``src_dir``."""
    with tempfile.TemporaryDirectory(prefix="atlas-protos-") as tmp:
        fresh = Path(tmp)
        generate(fresh, proto_root)
        return diff(fresh, src_dir)


def sync(
    src_dir: Path = REPO_ROOT / "src", proto_root: Path = REPO_ROOT / PROTO_DIR_NAME
) -> list[str]:
    """Regenerate the stubs into ``src_dir``, touching only files that change.

    Returns one line per change (``"created <path>"``, ``"updated <path>"``,
    ``"removed <path>"``); empty when the stubs were already up to date.
    """
    changes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="atlas-protos-") as tmp:
        fresh = Path(tmp)
        generate(fresh, proto_root)
        for path in _generated_files(src_dir):
            if not (fresh / path).exists():
                (src_dir / path).unlink()
                changes.append(f"removed {path.as_posix()}")
        for path in _generated_files(fresh):
            target = src_dir / path
            if target.exists() and filecmp.cmp(fresh / path, target, shallow=False):
                continue
            changes.append(f"{'updated' if target.exists() else 'created'} {path.as_posix()}")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fresh / path, target)
    _remove_empty_directories(src_dir / STUBS_PACKAGE)
    return sorted(changes, key=lambda line: line.split(" ", 1)[1])


def _remove_empty_directories(root: Path) -> None:
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        if directory.name != "__pycache__" and not any(directory.iterdir()):
            directory.rmdir()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m atlas_core.tools.protos",
        description="Generate src/atlas from protos/ (or check it is up to date).",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="regenerate into a temp dir and exit 1 listing files that differ from src/atlas",
    )
    parser.add_argument(
        "--protos", type=Path, default=REPO_ROOT / PROTO_DIR_NAME, help="proto root"
    )
    parser.add_argument("--src", type=Path, default=REPO_ROOT / "src", help="output root")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = check(args.src, args.protos)
            if problems:
                print("generated stubs are out of date; run `make protos`:", file=sys.stderr)
                for line in problems:
                    print(f"  {line}", file=sys.stderr)
                return 1
            print(f"stubs up to date ({len(proto_files(args.protos))} protos)")
            return 0
        changes = sync(args.src, args.protos)
    except (ProtocError, FileNotFoundError) as exc:
        print(exc, file=sys.stderr)
        return 2
    for line in changes:
        print(line)
    count = len(proto_files(args.protos))
    print(f"generated stubs for {count} protos into {args.src / STUBS_PACKAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
