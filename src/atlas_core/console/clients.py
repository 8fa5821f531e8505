"""The typed clients of one signed-in person: every call carries their own token, so the
services decide what they may see. Kept per token in a small LRU (keyed by a digest, not the
token), closed when evicted."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from atlas_core.clients._base import ServiceClient
from atlas_core.clients.data import DataClient
from atlas_core.clients.graph import GraphClient
from atlas_core.clients.labeling import LabelingClient
from atlas_core.clients.lineage import LineageClient
from atlas_core.clients.serving import ServingClient
from atlas_core.clients.trainer import TrainerClient
from atlas_core.console.config import ConsoleSettings
from atlas_core.errors import FailedPrecondition
from atlas_core.reasons import SharedReason


@dataclass
class Clients:
    settings: ConsoleSettings
    token: str
    _data: DataClient | None = None
    _trainer: TrainerClient | None = None
    _serving: ServingClient | None = None
    _others: dict[str, ServiceClient] = field(default_factory=dict)

    def _check(self, name: str, target: str) -> None:
        if not target:
            raise FailedPrecondition(
                f"this console is not configured with a {name} service "
                f"(set ATLAS_CONSOLE_{name.upper()}__TARGET)",
                reason=SharedReason.FAILED_PRECONDITION,
            )

    @property
    def data(self) -> DataClient:
        if self._data is None:
            t = self.settings.data
            self._check("data", t.target)
            self._data = DataClient(t.client_settings(self.token), timeout=t.timeout_s)
        return self._data

    @property
    def trainer(self) -> TrainerClient:
        if self._trainer is None:
            t = self.settings.trainer
            self._check("trainer", t.target)
            self._trainer = TrainerClient(t.client_settings(self.token), timeout=t.timeout_s)
        return self._trainer

    @property
    def serving(self) -> ServingClient:
        if self._serving is None:
            t = self.settings.serving
            self._check("serving", t.target)
            self._serving = ServingClient(t.client_settings(self.token), timeout=t.timeout_s)
        return self._serving

    def lineage(self) -> LineageClient:
        """A walker over every configured service (labeling and graph own lineage nodes
        too); the clients stay this pool's to close."""
        clients: dict[str, ServiceClient] = {}
        for name, target in (
            ("data", self.settings.data),
            ("trainer", self.settings.trainer),
            ("serving", self.settings.serving),
        ):
            if target.target:
                clients[name] = getattr(self, name)
        for name, kind in (("labeling", LabelingClient), ("graph", GraphClient)):
            target = getattr(self.settings, name)
            if target.target and name not in self._others:
                self._others[name] = kind(
                    target.client_settings(self.token), timeout=target.timeout_s
                )
            if name in self._others:
                clients[name] = self._others[name]
        return LineageClient(clients)

    def close(self) -> None:
        for client in (self._data, self._trainer, self._serving, *self._others.values()):
            if client is not None:
                client.close()


class ClientPool:
    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self._clients: OrderedDict[bytes, Clients] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str) -> Clients:
        key = hashlib.sha256(token.encode()).digest()
        with self._lock:
            clients = self._clients.get(key)
            if clients is None:
                clients = self._clients[key] = Clients(self.settings, token)
            self._clients.move_to_end(key)
            while len(self._clients) > self.settings.max_clients:
                _, old = self._clients.popitem(last=False)
                old.close()
            return clients

    def close(self) -> None:
        with self._lock:
            for clients in self._clients.values():
                clients.close()
            self._clients.clear()
