"""Every `atlas` command, given bad input, answers with one line that says what to fix and a
non-zero exit -- never a traceback. The commands are enumerated from the argparse tree, so a
command added later is covered without editing this test."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from atlas_core.cli import build_parser, main

# Commands whose run has effects beyond the CLI (they start processes); tested elsewhere.
NOT_RUN_HERE = {("up",): "starts the suite: tests/integration/test_launcher.py"}


def _leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, child in subs[0].choices.items():
        yield from _leaves(child, (*path, name))


def _value(action: argparse.Action) -> str:
    if action.choices:
        return str(next(iter(action.choices)))
    if action.type in (int, float):
        return "1"
    return "bad-input-file.json" if "file" in action.dest else "x1"


def _argv(path: tuple[str, ...], parser: argparse.ArgumentParser) -> list[str]:
    """The command with every required argument filled with a plausible but wrong value."""
    argv = list(path)
    required_groups = [g for g in parser._mutually_exclusive_groups if g.required]
    chosen = {id(g._group_actions[0]) for g in required_groups}
    for action in parser._actions:
        if action.option_strings:
            if action.required or id(action) in chosen:
                argv += [action.option_strings[0], _value(action)]
        elif action.nargs not in (0,) and not isinstance(action, argparse._HelpAction):
            argv.append(_value(action))
    return argv


COMMANDS = [(p, parser) for p, parser in _leaves(build_parser()) if p not in NOT_RUN_HERE]


@pytest.fixture(scope="module")
def not_atlas() -> Iterator[str]:
    """A real gRPC server that implements none of the ATLAS services."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


def test_the_tree_has_the_commands_users_rely_on() -> None:
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"status", "data groups", "train run", "deploy status", "label projects"} <= names
    assert len(names) > 60


@pytest.mark.parametrize("path,parser", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_a_wrong_service_at_the_address_is_named(
    path: tuple[str, ...],
    parser: argparse.ArgumentParser,
    not_atlas: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATLAS_DATA_DIR", str(tmp_path / "no-suite"))
    monkeypatch.setenv("ATLAS_ADDRESS", not_atlas)
    monkeypatch.setenv("ATLAS_TOKEN", "t")
    code, err = _run(_argv(path, parser), capsys)
    if path in (("down",),):
        return  # stopping nothing is not a mistake
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("atlas: "), err
    assert "unexpected error" not in err, err


def test_debug_shows_the_traceback(
    not_atlas: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATLAS_TOKEN", "t")
    code, err = 0, ""
    code = main(["data", "groups", "--address", not_atlas, "--debug"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" in err
    assert err.strip().splitlines()[-1] == (
        f"atlas: the server at {not_atlas} is not the data service (is --address right?)"
    )


def test_everyday_mistakes_get_one_line_naming_the_fix(
    not_atlas: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ATLAS_TOKEN", raising=False)
    monkeypatch.delenv("ATLAS_DATA_DIR", raising=False)
    conn = ["--address", not_atlas, "--token", "t"]
    cases = {
        ("predict", "row", "ep", "--features", "{a: 1", *conn): "--features",
        ("predict", "batch", "ep", "--file", "nope.csv", *conn): "no such file: nope",
        ("data", "groups", "--address", "127.0.0.1:1"): "cannot reach the data service",
        ("data", "groups"): "run `atlas up`",
        ("status",): "ATLAS_DATA_DIR",
    }
    bad = tmp_path / "group.json"
    bad.write_text(json.dumps({"name": "g", "features": [{"name": "a", "type": "strng"}]}))
    cases[("data", "create-group", str(bad), *conn)] = "unknown type 'strng'; use one of float"
    for argv, expected in cases.items():
        code, err = _run(list(argv), capsys)
        assert code != 0 and expected in err and len(err.strip().splitlines()) == 1, (argv, err)
