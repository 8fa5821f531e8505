"""Fixtures for the contract tests: the proto sources compiled with their comments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from atlas_core.tools import protos as protos_tool

# Service directory (= proto package segment) -> service name.
SERVICES: dict[str, str] = {
    "labeling": "LabelingService",
    "data": "DataService",
    "trainer": "TrainerService",
    "graph": "GraphService",
    "serving": "ServingService",
}


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return protos_tool.REPO_ROOT


@pytest.fixture(scope="session")
def descriptor_set(
    repo_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> descriptor_pb2.FileDescriptorSet:
    """Every proto under protos/ compiled by protoc with source info (comments) kept."""
    proto_root = repo_root / protos_tool.PROTO_DIR_NAME
    out = tmp_path_factory.mktemp("descriptors") / "atlas.binpb"
    include = protos_tool.grpc_tools_include()
    sources = [path.as_posix() for path in protos_tool.proto_files(proto_root)]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"-I{include}",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *sources,
        ],
        cwd=proto_root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"protoc failed:\n{result.stderr}"
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
