"""`atlas up`, `atlas status`, `atlas down`: run the suite on this machine."""

from __future__ import annotations

import argparse
import json
import sys

from atlas_core.cli._connect import add_data_dir_arg, data_dir
from atlas_core.errors import FailedPrecondition
from atlas_core.launcher import Launcher, RunState


def _launcher(args: argparse.Namespace) -> Launcher:
    return Launcher(
        data_dir(args),
        s3_port=getattr(args, "s3_port", 8333),
        base_port=getattr(args, "base_port", 7100),
    )


def _common(p: argparse.ArgumentParser) -> None:
    add_data_dir_arg(p, "where data, logs, credentials and run state live")


def cmd_up(args: argparse.Namespace) -> int:
    launcher = _launcher(args)
    state = launcher.up(timeout=args.timeout)
    print(f"suite is up; data in {state.data_dir}")
    print(f"  S3 endpoint: {state.s3_endpoint} (keys in {launcher.data_dir}/secrets/)")
    print(f"  admin token: {launcher.data_dir}/secrets/credentials.json (admin_token)")
    console = _console_url(state)
    if console:
        print(f"  web console: {console} (sign-in token: `atlas console --show-token`)")
    print("  stop it with: atlas down" + (f" --data-dir {args.data_dir}" if args.data_dir else ""))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    rows = _launcher(args).status()
    if not rows:
        print(
            f"atlas: no suite is running from {data_dir(args).resolve()} (start one with "
            "`atlas up`, or pass --data-dir / set ATLAS_DATA_DIR to where it runs)",
            file=sys.stderr,
        )
        return 1
    print(f"{'process':<12} {'pid':>7}  {'address':<21} {'status':<12} log")
    for proc, status in rows:
        print(f"{proc.name:<12} {proc.pid:>7}  {proc.address:<21} {status:<12} {proc.log}")
    return 0 if all(s == "SERVING" for _, s in rows) else 1


def _console_url(state: RunState) -> str | None:
    found = [p for p in state.processes if p.name == "console"]
    return f"http://{found[0].address}/" if found else None


def cmd_console(args: argparse.Namespace) -> int:
    launcher = _launcher(args)
    state = launcher.state()
    url = _console_url(state) if state else None
    if url is None:
        raise FailedPrecondition(
            f"no web console is running from {launcher.data_dir.resolve()}: start the suite "
            "with `atlas up` (or pass --data-dir / set ATLAS_DATA_DIR to where it runs)"
        )
    creds = launcher.data_dir / "secrets" / "credentials.json"
    print(f"web console: {url}")
    if args.show_token:
        print(f"admin token: {json.loads(creds.read_text())['admin_token']}")
    else:
        print(f"sign in with admin_token from {creds} (or run `atlas console --show-token`)")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    stopped = _launcher(args).down()
    print(f"stopped {stopped} process(es)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    up = sub.add_parser(
        "up",
        help="start the object store and every implemented service",
        description="Start SeaweedFS (S3, loopback, keys enforced) and each "
        "implemented service as its own process; wait until all are SERVING.",
    )
    _common(up)
    up.add_argument("--s3-port", type=int, default=8333, help="S3 port (0 = any free port)")
    up.add_argument(
        "--base-port",
        type=int,
        default=7100,
        help="service ports are base+1.. (data 7101, trainer 7102, serving 7103, "
        "labeling 7104, graph 7105); metrics at base+101..; 0 = free ports",
    )
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait per process")
    up.set_defaults(func=cmd_up)
    status = sub.add_parser("status", help="show what `atlas up` started and its health")
    _common(status)
    status.set_defaults(func=cmd_status)
    console = sub.add_parser("console", help="where the web console runs and how to sign in to it")
    _common(console)
    console.add_argument(
        "--show-token", action="store_true", help="print the admin token to paste at sign-in"
    )
    console.set_defaults(func=cmd_console)
    down = sub.add_parser("down", help="stop everything `atlas up` started")
    _common(down)
    down.set_defaults(func=cmd_down)
