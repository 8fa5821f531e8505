"""The client-side lineage walk: from one id, ask the owning service for its node and
parents (upstream) and every service that may hold children of it (downstream), in parallel
as ids become known, until the graph is complete or the node budget is spent.

Deleted parents become ``missing`` nodes, a service that fails becomes an ``error`` node,
and cycles are reported (each node is fetched once, so a cycle cannot loop the walk).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from atlas_core.errors import AtlasError, InvalidArgument, NotFound
from atlas_core.lineage.ids import OWNER, recognise
from atlas_core.lineage.view import LineageNode, LineageView
from atlas_core.reasons import SharedReason

# Which services hold children of a node of this kind besides its owner.
REFERENCED_BY: dict[str, tuple[str, ...]] = {
    "dataset": ("trainer", "serving"),
    "training_job": ("serving",),
    "trial": ("serving",),
    "model_version": ("labeling", "trainer"),
    "prediction": ("labeling",),
    "labeling_project": ("data",),
    "label_export": ("data",),
}

# (service, lineage id, children limit, ancestor depth) -> what that service knows (with the
# views of its own ancestors of the id that deep); raises NotFound for an id of its own kind
# that does not exist.
Fetch = Callable[[str, str, int, int], LineageView]
# Generations of same-service parents asked for with each upstream fetch: a service answers
# for a chain of its own nodes (dataset <- dataset <- feature group) in one call.
ANCESTOR_DEPTH = 8


@dataclass
class WalkedNode:
    """``status``: ok | missing (referenced, does not exist) | external (an object-store
    artifact, owned by no service) | error (its service failed; ``error`` says why)."""

    id: str
    kind: str
    service: str
    status: str = "ok"
    node: LineageNode | None = None
    error: str = ""
    child_counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        n = self.node
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "service": self.service,
            "status": self.status,
        }
        if n is not None:
            out |= {
                "create_time": n.create_time.isoformat() if n.create_time else "",
                "created_by": n.created_by,
                "produced_by": n.produced_by,
                "operation": n.operation,
                "display_name": n.display_name,
            }
        if self.error:
            out["error"] = self.error
        if self.child_counts:
            out["child_counts"] = dict(self.child_counts)
        return out


@dataclass(frozen=True)
class Edge:
    parent: str
    child: str
    role: str


@dataclass
class LineageGraph:
    root: str
    nodes: dict[str, WalkedNode] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    cycles: list[list[str]] = field(default_factory=list)
    truncated: bool = False

    def parents_of(self, node_id: str) -> list[Edge]:
        return [e for e in self.edges if e.child == node_id]

    def children_of(self, node_id: str) -> list[Edge]:
        return [e for e in self.edges if e.parent == node_id]

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "nodes": [n.to_dict() for n in self.nodes.values()],
            "edges": [{"parent": e.parent, "child": e.child, "role": e.role} for e in self.edges],
            "cycles": self.cycles,
            "truncated": self.truncated,
        }


class _Walk:
    """Fetches as soon as an id is known (not level by level), so the walk takes as long as
    its longest chain of dependent calls; every continuation runs on the calling thread."""

    def __init__(self, fetch: Fetch, children_limit: int, max_nodes: int, workers: int) -> None:
        self.fetch = fetch
        self.children_limit = children_limit
        self.max_nodes = max_nodes
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.pending: dict[Future[Any], Callable[[Any], None]] = {}
        self.edges: dict[tuple[str, str], str] = {}
        self.nodes: dict[str, WalkedNode] = {}
        self.views: dict[str, LineageView | None] = {}
        self.waiting: dict[str, set[str]] = {}  # id being fetched -> directions to expand
        self.expanded: set[tuple[str, str]] = set()
        self.truncated = False

    def seed(self, lid: str, depth: int) -> None:
        """The start node, from its owner; its errors are the walk's errors."""
        kind = recognise(lid).kind
        if not OWNER[kind]:
            raise InvalidArgument(
                f"{lid} is an object-store artifact: start from the node that uses it",
                reason=SharedReason.BAD_LINEAGE_ID,
            )
        self._absorb(lid, self.fetch(OWNER[kind], lid, self.children_limit, depth))

    def run(self) -> None:
        while self.pending:
            done, _ = wait(self.pending, return_when=FIRST_COMPLETED)
            for future in done:
                self.pending.pop(future)(future.result())

    def _submit(self, fn: Callable[[], Any], then: Callable[[Any], None]) -> None:
        self.pending[self.pool.submit(fn)] = then

    def want(self, lid: str, direction: str) -> None:
        """Expand ``lid`` in ``direction`` ("up" or "down") once its owner has answered."""
        if lid in self.views:
            self.expand(lid, direction)
        elif lid in self.waiting:
            self.waiting[lid].add(direction)
        elif len(self.views) + len(self.waiting) >= self.max_nodes:
            self.truncated = True
        else:
            self.waiting[lid] = {direction}
            depth = ANCESTOR_DEPTH if direction == "up" else 0
            self._submit(partial(self._own, lid, depth), partial(self._owned, lid))

    def _absorb(self, lid: str, view: LineageView) -> None:
        """Record an owner's view and the views of its ancestors that came with it."""
        kind = recognise(lid).kind
        self.views[lid] = view
        self.nodes[lid] = WalkedNode(
            lid, kind, OWNER[kind], node=view.node, child_counts=dict(view.child_counts)
        )
        for ancestor in view.ancestors:
            if ancestor.node is not None and ancestor.node.id not in self.views:
                self._absorb(ancestor.node.id, ancestor)

    def _own(self, lid: str, depth: int) -> tuple[WalkedNode, LineageView | None]:
        kind = recognise(lid).kind
        walked = WalkedNode(lid, kind, OWNER[kind])
        if not walked.service:
            walked.status = "external"
            return walked, None
        try:
            view = self.fetch(walked.service, lid, self.children_limit, depth)
        except NotFound as exc:
            walked.status, walked.error = "missing", str(exc)
            return walked, None
        except AtlasError as exc:
            walked.status, walked.error = "error", f"{walked.service}: {exc}"
            return walked, None
        return walked, view

    def _owned(self, lid: str, got: tuple[WalkedNode, LineageView | None]) -> None:
        walked, view = got
        if lid not in self.views:  # else it came meanwhile as another answer's ancestor
            if view is None:
                self.nodes[lid], self.views[lid] = walked, None
            else:
                self._absorb(lid, view)
        for direction in self.waiting.pop(lid):
            self.expand(lid, direction)

    def expand(self, lid: str, direction: str) -> None:
        view = self.views[lid]
        if view is None or (lid, direction) in self.expanded:
            return
        self.expanded.add((lid, direction))
        if direction == "up":
            for p in view.parents:
                self.edges.setdefault((p.id, lid), p.role)
                self.want(p.id, "up")
            return
        self._children(lid, view)
        for service in REFERENCED_BY.get(self.nodes[lid].kind, ()):
            self._submit(
                partial(self._foreign, service, lid), partial(self._referred, lid, service)
            )

    def _children(self, lid: str, view: LineageView) -> None:
        for c in view.children:
            self.edges.setdefault((lid, c.id), c.role)
            self.want(c.id, "down")

    def _foreign(self, service: str, lid: str) -> LineageView | None:
        try:
            return self.fetch(service, lid, self.children_limit, 0)
        except AtlasError:
            return None

    def _referred(self, lid: str, service: str, view: LineageView | None) -> None:
        """Children of ``lid`` held by a service other than its owner."""
        node = self.nodes[lid]
        if view is None:
            node.error = f"{service} did not answer for children"
            return
        for k, n in view.child_counts.items():
            node.child_counts[k] = node.child_counts.get(k, 0) + n
        self._children(lid, view)


