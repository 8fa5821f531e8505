"""`python -m atlas_labeling`: the labeling service process."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from atlas_core.rpc import ServiceDef
from atlas_core.service_main import run_service
from atlas_labeling.config import LabelingSettings
from atlas_labeling.service import LabelingService
from atlas_labeling.servicer import labeling_service_def


async def build(settings: LabelingSettings) -> Sequence[ServiceDef]:
    if settings.switch_interval_s is not None:
        sys.setswitchinterval(settings.switch_interval_s)
    service = await asyncio.to_thread(LabelingService.open, settings)
    service.start()
    return [labeling_service_def(service)]


if __name__ == "__main__":
    run_service("labeling", LabelingSettings, build)
