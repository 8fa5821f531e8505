"""Auth on every method of every service, read from the running servers' descriptors.

The whole suite runs as `atlas up` starts it. Every RPC that reflection lists (so a new RPC or
service is covered the day it is added) must answer UNAUTHENTICATED without a token or with an
unknown one, PERMISSION_DENIED with another service's scope or (for writes) a read-only scope,
and neither with exactly the scope the server derives for it; health stays public. Tokens are
rotated by rewriting the tokens file while the services run. Finally no token may appear in
any log, metrics page, error message or file the services wrote (databases, job records).
"""

from __future__ import annotations

import secrets
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc

from atlas_core.launcher._launcher import HTTP_APP
from atlas_core.rpc.auth import required_scope, service_scope_name
from atlas_core.secret_files import write_private
from tests.support.suite import RunningSuite, call_raw, method_path, running_suite

pytestmark = pytest.mark.slow

AUTH_CODES = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
# With the right scope a call may succeed or fail on its (empty) input, never like these.
NOT_ALLOWED_WITH_SCOPE = (*AUTH_CODES, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL)
INVALID_TOKEN = "not-a-token-" + secrets.token_hex(8)


@dataclass
class Suite:
    running: RunningSuite
    # scope -> a token granted exactly that scope
    tokens: dict[str, str] = field(default_factory=dict)
    # address -> the methods its server lists through reflection
    methods: dict[str, list[MethodDescriptor]] = field(default_factory=dict)
    # every error message a server sent during the run
    details: list[str] = field(default_factory=list)

    @property
    def services(self) -> list[tuple[str, str]]:
        """(name, address) of every server that lists methods through reflection."""
        return [(n, a) for n, a in self.running.servers() if self.methods.get(a)]

    def write_tokens(self, extra: dict[str, str] | None = None) -> None:
        lines = [f"{self.running.creds.admin_token} *"]
        lines += [f"{token} {scope}" for scope, token in {**self.tokens, **(extra or {})}.items()]
        write_private(self.running.creds.tokens_file, "\n".join(lines) + "\n")

    def every_token(self) -> list[str]:
        return [self.running.creds.admin_token, INVALID_TOKEN, *self.tokens.values()]


def call(
    channel: grpc.Channel, method: MethodDescriptor, token: str | None
) -> tuple[grpc.StatusCode, str]:
    """An empty request: auth is checked before the request is looked at."""
    return call_raw(channel, method, b"", token)


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    with running_suite(tmp_path_factory.mktemp("suite")) as running:
        suite = Suite(running)
        for _, address in running.servers():
            suite.methods[address] = running.methods(address)
        scopes = {
            service_scope_name(m.containing_service.full_name)
            for methods in suite.methods.values()
            for m in methods
        }
        suite.tokens = {
            f"{name}:{access}": secrets.token_urlsafe(18)
            for name in sorted(scopes)
            for access in ("read", "write")
        }
        suite.write_tokens()  # a rotation: the running services pick the new tokens up
        for scope, token in suite.tokens.items():
            if scope.endswith(":read"):
                assert _wait_for(suite, token, accepted=True) == [], f"{scope} token not loaded"
        yield suite


def _wait_for(suite: Suite, token: str, accepted: bool, timeout: float = 15.0) -> list[str]:
    """Services that, by the deadline, still do not answer ``token`` as ``accepted``."""
    deadline = time.monotonic() + timeout
    pending = dict(suite.services)
    while pending and time.monotonic() < deadline:
        for name, address in list(pending.items()):
            method = next(
                m
                for m in suite.methods[address]
                if (required_scope(method_path(m)) or "").endswith(":read")
            )
            with grpc.insecure_channel(address) as channel:
                code, _ = call(channel, method, token)
            if (code != grpc.StatusCode.UNAUTHENTICATED) == accepted:
                del pending[name]
        time.sleep(0.2)
    return sorted(pending)


def test_tokens_rotate_without_a_restart(suite: Suite) -> None:
    rotated = secrets.token_urlsafe(18)
    suite.write_tokens({"*": rotated})
    assert _wait_for(suite, rotated, accepted=True) == []
    suite.write_tokens()  # revoked again
    assert _wait_for(suite, rotated, accepted=False) == []


def test_every_method_checks_its_scope(suite: Suite) -> None:
    names = [name for name, _ in suite.services]
    problems = []
    checked = 0
    for name, address in suite.services:
        assert suite.methods[address], f"{name} lists no methods"
        with grpc.insecure_channel(address) as channel:
            for method in suite.methods[address]:
                path = method_path(method)
                needed = required_scope(path)
                assert needed is not None
                service = needed.split(":")[0]
                other = next(n for n in names if n != service)
                cases: list[tuple[str, str | None, tuple[grpc.StatusCode, ...]]] = [
                    ("no token", None, (grpc.StatusCode.UNAUTHENTICATED,)),
                    ("unknown token", INVALID_TOKEN, (grpc.StatusCode.UNAUTHENTICATED,)),
                    (
                        f"{other}'s scope",
                        suite.tokens[f"{other}:write"],
                        (grpc.StatusCode.PERMISSION_DENIED,),
                    ),
                ]
                if needed.endswith(":write"):
                    read_only = suite.tokens[f"{service}:read"]
                    cases.append(("read scope", read_only, (grpc.StatusCode.PERMISSION_DENIED,)))
                for label, token, expected in cases:
                    code, details = call(channel, method, token)
                    suite.details.append(details)
                    if code not in expected:
                        problems.append(f"{path} with {label}: {code.name} {details}")
                code, details = call(channel, method, suite.tokens[needed])
                suite.details.append(details)
                if code in NOT_ALLOWED_WITH_SCOPE:
                    problems.append(f"{path} with {needed}: {code.name} {details}")
                checked += 1
    assert not problems, "\n".join(problems)
    assert checked >= 5 * len(names)  # every service has several RPCs


def test_health_is_public(suite: Suite) -> None:
    for process in suite.running.state.processes:
        if process.full_name in ("s3", HTTP_APP):
            continue
        with grpc.insecure_channel(process.address) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=process.full_name), timeout=5
            )
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_tokens_never_reach_logs_metrics_errors_or_records(suite: Suite) -> None:
    """Runs after the sweep: every token was sent to every method by then."""
    assert suite.details, "the scope sweep must run first"
    tokens = [t.encode() for t in suite.every_token()]
    data_dir = suite.running.data_dir
    secrets_dir = data_dir / "secrets"
    objects = data_dir / "objectstore"
    written = [
        path
        for path in data_dir.rglob("*")
        if path.is_file() and secrets_dir not in path.parents and objects not in path.parents
    ]
    assert any(p.suffix == ".log" for p in written) and any(p.suffix == ".db" for p in written)
    leaks = [
        f"{path.relative_to(data_dir)}"
        for path in written
        if any(token in path.read_bytes() for token in tokens)
    ]
    for process in suite.running.state.processes:
        if process.metrics_port:
            url = f"http://127.0.0.1:{process.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as page:
                text = page.read()
            leaks += [f"{process.name} metrics" for t in tokens if t in text]
    leaks += [f"error message {d!r}" for d in suite.details for t in tokens if t.decode() in d]
    assert not leaks, leaks
