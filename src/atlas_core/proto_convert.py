"""Conversions every servicer needs between atlas.common.v1 messages and shared domain types:
times, pagination, job status, artifact refs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timezone
from enum import Enum
from typing import TypeVar

from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import Message

from atlas.common.v1 import common_pb2
from atlas_core.errors import ERRORS_BY_CODE, InvalidArgument
from atlas_core.jobs import JobRecord, JobState
from atlas_core.storage import ArtifactRef

# -- time ------------------------------------------------------------------------------------


def ts_to_us(ts: timestamp_pb2.Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def us_to_ts(us: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    seconds, micros = divmod(int(us), 1_000_000)
    ts.seconds, ts.nanos = seconds, micros * 1000
    return ts


def dt_to_ts(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(timezone.utc))
    return ts


# Duration's valid range (google/protobuf/duration.proto): about +-10,000 years.
_MAX_DURATION_SECONDS = 315_576_000_000


def ts_datetime(ts: timestamp_pb2.Timestamp, field: str) -> datetime:
    """The UTC datetime of ``ts``; InvalidArgument naming ``field`` when it is outside
    Timestamp's range (years 1-9999) or its nanos are not in [0, 1e9)."""
    try:
        return ts.ToDatetime(tzinfo=timezone.utc)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(
            f"{field} is not a valid timestamp: {exc}", reason="INVALID_TIMESTAMP"
        ) from None


def duration_seconds(value: duration_pb2.Duration, field: str) -> float:
    """Seconds of ``value``; InvalidArgument naming ``field`` when it is not a valid Duration
    (beyond +-10,000 years, or nanos out of range or of the other sign)."""
    seconds, nanos = value.seconds, value.nanos
    if (
        abs(seconds) > _MAX_DURATION_SECONDS
        or abs(nanos) >= 1_000_000_000
        or (seconds and nanos and (seconds > 0) != (nanos > 0))
    ):
        raise InvalidArgument(
            f"{field} is not a valid duration ({seconds} s, {nanos} ns)",
            reason="INVALID_DURATION",
        )
    return seconds + nanos / 1e9


E = TypeVar("E", bound=Enum)


def enum_member(enum: type[E], number: int, field: str) -> E:
    """The member of ``enum`` for a proto enum number; InvalidArgument naming ``field`` for a
    number the contract does not define (proto3 enums accept any int32 on the wire)."""
    try:
        return enum(number)
    except ValueError:
        raise InvalidArgument(
            f"{field} has no value {number}", reason="INVALID_ENUM_VALUE"
        ) from None


def opt_ts_us(message: Message, field: str) -> int | None:
    """Microseconds of an optional Timestamp field, None when unset."""
    if not message.HasField(field):
        return None
    return ts_to_us(getattr(message, field))


# -- artifacts -------------------------------------------------------------------------------


def artifact_to_pb(ref: ArtifactRef, media_type: str = "") -> common_pb2.ArtifactRef:
    return common_pb2.ArtifactRef(
        uri=ref.uri, sha256=ref.sha256, size_bytes=ref.size, media_type=media_type
    )


# -- pagination ------------------------------------------------------------------------------

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
UNKNOWN_TOTAL = -1
# Page tokens are opaque to callers: urlsafe base64 of {"v": version, "o": offset, "c": check}.
# The check binds the offset to the list (its request minus the page) so a token edited by hand
# or taken from another list or filter is refused instead of silently paging something else. It
# is a consistency check, not a secret: tokens carry no data a caller may not see.
_TOKEN_VERSION = 1


def list_scope(request: Message) -> str:
    """What a page token is bound to: the request's type and every field except ``page``."""
    bare = type(request)()
    bare.CopyFrom(request)
    bare.ClearField("page")  # every List request has a page field
    digest = hashlib.sha256(bare.SerializeToString(deterministic=True)).hexdigest()
    return f"{request.DESCRIPTOR.full_name}:{digest}"


