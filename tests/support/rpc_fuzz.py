"""The RPC fuzzing campaign: every method of every contract, against the running suite, with a
check that a failed call changed nothing stored.

Used by tests/integration/test_fuzz_rpcs.py (a short seeded run in ``make test``, a long one in
``make fuzz``) and ``python bench/chaos.py --fuzz CASES`` (the campaign figure).

Per case: the request comes from the request descriptor's strategy (tests/support/fuzz.py);
one case in ten goes without a token (must be UNAUTHENTICATED), the others carry the admin
token, whose scopes reach every method's domain code. The answer must be success or a status
other than INTERNAL/UNKNOWN; after each method the server must still report SERVING.

Nothing stored changes unless the call succeeded (:class:`ServiceStores`): before and after
every call a cheap fingerprint of the service's stores is read — ``PRAGMA data_version`` of its
SQLite metadata database (bumped by any other connection's commit), the LMDB online store's
last transaction id, the names and sizes of the other files in its data directory. When the
fingerprint moved, the stores' content is hashed (every table's rows, every LMDB record) and
compared with the hash before: a failed call that changed content is counted. The object store
is listed (names and etags) every :data:`OBJECT_CHUNK` cases of a method: a chunk of failed
calls only must leave the listing as it was. A successful ``Submit…`` call's job is cancelled
at once and the stores left to settle, so a running job's writes are not blamed on the next
failed call.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pkgutil
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, Phase, given, settings

import atlas
from atlas.data.v1 import online_reader_service_pb2
from tests.support.fuzz import wire_bytes
from tests.support.suite import RunningSuite, method_path

FAILURES = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
NO_TOKEN_EVERY = 10  # one case in ten without a token
OBJECT_CHUNK = 50  # cases between object-store listings
SETTLE_S = 20.0  # at most this long for a cancelled job's writes to stop
SETTLE_QUIET_S = 2.5
CALL_TIMEOUT_S = 10.0


def contract_methods() -> list[MethodDescriptor]:
    """Every method of every service in the generated contracts (so none can be forgotten)."""
    methods = []
    for module in pkgutil.walk_packages(atlas.__path__, "atlas."):
        if module.name.endswith("_service_pb2"):
            generated = importlib.import_module(module.name)
            for service in generated.DESCRIPTOR.services_by_name.values():
                methods += list(service.methods)
    return methods


# -- the stores a service keeps ---------------------------------------------------------------


class ServiceStores:
    """Fingerprint and content hash of one service's stores in the suite's data directory:
    its SQLite metadata database, its LMDB environments and its other files."""

    def __init__(self, service_dir: Path) -> None:
        self.dir = service_dir
        self.db_path = service_dir / "metadata.db"
        self._db: sqlite3.Connection | None = None
        self._lmdb: dict[Path, Any] = {}

    def _conn(self) -> sqlite3.Connection | None:
        if self._db is None and self.db_path.exists():
            self._db = sqlite3.connect(
                f"file:{self.db_path}?mode=ro", uri=True, isolation_level=None, timeout=30
            )
        return self._db

    def _lmdb_envs(self) -> list[Any]:
        import lmdb

        for data in self.dir.rglob("data.mdb"):
            if data.parent not in self._lmdb:
                self._lmdb[data.parent] = lmdb.open(
                    str(data.parent), readonly=True, lock=False, max_dbs=64, subdir=True
                )
        return list(self._lmdb.values())

    def _files(self) -> list[tuple[str, int]]:
        out = []
        for root, _, files in os.walk(self.dir):
            for name in files:
                path = Path(root) / name
                if name.startswith("metadata.db") or name in ("data.mdb", "lock.mdb"):
                    continue
                try:
                    out.append((str(path.relative_to(self.dir)), path.stat().st_size))
                except OSError:
                    pass
        return sorted(out)

    def fingerprint(self) -> tuple:
        conn = self._conn()
        version = conn.execute("PRAGMA data_version").fetchone()[0] if conn else None
        txns = tuple(env.info()["last_txnid"] for env in self._lmdb_envs())
        return version, txns, tuple(self._files())

    def content(self) -> dict[str, str]:
        """Per table / LMDB environment / file listing: a hash of its content."""
        out: dict[str, str] = {}
        conn = self._conn()
        if conn is not None:
            conn.execute("BEGIN")
            try:
                tables = [
                    r[0]
                    for r in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"
                    )
                ]
                for table in tables:
                    digest = hashlib.sha256()
                    for row in conn.execute(f'SELECT * FROM "{table}" ORDER BY 1'):
                        digest.update(repr(row).encode())
                    out[f"table:{table}"] = digest.hexdigest()
            finally:
                conn.execute("COMMIT")
        for path, env in self._lmdb.items():
            digest = hashlib.sha256()
            with env.begin() as txn:
                for key, value in txn.cursor():
                    digest.update(key + b"\0" + bytes(value))
            out[f"lmdb:{path.name}"] = digest.hexdigest()
        out["files"] = hashlib.sha256(repr(self._files()).encode()).hexdigest()
        return out

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
        for env in self._lmdb.values():
            env.close()


def object_listing(suite: RunningSuite) -> dict[str, str]:
    """Every object of every bucket with its etag and size."""
    from urllib.parse import urlparse

    from minio import Minio

    endpoint = suite.state.s3_endpoint
    url = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
    client = Minio(
        url.netloc,
        access_key=suite.creds.s3_access_key,
        secret_key=suite.creds.s3_secret_key,
        secure=url.scheme == "https",
    )
    out = {}
    for bucket in client.list_buckets():
        for obj in client.list_objects(bucket.name, recursive=True):
            out[f"{bucket.name}/{obj.object_name}"] = f"{obj.etag}:{obj.size}"
    return out


# -- one call ----------------------------------------------------------------------------------


def call(
    channel: grpc.Channel, method: MethodDescriptor, request: bytes, token: str | None
) -> tuple[grpc.StatusCode, str, bytes | None]:
    """``method`` with the serialized ``request`` (sent once on a request stream); the status,
    its details and the first response's bytes."""
    metadata = [("authorization", f"Bearer {token}")] if token else []
    path = method_path(method)
    kw: dict[str, Any] = {"metadata": metadata, "timeout": CALL_TIMEOUT_S}
    raw: dict[str, Any] = {"request_serializer": None, "response_deserializer": None}
    response: bytes | None = None
    try:
        if method.client_streaming and method.server_streaming:
            stream = channel.stream_stream(path, **raw)(iter([request]), **kw)
            response = next(stream, None)
            stream.cancel()
        elif method.client_streaming:
            response = channel.stream_unary(path, **raw)(iter([request]), **kw)
        elif method.server_streaming:
            responses = channel.unary_stream(path, **raw)(request, **kw)
            response = next(responses, None)
            responses.cancel()
        else:
            response = channel.unary_unary(path, **raw)(request, **kw)
    except grpc.RpcError as err:
        code = err.code()  # type: ignore[attr-defined]
        if code == grpc.StatusCode.CANCELLED and method.server_streaming:
            return grpc.StatusCode.OK, "", response
        return code, err.details() or "", None  # type: ignore[attr-defined]
    return grpc.StatusCode.OK, "", response


