"""The lineage graph as indented text: the root, then its upstream and downstream trees."""

from __future__ import annotations

from collections.abc import Callable

from atlas_core.lineage.walk import Edge, LineageGraph, WalkedNode


def describe(n: WalkedNode) -> str:
    parts = [n.id]
    if n.status != "ok":
        parts.append(f"[{n.status}{': ' + n.error if n.error else ''}]")
    node = n.node
    if node is not None:
        if node.display_name:
            parts.append(repr(node.display_name))
        if node.operation:
            parts.append(node.operation)
        if node.create_time:
            parts.append(node.create_time.strftime("%Y-%m-%d %H:%M:%S UTC"))
        who = node.created_by or node.produced_by
        if who:
            parts.append(f"by {who}")
    more = {k: v for k, v in n.child_counts.items() if v}
    if more:
        parts.append("children " + ", ".join(f"{k}={v}" for k, v in sorted(more.items())))
    return "  ".join(parts)


def render(graph: LineageGraph) -> str:
    lines = [describe(graph.nodes[graph.root])]
    for title, step, end in (
        ("upstream", graph.parents_of, lambda e: e.parent),
        ("downstream", graph.children_of, lambda e: e.child),
    ):
        if step(graph.root):  # a walk in one direction prints only that one
            lines.append(f"{title}:")
            _tree(graph, graph.root, step, end, "  ", {graph.root}, set(), lines)
    if graph.cycles:
        lines.append("cycles: " + "; ".join(" -> ".join(c + c[:1]) for c in graph.cycles))
    if graph.truncated:
        lines.append("(truncated: raise --max-nodes to see more)")
    return "\n".join(lines)


def _tree(
    graph: LineageGraph,
    at: str,
    step: Callable[[str], list[Edge]],
    end: Callable[[Edge], str],
    indent: str,
    path: set[str],
    shown: set[str],
    lines: list[str],
) -> None:
    """One line per edge; a node reached again prints once (a DAG shares ancestors)."""
    for edge in step(at):
        other = end(edge)
        if other in path:
            lines.append(f"{indent}{edge.role}: {other}  (cycle)")
            continue
        if other in shown:
            lines.append(f"{indent}{edge.role}: {other}  (see above)")
            continue
        shown.add(other)
        node = graph.nodes.get(other)
        lines.append(f"{indent}{edge.role}: {describe(node) if node is not None else other}")
        _tree(graph, other, step, end, indent + "  ", path | {other}, shown, lines)
