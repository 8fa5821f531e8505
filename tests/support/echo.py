"""A tiny service for exercising the server factory in tests and benchmarks.

It is registered through a generic handler with the health messages as payloads, so it needs
no contract of its own and is never part of a shipped server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from atlas_core.errors import NotFound
from atlas_core.rpc.server import ServiceDef

SERVICE = "atlas.testing.v1.EchoService"
Req = health_pb2.HealthCheckRequest
Resp = health_pb2.HealthCheckResponse


async def get_echo(request: Any, context: Any) -> Any:
    """Read RPC: echoes ``service`` back as status SERVING."""
    return Resp(status=Resp.SERVING)


async def put_echo(request: Any, context: Any) -> Any:
    """Write RPC."""
    return Resp(status=Resp.SERVING)


async def get_missing(request: Any, context: Any) -> Any:
    raise NotFound(
        f"thing '{request.service}' not found",
        reason="THING_NOT_FOUND",
        metadata={"name": request.service},
    )


async def get_crash(request: Any, context: Any) -> Any:
    raise ValueError("secret internal detail")


async def get_db_down(request: Any, context: Any) -> Any:
    """The metadata database went away (a restart): what SQLAlchemy raises on PostgreSQL."""
    import psycopg
    from sqlalchemy.exc import OperationalError

    raise OperationalError(
        "SELECT 1", {}, psycopg.OperationalError("connection refused (password=s3cret)")
    )


async def get_slow(request: Any, context: Any) -> Any:
    import asyncio

    await asyncio.sleep(float(request.service or "1"))
    return Resp(status=Resp.SERVING)


async def watch_echo(request: Any, context: Any) -> AsyncIterator[Any]:
    for _ in range(3):
        yield Resp(status=Resp.SERVING)
    if request.service == "fail":
        raise NotFound("stream target gone")


def _unary(fn: Any) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=Req.FromString, response_serializer=Resp.SerializeToString
    )


HANDLERS = {
    "GetEcho": _unary(get_echo),
    "PutEcho": _unary(put_echo),
    "GetMissing": _unary(get_missing),
    "GetCrash": _unary(get_crash),
    "GetDbDown": _unary(get_db_down),
    "GetSlow": _unary(get_slow),
    "WatchEcho": grpc.unary_stream_rpc_method_handler(
        watch_echo,
        request_deserializer=Req.FromString,
        response_serializer=Resp.SerializeToString,
    ),
}


def _add(_servicer: Any, server: Any) -> None:
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, HANDLERS),))


def _add_registered(servicer: Any, server: Any) -> None:
    """As generated ``add_*_to_server`` functions do: registered methods take precedence."""
    _add(servicer, server)
    server.add_registered_method_handlers(SERVICE, HANDLERS)


def echo_service(*, registered: bool = False) -> ServiceDef:
    return ServiceDef(
        servicer=None, add_to_server=_add_registered if registered else _add, full_name=SERVICE
    )


def method(name: str) -> str:
    return f"/{SERVICE}/{name}"