def _refused_before_auth(code: grpc.StatusCode, details: str) -> bool:
    """A call without a token is refused UNAUTHENTICATED, or, when it is larger than the
    server takes, RESOURCE_EXHAUSTED by the transport before any interceptor runs."""
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return True
    return code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details.lower()


def _find_id(message: Message, names: set[str]) -> tuple[str, str] | None:
    for desc, value in message.ListFields():
        if desc.name in names and isinstance(value, str) and value:
            return desc.name, value
        if desc.type == FieldDescriptor.TYPE_MESSAGE and desc.label != desc.LABEL_REPEATED:
            found = _find_id(value, names)
            if found:
                return found
    return None


def cancel_started(
    channel: grpc.Channel, method: MethodDescriptor, response: bytes | None, token: str
) -> bool:
    """Cancel what a successful ``Submit…`` started (the service's ``Cancel…`` method taking
    the same id field). True when a cancel was sent."""
    if response is None or not method.name.startswith("Submit"):
        return False
    cancels = [m for m in method.containing_service.methods if m.name.startswith("Cancel")]
    id_fields = {f.name for m in cancels for f in m.input_type.fields if f.name.endswith("_id")}
    out = message_factory.GetMessageClass(method.output_type)()
    try:
        out.ParseFromString(response)
    except DecodeError:
        return False
    found = _find_id(out, id_fields)
    if found is None:
        return False
    name, value = found
    for cancel in cancels:
        if name in cancel.input_type.fields_by_name:
            request = message_factory.GetMessageClass(cancel.input_type)(**{name: value})
            call(channel, cancel, request.SerializeToString(), token)
            return True
    return False