def walk(
    start: str,
    fetch: Fetch,
    *,
    upstream: bool = True,
    downstream: bool = True,
    children_limit: int = 20,
    max_nodes: int = 1000,
    workers: int = 8,
) -> LineageGraph:
    """The lineage graph around ``start`` (a typed or recognisable bare id): its ancestors
    through parents and its descendants through children.

    Raises InvalidArgument for an unrecognisable id and NotFound when ``start`` itself does
    not exist; everything found missing or failing further out is reported in the graph.
    """
    root = str(recognise(start))
    w = _Walk(fetch, children_limit, max_nodes, workers)
    try:
        w.seed(root, ANCESTOR_DEPTH if upstream else 0)
        for direction, wanted in (("up", upstream), ("down", downstream)):
            if wanted:
                w.expand(root, direction)
        w.run()
    finally:
        w.pool.shutdown(wait=False, cancel_futures=True)
    edges = [Edge(p, c, role) for (p, c), role in w.edges.items()]
    return LineageGraph(root, w.nodes, edges, find_cycles(edges), w.truncated)


def find_cycles(edges: Iterable[Edge]) -> list[list[str]]:
    """Each cycle of the directed parent -> child graph, once, as the list of its node ids
    (found by a depth-first search; a back edge closes one)."""
    succ: dict[str, list[str]] = {}
    for e in edges:
        succ.setdefault(e.parent, []).append(e.child)
    colour: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles: list[list[str]] = []
    for origin in list(succ):
        if colour.get(origin):
            continue
        path: list[str] = [origin]
        stack = [iter(succ.get(origin, ()))]
        colour[origin] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = 2
                stack.pop()
            elif colour.get(nxt) == 1:
                cycles.append(path[path.index(nxt) :])
            elif not colour.get(nxt):
                colour[nxt] = 1
                path.append(nxt)
                stack.append(iter(succ.get(nxt, ())))
    return cycles