def _token_check(offset: int, scope: str) -> str:
    raw = f"atlas.page.v{_TOKEN_VERSION}|{scope}|{offset}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def encode_page_token(offset: int, scope: str = "") -> str:
    body = {"v": _TOKEN_VERSION, "o": offset, "c": _token_check(offset, scope)}
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_page_token(token: str, scope: str = "") -> int:
    """The offset a token stands for. Raises InvalidArgument(BAD_PAGE_TOKEN) when the token was
    not issued for this list (malformed, altered, another version, list or filter)."""
    bad = InvalidArgument(
        "page.page_token was not issued by this list with these filters (or was altered); "
        "send back next_page_token unchanged, or omit it to start again",
        reason="BAD_PAGE_TOKEN",
    )
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(body, dict) or set(body) != {"v", "o", "c"}:
        raise bad
    offset, check = body["o"], body["c"]
    if body["v"] != _TOKEN_VERSION or type(offset) is not int or offset < 0:
        raise bad
    if not isinstance(check, str) or not hmac.compare_digest(check, _token_check(offset, scope)):
        raise bad
    return offset


def page_window(page: common_pb2.PageRequest, scope: str = "") -> tuple[int, int]:
    """(offset, limit) from a page request. ``scope`` (see :func:`list_scope`) must be the one
    the previous page's :func:`page_response` was given."""
    size = page.page_size or DEFAULT_PAGE_SIZE
    if size < 0:
        raise InvalidArgument("page.page_size must be >= 0", reason="BAD_PAGE")
    offset = decode_page_token(page.page_token, scope) if page.page_token else 0
    return offset, min(size, MAX_PAGE_SIZE)


def page_response(
    offset: int, limit: int, has_more: bool, total_size: int = UNKNOWN_TOTAL, *, scope: str = ""
) -> common_pb2.PageResponse:
    """The page trailer: an opaque token for the next page (empty on the last) and the total
    number of matching items (-1 when the list does not know it cheaply)."""
    token = encode_page_token(offset + limit, scope) if has_more else ""
    return common_pb2.PageResponse(next_page_token=token, total_size=total_size)


# -- jobs ------------------------------------------------------------------------------------

JOB_STATES = {
    JobState.QUEUED: common_pb2.JOB_STATE_QUEUED,
    JobState.RUNNING: common_pb2.JOB_STATE_RUNNING,
    JobState.SUCCEEDED: common_pb2.JOB_STATE_SUCCEEDED,
    JobState.FAILED: common_pb2.JOB_STATE_FAILED,
    JobState.CANCELLED: common_pb2.JOB_STATE_CANCELLED,
    JobState.INTERRUPTED: common_pb2.JOB_STATE_INTERRUPTED,
}
JOB_STATES_FROM_PB = {v: k for k, v in JOB_STATES.items()}
_ERROR_CODES = {cls.__name__: code.value for code, cls in ERRORS_BY_CODE.items()}


def job_error(text: str | None) -> common_pb2.JobError | None:
    """Job errors are stored as '<ExceptionClass>: message'; domain errors keep their code."""
    if not text:
        return None
    head, _, message = text.partition(": ")
    code = _ERROR_CODES.get(head)
    if code is None:
        return common_pb2.JobError(code="INTERNAL", reason="JOB_FAILED", message=text)
    return common_pb2.JobError(code=code, reason=code, message=message)


def job_status(record: JobRecord) -> common_pb2.JobStatus:
    status = common_pb2.JobStatus(
        job_id=record.id,
        state=JOB_STATES[record.state],
        attempt=record.attempts,
        resumable=record.resumable,
        request_id=record.request_id or "",
        progress=common_pb2.Progress(fraction=record.progress, message=record.message),
        create_time=dt_to_ts(record.created_at),
    )
    if record.started_at:
        status.start_time.CopyFrom(dt_to_ts(record.started_at))
    if record.finished_at:
        status.end_time.CopyFrom(dt_to_ts(record.finished_at))
    error = job_error(record.error)
    if error is not None:
        status.error.CopyFrom(error)
    return status
