"""The `atlas` command line. Each command group registers itself in :data:`GROUPS`."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from atlas_core.cli import _data, _graph, _labeling, _lineage, _serving, _suite, _trainer
from atlas_core.cli._errors import describe

GROUPS = (_suite, _labeling, _data, _trainer, _serving, _graph, _lineage)


class _OneLineErrors(argparse.ArgumentParser):
    """A mistake on the command line is one line naming it (argparse's usage block would bury
    it); --help has the usage. Subcommand parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(
        prog="atlas",
        description="ATLAS: label, build datasets, AutoML, deploy and monitor -- one platform. "
        "Environment: ATLAS_DATA_DIR, ATLAS_ADDRESS (or ATLAS_<SERVICE>_ADDRESS), ATLAS_TOKEN.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback when a command fails"
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line, not only before the command.
    debug = "--debug" in argv
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # every failure becomes one line; --debug adds the traceback
        if debug:
            traceback.print_exc()
        print(f"atlas: {describe(exc, args)}", file=sys.stderr)
        return 2 if not isinstance(exc, OSError) else 1
