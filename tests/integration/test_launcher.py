"""`atlas up` / `status` / `down` in a temp dir, as a user runs them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from atlas_core.launcher import implemented_services, implemented_web_apps
from atlas_core.launcher._launcher import answers_serving as _answers
from atlas_core.launcher._process import alive as _alive
from atlas_core.launcher._services import KNOWN_SERVICES
from atlas_data.native_reader import find_binary

pytestmark = pytest.mark.slow
READ_SERVICE = next(s.read_service for s in KNOWN_SERVICES if s.name == "data")


def atlas(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atlas_core.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_up_status_down(tmp_path):
    data = str(tmp_path / "suite")
    up = atlas("up", "--data-dir", data, "--s3-port", "0", "--base-port", "0")
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        state = json.loads((tmp_path / "suite/run/state.json").read_text())
        names = [p["name"] for p in state["processes"]]
        assert names == [
            "objectstore",
            *(s.name for s in implemented_services()),
            *(a.name for a in implemented_web_apps()),
        ]
        data_proc = next(p for p in state["processes"] if p["name"] == "data")
        if find_binary() is not None:  # built by `make native`: the data service starts it
            assert _answers(data_proc["read_address"], READ_SERVICE)
            assert "native online reader at" in up.stdout
        status = atlas("status", "--data-dir", data)
        assert status.returncode == 0, status.stdout
        assert status.stdout.count("SERVING") == len(names)
        # access keys are enforced: an unsigned request is refused
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://{state['s3_endpoint']}/", timeout=5)
        assert err.value.code == 403
        creds = tmp_path / "suite/secrets/credentials.json"
        assert oct(creds.stat().st_mode & 0o777) == "0o600"
        assert json.loads(creds.read_text())["admin_token"] not in up.stdout
        # a second `up` on the same data dir is refused while the first runs
        again = atlas("up", "--data-dir", data, "--s3-port", "0", "--base-port", "0")
        assert again.returncode == 2 and "already running" in again.stderr
    finally:
        down = atlas("down", "--data-dir", data)
    assert down.returncode == 0, down.stderr
    assert not any(_alive(p["pid"]) for p in state["processes"])
    if data_proc["read_address"]:
        assert not _answers(data_proc["read_address"], READ_SERVICE)  # stopped with data
    assert atlas("status", "--data-dir", data).returncode == 1


def test_port_in_use_gives_clear_message(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        up = atlas("up", "--data-dir", str(tmp_path / "s"), "--s3-port", str(port))
    assert up.returncode == 2
    assert f"port {port}" in up.stderr and "already in use" in up.stderr
    assert "Traceback" not in up.stderr
