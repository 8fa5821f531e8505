"""atlas_core.db on SQLite and PostgreSQL: engines, errors, migrations."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, inspect, select, text
from sqlalchemy.engine import Connection

from atlas_core.config import DatabaseSettings
from atlas_core.db import (
    Migration,
    MigrationSet,
    apply_migrations,
    check_connection,
    create_engine_from_settings,
    current_versions,
    mask_url,
    session_scope,
    write_transaction,
)
from atlas_core.db._engine import _sqlite_writer_lock
from atlas_core.errors import ConfigError, FailedPrecondition, Unavailable

_demo = MetaData()
demo_items = Table(
    "demo_items", _demo, Column("id", Integer, primary_key=True), Column("name", String(50))
)
demo_log = Table("demo_log", _demo, Column("version", Integer))


def _v1(conn: Connection) -> None:
    md = MetaData()
    Table("demo_items", md, Column("id", Integer, primary_key=True), Column("name", String(50)))
    Table("demo_log", md, Column("version", Integer))
    md.create_all(conn)
    conn.execute(insert(demo_log).values(version=1))


def _v2_slow(conn: Connection) -> None:
    # Slow enough that concurrent migrators overlap; a missing lock shows as a double run.
    time.sleep(0.3)
    conn.execute(text("CREATE INDEX ix_demo_items_name ON demo_items (name)"))
    conn.execute(insert(demo_log).values(version=2))


def _boom(conn: Connection) -> None:
    conn.execute(text("CREATE TABLE half_done (id INTEGER)"))
    raise RuntimeError("migration bug")


V1 = Migration(1, "demo items", _v1)
V2 = Migration(2, "index on name", _v2_slow)
DEMO = MigrationSet("demo", [V2, V1])  # order of declaration does not matter


def _migrate_in_subprocess(url: str, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    engine = create_engine_from_settings(DatabaseSettings(url=url))
    applied = apply_migrations(engine, DEMO)
    results.put([m.version for m in applied])
    engine.dispose()


def _log(engine) -> list[int]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return sorted(conn.execute(select(demo_log.c.version)).scalars())


# ---- migrations -----------------------------------------------------------------------------


def test_migrations_apply_once_and_are_idempotent(db_engine) -> None:  # type: ignore[no-untyped-def]
    applied = apply_migrations(db_engine, DEMO)
    assert [(m.component, m.version) for m in applied] == [("demo", 1), ("demo", 2)]
    assert apply_migrations(db_engine, DEMO) == []
    assert _log(db_engine) == [1, 2]
    assert current_versions(db_engine) == {"demo": 2}
    names = {ix["name"] for ix in inspect(db_engine).get_indexes("demo_items")}
    assert "ix_demo_items_name" in names


def test_new_migrations_are_applied_incrementally(db_engine) -> None:  # type: ignore[no-untyped-def]
    assert current_versions(db_engine) == {}
    apply_migrations(db_engine, MigrationSet("demo", [V1]))
    assert _log(db_engine) == [1]
    applied = apply_migrations(db_engine, DEMO)
    assert [m.version for m in applied] == [2]
    assert _log(db_engine) == [1, 2]


def test_database_newer_than_code_is_refused(db_engine) -> None:  # type: ignore[no-untyped-def]
    apply_migrations(db_engine, DEMO)
    create_other = lambda c: c.execute(text("CREATE TABLE other_t (id INTEGER)"))  # noqa: E731
    other = MigrationSet("other", [Migration(1, "t", create_other)])
    with pytest.raises(FailedPrecondition) as info:
        apply_migrations(db_engine, other, MigrationSet("demo", [V1]))
    assert info.value.reason == "SCHEMA_TOO_NEW"
    assert "version 2" in info.value.message and "'demo'" in info.value.message
    # Refused as a whole: the other component was not migrated either.
    assert current_versions(db_engine) == {"demo": 2}
    assert not inspect(db_engine).has_table("other_t")


def test_failing_migration_leaves_nothing_behind(db_engine) -> None:  # type: ignore[no-untyped-def]
    broken = MigrationSet("demo", [V1, Migration(2, "broken", _boom)])
    with pytest.raises(RuntimeError, match="migration bug"):
        apply_migrations(db_engine, broken)
    assert current_versions(db_engine) == {}
    assert not inspect(db_engine).has_table("demo_items")
    assert not inspect(db_engine).has_table("half_done")
    assert [m.version for m in apply_migrations(db_engine, DEMO)] == [1, 2]


def test_concurrent_migrations_from_processes_run_each_step_once(db_url: str) -> None:
    mp = multiprocessing.get_context("spawn")
    results = mp.Queue()
    procs = [mp.Process(target=_migrate_in_subprocess, args=(db_url, results)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    applied = sorted(v for _ in procs for v in results.get(timeout=5))
    assert applied == [1, 2]  # all steps applied exactly once across the three processes
    engine = create_engine_from_settings(DatabaseSettings(url=db_url))
    try:
        assert _log(engine) == [1, 2]
        assert current_versions(engine) == {"demo": 2}
    finally:
        engine.dispose()


def test_migration_set_rejects_duplicate_versions() -> None:
    with pytest.raises(Exception, match="unique positive versions"):
        MigrationSet("x", [V1, Migration(1, "again", _v1)])


# ---- engines, transactions ------------------------------------------------------------------


def test_session_scope_commits_or_rolls_back(db_engine) -> None:  # type: ignore[no-untyped-def]
    apply_migrations(db_engine, DEMO)
    with session_scope(db_engine) as session:
        session.execute(insert(demo_items).values(id=1, name="kept"))
    with pytest.raises(ValueError):
        with session_scope(db_engine) as session:
            session.execute(insert(demo_items).values(id=2, name="dropped"))
            raise ValueError("abort")
    with write_transaction(db_engine) as conn:
        names = list(conn.execute(select(demo_items.c.name)).scalars())
    assert names == ["kept"]


def _insert_names(url: str, prefix: str, count: int) -> None:
    engine = create_engine_from_settings(DatabaseSettings(url=url))
    try:
        for i in range(count):
            with write_transaction(engine) as conn:
                conn.execute(insert(demo_items).values(name=f"{prefix}{i}"))
    finally:
        engine.dispose()


def test_sqlite_writers_of_one_process_commit_in_arrival_order(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    engine = create_engine_from_settings(DatabaseSettings(url=url))
    other = create_engine_from_settings(DatabaseSettings(url=url))  # same file: same queue
    try:
        _demo.create_all(engine)
        lock = _sqlite_writer_lock(engine)
        assert lock is not None and lock is _sqlite_writer_lock(other)
        errors: list[BaseException] = []

        def write(n: int) -> None:
            try:
                with write_transaction(engine if n % 2 else other) as conn:
                    conn.execute(insert(demo_items).values(name=str(n)))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(24)]
        with write_transaction(engine):
            for n, thread in enumerate(threads):
                thread.start()
                deadline = time.monotonic() + 10
                while len(lock._waiters) < n + 1:  # queued before the next one arrives
                    assert time.monotonic() < deadline
                    time.sleep(0.001)
        for thread in threads:
            thread.join(30)
        assert errors == []
        with engine.connect() as conn:
            names = list(conn.execute(select(demo_items.c.name).order_by(demo_items.c.id)))
        assert [name for (name,) in names] == [str(n) for n in range(24)]
        assert not lock._held and not lock._waiters
    finally:
        engine.dispose()
        other.dispose()


def test_sqlite_writers_of_two_processes_all_commit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    engine = create_engine_from_settings(DatabaseSettings(url=url))
    try:
        _demo.create_all(engine)
        proc = multiprocessing.get_context("spawn").Process(
            target=_insert_names, args=(url, "p", 200)
        )
        proc.start()
        threads = [
            threading.Thread(target=_insert_names, args=(url, f"t{k}-", 50)) for k in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        proc.join(60)
        assert proc.exitcode == 0
        with engine.connect() as conn:
            names = set(conn.execute(select(demo_items.c.name)).scalars())
        assert len(names) == 200 + 8 * 50
    finally:
        engine.dispose()


def test_sqlite_writer_queue_gives_way_to_sqlite_after_the_busy_timeout(  # type: ignore[no-untyped-def]
    tmp_path, monkeypatch
) -> None:
    import atlas_core.db._engine as engine_module

    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_SECONDS", 0.2)
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    engine = create_engine_from_settings(DatabaseSettings(url=url))
    try:
        _demo.create_all(engine)
        lock = _sqlite_writer_lock(engine)
        assert lock is not None and lock.acquire(timeout=1)  # a stuck writer of this process
        try:
            with write_transaction(engine) as conn:  # not queued forever: SQLite decides
                conn.execute(insert(demo_items).values(name="late"))
        finally:
            lock.release()
        assert not lock._held and not lock._waiters
        with engine.connect() as conn:
            assert list(conn.execute(select(demo_items.c.name)).scalars()) == ["late"]
    finally:
        engine.dispose()


def test_sqlite_engine_creates_directory_and_sets_pragmas(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "nested" / "dir" / "meta.db"
    engine = create_engine_from_settings(DatabaseSettings(url=f"sqlite:///{path}"))
    try:
        check_connection(engine)
        assert path.parent.is_dir()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    finally:
        engine.dispose()


def test_sqlite_synchronous_is_the_services_default_unless_configured(tmp_path) -> None:  # type: ignore[no-untyped-def]
    def synchronous(settings: DatabaseSettings, **kwargs: str) -> int:
        engine = create_engine_from_settings(settings, **kwargs)  # type: ignore[arg-type]
        try:
            with engine.connect() as conn:
                return int(conn.exec_driver_sql("PRAGMA synchronous").scalar())  # type: ignore[arg-type]
        finally:
            engine.dispose()

    url = f"sqlite:///{tmp_path / 'sync.db'}"
    full, normal = 2, 1
    assert synchronous(DatabaseSettings(url=url)) == full
    assert synchronous(DatabaseSettings(url=url), sqlite_synchronous="NORMAL") == normal
    configured = DatabaseSettings(url=url, sqlite_synchronous="FULL")
    assert synchronous(configured, sqlite_synchronous="NORMAL") == full


# ---- bad configuration and unreachable databases -------------------------------------------


def test_unparsable_url_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        create_engine_from_settings(
            DatabaseSettings(url="postgresql://bob:hunter2@host:notaport/x")
        )
    assert "hunter2" not in str(info.value)
    assert "***" in str(info.value)


def test_unknown_driver_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        create_engine_from_settings(DatabaseSettings(url="nosuchdb+drv://bob:hunter2@host/db"))
    assert "hunter2" not in info.value.message
    assert "unsupported dialect" in info.value.message


def test_unreachable_postgres_names_url_with_masked_password() -> None:
    url = "postgresql+psycopg://atlas:s3cret-pw@127.0.0.1:1/atlas"
    engine = create_engine_from_settings(DatabaseSettings(url=url))
    try:
        for call in (check_connection, lambda e: apply_migrations(e, DEMO)):
            with pytest.raises(Unavailable) as info:
                call(engine)
            message = info.value.message
            assert "s3cret-pw" not in message
            assert "postgresql+psycopg://atlas:***@127.0.0.1:1/atlas" in message
            assert "unavailable" in message and "\n" not in message
            # No chained driver traceback to spam the start-up log.
            exc = info.value
            assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)
    finally:
        engine.dispose()


def test_sqlite_path_that_cannot_exist_is_unavailable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(Unavailable, match="cannot create the directory"):
        create_engine_from_settings(DatabaseSettings(url=f"sqlite:///{blocker}/sub/meta.db"))


def test_mask_url() -> None:
    assert mask_url("postgresql+psycopg://u:pw@h:5432/db") == "postgresql+psycopg://u:***@h:5432/db"
    assert mask_url("weird://u:pw@h:bad/db") == "weird://u:***@h:bad/db"
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"
