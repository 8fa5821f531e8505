"""`python -m atlas_data`: the data service process."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from atlas_core.memory import raise_mmap_threshold
from atlas_core.rpc import ServiceDef
from atlas_core.service_main import run_service
from atlas_data.config import DataSettings
from atlas_data.service import DataService
from atlas_data.servicer import data_service_defs


async def build(settings: DataSettings) -> Sequence[ServiceDef]:
    raise_mmap_threshold()
    service = await asyncio.to_thread(DataService.open, settings)
    service.start()
    return data_service_defs(service)


if __name__ == "__main__":
    run_service("data", DataSettings, build)
