"""One study shared by several trainer processes: a lock across them for the decisions that
read and then write the study (count the trials against the budget, enqueue a curated
configuration unless it exists, start the next trial).

Optuna's RDB storage makes each write atomic (a WAITING trial is popped by one worker only),
but "count, then ask" and "enqueue unless it exists" are two steps: two workers doing them at
once could both start the last trial of the budget, or both enqueue the same configuration
(Optuna's ``enqueue_trial(skip_if_exists=True)`` says so). On PostgreSQL these steps run
under a session-level advisory lock keyed by the study's name, so every worker of the study
takes them one at a time; in one process (SQLite, in-memory storage) a thread lock does.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import optuna
from sqlalchemy import text


def advisory_key(study_name: str) -> int:
    """A signed 64-bit key for ``pg_advisory_lock``, stable across processes and hosts."""
    digest = hashlib.blake2b(f"atlas-study:{study_name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def rdb_backend(study: optuna.Study) -> optuna.storages.RDBStorage | None:
    """The study's RDB storage, or None. Optuna wraps an RDB storage in a caching layer
    (``_CachedStorage``), so the study's storage is not itself an ``RDBStorage``."""
    storage = study._storage  # noqa: SLF001 - the storage's engine is what we lock on
    storage = getattr(storage, "_backend", storage)
    return storage if isinstance(storage, optuna.storages.RDBStorage) else None


class StudyLock:
    """Serialises a study's read-then-write steps across threads, and across processes when
    the study lives on PostgreSQL."""

    def __init__(self, study: optuna.Study) -> None:
        self._local = threading.Lock()
        backend = rdb_backend(study)
        self._engine = (
            backend.engine
            if backend is not None and backend.engine.dialect.name == "postgresql"
            else None
        )
        self._key = advisory_key(study.study_name)

    @property
    def across_processes(self) -> bool:
        return self._engine is not None

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._local:
            if self._engine is None:
                yield
                return
            with self._engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                    conn.commit()
