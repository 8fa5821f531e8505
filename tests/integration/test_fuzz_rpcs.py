"""Property-based fuzzing of every RPC of every service against the running suite.

Methods come from the generated contracts (every ``*_service_pb2`` module), so a new RPC is
fuzzed the day it is added. Requests come from strategies derived from each request's
descriptor (tests/support/fuzz.py): random and extreme field values, huge repeated fields,
nested messages, NaN/inf, out-of-range enums and timestamps, and malformed encodings. Every
answer must be success or a status other than INTERNAL/UNKNOWN, and the server must still
report SERVING afterwards.

`make test` runs a short seeded campaign (``ATLAS_FUZZ_EXAMPLES``, default 8 per RPC);
`make fuzz` runs a long one with fresh randomness.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings

import atlas
from tests.support.fuzz import wire_bytes
from tests.support.suite import RunningSuite, call_raw, method_path, running_suite

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("ATLAS_FUZZ_EXAMPLES", "8"))
# Seeded (derandomized) unless a campaign asks for fresh randomness.
SEEDED = os.environ.get("ATLAS_FUZZ_RANDOM", "") != "1"
FAILURES = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


def contract_methods() -> list[MethodDescriptor]:
    methods = []
    for module in pkgutil.walk_packages(atlas.__path__, "atlas."):
        if module.name.endswith("_service_pb2"):
            generated = importlib.import_module(module.name)
            for service in generated.DESCRIPTOR.services_by_name.values():
                methods += list(service.methods)
    return methods


METHODS = contract_methods()


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningSuite, dict]]:
    with running_suite(tmp_path_factory.mktemp("fuzz-suite")) as running:
        served = {}
        for _, address in running.servers():
            for method in running.methods(address):
                served.setdefault(method.containing_service.full_name, address)
        yield running, served


def _serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except grpc.RpcError:
            return False
    return response.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("method", METHODS, ids=method_path)
def test_fuzzed_requests_never_fail_internally(
    suite: tuple[RunningSuite, dict], method: MethodDescriptor
) -> None:
    running, served = suite
    service = method.containing_service.full_name
    assert service in served, f"{service} is in the contracts but no server of the suite lists it"
    address = served[service]
    token = running.creds.admin_token
    failures: list[str] = []

    with grpc.insecure_channel(address) as channel:

        @settings(
            max_examples=EXAMPLES,
            derandomize=SEEDED,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(wire_bytes(method.input_type))
        def fuzz(request: bytes) -> None:
            code, details = call_raw(channel, method, request, token)
            if code in FAILURES:
                failures.append(f"{code.name} {details!r} for request {request[:200]!r}")
            assert code not in FAILURES, failures[-1]

        fuzz()
    assert _serving(address), f"{address} stopped serving after fuzzing {method_path(method)}"
