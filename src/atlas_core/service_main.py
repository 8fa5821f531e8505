"""The shared body of every service's ``__main__``: read config once, configure JSON logs,
check dependencies, serve until SIGTERM. Startup problems become one clear line on stderr
and exit status 2 -- no traceback spam for a wrong key or an unreachable database."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from atlas_core import memory
from atlas_core.config import ServiceSettings, env_var, load_settings
from atlas_core.errors import SETTING, AtlasError, ConfigError
from atlas_core.log import configure_logging
from atlas_core.rpc.auth import TokenAuthenticator
from atlas_core.rpc.server import ServiceDef, create_server

S = TypeVar("S", bound=ServiceSettings)

# Builds the servicers (and anything they own) from settings; may raise AtlasError.
Builder = Callable[[S], Awaitable[Sequence[ServiceDef]]]


def run_service(name: str, settings_cls: type[S], build: Builder[S]) -> None:
    prefix = f"ATLAS_{name.upper()}"
    try:
        settings = load_settings(settings_cls, env_prefix=prefix, env=os.environ)
        configure_logging(settings.server.log_level, service=name)
        if settings.server.malloc_arenas is not None:  # before the server's threads start
            memory.limit_arenas(settings.server.malloc_arenas)
        loop = use_event_loop(settings.server.event_loop)
        asyncio.run(_serve(settings, build, loop))
    except AtlasError as exc:
        print(f"atlas-{name}: cannot start: {startup_message(exc, prefix)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass


def startup_message(exc: AtlasError, prefix: str) -> str:
    """The error's message naming this process's environment variables: a pod's log line
    says which variable (which Secret key, in a manifest) to fix."""
    message = exc.message.replace("ATLAS_<SERVICE>_", f"{prefix}_")
    setting = exc.metadata.get(SETTING)
    if setting:
        message += f" (set by {env_var(prefix, setting)})"
    return message


def use_event_loop(choice: str) -> str:
    """Install the configured event loop policy; returns the loop in use."""
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "server.event_loop is uvloop but uvloop is not installed; "
                "pip install uvloop or set server.event_loop to asyncio",
                reason="EVENT_LOOP_UNAVAILABLE",
            ) from None
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


async def _serve(settings: S, build: Builder[S], loop: str) -> None:
    # Tokens first: a missing or exposed tokens file is reported before any dependency is
    # contacted.
    authenticator = TokenAuthenticator.from_settings(settings.server.auth)
    services = await build(settings)
    server = create_server(settings.server, services, authenticator=authenticator)
    logging.getLogger("atlas.service").info("starting", extra={"event_loop": loop})
    every = settings.server.malloc_trim_seconds
    trimming = asyncio.create_task(trim_memory_every(every)) if every is not None else None
    try:
        await server.serve_until_signalled()
    finally:
        if trimming is not None:
            trimming.cancel()


async def trim_memory_every(seconds: float) -> None:
    """Return freed heap to the kernel now and then: glibc keeps it for reuse, so the pages a
    burst freed stay in RSS (reads as a leak) until something trims."""
    while True:
        await asyncio.sleep(seconds)
        await asyncio.to_thread(memory.trim)
