"""`python -m atlas_graph`: the graph service process."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from atlas_core.rpc import ServiceDef
from atlas_core.service_main import run_service
from atlas_graph.config import GraphSettings
from atlas_graph.service import GraphService
from atlas_graph.servicer import graph_service_def


async def build(settings: GraphSettings) -> Sequence[ServiceDef]:
    service = await asyncio.to_thread(GraphService.open, settings)
    service.start()
    return [graph_service_def(service)]


if __name__ == "__main__":
    run_service("graph", GraphSettings, build)
