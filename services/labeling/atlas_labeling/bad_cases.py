"""Bad cases from serving: captured predictions (Parquet files of request features and the
answer) below a confidence become items that keep the prediction id, model version and score,
and enter the correction queue. Rows get the external id "<capture file sha256>:<row>", so
re-running or resuming an import adds nothing twice."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from atlas_core.errors import InvalidArgument
from atlas_labeling.items import NewItem
from atlas_labeling.tables import corrections, items
from atlas_labeling.values import ItemContent

FEATURE_PREFIX = "f_"


def feature_column(columns: Sequence[str], name: str) -> str:
    """The captured column for ``name``: as given, or with the capture's "f_" prefix."""
    for candidate in (name, FEATURE_PREFIX + name):
        if candidate in columns:
            return candidate
    raise InvalidArgument(
        f"bad_cases.content_column {name!r} is not a captured column (captured: {sorted(columns)})",
        reason="MISSING_COLUMN",
    )


def select_rows(
    rows: list[dict[str, Any]],
    max_confidence: float,
    start_us: int | None,
    end_us: int | None,
) -> list[tuple[int, dict[str, Any]]]:
    """(row number in the file, row) of the captured predictions that qualify."""
    chosen = []
    for n, row in enumerate(rows):
        t = int(row.get("time_us") or 0)
        if start_us is not None and t < start_us:
            continue
        if end_us is not None and t >= end_us:
            continue
        score = row.get("value")
        if max_confidence and (score is None or float(score) >= max_confidence):
            continue
        chosen.append((n, row))
    return chosen


def to_item(row: dict[str, Any], content_column: str, kind: str, external_id: str) -> NewItem:
    value = row.get(content_column)
    if value is None:
        raise InvalidArgument(
            f"captured row {external_id} has no {content_column}", reason="BAD_CONTENT"
        )
    content = ItemContent(text=str(value)) if kind == "text" else ItemContent(image_uri=str(value))
    features = {k[len(FEATURE_PREFIX) :]: v for k, v in row.items() if k.startswith(FEATURE_PREFIX)}
    score = row.get("value")
    return NewItem(
        content=content,
        label_time=datetime.fromtimestamp(int(row["time_us"]) / 1e6, tz=timezone.utc)
        if row.get("time_us")
        else None,
        metadata={**features, "captured_label": str(row.get("label", ""))},
        external_id=external_id,
        prediction_id=str(row.get("prediction_id") or ""),
        model_version=str(row.get("model_version") or ""),
        prediction_score=float(score) if score is not None and 0 <= score <= 1 else None,
    )


def queue_bad_cases(
    conn: Connection, project_id: str, external_ids: Sequence[str], now: datetime
) -> None:
    """Correction entries for these items (idempotent), most uncertain first."""
    if not external_ids:
        return
    rows = conn.execute(
        select(items.c.item_id, items.c.prediction_score, items.c.prediction_id).where(
            (items.c.project_id == project_id) & items.c.external_id.in_(list(external_ids))
        )
    ).all()
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    for item_id, score, prediction_id in rows:
        conn.execute(
            dialect.insert(corrections)
            .values(
                project_id=project_id,
                item_id=item_id,
                reason="bad_case",
                priority=1.0 - (score if score is not None else 0.0),
                detail=f"serving prediction {prediction_id} scored {score}",
                resolution="open",
                created_at=now,
            )
            .on_conflict_do_nothing()
        )
