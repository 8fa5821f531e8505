"""Human labels of bad cases back to serving as ground truth, when their export completes.

Items made from served predictions (``items.served_prediction``) carry the endpoint,
prediction id and row. For each such item, the latest label row the export holds is sent
with ``AttachGroundTruth`` by prediction id, in batches per endpoint. Only people's labels go
(sources human, review, consensus): a model's label is never sent, nor a value that is not
one class (multi-label, spans, boxes). Serving keeps one outcome per prediction, so a
re-export is DUPLICATE and a changed label UPDATED, never counted twice; every batch has a
request id derived from the export id, so a retried or resumed export gets serving's first
answer back. Serving's rejections (UNKNOWN_CLASS, WRONG_OUTCOME_TYPE, ...) are counted per
reason and the first ones listed on the export."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from sqlalchemy import Engine, select

from atlas.serving.v1 import serving_service_pb2 as serving_pb
from atlas_core.clients.retry import Backoff, call_with_retry
from atlas_core.clients.serving import ServingClient, ground_truth
from atlas_core.errors import AtlasError
from atlas_labeling.items import ServedPrediction
from atlas_labeling.tables import items

HUMAN_SOURCES = {"human", "review", "consensus"}
BATCH = 1000  # AttachGroundTruth's limit per call
MAX_LISTED_REJECTIONS = 100


@dataclass(frozen=True)
class Outcome:
    item_id: str
    served: ServedPrediction
    label: str


def project_has_served_items(engine: Engine, project_id: str) -> bool:
    with engine.connect() as conn:
        return (
            conn.execute(
                select(items.c.item_id)
                .where((items.c.project_id == project_id) & items.c.served_prediction.is_not(None))
                .limit(1)
            ).first()
            is not None
        )


def outcomes(
    engine: Engine, project_id: str, batches: Iterator[pa.RecordBatch], last_seq: int
) -> tuple[list[Outcome], int]:
    """The latest exported label (seq <= ``last_seq``) of every served item that a person
    decided, and the number of served items' labels not sent (model labels, non-class
    values)."""
    latest: dict[str, tuple[str, str]] = {}  # item id -> (label, source), the last row wins
    for batch in batches:
        for item_id, label, source, seq in zip(
            batch.column("item_id").to_pylist(),
            batch.column("label").to_pylist(),
            batch.column("source").to_pylist(),
            batch.column("seq").to_pylist(),
        ):
            if seq > last_seq:
                break
            latest[item_id] = (label, source)
    served = _served(engine, project_id, list(latest))
    out: list[Outcome] = []
    not_sent = 0
    for item_id in sorted(served, key=lambda i: (served[i].prediction_id, served[i].row)):
        label, source = latest[item_id]
        if source not in HUMAN_SOURCES or not label or "|" in label:
            not_sent += 1
            continue
        out.append(Outcome(item_id, served[item_id], label))
    return out, not_sent


def _served(engine: Engine, project_id: str, item_ids: list[str]) -> dict[str, ServedPrediction]:
    found: dict[str, ServedPrediction] = {}
    with engine.connect() as conn:
        for start in range(0, len(item_ids), 500):
            for item_id, raw in conn.execute(
                select(items.c.item_id, items.c.served_prediction).where(
                    (items.c.project_id == project_id)
                    & items.c.item_id.in_(item_ids[start : start + 500])
                    & items.c.served_prediction.is_not(None)
                )
            ):
                found[item_id] = ServedPrediction.from_json(raw)
    return found


def attach(
    client: ServingClient,
    export_id: str,
    found: list[Outcome],
    not_sent: int,
    backoff: Backoff,
    on_retry: Callable[[int, AtlasError], None] | None = None,
) -> dict[str, Any]:
    """Send ``found`` to serving in batches per endpoint; returns the GroundTruthFeedback
    message as proto JSON."""
    by_endpoint: dict[str, list[Outcome]] = {}
    for o in found:
        by_endpoint.setdefault(o.served.endpoint_name, []).append(o)
    totals: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    rejections: list[dict[str, Any]] = []
    for endpoint in sorted(by_endpoint):
        batch_items = by_endpoint[endpoint]
        for n, start in enumerate(range(0, len(batch_items), BATCH)):
            part = batch_items[start : start + BATCH]
            request = [
                ground_truth(o.label, prediction_id=o.served.prediction_id, row=o.served.row)
                for o in part
            ]
            request_id = f"labeling-export-{export_id}-gt-{endpoint}-{n}"
            resp = call_with_retry(
                functools.partial(
                    client.attach_ground_truth, endpoint, request, request_id=request_id
                ),
                what=f"serving ({client.settings.target}) AttachGroundTruth",
                backoff=backoff,
                on_retry=on_retry,
            )
            totals.update(
                sent=len(part),
                accepted=resp.accepted,
                duplicate=resp.duplicates,
                updated=resp.updated,
                rejected=resp.rejected,
            )
            for result in resp.results:
                if result.status != serving_pb.GROUND_TRUTH_STATUS_REJECTED:
                    continue
                o = part[result.index]
                reasons[result.error.reason] += 1
                if len(rejections) < MAX_LISTED_REJECTIONS:
                    rejections.append(
                        {
                            "item_id": o.item_id,
                            "prediction_id": o.served.prediction_id,
                            "row": o.served.row,
                            "label": o.label,
                            "reason": result.error.reason,
                            "message": result.error.message,
                        }
                    )
    return {
        **{k: int(totals[k]) for k in ("sent", "accepted", "duplicate", "updated", "rejected")},
        "rejected_reasons": {k: int(v) for k, v in reasons.items()},
        "rejections": rejections,
        "not_sent": not_sent,
    }
