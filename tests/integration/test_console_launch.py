"""The launcher starts the console as `python -m atlas_core.console` on its own port, with
the targets of every service it reads in ATLAS_CONSOLE_* (a prefix no other app shares), and
the console asks for a token before anything else."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from atlas_core.launcher import KNOWN_WEB_APPS, Launcher, ensure_credentials
from atlas_core.launcher._launcher import HTTP_APP, answers_http, wait_http
from atlas_core.launcher._process import alive, terminate


def test_the_console_has_its_own_port_and_env_prefix() -> None:
    console = next(a for a in KNOWN_WEB_APPS if a.name == "console")
    assert console.env_prefix == "ATLAS_CONSOLE_" and console.port_offset == 81
    for other in KNOWN_WEB_APPS:
        if other is not console:
            assert not other.env_prefix.startswith(console.env_prefix)
            assert not console.env_prefix.startswith(other.env_prefix)
            assert other.port_offset != console.port_offset


def test_launcher_starts_the_console_with_every_service_target(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path / "suite", base_port=0)
    creds = ensure_credentials(launcher.data_dir)
    console = next(a for a in KNOWN_WEB_APPS if a.name == "console")
    peers = {name: f"127.0.0.1:{9000 + i}" for i, name in enumerate(("trainer", *console.calls))}
    # No services behind it: the console starts anyway and calls them per page.
    info = launcher._start_web_app(console, creds, "127.0.0.1:9", peers)
    try:
        assert info.full_name == HTTP_APP
        wait_http(info.address, pid=info.pid, log=Path(info.log), timeout=60)
        environ = Path(f"/proc/{info.pid}/environ").read_bytes().split(b"\0")
        env = dict(e.decode().split("=", 1) for e in environ if b"=" in e)
        for name, target in peers.items():
            assert env[f"ATLAS_CONSOLE_{name.upper()}__TARGET"] == target
        with urllib.request.urlopen(f"http://{info.address}/endpoints", timeout=10) as resp:
            assert resp.status == 200 and "/signin" in resp.url
            assert 'name="token"' in resp.read().decode()
    finally:
        terminate(info.pid, 10)
    assert not alive(info.pid) and not answers_http(info.address)
