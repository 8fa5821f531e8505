"""The serving package keeps protobuf at its edge: only convert.py (the one proto <-> domain
bridge) and servicer.py (the gRPC front end) import generated messages or google.protobuf, and
only the servicer imports grpc. Domain code takes and returns atlas_serving.domain objects."""

from __future__ import annotations

import ast
from pathlib import Path

import atlas_serving

PACKAGE = Path(atlas_serving.__file__).parent
PROTO_EDGE = {"convert.py", "servicer.py"}
# The data service's client returns its own messages; the lookup reads their enums. The
# labeling client takes its own messages: bad cases are built as labeling items.
ALLOWED = {
    "dataplane/lookup.py": {"atlas.data.v1.data_service_pb2"},
    "monitoring/bad_cases.py": {
        "atlas.common.v1.common_pb2",
        "atlas.labeling.v1.labeling_service_pb2",
    },
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _is_proto(name: str) -> bool:
    return name.startswith("google.protobuf") or (name.startswith("atlas.") and "_pb2" in name)


def test_only_convert_and_the_servicer_touch_protobuf() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 20  # the walk found the package
    offenders = {}
    for path in modules:
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in PROTO_EDGE:
            continue
        proto = {n for n in _imports(path) if _is_proto(n)} - ALLOWED.get(rel, set())
        if proto:
            offenders[rel] = sorted(proto)
    assert not offenders, offenders


def test_only_the_servicer_imports_grpc() -> None:
    users = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if any(n == "grpc" or n.startswith("grpc.") for n in _imports(path))
    }
    assert users <= {"servicer.py"}, users
