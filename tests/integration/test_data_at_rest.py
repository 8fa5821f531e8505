"""Data at rest and on the wire to the stores: S3 server-side encryption passed through,
PostgreSQL TLS settings reaching the connection, secrets files refused when exposed."""

from __future__ import annotations

import os

import pytest
from minio import Minio
from sqlalchemy import text

from atlas_core.config import DatabaseSettings, S3Settings, ServiceSettings, load_settings
from atlas_core.db import check_connection, create_engine_from_settings
from atlas_core.errors import ConfigError, InvalidArgument, Unavailable
from atlas_core.storage import open_artifact_store
from tests.integration.test_service_startup import run_data_service
from tests.support.db import postgres_unreachable_reason, postgres_url

pytestmark = pytest.mark.slow


def _encryption(settings: S3Settings, key: str) -> str | None:
    client = Minio(
        settings.endpoint,
        access_key=settings.access_key.get_secret_value(),
        secret_key=settings.secret_key.get_secret_value(),
        secure=False,
    )
    return client.stat_object(settings.bucket, key).metadata.get("x-amz-server-side-encryption")


def test_sse_s3_encrypts_every_object_written(s3_settings: S3Settings) -> None:
    encrypted = s3_settings.model_copy(update={"sse": "s3"})
    store = open_artifact_store(encrypted)
    small = store.put_bytes("sse/small", b"x" * 100)
    big = store.put_bytes("sse/big", os.urandom(encrypted.part_size + 1))  # staged + copied
    assert _encryption(encrypted, small.key) == "AES256"
    assert _encryption(encrypted, big.key) == "AES256"
    assert store.get_bytes(small) == b"x" * 100  # the store decrypts transparently
    plain = open_artifact_store(s3_settings)
    assert _encryption(s3_settings, plain.put_bytes("sse/plain", b"y").key) is None


def test_sse_kms_needs_a_key_id_and_https(s3_settings: S3Settings) -> None:
    with pytest.raises(ConfigError, match="kms_key_id"):
        load_settings(ServiceSettings, env_prefix="ATLAS_X", env={"ATLAS_X_S3__SSE": "kms"})
    kms = s3_settings.model_copy(update={"sse": "kms", "kms_key_id": "atlas-key"})
    with pytest.raises(InvalidArgument, match="https") as err:
        open_artifact_store(kms)
    assert err.value.reason == "INVALID_CONFIG"


def test_postgres_sslmode_reaches_every_connection() -> None:
    reason = postgres_unreachable_reason(postgres_url())
    if reason is not None:
        pytest.skip(reason)
    plain = create_engine_from_settings(DatabaseSettings(url=postgres_url(), sslmode="disable"))
    try:
        assert plain.url.query["sslmode"] == "disable"  # what Optuna and ADBC connect with too
        with plain.connect() as conn:
            ssl = conn.execute(
                text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            ).scalar_one()
        assert ssl is False
    finally:
        plain.dispose()
    # The test server runs without TLS: requiring it must fail, and say why.
    strict = create_engine_from_settings(DatabaseSettings(url=postgres_url(), sslmode="require"))
    try:
        with pytest.raises(Unavailable, match="SSL"):
            check_connection(strict)
    finally:
        strict.dispose()


def test_postgres_tls_settings_on_sqlite_are_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="PostgreSQL only"):
        create_engine_from_settings(
            DatabaseSettings(url=f"sqlite:///{tmp_path / 'x.db'}", sslmode="require")
        )


def test_a_service_refuses_to_start_with_a_world_readable_tokens_file(tmp_path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("t0123456789-secret *\n")
    os.chmod(tokens, 0o644)
    out = run_data_service(tmp_path, {"ATLAS_DATA_SERVER__AUTH__TOKENS_FILE": str(tokens)})
    assert out.returncode == 2
    assert f"server.auth.tokens_file {tokens} is accessible to other users" in out.stderr
    assert "chmod 600" in out.stderr
    assert "Traceback" not in out.stderr and "t0123456789-secret" not in out.stderr