# -- the campaign ------------------------------------------------------------------------------


@dataclass
class MethodReport:
    method: str
    cases: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    internal: list[str] = field(default_factory=list)  # INTERNAL/UNKNOWN answers and crashes
    store_changed: list[str] = field(default_factory=list)  # failed calls that changed a store
    unauthenticated_missing: list[str] = field(default_factory=list)  # no token, not refused
    jobs_cancelled: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "codes": dict(self.codes),
            "internal": self.internal[:5],
            "internal_count": len(self.internal),
            "store_changed": self.store_changed[:5],
            "store_changed_count": len(self.store_changed),
            "unauthenticated_missing": len(self.unauthenticated_missing),
            "jobs_cancelled": self.jobs_cancelled,
            "seconds": round(self.seconds, 1),
        }


def serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
        except grpc.RpcError:
            return False
    return response.status == health_pb2.HealthCheckResponse.SERVING


def served_addresses(suite: RunningSuite) -> dict[str, tuple[str, str]]:
    """service full name -> (suite process name, address) of the server that lists it."""
    out: dict[str, tuple[str, str]] = {}
    for name, address in suite.servers():
        methods = suite.methods(address)
        if not methods and name.endswith(":read"):
            # The native reader has no reflection: it serves the reads (already listed by its
            # data service) and its own stats contract.
            methods = list(
                online_reader_service_pb2.DESCRIPTOR.services_by_name["OnlineReaderService"].methods
            )
        for method in methods:
            out.setdefault(method.containing_service.full_name, (name.split(":")[0], address))
    return out


