"""gRPC errors (as the domain errors the typed clients raise) -> what a person sees.

One table for both web apps: a status code, a title, and the service's own message (which
names what to fix). Apps add friendlier texts for particular ``reason`` values (e.g. an
expired lease). Unexpected errors show a generic text; their detail goes to the log once.
"""

from __future__ import annotations

from dataclasses import dataclass

from atlas_core.errors import AtlasError, Code


@dataclass(frozen=True)
class ErrorPage:
    status: int
    title: str
    message: str
    reason: str
    code: str


_BY_CODE: dict[Code, tuple[int, str]] = {
    Code.INVALID_ARGUMENT: (400, "That was not accepted"),
    Code.NOT_FOUND: (404, "Not found"),
    Code.ALREADY_EXISTS: (409, "Already exists"),
    Code.FAILED_PRECONDITION: (409, "Not possible now"),
    Code.ABORTED: (409, "Changed meanwhile; reload and try again"),
    Code.RESOURCE_EXHAUSTED: (429, "Too many requests"),
    Code.UNAUTHENTICATED: (401, "Please sign in"),
    Code.PERMISSION_DENIED: (403, "Not allowed"),
    Code.UNAVAILABLE: (503, "Service unavailable"),
    Code.DEADLINE_EXCEEDED: (504, "The service did not answer in time"),
    Code.CANCELLED: (499, "Cancelled"),
}
# Codes whose server message may describe internals: people get a generic text instead.
_GENERIC = {Code.INTERNAL, Code.DATA_LOSS}


def error_page(error: AtlasError, reason_messages: dict[str, str] | None = None) -> ErrorPage:
    """How to show ``error``; ``reason_messages`` overrides the message for some reasons."""
    status, title = _BY_CODE.get(error.code, (500, "Something went wrong"))
    if error.code in _GENERIC:
        message = "The service failed to answer this request. Try again; if it persists, "
        message += "ask an administrator to look at the service logs."
    else:
        message = error.message
    if reason_messages and error.reason in reason_messages:
        message = reason_messages[error.reason]
    return ErrorPage(status, title, message, error.reason, error.code.value)
