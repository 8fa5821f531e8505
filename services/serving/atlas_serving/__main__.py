"""`python -m atlas_serving`: the serving service process.

Like ``run_service`` but the serving metrics join the server's registry (one /metrics) and
the service's async loops stop after the server has drained."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from atlas_core.config import load_settings
from atlas_core.errors import AtlasError
from atlas_core.log import configure_logging
from atlas_core.rpc import create_server
from atlas_serving.config import ServingSettings
from atlas_serving.service import ServingService
from atlas_serving.servicer import serving_service_def


async def serve(settings: ServingSettings) -> None:
    service = await asyncio.to_thread(ServingService.open, settings)
    await service.start()
    server = create_server(settings.server, [serving_service_def(service)])
    service.metrics.attach(server.metrics.registry)
    logging.getLogger("atlas.service").info("starting")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    await service.stop()


def main() -> None:
    try:
        settings = load_settings(ServingSettings, env_prefix="ATLAS_SERVING", env=os.environ)
        configure_logging(settings.server.log_level, service="serving")
        asyncio.run(serve(settings))
    except AtlasError as exc:
        print(f"atlas-serving: cannot start: {exc.message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
