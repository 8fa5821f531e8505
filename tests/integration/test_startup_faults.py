"""What a pod's log shows when its credentials are wrong or its Secret is missing: every
service, started as its container starts it (``python -m atlas_<svc>``, settings from the
environment), refuses to start -- so it never reports SERVING and its readiness probe fails --
with exactly one line on stderr that names the setting (the environment variable) to fix and
never the secret itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from atlas_core.config import S3Settings
from atlas_core.launcher._services import KNOWN_SERVICES
from tests.support.processes import free_port

pytestmark = pytest.mark.slow
SERVICES = [s.name for s in KNOWN_SERVICES]
SECRET = "definitely-wrong-secret"


def _start(name: str, tmp: Path, s3: S3Settings, **overrides: str) -> subprocess.CompletedProcess:
    p = f"ATLAS_{name.upper()}_"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
    env.update(
        {
            f"{p}SERVER__PORT": str(free_port()),
            f"{p}SERVER__AUTH__TOKENS": json.dumps({"startup-faults-token": ["*"]}),
            f"{p}DATABASE__URL": f"sqlite:///{tmp / f'{name}.db'}",
            f"{p}DATA_DIR": str(tmp / name),
            f"{p}S3__ENDPOINT": s3.endpoint,
            f"{p}S3__ACCESS_KEY": s3.access_key.get_secret_value(),
            f"{p}S3__SECRET_KEY": s3.secret_key.get_secret_value(),
            f"{p}S3__BUCKET": s3.bucket,
        }
    )
    env.update({p + k: v for k, v in overrides.items()})
    return subprocess.run(
        [sys.executable, "-m", f"atlas_{name}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line(out: subprocess.CompletedProcess, name: str) -> str:
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"atlas-{name}: cannot start: "), lines[0]
    return lines[0]


@pytest.mark.parametrize("name", SERVICES)
def test_wrong_s3_secret_key(name: str, tmp_path: Path, s3_settings: S3Settings) -> None:
    line = _one_line(_start(name, tmp_path, s3_settings, S3__SECRET_KEY=SECRET), name)
    assert f"ATLAS_{name.upper()}_S3__SECRET_KEY" in line
    assert SECRET not in line


# the database check is one shared function: the light images' services show it
@pytest.mark.parametrize("name", ["data", "serving", "labeling"])
def test_wrong_postgres_user(name: str, tmp_path: Path, s3_settings: S3Settings) -> None:
    url = "postgresql+psycopg://atlas_no_such_role:pw-secret@127.0.0.1:5432/test"
    line = _one_line(_start(name, tmp_path, s3_settings, DATABASE__URL=url), name)
    assert f"ATLAS_{name.upper()}_DATABASE__URL" in line
    assert "atlas_no_such_role" in line and "pw-secret" not in line


def test_missing_signing_key_secret(tmp_path: Path, s3_settings: S3Settings) -> None:
    """prod mounts the optional Secret atlas-bundle-signing and points the bundle producers
    at its key: without the Secret the trainer (graph alike) names the file and variable."""
    name = "trainer"
    missing = "/etc/atlas/bundle-signing/signing.key"
    line = _one_line(_start(name, tmp_path, s3_settings, BUNDLES__SIGNING_KEY_FILE=missing), name)
    assert f"ATLAS_{name.upper()}_BUNDLES__SIGNING_KEY_FILE" in line and missing in line
