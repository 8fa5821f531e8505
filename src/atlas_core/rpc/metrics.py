"""Prometheus metrics for RPCs, one registry per server (so tests can run many servers)."""

from __future__ import annotations

from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class RpcMetrics:
    """Requests, errors and latency per method, labelled by gRPC method and status code."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "atlas_grpc_requests", "RPCs handled", ["method", "code"], registry=self.registry
        )
        self.errors = Counter(
            "atlas_grpc_errors",
            "RPCs that ended with a non-OK status",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "atlas_grpc_latency_seconds",
            "RPC handling time",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._http_server: WSGIServer | None = None

    def success_observer(self, method: str) -> Callable[[float], None]:
        """A fast path for OK calls of one method: label lookups done once, not per call."""
        ok = self.requests.labels(method, "OK")
        latency = self.latency.labels(method)

        def observe_ok(seconds: float) -> None:
            ok.inc()
            latency.observe(seconds)

        return observe_ok

    def observe(self, method: str, code: str, seconds: float) -> None:
        self.requests.labels(method, code).inc()
        self.latency.labels(method).observe(seconds)
        if code != "OK":
            self.errors.labels(method, code).inc()

    def serve_http(self, host: str, port: int) -> int:
        """Expose ``/metrics`` over HTTP; returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._http_server = server
        return int(server.server_address[1])

    def close(self) -> None:
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_server = None
