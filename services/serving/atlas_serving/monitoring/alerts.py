"""Alerts (drift, alarms, rollbacks) and capture-file listings in the metadata DB."""

from __future__ import annotations

import builtins

from sqlalchemy import Engine, select

from atlas_core.db import fetch_page, write_transaction
from atlas_core.errors import InvalidArgument, NotFound
from atlas_serving.domain import Alert, CaptureFile
from atlas_serving.records import Codec, now
from atlas_serving.tables import alerts, capture_files


class AlertStore:
    def __init__(self, engine: Engine, codec: Codec[Alert]) -> None:
        self.engine = engine
        self.codec = codec

    def add(self, alert: Alert) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                alerts.insert().values(
                    alert_id=alert.alert_id,
                    endpoint_name=alert.endpoint.endpoint_name,
                    kind="ALERT_KIND_" + alert.kind.name,  # the proto enum name
                    body=self.codec.dumps(alert),
                    acknowledged=False,
                    created_at=now(),
                )
            )

    def list(
        self, endpoint: str, include_acknowledged: bool, offset: int, limit: int
    ) -> tuple[list[Alert], int]:
        query = select(alerts.c.body, alerts.c.acknowledged)
        if endpoint:
            query = query.where(alerts.c.endpoint_name == endpoint)
        if not include_acknowledged:
            query = query.where(alerts.c.acknowledged.is_(False))
        with self.engine.connect() as conn:
            rows, total = fetch_page(
                conn, query.order_by(alerts.c.created_at.desc()), offset, limit
            )
        out = []
        for row in rows:
            alert = self.codec.loads(row.body)
            alert.acknowledged = bool(row.acknowledged)
            out.append(alert)
        return out, total

    def open_of_kind(self, endpoint: str, kind: str) -> builtins.list[Alert]:
        """Unacknowledged alerts of ``endpoint`` of one kind (the proto enum name suffix)."""
        with self.engine.connect() as conn:
            bodies = conn.execute(
                select(alerts.c.body).where(
                    (alerts.c.endpoint_name == endpoint)
                    & (alerts.c.kind == "ALERT_KIND_" + kind)
                    & alerts.c.acknowledged.is_(False)
                )
            ).scalars()
            return [self.codec.loads(b) for b in bodies]

    def acknowledge(self, alert_id: str) -> Alert:
        if not alert_id:
            raise InvalidArgument("alert_id is required", reason="ID_REQUIRED")
        with write_transaction(self.engine) as conn:
            body = conn.execute(select(alerts.c.body).where(alerts.c.alert_id == alert_id)).scalar()
            if body is None:
                raise NotFound(f"alert {alert_id} does not exist", reason="ALERT_NOT_FOUND")
            conn.execute(
                alerts.update().where(alerts.c.alert_id == alert_id).values(acknowledged=True)
            )
        alert = self.codec.loads(body)
        alert.acknowledged = True
        return alert


def list_capture_files(
    engine: Engine, endpoint: str, start_us: int | None, end_us: int | None, offset: int, limit: int
) -> tuple[list[CaptureFile], int]:
    """Capture files of ``endpoint`` overlapping [start_us, end_us), oldest first."""
    if start_us is not None and end_us is not None and end_us < start_us:
        raise InvalidArgument("end_time is before start_time", reason="INVERTED_WINDOW")
    query = select(capture_files).where(capture_files.c.endpoint_name == endpoint)
    if start_us is not None:
        query = query.where(capture_files.c.end_us >= start_us)
    if end_us is not None:
        query = query.where(capture_files.c.start_us < end_us)
    with engine.connect() as conn:
        rows, total = fetch_page(conn, query.order_by(capture_files.c.start_us), offset, limit)
    files = [
        CaptureFile(
            uri=r.uri,
            sha256=r.sha256,
            size=r.size_bytes,
            row_count=r.row_count,
            start_us=r.start_us,
            end_us=r.end_us,
            variant=r.variant,
        )
        for r in rows[:limit]
    ]
    return files, total
