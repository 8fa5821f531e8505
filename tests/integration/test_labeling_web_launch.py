"""The launcher starts the annotator web app as `python -m atlas_labeling.web` with its
settings in ATLAS_LABELING_WEB_* and checks it over HTTP, as `atlas up` will once the
labeling service is launchable."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from atlas_core.launcher import KNOWN_WEB_APPS, Launcher, ensure_credentials
from atlas_core.launcher._launcher import HTTP_APP, answers_http, wait_http
from atlas_core.launcher._process import alive, terminate


def test_launcher_starts_the_web_app_and_it_asks_for_a_token(tmp_path: Path) -> None:
    launcher = Launcher(tmp_path / "suite", base_port=0)
    creds = ensure_credentials(launcher.data_dir)
    app = next(a for a in KNOWN_WEB_APPS if a.name == "labeling-web")
    # No labeling service behind it: the app starts anyway and calls the service per page.
    info = launcher._start_web_app(app, creds, "127.0.0.1:9", {"labeling": "127.0.0.1:9"})
    try:
        assert info.full_name == HTTP_APP
        wait_http(info.address, pid=info.pid, log=Path(info.log), timeout=60)
        with urllib.request.urlopen(f"http://{info.address}/p/x/next", timeout=10) as resp:
            assert resp.status == 200 and "/signin" in resp.url
            assert 'name="token"' in resp.read().decode()
        secret = launcher.data_dir / "secrets" / "web_session_secret"
        assert oct(secret.stat().st_mode & 0o777) == "0o600"
        assert secret.read_text().strip() not in Path(info.log).read_text()
    finally:
        terminate(info.pid, 10)
    assert not alive(info.pid) and not answers_http(info.address)
