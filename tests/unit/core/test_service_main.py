"""Event loop choice of the service entry point (server.event_loop)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from atlas_core.errors import ConfigError
from atlas_core.service_main import use_event_loop


@pytest.fixture(autouse=True)
def _restore_policy():
    policy = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(policy)


def test_auto_and_uvloop_install_uvloop_when_present():
    uvloop = pytest.importorskip("uvloop")
    for choice in ("auto", "uvloop"):
        asyncio.set_event_loop_policy(None)
        assert use_event_loop(choice) == "uvloop"
        assert isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)

        async def running() -> type:
            return type(asyncio.get_running_loop())

        assert asyncio.run(running()) is uvloop.Loop


def test_asyncio_keeps_the_default_loop():
    asyncio.set_event_loop_policy(None)
    assert use_event_loop("asyncio") == "asyncio"
    assert type(asyncio.get_event_loop_policy()) is asyncio.DefaultEventLoopPolicy


def test_missing_uvloop_falls_back_on_auto_and_is_a_config_error_when_required(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    asyncio.set_event_loop_policy(None)
    assert use_event_loop("auto") == "asyncio"
    assert type(asyncio.get_event_loop_policy()) is asyncio.DefaultEventLoopPolicy
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        use_event_loop("uvloop")