class Campaign:
    """Fuzzes methods one at a time against ``suite``; reports per method."""

    def __init__(self, suite: RunningSuite, *, seeded: bool) -> None:
        self.suite = suite
        self.seeded = seeded
        self.served = served_addresses(suite)
        self.stores: dict[str, ServiceStores] = {}
        self.token = suite.creds.admin_token

    def _stores(self, process: str) -> ServiceStores:
        if process not in self.stores:
            self.stores[process] = ServiceStores(self.suite.data_dir / process)
        return self.stores[process]

    def _settle(self, stores: ServiceStores) -> tuple:
        """The fingerprint once it stopped moving for :data:`SETTLE_QUIET_S` (a cancelled
        job's last writes: its runner notices the cancel on its next poll)."""
        deadline = time.monotonic() + SETTLE_S
        last, quiet_since = stores.fingerprint(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = stores.fingerprint()
            if now != last:
                last, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= SETTLE_QUIET_S:
                break
        return last

    def fuzz(self, method: MethodDescriptor, examples: int) -> MethodReport:
        service = method.containing_service.full_name
        report = MethodReport(method_path(method))
        if service not in self.served:
            report.internal.append(f"{service} is in the contracts but no server lists it")
            return report
        process, address = self.served[service]
        stores = self._stores(process)
        state = {"fp": stores.fingerprint(), "content": stores.content()}
        objects = {"before": object_listing(self.suite), "succeeded": False, "n": 0}
        started = time.monotonic()

        def check_objects() -> None:
            now = object_listing(self.suite)
            if now != objects["before"] and not objects["succeeded"]:
                added = sorted(set(now) - set(objects["before"]))[:3]
                removed = sorted(set(objects["before"]) - set(now))[:3]
                report.store_changed.append(f"object store: +{added} -{removed}")
            objects.update(before=now, succeeded=False, n=0)

        with grpc.insecure_channel(address) as channel:

            def one(request: bytes) -> None:
                n = report.cases
                token = None if n % NO_TOKEN_EVERY == NO_TOKEN_EVERY - 1 else self.token
                code, details, response = call(channel, method, request, token)
                report.cases += 1
                report.codes[code.name] += 1
                if code in FAILURES:
                    report.internal.append(f"{code.name} {details!r} for {request[:200]!r}")
                if token is None and not _refused_before_auth(code, details):
                    report.unauthenticated_missing.append(f"{code.name} {details!r}")
                ok = code == grpc.StatusCode.OK
                if ok and token is not None and cancel_started(channel, method, response, token):
                    report.jobs_cancelled += 1
                    fp = self._settle(stores)
                else:
                    fp = stores.fingerprint()
                if fp != state["fp"]:
                    content = stores.content()
                    if not ok and content != state["content"]:
                        changed = sorted(
                            k for k in content if content[k] != state["content"].get(k)
                        )
                        report.store_changed.append(
                            f"{code.name} changed {changed} for {request[:120]!r}"
                        )
                    state.update(fp=fp, content=content)
                objects["succeeded"] = bool(objects["succeeded"]) or ok
                objects["n"] = int(objects["n"]) + 1
                if int(objects["n"]) >= OBJECT_CHUNK:
                    check_objects()

            run: Callable[[], None] = settings(
                max_examples=examples,
                derandomize=self.seeded,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(given(wire_bytes(method.input_type))(one))
            run()
        check_objects()
        if not serving(address):
            report.internal.append(f"{address} stopped serving after {report.method}")
        report.seconds = time.monotonic() - started
        return report

    def close(self) -> None:
        for stores in self.stores.values():
            stores.close()


def summary(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The campaign's figures from :meth:`MethodReport.as_dict` of every method fuzzed."""
    codes: Counter[str] = Counter()
    for r in reports:
        codes.update(r["codes"])
    return {
        "fuzz_rpcs": len(reports),
        "fuzz_cases": sum(r["cases"] for r in reports),
        "fuzz_internal": sum(r["internal_count"] for r in reports),
        "fuzz_store_changed_on_failure": sum(r["store_changed_count"] for r in reports),
        "fuzz_unauthenticated_missing": sum(r["unauthenticated_missing"] for r in reports),
        "fuzz_jobs_cancelled": sum(r["jobs_cancelled"] for r in reports),
        "fuzz_codes": dict(codes),
        "fuzz_per_rpc": {r["method"]: r for r in reports},
    }


def run_shard(data_dir: Path, services: list[str], per_rpc: int, seeded: bool) -> list[dict]:
    """One suite in ``data_dir``; every method of ``services`` (package prefixes such as
    ``atlas.data.``) fuzzed ``per_rpc`` times. For a campaign split over processes."""
    from tests.support.suite import running_suite

    methods = [m for m in contract_methods() if any(m.full_name.startswith(s) for s in services)]
    out = []
    with running_suite(data_dir) as suite:
        campaign = Campaign(suite, seeded=seeded)
        try:
            for method in methods:
                report = campaign.fuzz(method, per_rpc)
                out.append({"method": report.method, **report.as_dict()})
        finally:
            campaign.close()
    return out
