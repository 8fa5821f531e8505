"""`python -m atlas_serving`: the serving service process."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from atlas_core.rpc import ServiceDef
from atlas_core.service_main import run_service
from atlas_serving.config import ServingSettings
from atlas_serving.service import ServingService
from atlas_serving.servicer import serving_service_def


async def build(settings: ServingSettings) -> Sequence[ServiceDef]:
    service = await asyncio.to_thread(ServingService.open, settings)
    await service.start()
    return [serving_service_def(service)]


if __name__ == "__main__":
    run_service("serving", ServingSettings, build)
