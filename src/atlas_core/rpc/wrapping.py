"""One wrapper that applies auth, request ids, metrics and error mapping to every handler.

Handlers are wrapped once, when they are registered, not per call by a grpc.aio server
interceptor: an interceptor costs every call an ``intercept_service`` coroutine and a
continuation lookup, a visible share of a small RPC's server CPU (measured in
docs/experiments/serving-throughput.md). A call pays one extra coroutine frame, not one per
concern.
"""

from __future__ import annotations

import inspect
import logging
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc import aio

from atlas_core.errors import AtlasError, InvalidArgument, ResourceExhausted
from atlas_core.log import request_id_var
from atlas_core.rpc.auth import TokenAuthenticator
from atlas_core.rpc.metrics import RpcMetrics
from atlas_core.rpc.status import grpc_code, status_trailers

log = logging.getLogger("atlas.rpc")

REQUEST_ID_KEY = "x-request-id"


def _metadata_value(metadata: Any, key: str) -> str | None:
    for item in metadata or ():
        if item[0] == key:
            value = item[1]
            return value.decode() if isinstance(value, bytes) else value
    return None


class _Undecodable:
    """A request whose bytes did not parse. grpc answers INTERNAL when a deserializer raises;
    the wrapper refuses these as INVALID_ARGUMENT instead (bad input, not a server fault)."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error

    def refuse(self) -> InvalidArgument:
        return InvalidArgument(
            f"the request is not a valid message: {self.error}", reason="MALFORMED_REQUEST"
        )


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as exc:  # noqa: BLE001 - DecodeError, or whatever a parser raises
            return _Undecodable(str(exc) or type(exc).__name__)

    return parse


async def _checked(requests: Any) -> Any:
    """The request stream, refusing the first message that did not parse."""
    async for request in requests:
        if type(request) is _Undecodable:
            raise request.refuse()
        yield request


class WrappingRegistrar:
    """Stands in for the aio server while services register (generated
    ``add_*_to_server``, health, reflection) and wraps each handler on its way in."""

    def __init__(
        self, server: aio.Server, authenticator: TokenAuthenticator, metrics: RpcMetrics
    ) -> None:
        self._server = server
        self._auth = authenticator
        self._metrics = metrics

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_WrappedGenericHandler(h, self.wrap) for h in handlers)
        )

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self._server.add_registered_method_handlers(
            service, {name: self.wrap(f"/{service}/{name}", h) for name, h in handlers.items()}
        )

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary:
            fn, factory = handler.unary_unary, grpc.unary_unary_rpc_method_handler
        elif handler.unary_stream:
            fn, factory = handler.unary_stream, grpc.unary_stream_rpc_method_handler
        elif handler.stream_unary:
            fn, factory = handler.stream_unary, grpc.stream_unary_rpc_method_handler
        else:
            fn, factory = handler.stream_stream, grpc.stream_stream_rpc_method_handler
        streaming_in = bool(handler.request_streaming)
        behavior = (
            self._wrap_stream_out(method, fn, streaming_in)
            if inspect.isasyncgenfunction(fn)
            else self._wrap_unary_out(method, fn, streaming_in)
        )
        return factory(
            behavior,
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    def _begin(
        self, method: str, context: aio.ServicerContext, request: Any, streaming_in: bool
    ) -> Any:
        """Authenticate the call; the request (stream) to hand to the servicer."""
        metadata = context.invocation_metadata()
        rid = _metadata_value(metadata, REQUEST_ID_KEY) or uuid.uuid4().hex[:16]
        request_id_var.set(rid)
        self._auth.authenticate(_metadata_value(metadata, "authorization"), method)
        if streaming_in:
            return _checked(request)
        if type(request) is _Undecodable:
            raise request.refuse()
        return request

    async def _fail(
        self, method: str, context: aio.ServicerContext, exc: BaseException, started: float
    ) -> None:
        if "sqlalchemy" in sys.modules and not isinstance(exc, AtlasError):
            from atlas_core.db import database_unavailable

            exc = database_unavailable(exc) or exc  # a database outage is retryable
        if isinstance(exc, AtlasError):
            code = grpc_code(exc)
            self._metrics.observe(method, code.name, time.perf_counter() - started)
            log.warning(
                "rpc failed",
                extra={
                    "method": method,
                    "code": code.name,
                    "reason": exc.reason,
                    "error": exc.message,
                },
            )
            await context.abort(code, exc.message, trailing_metadata=status_trailers(exc))
        rid = request_id_var.get()
        log.error("unexpected error in %s", method, exc_info=exc)
        self._metrics.observe(method, "INTERNAL", time.perf_counter() - started)
        await context.abort(
            grpc.StatusCode.INTERNAL, f"internal error; see server logs for request id {rid}"
        )

    def _aborted(self, method: str, context: aio.ServicerContext, started: float) -> None:
        code = context.code()
        name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
        self._metrics.observe(method, name, time.perf_counter() - started)

    def _wrap_unary_out(
        self, method: str, fn: Callable[..., Any], streaming_in: bool
    ) -> Callable[..., Any]:
        debug = log.isEnabledFor(logging.DEBUG)
        observe_ok = self._metrics.success_observer(method)

        async def behavior(request_or_iterator: Any, context: aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                request = self._begin(method, context, request_or_iterator, streaming_in)
                response = await fn(request, context)
            except aio.AbortError:
                self._aborted(method, context, started)
                raise
            except MemoryError:
                await self._fail(
                    method, context, ResourceExhausted("server out of memory"), started
                )
            except Exception as exc:  # noqa: BLE001 - the one place that maps everything
                await self._fail(method, context, exc, started)
            observe_ok(time.perf_counter() - started)
            if debug:
                log.debug("rpc ok", extra={"method": method})
            return response

        return behavior

    def _wrap_stream_out(
        self, method: str, fn: Callable[..., Any], streaming_in: bool
    ) -> Callable[..., Any]:
        observe_ok = self._metrics.success_observer(method)

        async def behavior(request_or_iterator: Any, context: aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                request = self._begin(method, context, request_or_iterator, streaming_in)
                async for response in fn(request, context):
                    yield response
            except aio.AbortError:
                self._aborted(method, context, started)
                raise
            except Exception as exc:  # noqa: BLE001
                await self._fail(method, context, exc, started)
            observe_ok(time.perf_counter() - started)

        return behavior


class _WrappedGenericHandler(grpc.GenericRpcHandler):
    """A generic handler (reflection, anything without registered methods) whose handlers
    are wrapped on first use, then served from a dict."""

    def __init__(
        self,
        inner: grpc.GenericRpcHandler,
        wrap: Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler],
    ) -> None:
        self._inner = inner
        self._wrap = wrap
        self._cache: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method
        wrapped = self._cache.get(method)
        if wrapped is None:
            handler = self._inner.service(details)
            if handler is None:
                return None
            wrapped = self._cache[method] = self._wrap(method, handler)
        return wrapped
