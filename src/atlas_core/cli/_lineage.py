"""`atlas lineage <id>`: the lineage graph around one id, walked across the services (each
asked about what it owns), upstream to the raw inputs and downstream to what was made from
it, with times and who (or which job) made each step."""

from __future__ import annotations

import argparse
import json

from atlas_core.cli._connect import client_settings
from atlas_core.clients.lineage import CLIENTS, LineageClient
from atlas_core.errors import FailedPrecondition
from atlas_core.lineage import render
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
