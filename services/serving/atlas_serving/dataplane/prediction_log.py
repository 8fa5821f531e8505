"""The prediction index that ground truth joins: prediction id -> (endpoint, variant, model
version, answer, time, entity). The request path only appends a tuple to a buffer; a worker
thread inserts the buffer in one batch (``flush``), so Predict never waits for the DB."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, delete

from atlas_core.db import database_unavailable, write_transaction
from atlas_serving.dataplane.inference import RowResult
from atlas_serving.prediction_ids import new_prediction_id, prediction_time_us
from atlas_serving.tables import ground_truth, predictions

log = logging.getLogger("atlas.serving.predictions")
__all__ = ["PredictionLog", "new_prediction_id", "prediction_time_us"]

MAX_BUFFERED = 200_000  # beyond it predictions are not indexed (and counted as dropped)
_COLUMNS = (
    "prediction_id",
    "row",
    "variant",
    "endpoint_name",
    "model_name",
    "model_version",
    "shadow",
    "entity_key",
    "time_us",
    "label",
    "value",
    "probs",
)


def _insert_sql(engine: Engine) -> str:
    """A plain INSERT in the driver's parameter style: the flush hands tuples straight to the
    driver's executemany (an ORM-free path: it holds the GIL for less time, which the event
    loop's latency feels)."""
    quote = engine.dialect.identifier_preparer.quote
    style = engine.dialect.paramstyle
    marks = {
        "qmark": ["?"] * len(_COLUMNS),
        "format": ["%s"] * len(_COLUMNS),
        "pyformat": ["%s"] * len(_COLUMNS),
        "numeric": [f":{i + 1}" for i in range(len(_COLUMNS))],
        "named": [f":{c}" for c in _COLUMNS],
    }[style]
    # ON CONFLICT DO NOTHING (SQLite and PostgreSQL): a batch kept after a failed flush whose
    # commit in fact went through is inserted again without a primary-key error.
    return (
        f"INSERT INTO {quote(predictions.name)} ({', '.join(quote(c) for c in _COLUMNS)}) "
        f"VALUES ({', '.join(marks)}) ON CONFLICT DO NOTHING"
    )


class PredictionLog:
    """Buffered writes of the prediction index (thread-safe appends)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._buffer: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._sql = _insert_sql(engine) if engine is not None else ""
        self.dropped = 0

    def add(
        self,
        endpoint: str,
        prediction_id: str,
        variant: str,
        model: tuple[str, int],
        shadow: bool,
        entities: Sequence[Any] | None,
        results: Sequence[RowResult],
        time_us: int,
    ) -> None:
        """Queue the rows of one answer (cheap: one tuple, converted at flush time)."""
        if len(self._buffer) >= MAX_BUFFERED:
            self.dropped += len(results)
            return
        item = (endpoint, prediction_id, variant, model, shadow, entities, results, time_us)
        with self._lock:
            self._buffer.append(item)

    def pending(self) -> int:
        return len(self._buffer)

    def flush(self) -> int:
        """Insert everything queued so far; returns the rows written."""
        with self._flush_lock:
            with self._lock:
                taken, self._buffer = self._buffer, []
            if not taken:
                return 0
            rows = [row for item in taken for row in _rows(*item)]
            try:
                with write_transaction(self.engine) as conn:
                    conn.exec_driver_sql(self._sql, rows)
            except Exception as exc:  # noqa: BLE001 - indexing must never break serving
                if database_unavailable(exc) is not None:  # a DB restart: the next flush retries
                    self._requeue(taken)
                    log.warning(
                        "prediction index flush failed, database unavailable; %d rows kept "
                        "for the next flush",
                        len(rows),
                    )
                    return 0
                log.exception("prediction index flush failed; %d rows not indexed", len(rows))
                return 0
            return len(rows)

    def _requeue(self, taken: list[tuple[Any, ...]]) -> None:
        """Put a failed batch back before what arrived since, within MAX_BUFFERED (the
        oldest beyond it are dropped and counted)."""
        with self._lock:
            room = max(0, MAX_BUFFERED - len(self._buffer))
            kept = taken[len(taken) - room :] if room < len(taken) else taken
            self.dropped += sum(len(item[6]) for item in taken[: len(taken) - len(kept)])
            self._buffer = kept + self._buffer

    def prune(self, older_than_us: int) -> int:
        """Delete index rows of predictions made before ``older_than_us``, and outcomes last
        set before it (their predictions are older still)."""
        with write_transaction(self.engine) as conn:
            done = conn.execute(delete(predictions).where(predictions.c.time_us < older_than_us))
            conn.execute(delete(ground_truth).where(ground_truth.c.updated_us < older_than_us))
        return int(done.rowcount or 0)


def _rows(
    endpoint: str,
    prediction_id: str,
    variant: str,
    model: tuple[str, int],
    shadow: bool,
    entities: Sequence[Any] | None,
    results: Sequence[RowResult],
    time_us: int,
) -> list[tuple[Any, ...]]:
    """Index rows in _COLUMNS order."""
    out = []
    for i, result in enumerate(results):
        entity = entities[i] if entities is not None and i < len(entities) else None
        probs = result.probs
        out.append(
            (
                prediction_id,
                i,
                variant,
                endpoint,
                model[0],
                model[1],
                shadow,
                None if entity is None else str(entity)[:256],
                time_us,
                result.label,
                float(result.value),
                ("[" + ", ".join(map(repr, probs)) + "]") if probs is not None else "",
            )
        )
    return out
