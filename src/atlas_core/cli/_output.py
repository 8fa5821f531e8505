"""`-o table|json|yaml`: one output style for every read command. JSON and YAML use the
protos' own field names (snake_case), as `google.protobuf.json_format` writes them."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from typing import Any

import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

FORMATS = ("table", "json", "yaml")


def add_output_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", choices=FORMATS, default=None, help="output format (default: table)"
    )


def as_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def dump(value: Any, fmt: str) -> str:
    if fmt == "yaml":
        return yaml.safe_dump(value, sort_keys=False, allow_unicode=True).rstrip()
    return json.dumps(value, indent=2, ensure_ascii=False)


def show(args: argparse.Namespace, message: Message, default: str = "table") -> None:
    """One resource: a `key: value` tree for people, or JSON / YAML."""
    show_value(args, as_dict(message), default)


def show_value(args: argparse.Namespace, value: dict[str, Any], default: str = "table") -> None:
    """:func:`show` for a plain dict (an answer the CLI assembles itself)."""
    fmt = getattr(args, "output", None) or default
    print("\n".join(_tree(value)) if fmt == "table" else dump(value, fmt))


def _tree(value: Any, indent: str = "") -> list[str]:
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{indent}{key}:")
                lines += _tree(item, indent + "  ")
            else:
                lines.append(f"{indent}{key}: {_scalar(item)}")
    elif isinstance(value, list):
        if all(not isinstance(v, (dict, list)) for v in value):
            lines.append(f"{indent}{', '.join(_scalar(v) for v in value)}")
        else:
            for item in value:
                sub = _tree(item, indent + "  ")
                lines.append(f"{indent}- {sub[0].strip()}" if sub else f"{indent}-")
                lines += sub[1:]
    return lines


def _scalar(value: Any) -> str:
    if value in ({}, []):
        return "-"
    return str(value)


def structured(args: argparse.Namespace, messages: Iterable[Message] | Message) -> bool:
    """With -o json|yaml, print ``messages`` in full and return True (the caller is done);
    with the table view return False (the caller prints its own lines)."""
    fmt = getattr(args, "output", None) or "table"
    if fmt == "table":
        return False
    value = as_dict(messages) if isinstance(messages, Message) else [as_dict(m) for m in messages]
    print(dump(value, fmt))
    return True
