"""Proto messages stored as canonical JSON in the metadata DB, and request idempotency."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


def to_json(message: Message) -> str:
    return json_format.MessageToJson(
        message, preserving_proto_field_name=True, indent=None, sort_keys=True
    )


def from_json(raw: str, message_type: type[M]) -> M:
    return json_format.Parse(raw, message_type(), ignore_unknown_fields=True)


def now() -> datetime:
    return datetime.now(timezone.utc)


def now_us() -> int:
    return int(now().timestamp() * 1_000_000)
