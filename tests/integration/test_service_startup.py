"""A service with bad configuration or unreachable dependencies refuses to start with one
clear line (exit status 2), never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def run_data_service(tmp_path, extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
    env.update(
        {
            "ATLAS_DATA_SERVER__AUTH__TOKENS": json.dumps({"t0123456789": ["*"]}),
            "ATLAS_DATA_DATABASE__URL": f"sqlite:///{tmp_path / 'data.db'}",
            "ATLAS_DATA_DATA_DIR": str(tmp_path),
            **extra,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "atlas_data"], env=env, capture_output=True, text=True, timeout=120
    )


def test_unknown_config_key_names_the_key(tmp_path):
    out = run_data_service(tmp_path, {"ATLAS_DATA_ONLINE__BAKEND": "lmdb"})
    assert out.returncode == 2
    assert "online.bakend" in out.stderr and "ATLAS_DATA_ONLINE__BAKEND" in out.stderr
    assert "Traceback" not in out.stderr


def test_wrong_s3_credentials_are_a_clear_startup_error(tmp_path, s3_settings):
    out = run_data_service(
        tmp_path,
        {
            "ATLAS_DATA_S3__ENDPOINT": s3_settings.endpoint,
            "ATLAS_DATA_S3__ACCESS_KEY": s3_settings.access_key.get_secret_value(),
            "ATLAS_DATA_S3__SECRET_KEY": "definitely-wrong-secret",
        },
    )
    assert out.returncode == 2, out.stderr
    assert "cannot start" in out.stderr and "credentials" in out.stderr.lower()
    assert "definitely-wrong-secret" not in out.stderr
    assert "Traceback" not in out.stderr


def test_unreachable_database_is_a_clear_startup_error(tmp_path):
    out = run_data_service(
        tmp_path,
        {"ATLAS_DATA_DATABASE__URL": "postgresql+psycopg://atlas:pw-secret@127.0.0.1:1/atlas"},
    )
    assert out.returncode == 2, out.stderr
    assert "127.0.0.1:1" in out.stderr and "pw-secret" not in out.stderr
    assert "Traceback" not in out.stderr
