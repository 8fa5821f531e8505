from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from atlas_core.config import AuthSettings, ServerSettings
from atlas_core.rpc import AtlasServer, ClientSettings, connect, create_server
from tests.support.echo import echo_service

TOKENS = {
    "tok-read-0123456789": ["testing:read"],
    "tok-write-0123456789": ["testing:write"],
    "tok-admin-0123456789": ["*"],
}


def server_settings(**overrides: object) -> ServerSettings:
    base = {"auth": AuthSettings(tokens=TOKENS), "shutdown_grace_seconds": 2.0}
    base.update(overrides)
    return ServerSettings(**base)  # type: ignore[arg-type]


@pytest.fixture(params=["generic", "registered"])
async def echo_server(request: pytest.FixtureRequest) -> AsyncIterator[AtlasServer]:
    """The echo service registered as a generic handler, and as generated code registers
    (registered methods first): the server's wrapping must cover both."""
    server = create_server(
        server_settings(), [echo_service(registered=request.param == "registered")]
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop(0)


def channel_for(server: AtlasServer, token: str | None = "tok-admin-0123456789", **kw: object):
    return connect(ClientSettings(target=server.address, token=token, **kw))  # type: ignore[arg-type]
