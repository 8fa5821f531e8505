"""Bad cases from serving: captured predictions (Parquet files of request features and the
answer) below a confidence become items that keep the served prediction (id, row, model
version, score, reason) and enter the correction queue. Rows get the external id
"<capture file sha256>:<row>", so re-running or resuming an import adds nothing twice."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from atlas_core.errors import InvalidArgument
from atlas_labeling.items import NewItem, ServedPrediction
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


def to_item(
    row: dict[str, Any], content_column: str, kind: str, external_id: str, endpoint: str
) -> NewItem:
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
        served=ServedPrediction(
            endpoint_name=endpoint,
            prediction_id=str(row.get("prediction_id") or ""),
            row=int(row.get("prediction_row") or 0),
            model_version=str(row.get("model_version") or ""),
            score=float(score) if score is not None else None,
            reasons=("low_confidence",),
        ),
    )
