"""Pytest fixtures: one real SeaweedFS S3 server per test session.

Import the fixtures into a ``conftest.py``::

    from tests.support.s3 import s3_settings, seaweed_server  # noqa: F401

Several conftests may import them: pytest then sees several session fixtures, so the server is
shared through a reference count here and started once, on free loopback ports with its own
temporary data directory, and always stopped when the last user finishes.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from atlas_core.config import S3Settings
from atlas_core.launcher import SeaweedS3Server

__all__ = ["s3_settings", "seaweed_server", "SharedSeaweed"]

START_TIMEOUT_SECONDS = 60.0


class SharedSeaweed:
    """A reference-counted SeaweedFS server with generated credentials."""

    _lock = threading.Lock()
    _users = 0
    _server: SeaweedS3Server | None = None
    _tempdir: tempfile.TemporaryDirectory[str] | None = None
    access_key = "atlas-test-" + secrets.token_hex(4)
    secret_key = secrets.token_urlsafe(24)

    @classmethod
    def acquire(cls) -> SeaweedS3Server:
        with cls._lock:
            if cls._server is None:
                cls._tempdir = tempfile.TemporaryDirectory(prefix="atlas-seaweed-")
                root = Path(cls._tempdir.name)
                server = SeaweedS3Server(
                    root / "data",
                    access_key=cls.access_key,
                    secret_key=cls.secret_key,
                    port=0,
                    log_dir=root / "logs",
                )
                try:
                    server.start(timeout=START_TIMEOUT_SECONDS, die_with_parent=True)
                except BaseException:
                    server.stop()
                    cls._tempdir.cleanup()
                    cls._tempdir = None
                    raise
                cls._server = server
            cls._users += 1
            return cls._server

    @classmethod
    def release(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users > 0 or cls._server is None:
                return
            server, cls._server = cls._server, None
            try:
                server.stop()
            finally:
                if cls._tempdir is not None:
                    cls._tempdir.cleanup()
                    cls._tempdir = None

    @classmethod
    def settings(cls, server: SeaweedS3Server, bucket: str) -> S3Settings:
        return S3Settings(
            endpoint=server.endpoint,
            access_key=SecretStr(cls.access_key),
            secret_key=SecretStr(cls.secret_key),
            bucket=bucket,
            secure=False,
            part_size=5 * 1024 * 1024,  # the S3 minimum: small tests still cross parts
        )


@pytest.fixture(scope="session")
def seaweed_server() -> Iterator[SeaweedS3Server]:
    """A running SeaweedFS S3 server (loopback, free ports, access keys enforced)."""
    server = SharedSeaweed.acquire()
    try:
        yield server
    finally:
        SharedSeaweed.release()


@pytest.fixture
def s3_settings(seaweed_server: SeaweedS3Server) -> S3Settings:
    """Settings for the shared server with a fresh bucket name (created on first write)."""
    return SharedSeaweed.settings(seaweed_server, f"atlas-test-{uuid.uuid4().hex[:12]}")
