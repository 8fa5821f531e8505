"""Ground truth: true outcomes attached to indexed predictions, and the labeled predictions
that model quality is computed from. Blocking (DB): callers run it in threads.

A prediction has at most one outcome: the same outcome again changes nothing (DUPLICATE),
another outcome replaces it (UPDATED, latest wins, ``version`` + 1). Metrics read only the
current outcome, so nothing is ever counted twice."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, select

from atlas_core.db import write_transaction
from atlas_core.errors import AtlasError, InvalidArgument, NotFound, Unavailable
from atlas_serving.domain import GroundTruth, GroundTruthResult, GroundTruthStatus, JobError
from atlas_serving.prediction_ids import prediction_time_us
from atlas_serving.records import now_us
from atlas_serving.tables import ground_truth, predictions

MAX_ITEMS = 1000
MAX_REMEMBERED_REQUESTS = 16
G = GroundTruthStatus

# (model name, version) -> (task, classes)
ModelInfo = Callable[[str, int], tuple[str, list[str]]]


@dataclass(frozen=True)
class _Target:
    prediction_id: str
    row: int
    model_name: str
    model_version: int


class GroundTruthStore:
    def __init__(
        self,
        engine: Engine,
        model_info: ModelInfo,
        retention_s: float,
        indexing_delay_s: float = 0.0,
    ) -> None:
        self.engine = engine
        self.model_info = model_info
        self.retention_s = retention_s
        # predictions younger than this may still sit in another replica's index buffer
        self.indexing_delay_s = indexing_delay_s

    def attach(
        self, endpoint: str, items: Sequence[GroundTruth], request_id: str, first_index: int = 0
    ) -> list[GroundTruthResult]:
        """Apply ``items`` in one transaction; one result per item (rejections included)."""
        if not items:
            raise InvalidArgument("no ground truth items", reason="NO_ITEMS")
        if len(items) > MAX_ITEMS:
            raise InvalidArgument(
                f"{len(items)} items exceed the limit of {MAX_ITEMS} per call; split them",
                reason="TOO_MANY_ITEMS",
            )
        results = []
        with write_transaction(self.engine) as conn:
            for i, item in enumerate(items):
                try:
                    results.append(self._one(conn, endpoint, item, request_id, first_index + i))
                except AtlasError as exc:
                    results.append(
                        GroundTruthResult(
                            index=first_index + i,
                            status=G.REJECTED,
                            error=JobError(
                                code=exc.code.value,
                                reason=exc.reason,
                                message=exc.message,
                                metadata=dict(exc.metadata),
                            ),
                        )
                    )
        return results

    # -- one item ------------------------------------------------------------------------------

    def _one(
        self, conn: Connection, endpoint: str, item: GroundTruth, request_id: str, index: int
    ) -> GroundTruthResult:
        if item.outcome is None:
            raise InvalidArgument("outcome is required", reason="OUTCOME_REQUIRED")
        targets = (
            self._by_entity(conn, endpoint, item)
            if item.by_entity
            else self._by_id(conn, endpoint, item)
        )
        labels = {}
        for t in targets:  # every matched prediction must accept the outcome's type and class
            labels[(t.prediction_id, t.row)] = self._outcome(t, item.outcome)
        statuses = []
        version = 0
        event_us = item.event_us or now_us()
        for t in targets:
            text, number = labels[(t.prediction_id, t.row)]
            status, v = self._upsert(conn, endpoint, t, text, number, request_id, event_us)
            statuses.append(status)
            version = max(version, v)
        status = next((s for s in (G.ACCEPTED, G.UPDATED) if s in statuses), G.DUPLICATE)
        return GroundTruthResult(index=index, status=status, matched=len(targets), version=version)

    def _by_id(self, conn: Connection, endpoint: str, item: GroundTruth) -> list[_Target]:
        pid = item.prediction_id
        if not pid:
            raise InvalidArgument(
                "a ground truth item needs a prediction id or an entity", reason="TARGET_REQUIRED"
            )
        if item.row < 0:
            raise InvalidArgument("row must not be negative", reason="BAD_ROW")
        made_us = prediction_time_us(pid)
        if made_us is None:
            raise NotFound(f"prediction {pid} does not exist", reason="PREDICTION_NOT_FOUND")
        if made_us < now_us() - self.retention_s * 1e6:
            raise NotFound(
                f"prediction {pid} is older than the retention window "
                f"({self.retention_s / 86400:g} days)",
                reason="PREDICTION_EXPIRED",
            )
        p = predictions.c
        found = conn.execute(
            select(p.model_name, p.model_version).where(
                (p.prediction_id == pid)
                & (p.row == item.row)
                & (p.endpoint_name == endpoint)
                & p.shadow.is_(False)
            )
        ).first()
        if found is None:
            recent = made_us >= now_us() - self.indexing_delay_s * 1e6
            if (
                recent
                and not conn.execute(select(p.row).where(p.prediction_id == pid).limit(1)).first()
            ):
                raise Unavailable(
                    f"prediction {pid} is not indexed yet (it may still be buffered by the "
                    "replica that served it); retry in a few seconds",
                    reason="PREDICTION_NOT_INDEXED",
                    metadata={"prediction_id": pid},
                )
            raise NotFound(
                f"prediction {pid} row {item.row} of endpoint {endpoint} is not recorded "
                "(unknown id, another endpoint, or not sampled for quality)",
                reason="PREDICTION_NOT_FOUND",
                metadata={"prediction_id": pid},
            )
        return [_Target(pid, item.row, found.model_name, found.model_version)]

    def _by_entity(self, conn: Connection, endpoint: str, item: GroundTruth) -> list[_Target]:
        now = now_us()
        start = item.start_us if item.start_us is not None else int(now - self.retention_s * 1e6)
        end = item.end_us if item.end_us is not None else now + 1
        if end <= start:
            raise InvalidArgument("entity.end_time is not after start_time", reason="BAD_WINDOW")
        p = predictions.c
        rows = conn.execute(
            select(p.prediction_id, p.row, p.model_name, p.model_version).where(
                (p.endpoint_name == endpoint)
                & (p.entity_key == str(item.entity_id))
                & (p.time_us >= start)
                & (p.time_us < end)
                & p.shadow.is_(False)
            )
        ).all()
        if not rows:
            raise NotFound(
                f"no recorded prediction of entity {item.entity_id} in the window",
                reason="NO_MATCHING_PREDICTIONS",
                metadata={"entity": str(item.entity_id)},
            )
        return [_Target(r.prediction_id, r.row, r.model_name, r.model_version) for r in rows]

    def _outcome(self, target: _Target, outcome: Any) -> tuple[str, float | None]:
        """The outcome as stored (text, number), checked against the model's task."""
        task, classes = self.model_info(target.model_name, target.model_version)
        if task == "regression":
            if isinstance(outcome, bool) or not isinstance(outcome, (int, float)):
                raise InvalidArgument(
                    f"a regression outcome must be a number, got {type(outcome).__name__}",
                    reason="WRONG_OUTCOME_TYPE",
                )
            if not math.isfinite(float(outcome)):
                raise InvalidArgument("the outcome must be finite", reason="WRONG_OUTCOME_TYPE")
            return repr(float(outcome)), float(outcome)
        text = _class_text(outcome, classes)
        if text not in classes:
            raise InvalidArgument(
                f"outcome {outcome!r} is not a class of the model ({', '.join(classes)})",
                reason="UNKNOWN_CLASS",
                metadata={"outcome": str(outcome)},
            )
        return text, None

    def _upsert(
        self,
        conn: Connection,
        endpoint: str,
        t: _Target,
        text: str,
        number: float | None,
        request_id: str,
        event_us: int,
    ) -> tuple[GroundTruthStatus, int]:
        g = ground_truth.c
        key = and_(g.prediction_id == t.prediction_id, g.row == t.row)
        row = conn.execute(
            select(g.outcome, g.version, g.request_ids).where(key).with_for_update()
        ).first()
        if row is None:
            conn.execute(
                ground_truth.insert().values(
                    prediction_id=t.prediction_id,
                    row=t.row,
                    endpoint_name=endpoint,
                    outcome=text,
                    value=number,
                    version=1,
                    request_ids=json.dumps([request_id] if request_id else []),
                    event_us=event_us,
                    updated_us=now_us(),
                )
            )
            return G.ACCEPTED, 1
        seen = json.loads(row.request_ids)
        if row.outcome == text or (request_id and request_id in seen):
            return G.DUPLICATE, int(row.version)
        seen = (seen + ([request_id] if request_id else []))[-MAX_REMEMBERED_REQUESTS:]
        conn.execute(
            ground_truth.update()
            .where(key)
            .values(
                outcome=text,
                value=number,
                version=row.version + 1,
                request_ids=json.dumps(seen),
                event_us=event_us,
                updated_us=now_us(),
            )
        )
        return G.UPDATED, int(row.version) + 1

    # -- reading ---------------------------------------------------------------------------------

    def labeled(
        self, endpoint: str, start_us: int, end_us: int, batch: int = 5000
    ) -> Iterator[Sequence[Any]]:
        """Labeled predictions (live and shadow) of the endpoint made in [start_us, end_us),
        in batches of database rows (attribute access), streamed: a window holds tens of
        thousands and the periodic quality evaluation reads them all; holding them all as
        Python objects at once was serving's memory growth (docs/experiments/chaos.md)."""
        p, g = predictions.c, ground_truth.c
        query = (
            select(
                p.prediction_id,
                p.row,
                p.variant,
                p.model_name,
                p.model_version,
                p.shadow,
                p.time_us,
                p.label,
                p.value,
                p.probs,
                g.outcome,
                g.value.label("outcome_value"),
            )
            .select_from(
                predictions.join(
                    ground_truth, and_(g.prediction_id == p.prediction_id, g.row == p.row)
                )
            )
            .where((p.endpoint_name == endpoint) & (p.time_us >= start_us) & (p.time_us < end_us))
            .order_by(p.time_us, p.prediction_id, p.row)
        )
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=batch).execute(query)
            yield from result.partitions()


def _class_text(outcome: Any, classes: list[str]) -> str:
    """Classes are text; an integral number or a bool names the class of that text."""
    if isinstance(outcome, bool):
        for text in (str(outcome), str(outcome).lower(), str(int(outcome))):
            if text in classes:
                return text
        return str(outcome)
    if isinstance(outcome, float):
        if not outcome.is_integer():
            raise InvalidArgument(
                f"a class label must be text or an integer, got {outcome!r}",
                reason="WRONG_OUTCOME_TYPE",
            )
        return str(int(outcome))
    if isinstance(outcome, (int, str)):
        return str(outcome)
    raise InvalidArgument(
        f"a class label must be text or an integer, got {type(outcome).__name__}",
        reason="WRONG_OUTCOME_TYPE",
    )
