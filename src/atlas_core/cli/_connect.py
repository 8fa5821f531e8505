"""How the CLI finds a service: --address/--token, else ATLAS_<SVC>_ADDRESS / ATLAS_ADDRESS /
ATLAS_TOKEN, else the suite that `atlas up` started from --data-dir (default $ATLAS_DATA_DIR,
else .atlas)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from pydantic import SecretStr

from atlas_core.cli._output import add_output_arg
from atlas_core.errors import FailedPrecondition
from atlas_core.rpc.channel import ClientSettings

DEFAULT_DATA_DIR = ".atlas"


def add_data_dir_arg(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "--data-dir", default=None, help=f"{help_text} (default: $ATLAS_DATA_DIR or .atlas)"
    )


def data_dir(args: argparse.Namespace) -> Path:
    # The CLI is a program entry point: reading the environment here is deliberate.
    return Path(
        getattr(args, "data_dir", None) or os.environ.get("ATLAS_DATA_DIR") or DEFAULT_DATA_DIR
    )


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        help="host:port[,host:port...] of the service replicas "
        "(default: $ATLAS_<SERVICE>_ADDRESS, $ATLAS_ADDRESS, or the suite in --data-dir)",
    )
    parser.add_argument(
        "--token", help="bearer token (default: $ATLAS_TOKEN or the suite's admin token)"
    )
    add_data_dir_arg(parser, "suite started by `atlas up`")
    add_output_arg(parser)


def client_settings(args: argparse.Namespace, service: str) -> ClientSettings:
    """Settings for ``service``; records what was chosen on ``args`` (``connected_service``,
    ``connected_target``, ``token_given``) so the CLI's error handler can name the fix."""
    root = data_dir(args)
    target = (
        args.address
        or os.environ.get(f"ATLAS_{service.upper()}_ADDRESS")
        or os.environ.get("ATLAS_ADDRESS")
    )
    read_target = os.environ.get(f"ATLAS_{service.upper()}_READ_ADDRESS")
    if not target:
        state_file = root / "run" / "state.json"
        if not state_file.exists():
            raise FailedPrecondition(
                f"no suite running from {root} and no --address given: run `atlas up`, "
                "or pass --data-dir / set ATLAS_DATA_DIR to where it ran, "
                f"or pass --address / set ATLAS_{service.upper()}_ADDRESS"
            )
        procs = json.loads(state_file.read_text())["processes"]
        found = [p for p in procs if p["name"] == service]
        if not found:
            raise FailedPrecondition(f"the suite in {root} runs no {service} service")
        target = found[0]["address"]
        read_target = read_target or found[0].get("read_address") or None
    token = args.token or os.environ.get("ATLAS_TOKEN")
    if not token:
        creds = root / "secrets" / "credentials.json"
        if creds.exists():
            token = json.loads(creds.read_text())["admin_token"]
    args.connected_service, args.connected_target, args.token_given = service, target, bool(token)
    return ClientSettings(
        target=target, token=SecretStr(token) if token else None, read_target=read_target
    )
