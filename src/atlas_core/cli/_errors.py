"""One line for every mistake a user can make; the traceback only with --debug."""

from __future__ import annotations

import argparse
import json

import grpc
import yaml
from google.protobuf import json_format

from atlas_core.errors import AtlasError
from atlas_core.rpc.status import error_from_rpc


def _service_hint(args: argparse.Namespace) -> tuple[str, str]:
    return getattr(args, "connected_service", "the"), getattr(args, "connected_target", "")


def describe(exc: BaseException, args: argparse.Namespace) -> str:
    """The one line that tells the user what to fix."""
    if isinstance(exc, grpc.RpcError):
        exc = error_from_rpc(exc)
    if isinstance(exc, AtlasError):
        return _describe_atlas(exc, args)
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {exc.filename} (check the path)"
    if isinstance(exc, IsADirectoryError):
        return f"{exc.filename} is a directory; give a file"
    if isinstance(exc, PermissionError):
        return f"cannot read {exc.filename}: permission denied"
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): fix the input"
    if isinstance(exc, json_format.ParseError):
        return f"the JSON does not match the expected message: {exc}"
    if isinstance(exc, yaml.YAMLError):
        return f"invalid YAML: {str(exc).splitlines()[0]}"
    if isinstance(exc, UnicodeDecodeError):
        return "the file is not UTF-8 text"
    return f"unexpected error: {type(exc).__name__}: {exc} (rerun with --debug for details)"


def _describe_atlas(exc: AtlasError, args: argparse.Namespace) -> str:
    service, target = _service_hint(args)
    if exc.reason == "UNIMPLEMENTED" and target:
        return f"the server at {target} is not the {service} service (is --address right?)"
    if exc.reason in ("UNAVAILABLE", "DEADLINE_EXCEEDED") and target:
        return (
            f"cannot reach the {service} service at {target}: is the suite up "
            "(`atlas status`) and --address / ATLAS_ADDRESS right?"
        )
    if exc.code.value == "UNAUTHENTICATED":
        if not getattr(args, "token_given", True):
            return f"{target or 'the service'} needs a token: pass --token or set ATLAS_TOKEN"
        return (
            f"{target or 'the service'} refused the token ({exc.message}): "
            "pass the right --token or ATLAS_TOKEN"
        )
    if exc.code.value == "PERMISSION_DENIED":
        return f"{exc.message} (the token lacks the role for this; use one that has it)"
    return exc.message
