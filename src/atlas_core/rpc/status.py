"""The one mapping between domain errors and gRPC statuses, for both sides of a call."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from atlas_core.errors import ERROR_DOMAIN, ERRORS_BY_CODE, AtlasError, Code, Internal

STATUS_DETAILS_KEY = "grpc-status-details-bin"


def grpc_code(error: AtlasError) -> grpc.StatusCode:
    return grpc.StatusCode[error.code.value]


def status_trailers(error: AtlasError) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata carrying google.rpc.Status with an ErrorInfo detail."""
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(
        code=grpc_code(error).value[0], message=error.message, details=[detail]
    )
    return ((STATUS_DETAILS_KEY, status.SerializeToString()),)


def error_from_rpc(exc: grpc.RpcError) -> AtlasError:
    """Rebuild the domain error a server raised (static table; never imports by name)."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    message = exc.details() if hasattr(exc, "details") else str(exc)
    reason = None
    metadata: dict[str, str] = {}
    try:
        status = rpc_status.from_call(exc)
    except (ValueError, AttributeError):
        status = None
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reason, metadata = info.reason, dict(info.metadata)
    try:
        cls = ERRORS_BY_CODE[Code(code.name)]
    except (ValueError, KeyError):
        cls = Internal
    err = cls(message or code.name, reason=reason or code.name, metadata=metadata)
    err.__cause__ = exc
    return err
