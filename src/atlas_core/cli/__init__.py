"""The `atlas` command line. Each command group registers itself in :data:`GROUPS`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from atlas_core.cli import _data, _graph, _labeling, _lineage, _serving, _suite, _trainer
from atlas_core.errors import AtlasError

GROUPS = (_suite, _labeling, _data, _trainer, _serving, _graph, _lineage)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atlas",
        description="ATLAS: label, build datasets, AutoML, deploy and monitor -- one platform.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AtlasError as exc:
        print(f"atlas: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
