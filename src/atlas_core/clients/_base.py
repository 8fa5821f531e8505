"""Base of the typed clients: one blocking channel, domain errors instead of grpc ones."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from atlas_core.lineage import LineageView, from_pb
from atlas_core.rpc.channel import ClientSettings, connect_sync
from atlas_core.rpc.status import error_from_rpc

T = TypeVar("T")


def mapped_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Re-raise grpc errors as the domain errors the server raised (atlas_core.errors)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None

    return wrapper


def mapped_stream(items: Iterator[T]) -> Iterator[T]:
    try:
        yield from items
    except grpc.RpcError as exc:
        raise error_from_rpc(exc) from None


class ServiceClient:
    """Owns a channel to one service (several replicas -> round robin). Thread-safe."""

    def __init__(self, settings: ClientSettings, *, timeout: float = 60.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._channel = connect_sync(settings)

    def close(self) -> None:
        self._channel.close()

    # Each service's GetLineageRequest type; the method is GetLineage on every service stub.
    lineage_request: Any = None
    stub: Any

    @mapped_errors
    def get_lineage(
        self, lineage_id: str, children_limit: int = 0, ancestor_depth: int = 0
    ) -> LineageView:
        """What this service knows about one lineage id: the node (for ids it owns), parents
        and children (at most ``children_limit`` per kind), and the views of
        ``ancestor_depth`` generations of parents it owns. See :mod:`atlas_core.lineage`."""
        reply = self.stub.GetLineage(
            self.lineage_request(
                id=lineage_id, children_limit=children_limit, ancestor_depth=ancestor_depth
            ),
            timeout=self.timeout,
        )
        view = from_pb(reply.lineage)
        view.ancestors = [from_pb(a) for a in reply.ancestors]
        return view

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
