"""Two serving replicas (`python -m atlas_serving` subprocesses sharing one metadata DB and
the object store); the Python client balances round-robin over them with health checks, so
both serve traffic (each replica's own Prometheus counter says so). One replica is killed
under load: at most 1% of client requests fail."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.clients.serving import ServingClient, variant
from atlas_core.config import S3Settings
from atlas_core.errors import AtlasError
from atlas_core.rpc import ClientSettings
from tests.support.signing import signing_settings

from ..grpc.serving.conftest import breast_cancer, write_model

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "replica-test-token-0123"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _replica(
    tmp: Path, s3: S3Settings, i: int, port: int, metrics_port: int
) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [
                str(ROOT / "services" / "serving"),
                str(ROOT / "src"),
                os.environ.get("PYTHONPATH", ""),
            ]
        ),
        ATLAS_SERVING_SERVER__PORT=str(port),
        ATLAS_SERVING_SERVER__METRICS_PORT=str(metrics_port),
        ATLAS_SERVING_SERVER__LOG_LEVEL="WARNING",
        ATLAS_SERVING_SERVER__AUTH__TOKENS=json.dumps({TOKEN: ["*"]}),
        ATLAS_SERVING_S3__ENDPOINT=s3.endpoint,
        ATLAS_SERVING_S3__BUCKET=s3.bucket,
        ATLAS_SERVING_S3__ACCESS_KEY=s3.access_key.get_secret_value(),
        ATLAS_SERVING_S3__SECRET_KEY=s3.secret_key.get_secret_value(),
        ATLAS_SERVING_DATABASE__URL=f"sqlite:///{tmp / 'serving.db'}",
        ATLAS_SERVING_DATA_DIR=str(tmp / f"replica-{i}"),
        # write_model signs with the test key
        ATLAS_SERVING_BUNDLES__TRUSTED_KEYS=json.dumps(
            [str(p) for p in signing_settings(tmp).trusted_keys]
        ),
        ATLAS_SERVING_RUNTIME__REPLICA_ID=f"replica-{i}",
        ATLAS_SERVING_RUNTIME__POLL_SECONDS="0.1",
        ATLAS_SERVING_JOBS__RUNNER_ID=f"replica-{i}",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "atlas_serving"],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@dataclass
class Replicas:
    procs: list[subprocess.Popen[bytes]]
    target: str  # both gRPC addresses, comma-separated (the client balances over them)
    metrics_ports: list[int]


@pytest.fixture
def replicas(tmp_path: Path, s3_settings: S3Settings) -> Iterator[Replicas]:
    ports = [_free_port(), _free_port()]
    metrics_ports = [_free_port(), _free_port()]
    # the first replica migrates the DB before the second starts on it
    procs = [_replica(tmp_path, s3_settings, 0, ports[0], metrics_ports[0])]
    try:
        _wait_healthy(f"127.0.0.1:{ports[0]}")
        procs.append(_replica(tmp_path, s3_settings, 1, ports[1], metrics_ports[1]))
        _wait_healthy(f"127.0.0.1:{ports[1]}")
        yield Replicas(procs, ",".join(f"127.0.0.1:{p}" for p in ports), metrics_ports)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_healthy(address: str, timeout: float = 60) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    end = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < end:
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                time.sleep(0.2)
    raise AssertionError(f"replica {address} did not become healthy")


def _served(metrics_port: int) -> float:
    """Rows one replica answered OK on endpoint bc, from its own /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "atlas_serving_requests_total"
        and sample.labels.get("endpoint") == "bc"
        and sample.labels.get("code") == "OK"
    )


@pytest.mark.slow
def test_replica_killed_under_load(replicas: Replicas, s3_settings: S3Settings) -> None:
    procs, target = replicas.procs, replicas.target
    client = ServingClient(ClientSettings(target=target, token=SecretStr(TOKEN)), timeout=10)
    try:
        ref = write_model(s3_settings, "models/bc/replicas.tar")
        client.register("bc", ref.uri)
        client.create_endpoint(
            pb.EndpointSpec(name="bc", variants=[variant("blue", "bc", version=1)])
        )
        time.sleep(0.5)  # the other replica converges (0.1 s poll)
        rows = breast_cancer()[0].iloc[:32].to_dict("records")
        for r in rows[:4]:  # both replicas load the model
            client.predict("bc", r)
        counts = {"ok": 0, "failed": 0}
        lock = threading.Lock()
        stop = threading.Event()

        def load(k: int) -> None:
            i = k
            while not stop.is_set():
                try:
                    client.predict("bc", rows[i % len(rows)], timeout=5)
                    key = "ok"
                except AtlasError:
                    key = "failed"
                with lock:
                    counts[key] += 1
                i += 1

        threads = [threading.Thread(target=load, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        # Both replicas served the load, about evenly (round-robin), before one goes away.
        served = [_served(port) for port in replicas.metrics_ports]
        assert all(n > 0 for n in served), served
        assert min(served) / sum(served) >= 0.25, served
        procs[1].kill()  # no graceful shutdown: in-flight requests on it are lost
        time.sleep(3.0)
        stop.set()
        for t in threads:
            t.join()
        total = counts["ok"] + counts["failed"]
        assert total > 200, counts
        assert counts["failed"] / total <= 0.01, counts
        assert procs[0].poll() is None
    finally:
        client.close()
