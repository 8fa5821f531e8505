"""Engine construction, connection checks and transaction scopes for the metadata database.

SQLite (the embedded default) and PostgreSQL are both first-class: the same SQLAlchemy Core code
runs on either, chosen only by the URL in :class:`~atlas_core.config.DatabaseSettings`.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.exc import TimeoutError as SaTimeoutError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from atlas_core.config import DatabaseSettings, SqliteSynchronous
from atlas_core.errors import SETTING, ConfigError, Unavailable

SQLITE_BUSY_TIMEOUT_SECONDS = 30.0
"""How long a SQLite connection waits for another writer before failing with 'locked'."""

PG_CONNECT_TIMEOUT_SECONDS = 10
"""An unreachable PostgreSQL host fails after this long instead of hanging a service start."""

# Execution option read by the SQLite "begin" hook: DEFERRED (default), IMMEDIATE or EXCLUSIVE.
SQLITE_BEGIN_OPTION = "atlas_sqlite_begin"

_PASSWORD_IN_RAW_URL = re.compile(r"(//[^/:@]*:)[^@/]*@")


def mask_url(url: str | URL) -> str:
    """Render ``url`` for messages and logs with its password replaced by ``***``.

    Works on strings SQLAlchemy cannot parse, too (the password is cut out by pattern).
    """
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _PASSWORD_IN_RAW_URL.sub(r"\1***@", url)


def _parse_url(raw: str) -> URL:
    try:
        return make_url(raw)
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"database.url {mask_url(raw)!r} is not a valid SQLAlchemy URL "
            "(expected e.g. sqlite:///path/atlas.db or postgresql+psycopg://user@host/db)"
        ) from None


def _sqlite_file(url: URL) -> Path | None:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def _create_sqlite_engine(url: URL, echo: bool, synchronous: str) -> Engine:
    path = _sqlite_file(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if path is None:
        # One shared connection, or every pooled connection would see its own empty database.
        kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise Unavailable(
                f"cannot create the directory of SQLite database {mask_url(url)}: {exc.strerror}",
                reason="DATABASE_UNAVAILABLE",
            ) from None
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite (which BEGINs lazily and commits before
        # DDL) so the "begin" hook below decides: that is what makes BEGIN IMMEDIATE possible.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if path is not None:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


_TLS_FIELDS = ("sslmode", "sslrootcert", "sslcert", "sslkey")


def _with_tls(url: URL, settings: DatabaseSettings) -> URL:
    """``url`` with the settings' PostgreSQL TLS parameters in its query, so every consumer
    of the URL (SQLAlchemy, Optuna's storage, ADBC exports) connects the same way."""
    given = {name: getattr(settings, name) for name in _TLS_FIELDS if getattr(settings, name)}
    if not given:
        return url
    if url.get_backend_name() != "postgresql":
        raise ConfigError(
            f"database TLS settings ({', '.join(given)}) apply to PostgreSQL only; "
            f"database.url is {url.get_backend_name()}"
        )
    return url.update_query_dict({name: str(value) for name, value in given.items()})


def create_engine_from_settings(
    settings: DatabaseSettings, *, sqlite_synchronous: SqliteSynchronous = "FULL"
) -> Engine:
    """Build the engine for ``settings.url``: a SQLite file or a PostgreSQL server.

    SQLite: the file's parent directory is created; WAL journal, foreign keys and a busy timeout
    are set on every connection, and ``PRAGMA synchronous``: ``settings.sqlite_synchronous``,
    else the calling service's default ``sqlite_synchronous``. FULL syncs the WAL on every
    commit; NORMAL only at checkpoints, which keeps every commit across a crash or kill of the
    process (the WAL is in the OS's page cache) but may roll back the last commits on power
    loss or an OS crash. PostgreSQL: pooled connections are pinged before use, a
    connect timeout bounds an unreachable host, and the TLS settings (sslmode, sslrootcert,
    sslcert, sslkey) join the URL's query. The engine connects lazily; call
    :func:`check_connection` to fail fast at start-up.

    Raises:
        ConfigError: the URL does not parse or names an unknown dialect/driver.
        Unavailable: the SQLite file's directory cannot be created.
    """
    url = _with_tls(_parse_url(settings.url), settings)
    try:
        if url.get_backend_name() == "sqlite":
            synchronous = settings.sqlite_synchronous or sqlite_synchronous
            return _create_sqlite_engine(url, settings.echo, synchronous)
        connect_args: dict[str, Any] = {}
        if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_SECONDS
        return create_engine(url, echo=settings.echo, pool_pre_ping=True, connect_args=connect_args)
    except (NoSuchModuleError, ImportError) as exc:
        raise ConfigError(
            f"database.url {mask_url(url)!r}: unsupported dialect or driver "
            f"({type(exc).__name__}: {exc})"
        ) from None


def _reason(exc: DBAPIError, url: URL) -> str:
    lines = [line.strip() for line in str(exc.orig).splitlines() if line.strip()]
    reason = lines[0] if lines else type(exc.orig).__name__
    if url.password:
        reason = reason.replace(str(url.password), "***")
    return reason


def check_connection(engine: Engine) -> None:
    """Open one connection and run ``SELECT 1``.

    Raises:
        Unavailable: the database cannot be reached or refuses the login. The message names
            the URL with its password masked and the driver's one-line reason; the original
            exception is not chained, so start-up logs stay one line.
    """
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        message = f"database {mask_url(engine.url)} is unavailable: {_reason(exc, engine.url)}"
    else:
        return
    raise Unavailable(
        message,
        reason="DATABASE_UNAVAILABLE",
        metadata={"url": mask_url(engine.url), SETTING: "database.url"},
    )


class _FifoLock:
    """A mutex handed to waiters strictly in arrival order (``threading.Lock`` is not fair).

    Each waiter parks on its own lock; ``release`` hands ownership to the oldest one directly,
    so a thread arriving at that moment cannot overtake it.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: deque[threading.Lock] = deque()

    def acquire(self, timeout: float) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            gate = threading.Lock()
            gate.acquire()
            self._waiters.append(gate)
        if gate.acquire(timeout=timeout):
            return True
        with self._mutex:
            if gate in self._waiters:
                self._waiters.remove(gate)
                return False
        # Handed over between the timeout and the check above: it is ours after all.
        return True

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False


_writer_locks: dict[str, _FifoLock] = {}
# The lock of each database path as the URL spells it, so a transaction does not resolve the
# real path (os.path.realpath walks the file system) every time.
_writer_locks_by_url_path: dict[str, _FifoLock] = {}
_writer_locks_guard = threading.Lock()


def _reset_writer_locks() -> None:
    # A forked child inherits the locks in whatever state other threads left them.
    global _writer_locks_guard
    _writer_locks.clear()
    _writer_locks_by_url_path.clear()
    _writer_locks_guard = threading.Lock()


os.register_at_fork(after_in_child=_reset_writer_locks)


def _sqlite_writer_lock(engine: Engine) -> _FifoLock | None:
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database or ""
    lock = _writer_locks_by_url_path.get(database)
    if lock is not None:
        return lock
    path = _sqlite_file(engine.url)
    if path is None:
        return None
    key = os.path.realpath(path)
    with _writer_locks_guard:
        lock = _writer_locks.get(key)
        if lock is None:
            lock = _writer_locks[key] = _FifoLock()
        _writer_locks_by_url_path[database] = lock
        return lock


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A Core transaction meant for read-then-write sequences; commits on success.

    On SQLite it starts with ``BEGIN IMMEDIATE``, taking the single write lock up front (waiting
    up to the busy timeout) instead of failing with "database is locked" when a read lock cannot
    be upgraded. Writers of one process first queue, in arrival order, on a lock per database
    file: SQLite's busy handler polls with sleeps of up to 100 ms, so contending threads would
    otherwise wait far longer than the writer ahead of them takes. The busy timeout still
    arbitrates between processes. If the queue does not move within the busy timeout, the
    transaction goes ahead and SQLite's own wait decides, as without the queue. On PostgreSQL
    it is a plain transaction: lock rows with ``SELECT ... FOR UPDATE`` where needed.
    """
    lock = _sqlite_writer_lock(engine)
    acquired = lock is not None and lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_SECONDS)
    try:
        with engine.connect() as conn:
            conn.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
            with conn.begin():
                yield conn
    finally:
        if acquired:
            assert lock is not None
            lock.release()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """An ORM session that commits when the block ends and rolls back if it raises."""
    session = Session(engine)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def database_unavailable(exc: BaseException) -> Unavailable | None:
    """``exc`` as UNAVAILABLE ``DATABASE_UNAVAILABLE`` when it says the database server went
    away or cannot be reached (a restart, a failover, a dropped connection): a client retries
    that with the same request id. None for every other error (a bug stays INTERNAL)."""
    if isinstance(exc, SaTimeoutError):  # no pooled connection became free in time
        return Unavailable(
            "the metadata database did not hand out a connection in time; retry",
            reason="DATABASE_UNAVAILABLE",
        )
    if not isinstance(exc, DBAPIError):
        return None
    orig = exc.orig
    psycopg = sys.modules.get("psycopg")  # loaded when the URL is PostgreSQL's
    disconnect = exc.connection_invalidated or (
        psycopg is not None and isinstance(orig, psycopg.OperationalError)
    )
    if not disconnect:
        return None
    return Unavailable(
        f"the metadata database is unavailable ({type(orig).__name__}); retry with the same "
        "request id",
        reason="DATABASE_UNAVAILABLE",
    )
