"""Conventions of the v1 contracts, checked on the stubs and on the proto sources:
docs/architecture.md#contracts, docs/architecture.md#jobs, docs/architecture.md#idempotency
and docs/architecture.md#paging."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from .conftest import SERVICES

STATUS_CODES = (
    "OK CANCELLED UNKNOWN INVALID_ARGUMENT DEADLINE_EXCEEDED NOT_FOUND ALREADY_EXISTS "
    "PERMISSION_DENIED RESOURCE_EXHAUSTED FAILED_PRECONDITION ABORTED OUT_OF_RANGE "
    "UNIMPLEMENTED INTERNAL UNAVAILABLE DATA_LOSS UNAUTHENTICATED"
).split()
MUTATING_PREFIXES = (
    "Create", "Update", "Delete", "Submit", "Cancel", "Set", "Register", "Add", "Archive",
    "Acknowledge", "Rollback", "Put", "Write",
)  # fmt: skip
# FileDescriptorProto field numbers used in SourceCodeInfo paths.
_SERVICE_FIELD, _METHOD_FIELD = 6, 2


def _generated_module_names(repo_root: Path) -> list[str]:
    src = repo_root / "src"
    return sorted(
        ".".join(path.relative_to(src).with_suffix("").parts)
        for path in (src / "atlas").rglob("*.py")
        if path.name != "__init__.py"
    )


def _service(svc: str) -> ServiceDescriptor:
    module = importlib.import_module(f"atlas.{svc}.v1.{svc}_service_pb2")
    services = list(module.DESCRIPTOR.services_by_name.values())
    assert len(services) == 1, f"{svc}: expected exactly one service per file"
    return services[0]


def _all_services() -> list[tuple[str, ServiceDescriptor]]:
    """Every service of every atlas proto file (a package may hold several files)."""
    found = []
    for name in _generated_module_names(Path(__file__).parents[2]):
        if name.endswith("_pb2"):
            module = importlib.import_module(name)
            found += [(name.split(".")[1], s) for s in module.DESCRIPTOR.services_by_name.values()]
    return found


def _methods() -> list[tuple[str, MethodDescriptor]]:
    return [(svc, method) for svc, service in _all_services() for method in service.methods]


def test_every_generated_module_imports(repo_root: Path) -> None:
    names = _generated_module_names(repo_root)
    protos = list((repo_root / "protos" / "atlas").rglob("*.proto"))
    assert len(names) == 2 * len(protos), names  # _pb2 and _pb2_grpc per proto
    assert {f"atlas.{svc}.v1.{svc}_service_pb2" for svc in SERVICES} <= set(names)
    for name in names:
        assert isinstance(importlib.import_module(name), ModuleType)


@pytest.mark.parametrize("svc", sorted(SERVICES))
def test_service_name_and_grpc_classes(svc: str) -> None:
    name = SERVICES[svc]
    assert _service(svc).full_name == f"atlas.{svc}.v1.{name}"
    grpc_module = importlib.import_module(f"atlas.{svc}.v1.{svc}_service_pb2_grpc")
    for attribute in (f"{name}Stub", f"{name}Servicer", f"add_{name}Servicer_to_server"):
        assert hasattr(grpc_module, attribute), f"{grpc_module.__name__} lacks {attribute}"


def test_every_rpc_has_its_own_request_and_response() -> None:
    seen: dict[str, str] = {}
    problems = []
    for svc, method in _methods():
        rpc = f"atlas.{svc}.v1.{method.containing_service.name}.{method.name}"
        expected_in = f"atlas.{svc}.v1.{method.name}Request"
        expected_out = f"atlas.{svc}.v1.{method.name}Response"
        if method.input_type.full_name != expected_in:
            problems.append(f"{rpc} takes {method.input_type.full_name}, not {expected_in}")
        if method.output_type.full_name != expected_out:
            problems.append(f"{rpc} returns {method.output_type.full_name}, not {expected_out}")
        for message in (method.input_type.full_name, method.output_type.full_name):
            if message in seen:
                problems.append(f"{message} is shared by {seen[message]} and {rpc}")
            seen[message] = rpc
    assert not problems, "\n".join(problems)


def test_every_rpc_comment_lists_its_status_codes(
    descriptor_set: descriptor_pb2.FileDescriptorSet,
) -> None:
    checked, problems = 0, []
    for file in descriptor_set.file:
        if not file.package.startswith("atlas."):
            continue
        comments = {
            tuple(location.path): location.leading_comments
            for location in file.source_code_info.location
        }
        for s_index, service in enumerate(file.service):
            for m_index, method in enumerate(service.method):
                checked += 1
                comment = comments.get((_SERVICE_FIELD, s_index, _METHOD_FIELD, m_index), "")
                rpc = f"{file.package}.{service.name}.{method.name}"
                if "Errors:" not in comment:
                    problems.append(f"{rpc}: leading comment has no 'Errors:' section")
                    continue
                errors = comment.split("Errors:", 1)[1]
                if not any(re.search(rf"\b{code}\b", errors) for code in STATUS_CODES):
                    problems.append(f"{rpc}: 'Errors:' names no gRPC status code")
    assert checked == len(_methods()), "proto sources and generated stubs disagree"
    assert not problems, "\n".join(problems)


def test_mutating_rpcs_take_a_request_id() -> None:
    missing = [
        f"{method.full_name} ({method.input_type.full_name})"
        for _, method in _methods()
        if method.name.startswith(MUTATING_PREFIXES)
        and "request_id" not in method.input_type.fields_by_name
    ]
    assert not missing, "mutating RPCs without request_id:\n" + "\n".join(missing)


def test_list_rpcs_paginate() -> None:
    problems = []
    for _, method in _methods():
        if not method.name.startswith("List"):
            continue
        page_in = method.input_type.fields_by_name.get("page")
        page_out = method.output_type.fields_by_name.get("page")
        if page_in is None or page_in.message_type.full_name != "atlas.common.v1.PageRequest":
            problems.append(f"{method.full_name}: request lacks `PageRequest page`")
        if page_out is None or page_out.message_type.full_name != "atlas.common.v1.PageResponse":
            problems.append(f"{method.full_name}: response lacks `PageResponse page`")
    assert not problems, "\n".join(problems)


def test_long_running_families_are_complete() -> None:
    """Every job family a service submits to can be got, watched, cancelled and listed
    (docs/architecture.md#jobs)."""
    for svc in SERVICES:
        names = {method.name for method in _service(svc).methods}
        if any(name.startswith("Submit") and name.endswith("Job") for name in names):
            for verb in ("Get", "Watch", "Cancel", "List"):
                assert any(
                    n.startswith(verb) and (n.endswith("Job") or n.endswith("Jobs")) for n in names
                ), f"{svc}: has Submit…Job RPCs but no {verb}…Job(s)"


def test_watch_rpcs_are_server_streams() -> None:
    for _, method in _methods():
        if method.name.startswith("Watch"):
            assert method.server_streaming and not method.client_streaming, method.full_name


def test_job_state_values() -> None:
    common = importlib.import_module("atlas.common.v1.common_pb2")
    assert [value.name for value in common.JobState.DESCRIPTOR.values] == [
        "JOB_STATE_UNSPECIFIED",
        "JOB_STATE_QUEUED",
        "JOB_STATE_RUNNING",
        "JOB_STATE_SUCCEEDED",
        "JOB_STATE_FAILED",
        "JOB_STATE_CANCELLED",
        "JOB_STATE_INTERRUPTED",
    ]
    artifact_fields = common.ArtifactRef.DESCRIPTOR.fields_by_name
    assert {"uri", "sha256", "size_bytes"} <= set(artifact_fields)
