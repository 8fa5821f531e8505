"""The prediction index keeps a batch whose flush failed because the database was away (a
PostgreSQL restart) and writes it at the next flush, once; other failures still drop it."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import OperationalError

from atlas_serving.dataplane import prediction_log as plog
from atlas_serving.dataplane.inference import RowResult
from atlas_serving.tables import metadata, predictions


@pytest.fixture
def log(tmp_path):  # type: ignore[no-untyped-def]
    engine = create_engine(f"sqlite:///{tmp_path / 'serving.db'}")
    metadata.create_all(engine)
    yield plog.PredictionLog(engine)
    engine.dispose()


def _add(log: plog.PredictionLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.add("ep", f"p{i}", "blue", ("m", 1), False, None, [RowResult(label="1")], i)


def _count(log: plog.PredictionLog) -> int:
    with log.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(predictions)).scalar_one())


def _failing(exc: Exception) -> Any:
    @contextmanager
    def transaction(engine: Any) -> Any:
        raise exc
        yield  # pragma: no cover

    return transaction


def test_a_batch_survives_a_database_outage(log, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _add(log, 5)
    down = OperationalError("INSERT", {}, psycopg.OperationalError("connection refused"))
    monkeypatch.setattr(plog, "write_transaction", _failing(down))
    assert log.flush() == 0
    _add(log, 3, start=5)  # served while the database was away
    assert log.pending() == 8
    monkeypatch.undo()
    assert log.flush() == 8
    assert _count(log) == 8 and log.pending() == 0 and log.dropped == 0


def test_a_batch_written_twice_is_indexed_once(log) -> None:  # type: ignore[no-untyped-def]
    _add(log, 4)
    taken = list(log._buffer)
    assert log.flush() == 4
    log._requeue(taken)  # the commit went through but its answer was lost
    assert log.flush() == 4
    assert _count(log) == 4


def test_the_requeue_is_bounded(log, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(plog, "MAX_BUFFERED", 6)
    _add(log, 4)
    taken = list(log._buffer)
    log._buffer = []
    _add(log, 4, start=4)
    log._requeue(taken)
    assert log.pending() == 6 and log.dropped == 2  # the two oldest gave way


def test_other_failures_still_drop_the_batch(log, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _add(log, 3)
    monkeypatch.setattr(plog, "write_transaction", _failing(ValueError("a bug")))
    assert log.flush() == 0
    assert log.pending() == 0
