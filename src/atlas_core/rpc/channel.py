"""Client channels: bearer token + request id on every call, TLS/mTLS when configured,
client-side round_robin load balancing over several replicas, message limits."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc import aio
from pydantic import SecretStr

from atlas_core.config import StrictModel
from atlas_core.log import request_id_var
from atlas_core.rpc.wrapping import REQUEST_ID_KEY
from atlas_core.secret_files import read_private


class ClientSettings(StrictModel):
    """How to reach a service. ``target`` may list several ``host:port`` replicas, comma
    separated: calls are then balanced round-robin, skipping replicas that fail health."""

    target: str
    token: SecretStr | None = None
    ca_file: Path | None = None  # TLS when set
    cert_file: Path | None = None  # mTLS client certificate
    key_file: Path | None = None
    server_name_override: str | None = None
    max_message_bytes: int = 64 * 1024 * 1024
    # Data service only: an OnlineFeatureService endpoint (the native online reader) for
    # online reads; every other call goes to ``target``.
    read_target: str | None = None


def _call_metadata(token: str | None) -> list[tuple[str, str]]:
    metadata = [(REQUEST_ID_KEY, request_id_var.get() or uuid.uuid4().hex[:16])]
    if token:
        metadata.append(("authorization", f"Bearer {token}"))
    return metadata


class _AioAuthBase:
    def __init__(self, token: str | None) -> None:
        self._token = token

    def _details(self, details: aio.ClientCallDetails) -> aio.ClientCallDetails:
        metadata = aio.Metadata(*(details.metadata or ()))
        for key, value in _call_metadata(self._token):
            metadata.add(key, value)
        return aio.ClientCallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
        )


# grpc.aio files each interceptor under the first call type it matches (an elif chain), so
# one object implementing all four would only ever see unary-unary calls: one class per type.
class _AioAuthUU(_AioAuthBase, aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, details, request):
        return await continuation(self._details(details), request)


class _AioAuthUS(_AioAuthBase, aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, details, request):
        return await continuation(self._details(details), request)


class _AioAuthSU(_AioAuthBase, aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, details, request_iterator):
        return await continuation(self._details(details), request_iterator)


class _AioAuthSS(_AioAuthBase, aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, details, request_iterator):
        return await continuation(self._details(details), request_iterator)


class _SyncAuth(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, token: str | None) -> None:
        self._token = token

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _SyncDetails(
            details.method,
            details.timeout,
            list(details.metadata or []) + _call_metadata(self._token),
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


class _SyncDetails(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


_ROUND_ROBIN: list[tuple[str, Any]] = [
    ("grpc.lb_policy_name", "round_robin"),
    (
        "grpc.service_config",
        '{"loadBalancingConfig":[{"round_robin":{}}],"healthCheckConfig":{"serviceName":""}}',
    ),
]

# Schemes whose target lists its addresses itself: nothing is resolved, one address stays one.
_LITERAL_SCHEMES = ("ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")


def _resolves_by_name(target: str) -> bool:
    """Whether gRPC resolves ``target`` through DNS: a ``dns:`` target, or a bare
    ``host:port`` whose host is a name rather than an IP address literal."""
    if target.startswith("dns:"):
        return True
    if target.startswith(_LITERAL_SCHEMES):
        return False
    if target.startswith("["):  # [v6]:port
        host = target[1 : target.find("]")]
    else:  # v4:port, name:port, or a bare v6 address
        host = target.rsplit(":", 1)[0] if target.count(":") == 1 else target
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return True
    return False


def _target_and_options(settings: ClientSettings) -> tuple[str, list[tuple[str, Any]]]:
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
    ]
    addresses = [a.strip() for a in settings.target.split(",") if a.strip()]
    if len(addresses) > 1:
        # ipv4: scheme lists every replica; round_robin keeps a subchannel per replica and
        # routes around the ones whose health check fails.
        target = "ipv4:" + ",".join(addresses)
        options += _ROUND_ROBIN
    else:
        target = addresses[0]
        if _resolves_by_name(target):
            # A name may stand for several replicas (a headless Service's DNS answers with
            # every ready pod): gRPC's default pick_first would send every call to one of them.
            options += _ROUND_ROBIN
    if settings.server_name_override:
        options.append(("grpc.ssl_target_name_override", settings.server_name_override))
    return target, options


def _credentials(settings: ClientSettings) -> grpc.ChannelCredentials | None:
    if settings.ca_file is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=settings.ca_file.read_bytes(),
        private_key=read_private(settings.key_file, "key_file") if settings.key_file else None,
        certificate_chain=settings.cert_file.read_bytes() if settings.cert_file else None,
    )


def _token(settings: ClientSettings) -> str | None:
    return settings.token.get_secret_value() if settings.token else None


def connect(settings: ClientSettings) -> aio.Channel:
    """An asyncio channel to ``settings.target`` (call inside a running event loop)."""
    target, options = _target_and_options(settings)
    token = _token(settings)
    interceptors: Sequence[Any] = [
        cls(token) for cls in (_AioAuthUU, _AioAuthUS, _AioAuthSU, _AioAuthSS)
    ]
    creds = _credentials(settings)
    if creds is not None:
        return aio.secure_channel(target, creds, options=options, interceptors=interceptors)
    return aio.insecure_channel(target, options=options, interceptors=interceptors)


def connect_sync(settings: ClientSettings) -> grpc.Channel:
    """A blocking channel (CLI, notebooks, worker subprocesses)."""
    target, options = _target_and_options(settings)
    creds = _credentials(settings)
    channel = (
        grpc.secure_channel(target, creds, options=options)
        if creds is not None
        else grpc.insecure_channel(target, options=options)
    )
    return grpc.intercept_channel(channel, _SyncAuth(_token(settings)))
