"""Domain errors that know their gRPC status code and a stable reason.

Domain code raises these (it never imports grpc); one server-side handler wrapper turns them into
status + ``google.rpc.ErrorInfo`` and the client channel helper maps them back through
:data:`ERRORS_BY_CODE`. ``reason`` is a stable UPPER_SNAKE identifier that callers may switch
on; ``message`` says what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

ERROR_DOMAIN = "atlas.dev"


class Code(str, Enum):
    """The subset of gRPC status codes the platform returns (names match grpc.StatusCode)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    ABORTED = "ABORTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    DATA_LOSS = "DATA_LOSS"
    CANCELLED = "CANCELLED"
    INTERNAL = "INTERNAL"


# Metadata key naming the dotted setting an error is about (e.g. ``database.url``): a
# service that cannot start names that setting's environment variable in its one line.
SETTING = "setting"


class AtlasError(Exception):
    """Base of every domain error. Subclasses fix ``code`` and a default ``reason``."""

    code: Code = Code.INTERNAL
    default_reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = {k: str(v) for k, v in (metadata or {}).items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason}: {self.message})"


class InvalidArgument(AtlasError):
    code = Code.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"


class NotFound(AtlasError):
    code = Code.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExists(AtlasError):
    code = Code.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(AtlasError):
    code = Code.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class ResourceExhausted(AtlasError):
    code = Code.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


class Unauthenticated(AtlasError):
    code = Code.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(AtlasError):
    code = Code.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class Aborted(AtlasError):
    code = Code.ABORTED
    default_reason = "ABORTED"


class Unavailable(AtlasError):
    code = Code.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class DeadlineExceeded(AtlasError):
    code = Code.DEADLINE_EXCEEDED
    default_reason = "DEADLINE_EXCEEDED"


class DataLoss(AtlasError):
    """Stored bytes do not match their recorded checksum or size."""

    code = Code.DATA_LOSS
    default_reason = "CHECKSUM_MISMATCH"


class Cancelled(AtlasError):
    code = Code.CANCELLED
    default_reason = "CANCELLED"


class Internal(AtlasError):
    code = Code.INTERNAL
    default_reason = "INTERNAL"


class ConfigError(InvalidArgument):
    """Configuration is malformed; the message names the offending key."""

    default_reason = "INVALID_CONFIG"


ERRORS_BY_CODE: dict[Code, type[AtlasError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        ResourceExhausted,
        Unauthenticated,
        PermissionDenied,
        Aborted,
        Unavailable,
        DeadlineExceeded,
        DataLoss,
        Cancelled,
        Internal,
    )
}
