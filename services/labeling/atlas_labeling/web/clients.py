"""One LabelingClient per signed-in token: the service names the annotator after the token,
so every call carries the person's own token, never a shared one."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable

from atlas_core.clients.labeling import LabelingClient
from atlas_labeling.web.config import LabelingTarget


class ClientPool:
    """Thread-safe LRU of clients keyed by a digest of the token (the token itself is not
    kept as a key). An evicted client's channel is closed; calls in flight on it fail with
    UNAVAILABLE/CANCELLED and the page shows that, which only happens under churn of more
    than ``max_clients`` people at once."""

    def __init__(
        self,
        target: LabelingTarget,
        *,
        max_clients: int = 64,
        factory: Callable[[LabelingTarget, str], LabelingClient] | None = None,
    ) -> None:
        self.target = target
        self.max_clients = max_clients
        self._factory = factory or (
            lambda t, token: LabelingClient(t.client_settings(token), timeout=t.timeout_s)
        )
        self._clients: OrderedDict[bytes, LabelingClient] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str) -> LabelingClient:
        key = hashlib.sha256(token.encode()).digest()
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
            client = self._factory(self.target, token)
            self._clients[key] = client
            while len(self._clients) > self.max_clients:
                _, old = self._clients.popitem(last=False)
                old.close()
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
