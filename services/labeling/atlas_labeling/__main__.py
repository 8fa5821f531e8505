"""`python -m atlas_labeling`: the labeling service process."""

from __future__ import annotations

import asyncio
import gc
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
    # Everything alive now (the libraries, about 100k objects) leaves the cyclic GC's reach: a
    # full collection walks every tracked object with the GIL held (a quarter of a second on a
    # busy host), a stall for every request in flight. Requests' garbage stays in the young
    # generations, collected as usual.
    gc.collect()
    gc.freeze()
    return [labeling_service_def(service)]


if __name__ == "__main__":
    run_service("labeling", LabelingSettings, build)
