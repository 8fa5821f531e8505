"""Browser tests: the real labeling service (gRPC on port 0, SQLite, SeaweedFS S3), the real
annotator web app (uvicorn on a free port) and headless Chromium from Debian driven by
Playwright. `playwright install` cannot download browsers here, so the Debian build at
/usr/bin/chromium is used (`make test` installs it when missing)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from atlas_core.clients.labeling import LabelingClient
from atlas_core.config import AuthSettings, DatabaseSettings, S3Settings, ServerSettings
from atlas_core.launcher import SeaweedS3Server
from atlas_core.rpc import AtlasServer, ClientSettings, create_server
from atlas_core.storage import ArtifactStore, open_artifact_store
from atlas_labeling.config import JobSettings, LabelingSettings
from atlas_labeling.service import LabelingService
from atlas_labeling.servicer import labeling_service_def
from atlas_labeling.web import LabelingTarget, LabelingWebSettings, create_app
from tests.support.s3 import SharedSeaweed

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
]
ADMIN = "browser-admin-token-0001"
ANNOTATOR_A = "browser-annotator-a-0002"
ANNOTATOR_B = "browser-annotator-b-0003"
REVIEWER = "browser-reviewer-token-0004"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(
        reason=f"{CHROMIUM} is missing: `apt-get install -y chromium` (make test does it)"
    )
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(skip)


class _LoopThread:
    """An asyncio loop in a thread, for the gRPC server next to Playwright's sync API."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    grpc_address: str
    base_url: str
    store: ArtifactStore
    admin: LabelingClient
    s3: S3Settings
    service: LabelingService  # in-process: tests store model suggestions through it

    def client(self, token: str) -> LabelingClient:
        return LabelingClient(ClientSettings(target=self.grpc_address, token=SecretStr(token)))


@pytest.fixture(scope="module")
def stack(
    seaweed_server: SeaweedS3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    import uvicorn

    tmp = tmp_path_factory.mktemp("labeling-web")
    s3 = SharedSeaweed.settings(seaweed_server, f"atlas-web-{uuid.uuid4().hex[:12]}")
    scopes = ["labeling:write"]
    settings = LabelingSettings(
        server=ServerSettings(
            metrics_port=None,
            auth=AuthSettings(
                tokens={ADMIN: ["*"], ANNOTATOR_A: scopes, ANNOTATOR_B: scopes, REVIEWER: scopes}
            ),
        ),
        s3=s3,
        data_dir=tmp,
        database=DatabaseSettings(url=f"sqlite:///{tmp / 'labeling.db'}"),
        jobs=JobSettings(max_concurrent=1, runner_id="labeling-browser-test"),
    )
    loop = _LoopThread()
    service = LabelingService.open(settings)
    service.start()

    async def start() -> AtlasServer:
        server = create_server(settings.server, [labeling_service_def(service)])
        await server.start()
        return server

    server = loop.run(start())
    web_settings = LabelingWebSettings(
        port=_free_port(),
        labeling=LabelingTarget(target=server.address),
        s3=s3,
        session_secret=SecretStr("browser-test-session-secret-0123456789"),
        heartbeat_min_s=0.5,
    )
    app = create_app(web_settings)
    web = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=web_settings.port, log_level="warning", lifespan="off"
        )
    )
    web_thread = threading.Thread(target=web.run, daemon=True)
    web_thread.start()
    deadline = time.monotonic() + 30
    while not web.started:
        if time.monotonic() > deadline or not web_thread.is_alive():
            raise RuntimeError("the web app did not start")
        time.sleep(0.05)
    admin = LabelingClient(ClientSettings(target=server.address, token=SecretStr(ADMIN)))
    try:
        yield Stack(
            server.address,
            f"http://127.0.0.1:{web_settings.port}",
            open_artifact_store(s3),
            admin,
            s3,
            service,
        )
    finally:
        admin.close()
        web.should_exit = True
        web_thread.join(timeout=15)
        loop.run(server.stop(0))
        loop.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where a test saves its screenshots (look at them)."""
    path = tmp_path / "screenshots"
    path.mkdir()
    return path
