"""The one server factory: every ATLAS server gets health, reflection, metrics, auth, error
mapping, JSON logs with request ids, message limits, TLS when configured and graceful shutdown.

Only services whose implementation exists are registered: a server never answers
UNIMPLEMENTED for a service we left empty.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from atlas_core.config import ServerSettings, TlsSettings
from atlas_core.errors import ConfigError
from atlas_core.rpc.auth import TokenAuthenticator
from atlas_core.rpc.metrics import RpcMetrics
from atlas_core.rpc.wrapping import WrappingRegistrar
from atlas_core.secret_files import read_private

log = logging.getLogger("atlas.server")


@dataclass(frozen=True)
class ServiceDef:
    """A servicer plus the generated ``add_<Name>Servicer_to_server`` and its full name."""

    servicer: Any
    add_to_server: Callable[[Any, Any], None]
    full_name: str
    # Called once the server is listening (e.g. to add the service's metrics to
    # ``server.metrics.registry``). Sync or async.
    on_start: Callable[[AtlasServer], Any] | None = None
    # Called after the server has drained: release stores, stop runners and loops. A plain
    # function runs in a worker thread; a coroutine function is awaited.
    on_stop: Callable[[], Any] | None = None


async def _call(fn: Callable[..., Any], *args: Any) -> None:
    if inspect.iscoroutinefunction(fn):
        await fn(*args)
    else:
        await asyncio.to_thread(fn, *args)


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials | None:
    if not tls.enabled:
        return None
    assert tls.key_file is not None and tls.cert_file is not None  # what `enabled` means
    key = read_private(tls.key_file, "server.tls.key_file")
    try:
        cert = tls.cert_file.read_bytes()
        ca = tls.client_ca_file.read_bytes() if tls.client_ca_file else None
    except OSError as exc:
        raise ConfigError(f"cannot read TLS file {exc.filename}: {exc.strerror}") from None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


class AtlasServer:
    """A started-on-demand grpc.aio server; see :func:`create_server`."""

    def __init__(
        self,
        settings: ServerSettings,
        services: Sequence[ServiceDef],
        *,
        authenticator: TokenAuthenticator | None = None,
    ) -> None:
        self.settings = settings
        self.services = list(services)
        self.metrics = RpcMetrics()
        self.health = health.aio.HealthServicer()
        auth = authenticator or TokenAuthenticator.from_settings(settings.auth)
        options: list[tuple[str, int]] = [
            ("grpc.max_receive_message_length", settings.max_receive_message_bytes),
            ("grpc.max_send_message_length", settings.max_send_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        if settings.max_connection_age_seconds is not None:
            # No age grace limit: a long stream (an ingest, a job watch) runs to its end on the
            # old connection while new calls go over a new one.
            age_ms = int(settings.max_connection_age_seconds * 1000)
            options.append(("grpc.max_connection_age_ms", age_ms))
        self._server = aio.server(options=options)
        registrar = WrappingRegistrar(self._server, auth, self.metrics)
        for svc in self.services:
            svc.add_to_server(svc.servicer, registrar)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, registrar)
        names = [svc.full_name for svc in self.services]
        names += [
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.aio.ReflectionServicer(names), registrar
        )
        self.port: int = 0
        self.metrics_port: int | None = None

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    async def start(self) -> None:
        cfg = self.settings
        bind = f"{cfg.host}:{cfg.port}"
        creds = server_credentials(cfg.tls)
        try:
            self.port = (
                self._server.add_secure_port(bind, creds)
                if creds
                else self._server.add_insecure_port(bind)
            )
        except RuntimeError:
            self.port = 0
        if not self.port:
            raise ConfigError(
                f"cannot listen on {bind}: the port is already in use or the address is not "
                "local; choose another with server.port (0 picks a free one)",
                reason="PORT_IN_USE",
            )
        if cfg.metrics_port is not None:
            try:
                self.metrics_port = self.metrics.serve_http(cfg.host, cfg.metrics_port)
            except OSError as exc:
                raise ConfigError(
                    f"cannot serve metrics on {cfg.host}:{cfg.metrics_port}: {exc.strerror}; "
                    "choose another server.metrics_port",
                    reason="PORT_IN_USE",
                ) from None
        await self._server.start()
        for svc in self.services:
            if svc.on_start is not None:
                await _call(svc.on_start, self)
        for name in ["", *(svc.full_name for svc in self.services)]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "serving",
            extra={
                "address": self.address,
                "metrics_port": self.metrics_port,
                "services": [s.full_name for s in self.services],
                "tls": cfg.tls.enabled,
            },
        )

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, stop accepting calls, let in-flight calls drain for ``grace``."""
        await self.health.enter_graceful_shutdown()
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        await self._server.stop(grace)
        for svc in self.services:
            if svc.on_stop is not None:
                await _call(svc.on_stop)
        self.metrics.close()
        log.info("stopped", extra={"address": self.address})

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()

    async def serve_until_signalled(self) -> None:
        """Start, then run until SIGTERM/SIGINT, then shut down gracefully."""
        await self.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await self.stop()


def create_server(
    settings: ServerSettings,
    services: Sequence[ServiceDef],
    *,
    authenticator: TokenAuthenticator | None = None,
) -> AtlasServer:
    """Build (not start) a server with the platform's standard behaviour."""
    return AtlasServer(settings, services, authenticator=authenticator)
