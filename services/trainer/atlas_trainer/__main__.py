"""`python -m atlas_trainer`: the trainer service process."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from atlas_core.rpc import ServiceDef
from atlas_core.service_main import run_service
from atlas_trainer.config import TrainerSettings
from atlas_trainer.service import TrainerService
from atlas_trainer.servicer import trainer_service_def


async def build(settings: TrainerSettings) -> Sequence[ServiceDef]:
    service = await asyncio.to_thread(TrainerService.open, settings)
    service.start()
    return [trainer_service_def(service)]


if __name__ == "__main__":
    run_service("trainer", TrainerSettings, build)
