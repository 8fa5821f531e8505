"""Conversions every servicer needs between atlas.common.v1 messages and shared domain types:
times, pagination, job status, artifact refs."""

from __future__ import annotations

from datetime import datetime, timezone

from google.protobuf import timestamp_pb2

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


def opt_ts_us(message: object, field: str) -> int | None:
    """Microseconds of an optional Timestamp field, None when unset."""
    if not message.HasField(field):  # type: ignore[attr-defined]
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


def page_window(page: common_pb2.PageRequest) -> tuple[int, int]:
    """(offset, limit) from a page request; tokens are opaque offsets."""
    size = page.page_size or DEFAULT_PAGE_SIZE
    if size < 0:
        raise InvalidArgument("page.page_size must be >= 0", reason="BAD_PAGE")
    offset = 0
    if page.page_token:
        try:
            offset = int(page.page_token)
        except ValueError:
            raise InvalidArgument(
                f"page.page_token {page.page_token!r} is malformed", reason="BAD_PAGE_TOKEN"
            ) from None
        if offset < 0:
            raise InvalidArgument("page.page_token is malformed", reason="BAD_PAGE_TOKEN")
    return offset, min(size, MAX_PAGE_SIZE)


def page_response(offset: int, limit: int, has_more: bool) -> common_pb2.PageResponse:
    return common_pb2.PageResponse(next_page_token=str(offset + limit) if has_more else "")


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
