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

from atlas_core.config import ServiceSettings, load_settings
from atlas_core.errors import AtlasError
from atlas_core.log import configure_logging
from atlas_core.rpc.server import ServiceDef, create_server

S = TypeVar("S", bound=ServiceSettings)

# Builds the servicers (and anything they own) from settings; may raise AtlasError.
Builder = Callable[[S], Awaitable[Sequence[ServiceDef]]]


def run_service(name: str, settings_cls: type[S], build: Builder[S]) -> None:
    prefix = f"ATLAS_{name.upper()}"
    try:
        settings = load_settings(settings_cls, env_prefix=prefix, env=os.environ)
        configure_logging(settings.server.log_level, service=name)
        asyncio.run(_serve(settings, build))
    except AtlasError as exc:
        print(f"atlas-{name}: cannot start: {exc.message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass


async def _serve(settings: S, build: Builder[S]) -> None:
    services = await build(settings)
    server = create_server(settings.server, services)
    logging.getLogger("atlas.service").info("starting")
    await server.serve_until_signalled()
