"""The lineage walk over the services' GetLineage RPCs (see :mod:`atlas_core.lineage`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from atlas_core.clients._base import ServiceClient
from atlas_core.clients.data import DataClient
from atlas_core.clients.graph import GraphClient
from atlas_core.clients.labeling import LabelingClient
from atlas_core.clients.serving import ServingClient
from atlas_core.clients.trainer import TrainerClient
from atlas_core.errors import Unavailable
from atlas_core.lineage import LineageGraph, LineageView, walk
from atlas_core.rpc.channel import ClientSettings

CLIENTS: dict[str, type[ServiceClient]] = {
    "data": DataClient,
    "trainer": TrainerClient,
    "serving": ServingClient,
    "labeling": LabelingClient,
    "graph": GraphClient,
}


class LineageClient:
    """Follows lineage ids to whichever service owns them. Services without a client are
    reported as ``error`` nodes by the walk (or make it fail when the start node is theirs)."""

    def __init__(self, clients: Mapping[str, ServiceClient]) -> None:
        self.clients = dict(clients)

    @classmethod
    def connect(cls, settings: Mapping[str, ClientSettings], **kwargs: Any) -> LineageClient:
        """One client per service named in ``settings`` (keys as in :data:`CLIENTS`)."""
        return cls({s: CLIENTS[s](conf, **kwargs) for s, conf in settings.items()})

    def fetch(
        self, service: str, lineage_id: str, children_limit: int, ancestor_depth: int = 0
    ) -> LineageView:
        client = self.clients.get(service)
        if client is None:
            raise Unavailable(f"no {service} service to ask about {lineage_id}")
        return client.get_lineage(lineage_id, children_limit, ancestor_depth)

    def walk(self, start: str, **kwargs: Any) -> LineageGraph:
        """The graph around ``start``; keyword arguments as :func:`atlas_core.lineage.walk`."""
        return walk(start, self.fetch, **kwargs)

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def __enter__(self) -> LineageClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
