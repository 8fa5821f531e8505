"""`atlas lineage <id>`: the lineage graph around one id, walked across the services (each
asked about what it owns), upstream to the raw inputs and downstream to what was made from
it, with times and who (or which job) made each step."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from atlas_core.cli._connect import client_settings
from atlas_core.clients.lineage import CLIENTS, LineageClient
from atlas_core.errors import FailedPrecondition
from atlas_core.lineage import Edge, LineageGraph, WalkedNode
from atlas_core.rpc.channel import ClientSettings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lineage",
        help="lineage of any id across the services (upstream and downstream)",
        description="Ids are '<kind>:<key>' (e.g. prediction:<id>, model_version:churn@2, "
        "dataset:churn@3, training_job:<id>, label_export:<id>); bare prj-/itm-/g_/p_ ids "
        "and prediction ids are recognised as they are.",
    )
    p.add_argument("id", help="lineage id")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.add_argument("--direction", choices=("both", "up", "down"), default="both")
    p.add_argument(
        "--children",
        type=int,
        default=20,
        help="children listed per kind and node (counts are full)",
    )
    p.add_argument("--max-nodes", type=int, default=1000, help="stop the walk after this many")
    for service in CLIENTS:
        p.add_argument(f"--{service}-address", help=f"host:port of the {service} service")
    p.add_argument(
        "--token", help="bearer token (default: $ATLAS_TOKEN or the suite's admin token)"
    )
    p.add_argument("--data-dir", default=".atlas", help="suite started by `atlas up`")
    p.set_defaults(func=_lineage)


def _settings(args: argparse.Namespace) -> dict[str, ClientSettings]:
    """Every service the CLI can find (flags, environment, or the running suite)."""
    found = {}
    for service in CLIENTS:
        one = argparse.Namespace(
            address=getattr(args, f"{service}_address"), token=args.token, data_dir=args.data_dir
        )
        try:
            found[service] = client_settings(one, service)
        except FailedPrecondition:
            continue  # not running: its nodes show as errors
    if not found:
        raise FailedPrecondition(
            "no service found: pass --<service>-address, set ATLAS_<SVC>_ADDRESS or run `atlas up`"
        )
    return found


def _lineage(args: argparse.Namespace) -> int:
    with LineageClient.connect(_settings(args)) as client:
        graph = client.walk(
            args.id,
            upstream=args.direction in ("both", "up"),
            downstream=args.direction in ("both", "down"),
            children_limit=args.children,
            max_nodes=args.max_nodes,
        )
    if args.output == "json":
        print(json.dumps(graph.to_dict(), indent=2))
    else:
        print(render(graph))
    return 0


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
