"""How the CLI finds a service: --address/--token, else ATLAS_<SVC>_ADDRESS / ATLAS_TOKEN,
else the suite that `atlas up` started from --data-dir."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from pydantic import SecretStr

from atlas_core.errors import FailedPrecondition
from atlas_core.rpc.channel import ClientSettings


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="host:port[,host:port...] of the service replicas")
    parser.add_argument(
        "--token", help="bearer token (default: $ATLAS_TOKEN or the suite's admin token)"
    )
    parser.add_argument("--data-dir", default=".atlas", help="suite started by `atlas up`")


def client_settings(args: argparse.Namespace, service: str) -> ClientSettings:
    # The CLI is a program entry point: reading the environment here is deliberate.
    data_dir = Path(args.data_dir)
    target = args.address or os.environ.get(f"ATLAS_{service.upper()}_ADDRESS")
    read_target = os.environ.get(f"ATLAS_{service.upper()}_READ_ADDRESS")
    if not target:
        state_file = data_dir / "run" / "state.json"
        if not state_file.exists():
            raise FailedPrecondition(
                f"no --address given and no suite running from {data_dir} (run `atlas up`)"
            )
        procs = json.loads(state_file.read_text())["processes"]
        found = [p for p in procs if p["name"] == service]
        if not found:
            raise FailedPrecondition(f"the suite in {data_dir} runs no {service} service")
        target = found[0]["address"]
        read_target = read_target or found[0].get("read_address") or None
    token = args.token or os.environ.get("ATLAS_TOKEN")
    if not token:
        creds = data_dir / "secrets" / "credentials.json"
        if creds.exists():
            token = json.loads(creds.read_text())["admin_token"]
    return ClientSettings(
        target=target, token=SecretStr(token) if token else None, read_target=read_target
    )
