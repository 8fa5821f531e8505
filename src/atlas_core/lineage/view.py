"""What one service answers about one lineage id, and its proto form (LineageRecord)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from atlas.common.v1 import common_pb2
from atlas_core.errors import InvalidArgument, NotFound
from atlas_core.jobs import JobRecord
from atlas_core.lineage.ids import OWNER, LineageId, job, parse
from atlas_core.reasons import SharedReason

DEFAULT_CHILDREN = 20
MAX_CHILDREN = 1000
MAX_ANCESTOR_DEPTH = 16


@dataclass(frozen=True)
class LineageLink:
    role: str
    id: str


@dataclass
class LineageNode:
    id: str
    create_time: datetime | None = None
    created_by: str = ""
    produced_by: str = ""  # lineage id of the job
    operation: str = ""
    display_name: str = ""

    @property
    def kind(self) -> str:
        return parse(self.id).kind

    @property
    def service(self) -> str:
        return OWNER[self.kind]


@dataclass
class LineageView:
    """``node`` is None when the service does not own the id (children only);
    ``ancestors`` are the views of parents the same service owns, when they were asked for."""

    node: LineageNode | None
    parents: list[LineageLink] = field(default_factory=list)
    children: list[LineageLink] = field(default_factory=list)
    child_counts: dict[str, int] = field(default_factory=dict)
    ancestors: list[LineageView] = field(default_factory=list)

    def add_children(self, kind: str, role: str, ids: list[str], total: int) -> None:
        """Record one kind of children: a bounded sample (``ids``) and the full count."""
        if total:
            self.children.extend(LineageLink(role, i) for i in ids)
            self.child_counts[kind] = self.child_counts.get(kind, 0) + total


def resolve_children_limit(requested: int) -> int:
    """The request's children_limit resolved: 0 -> default, clamped to the maximum."""
    if requested < 0:
        raise InvalidArgument("children_limit is negative", reason="INVALID_ARGUMENT")
    return min(requested or DEFAULT_CHILDREN, MAX_CHILDREN)


def answer(
    view_of: Callable[[LineageId, int], LineageView],
    lineage_id: str,
    children_limit: int,
    ancestor_depth: int = 0,
) -> LineageView:
    """A service's GetLineage: the view of ``lineage_id`` and, ``ancestor_depth`` generations
    up, the views of the parents the same service owns (those that exist), each once."""
    lid = parse(lineage_id)
    limit = resolve_children_limit(children_limit)
    if ancestor_depth < 0:
        raise InvalidArgument("ancestor_depth is negative", reason="INVALID_ARGUMENT")
    root = view_of(lid, limit)
    seen = {str(lid)}
    frontier = [root] if root.node is not None else []
    for _ in range(min(ancestor_depth, MAX_ANCESTOR_DEPTH)):
        parents = []
        for view in frontier:
            for link in view.parents:
                pid = parse(link.id)
                if link.id in seen or pid.service != lid.service:
                    continue
                seen.add(link.id)
                try:
                    parents.append(view_of(pid, limit))
                except NotFound:
                    continue  # the walker asks for it itself and reports it missing
        root.ancestors.extend(parents)
        frontier = parents
    return root


def to_pb(view: LineageView) -> common_pb2.LineageRecord:
    msg = common_pb2.LineageRecord(
        parents=[common_pb2.LineageLink(role=p.role, id=p.id) for p in view.parents],
        children=[common_pb2.LineageLink(role=c.role, id=c.id) for c in view.children],
        child_counts=view.child_counts,
    )
    n = view.node
    if n is not None:
        msg.node.CopyFrom(
            common_pb2.LineageNode(
                id=n.id,
                kind=n.kind,
                service=n.service,
                created_by=n.created_by,
                produced_by=n.produced_by,
                operation=n.operation,
                display_name=n.display_name,
            )
        )
        if n.create_time is not None:
            msg.node.create_time.FromDatetime(n.create_time)
    return msg


def from_pb(msg: common_pb2.LineageRecord) -> LineageView:
    node = None
    if msg.HasField("node"):
        n = msg.node
        node = LineageNode(
            id=n.id,
            create_time=n.create_time.ToDatetime(tzinfo=timezone.utc)
            if n.HasField("create_time")
            else None,
            created_by=n.created_by,
            produced_by=n.produced_by,
            operation=n.operation,
            display_name=n.display_name,
        )
    return LineageView(
        node,
        [LineageLink(p.role, p.id) for p in msg.parents],
        [LineageLink(c.role, c.id) for c in msg.children],
        dict(msg.child_counts),
    )


def job_node(service: str, record: JobRecord) -> LineageNode:
    """A job as a lineage node: made by the client request that submitted it."""
    return LineageNode(
        id=job(service, record.id),
        create_time=record.created_at,
        created_by=record.request_id or "",
        operation=record.kind,
    )


def not_found(lid: object) -> NotFound:
    """The error for a lineage id of the service's own kind that does not exist."""
    return NotFound(
        f"{lid} does not exist", reason=SharedReason.LINEAGE_NOT_FOUND, metadata={"id": str(lid)}
    )
