"""Proto messages stored as canonical JSON in the metadata DB, and request idempotency."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from atlas_core.db import write_transaction
from atlas_serving.tables import idempotency

M = TypeVar("M", bound=Message)


def to_json(message: Message) -> str:
    return json_format.MessageToJson(message, preserving_proto_field_name=True, indent=None,
                                     sort_keys=True)


def from_json(raw: str, message_type: type[M]) -> M:
    return json_format.Parse(raw, message_type(), ignore_unknown_fields=True)


def now() -> datetime:
    return datetime.now(timezone.utc)


def now_us() -> int:
    return int(now().timestamp() * 1_000_000)


class Idempotency:
    """Results of mutating calls by (operation, request_id): a retry gets the first result."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def recall(self, operation: str, request_id: str) -> dict[str, Any] | None:
        if not request_id:
            return None
        with self.engine.connect() as conn:
            raw = conn.execute(select(idempotency.c.result).where(
                (idempotency.c.request_id == request_id)
                & (idempotency.c.operation == operation))).scalar()
        return json.loads(raw) if raw is not None else None

    def remember(self, operation: str, request_id: str, result: dict[str, Any]) -> None:
        if not request_id:
            return
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(idempotency.insert().values(
                    request_id=request_id, operation=operation, result=json.dumps(result),
                    created_at=now()))
        except IntegrityError:
            pass
