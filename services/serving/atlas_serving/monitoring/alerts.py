"""Alerts (drift, alarms, rollbacks) and capture-file listings in the metadata DB."""

from __future__ import annotations

from sqlalchemy import Engine, select

from atlas.common.v1 import common_pb2
from atlas.serving.v1 import serving_service_pb2 as pb
from atlas_core.db import write_transaction
from atlas_core.errors import InvalidArgument, NotFound
from atlas_core.proto_convert import us_to_ts
from atlas_serving.records import from_json, now, to_json
from atlas_serving.tables import alerts, capture_files


class AlertStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, alert: pb.Alert) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                alerts.insert().values(
                    alert_id=alert.alert_id,
                    endpoint_name=alert.endpoint.endpoint_name,
                    kind=pb.AlertKind.Name(alert.kind),
                    body=to_json(alert),
                    acknowledged=False,
                    created_at=now(),
                )
            )

    def list(
        self, endpoint: str, include_acknowledged: bool, offset: int, limit: int
    ) -> tuple[list[pb.Alert], bool]:
        query = select(alerts.c.body, alerts.c.acknowledged)
        if endpoint:
            query = query.where(alerts.c.endpoint_name == endpoint)
        if not include_acknowledged:
            query = query.where(alerts.c.acknowledged.is_(False))
        with self.engine.connect() as conn:
            rows = conn.execute(
                query.order_by(alerts.c.created_at.desc()).offset(offset).limit(limit + 1)
            ).all()
        out = []
        for body, acked in rows[:limit]:
            alert = from_json(body, pb.Alert)
            alert.acknowledged = bool(acked)
            out.append(alert)
        return out, len(rows) > limit

    def acknowledge(self, alert_id: str) -> pb.Alert:
        if not alert_id:
            raise InvalidArgument("alert_id is required", reason="ID_REQUIRED")
        with write_transaction(self.engine) as conn:
            body = conn.execute(select(alerts.c.body).where(alerts.c.alert_id == alert_id)).scalar()
            if body is None:
                raise NotFound(f"alert {alert_id} does not exist", reason="ALERT_NOT_FOUND")
            conn.execute(
                alerts.update().where(alerts.c.alert_id == alert_id).values(acknowledged=True)
            )
        alert = from_json(body, pb.Alert)
        alert.acknowledged = True
        return alert


def list_capture_files(
    engine: Engine, endpoint: str, start_us: int | None, end_us: int | None, offset: int, limit: int
) -> tuple[list[pb.CaptureFile], bool]:
    if start_us is not None and end_us is not None and end_us < start_us:
        raise InvalidArgument("end_time is before start_time", reason="INVERTED_WINDOW")
    query = select(capture_files).where(capture_files.c.endpoint_name == endpoint)
    if start_us is not None:
        query = query.where(capture_files.c.end_us >= start_us)
    if end_us is not None:
        query = query.where(capture_files.c.start_us < end_us)
    with engine.connect() as conn:
        rows = conn.execute(
            query.order_by(capture_files.c.start_us).offset(offset).limit(limit + 1)
        ).all()
    files = [
        pb.CaptureFile(
            artifact=common_pb2.ArtifactRef(
                uri=r.uri,
                sha256=r.sha256,
                size_bytes=r.size_bytes,
                media_type="application/vnd.apache.parquet",
            ),
            row_count=r.row_count,
            start_time=us_to_ts(r.start_us),
            end_time=us_to_ts(r.end_us),
            variant=r.variant,
        )
        for r in rows[:limit]
    ]
    return files, len(rows) > limit
