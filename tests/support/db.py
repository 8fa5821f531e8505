"""Pytest fixtures for the metadata database: every test using them runs on SQLite and on
PostgreSQL.

Import them in a ``conftest.py``::

    from tests.support.db import db_engine, db_url  # noqa: F401

PostgreSQL is taken from ``ATLAS_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); when it is not reachable the
PostgreSQL variants are skipped with that reason. Each PostgreSQL test gets a fresh schema
(selected through ``search_path`` in the URL) that is dropped afterwards, so concurrent test
runs on the same server never see each other's tables.
"""

from __future__ import annotations

import os
import socket
import uuid
import warnings
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from atlas_core.config import DatabaseSettings
from atlas_core.db import create_engine_from_settings, mask_url

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    return os.environ.get("ATLAS_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


@cache
def postgres_unreachable_reason(url: str) -> str | None:
    """None when a TCP connection to the server of ``url`` succeeds, else why not."""
    parsed = make_url(url)
    host, port = parsed.host or "127.0.0.1", parsed.port or 5432
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return None
    except OSError as exc:
        return f"PostgreSQL is not reachable at {host}:{port} ({exc.strerror or exc})"


def sqlite_test_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'atlas-meta.db'}"


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    """A URL whose tables live in a fresh schema, dropped after the test."""
    base = postgres_url()
    reason = postgres_unreachable_reason(base)
    if reason is not None:
        pytest.skip(reason)
    schema = f"atlas_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        admin.dispose()
        pytest.skip(f"cannot create a test schema on {mask_url(base)}: {exc}")
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        try:
            with admin.connect() as conn:
                conn.execute(text("SET lock_timeout = '10s'"))
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        except Exception as exc:  # never fail the test because of cleanup
            warnings.warn(f"could not drop test schema {schema}: {exc}", stacklevel=1)
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLAlchemy URL of an empty metadata database: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        return sqlite_test_url(tmp_path)
    return str(request.getfixturevalue("postgres_schema_url"))


@pytest.fixture
def db_engine(db_url: str) -> Iterator[Engine]:
    """An engine on :func:`db_url`, disposed after the test."""
    engine = create_engine_from_settings(DatabaseSettings(url=db_url))
    try:
        yield engine
    finally:
        engine.dispose()
