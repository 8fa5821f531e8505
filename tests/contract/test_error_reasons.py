"""Every error reason the code raises is a listed, documented constant (docs/errors.md).

The scan reads the source (AST), not the running services: each ``reason=`` keyword argument and
each exception class's ``default_reason`` under src/atlas_core (the shared list) and
services/<svc>/ (that service's list, or the shared one). Paths are walked recursively, so
modules may move within a service package without touching this test.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from atlas_core.errors import ERRORS_BY_CODE, Code, ConfigError
from atlas_core.reasons import Reason, SharedReason
from atlas_core.tools import errors_doc

REPO_ROOT = errors_doc.REPO_ROOT
SHARED = "shared"
REASON_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]*$")

# Callables that take a ``reason=`` that is not an error reason (prose stored elsewhere).
NOT_ERROR_CALLS = {
    "interrupt": "the job store's interruption note, shown as the job's message",
    "SimilarStudy": "trainer warm-start explanation (why a past study is similar)",
    "WarmStartPrior": "trainer warm-start explanation (why a prior was used)",
}
# reason= values that forward a reason chosen elsewhere (checked where it was chosen). Besides
# these, ``<anything>.reason`` (an AtlasError re-raised or turned into ErrorInfo) forwards.
FORWARDED = {
    "reason or code.name": "the client: ErrorInfo's reason, else the code name (generic)",
    "code": "JobError of a domain error: the code name (generic)",
    "reason": "a helper's parameter",
}
# Exception classes by name -> the code they travel with.
EXCEPTION_CODES: dict[str, Code] = {cls.__name__: code for code, cls in ERRORS_BY_CODE.items()}
EXCEPTION_CODES[ConfigError.__name__] = ConfigError.code


@dataclass(frozen=True)
class Raised:
    reason: str
    owner: str  # "shared" or the service directory name
    where: str  # path:line
    code: Code | None  # the status code it is raised with, when the call site shows it


def owner_of(path: Path, root: Path) -> str:
    parts = path.relative_to(root).parts
    if parts[0] == "services":
        return parts[1]
    return SHARED


def _strings(node: ast.AST) -> list[str] | None:
    """String constants an expression can evaluate to; None when it is not a literal choice."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        body, orelse = _strings(node.body), _strings(node.orelse)
        return None if body is None or orelse is None else body + orelse
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        # ``SomeReason.NAME``: an enum member is its name.
        if node.value.id.endswith("Reason") and REASON_PATTERN.match(node.attr):
            return [node.attr]
    return None


def _assignments(tree: ast.AST) -> dict[int, dict[str, ast.expr]]:
    """Per scope (id of the module or function node): name -> last assigned expression."""
    scopes: dict[int, dict[str, ast.expr]] = {}
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    for scope in [tree, *(n for n in ast.walk(tree) if isinstance(n, functions))]:
        names: dict[str, ast.expr] = {}
        for stmt in ast.walk(scope):
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                target = stmt.targets[0]
                if isinstance(target, ast.Name):
                    names[target.id] = stmt.value
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                if stmt.value is not None:
                    names[stmt.target.id] = stmt.value
        scopes[id(scope)] = names
    return scopes


def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    return parents


def _callee(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _call_code(call: ast.Call, callee: str) -> Code | None:
    if callee in EXCEPTION_CODES:
        return EXCEPTION_CODES[callee]
    for kw in call.keywords:  # JobError(code="ABORTED", reason=...)
        if kw.arg == "code" and isinstance(kw.value, ast.Constant):
            return Code(kw.value.value)
    return None


class UnclassifiedReason(AssertionError):
    """A reason= value the scan cannot resolve and that is not a known forwarding form."""


def module_constants(source: str) -> dict[str, list[str]]:
    """UPPER_CASE module-level names bound to string choices (reason constants others import)."""
    found: dict[str, list[str]] = {}
    for stmt in ast.parse(source).body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
            texts = _strings(stmt.value)
            if isinstance(target, ast.Name) and target.id.isupper() and texts is not None:
                found[target.id] = texts
    return found


def scan_source(
    source: str, owner: str, where: str, imported: dict[str, list[str]] | None = None
) -> Iterator[Raised]:
    """Every reason one module raises: ``reason=`` arguments and ``default_reason`` values.

    ``imported`` resolves constants defined in other modules (by name).
    """
    tree = ast.parse(source)
    scopes = _assignments(tree)
    parents = _parents(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if (
                    isinstance(stmt, (ast.Assign, ast.AnnAssign))
                    and any(
                        isinstance(t, ast.Name) and t.id == "default_reason"
                        for t in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target])
                    )
                    and stmt.value is not None
                ):
                    for text in _strings(stmt.value) or []:
                        yield Raised(text, owner, f"{where}:{stmt.lineno}", None)
        if not isinstance(node, ast.Call):
            continue
        callee = _callee(node)
        for kw in node.keywords:
            if kw.arg != "reason" or callee in NOT_ERROR_CALLS:
                continue
            texts = _strings(kw.value)
            if texts is None and isinstance(kw.value, ast.Name):
                texts = _resolve_name(kw.value, scopes, parents)
                if texts is None:
                    texts = (imported or {}).get(kw.value.id)
            if texts is None and _is_getattr_reason(kw.value):
                texts = _strings(kw.value.args[2])  # type: ignore[attr-defined]
            if texts is None:
                value = kw.value
                if ast.unparse(value) in FORWARDED or (
                    isinstance(value, ast.Attribute) and value.attr == "reason"
                ):
                    continue
                raise UnclassifiedReason(
                    f"{where}:{node.lineno}: reason={ast.unparse(kw.value)} is neither a literal, "
                    "a reason constant nor a known forwarding form"
                )
            code = _call_code(node, callee)
            for text in texts:
                yield Raised(text, owner, f"{where}:{node.lineno}", code)


def _resolve_name(
    name: ast.Name, scopes: dict[int, dict[str, ast.expr]], parents: dict[int, ast.AST]
) -> list[str] | None:
    node: ast.AST | None = name
    while node is not None:
        node = parents.get(id(node))
        if node is not None and id(node) in scopes and name.id in scopes[id(node)]:
            return _strings(scopes[id(node)][name.id])
    return None


def _is_getattr_reason(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "getattr"
        and len(node.args) == 3
        and isinstance(node.args[1], ast.Constant)
        and node.args[1].value == "reason"
    )


def source_files(root: Path) -> Iterator[tuple[Path, str]]:
    for base in (root / "src" / "atlas_core", root / "services"):
        for path in sorted(base.rglob("*.py")):
            yield path, owner_of(path, root)


def scan_tree(root: Path) -> list[Raised]:
    sources = [
        (path, owner, path.read_text(encoding="utf-8")) for path, owner in source_files(root)
    ]
    constants: dict[str, list[str]] = {}
    for _, _, source in sources:
        for name, texts in module_constants(source).items():
            constants.setdefault(name, []).extend(texts)
    raised: list[Raised] = []
    for path, owner, source in sources:
        where = path.relative_to(root).as_posix()
        raised.extend(scan_source(source, owner, where, constants))
    return raised


def registries() -> dict[str, type[Reason]]:
    return {table.key: table.reasons() for table in errors_doc.TABLES}


def unlisted(raised: list[Raised], lists: dict[str, type[Reason]]) -> list[str]:
    """Problems: reasons not in their service's list nor the shared one, or raised with a code
    their entry does not name."""
    problems = []
    for item in raised:
        listed = None
        for key in (item.owner, SHARED):
            enum = lists.get(key)
            if enum is not None and item.reason in enum.__members__:
                listed = enum[item.reason]
                break
        if listed is None:
            where = "the shared list" if item.owner == SHARED else f"{item.owner} or shared"
            problems.append(f"{item.where}: reason {item.reason!r} is not listed in {where}")
        elif item.code is not None and item.code not in listed.codes:
            problems.append(
                f"{item.where}: reason {item.reason!r} raised as {item.code.value}, listed as "
                f"{'/'.join(c.value for c in listed.codes)}"
            )
    return problems


# -- the contract ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raised() -> list[Raised]:
    return scan_tree(REPO_ROOT)


def test_scan_finds_reasons_of_every_service(raised: list[Raised]) -> None:
    owners = {item.owner for item in raised}
    assert {SHARED, "data", "trainer", "graph", "serving"} <= owners
    assert len({item.reason for item in raised}) > 150


def test_every_raised_reason_is_listed_with_its_code(raised: list[Raised]) -> None:
    problems = unlisted(raised, registries())
    assert not problems, "add these to the reasons module (then regenerate docs/errors.md):\n" + (
        "\n".join(problems)
    )


def test_reasons_are_upper_snake(raised: list[Raised]) -> None:
    bad = [f"{i.where}: {i.reason!r}" for i in raised if not REASON_PATTERN.match(i.reason)]
    assert not bad, bad


def test_every_listed_reason_is_raised(raised: list[Raised]) -> None:
    """A listed reason nothing raises is a dead entry in the contract (generic ones aside: the
    client produces those from bare status codes)."""
    generic = {code.value for code in Code}
    used = {(item.owner, item.reason) for item in raised}
    used_anywhere = {item.reason for item in raised}
    dead = []
    for key, enum in registries().items():
        for member in enum:
            if key == SHARED:
                if member.value not in used_anywhere and member.value not in generic:
                    dead.append(f"{key}: {member.value}")
            elif (key, member.value) not in used:
                dead.append(f"{key}: {member.value}")
    assert not dead, dead


def test_service_lists_do_not_redefine_shared_reasons() -> None:
    shared = set(SharedReason.__members__)
    for key, enum in registries().items():
        if key != SHARED:
            assert not shared & set(enum.__members__), (key, shared & set(enum.__members__))


def test_generic_reasons_cover_every_code() -> None:
    for code in Code:
        assert SharedReason[code.value].codes == (code,)


def test_every_listed_reason_appears_in_docs_errors_md() -> None:
    doc = errors_doc.DOC_PATH.read_text(encoding="utf-8")
    assert doc == errors_doc.render(), (
        "docs/errors.md is stale: python -m atlas_core.tools.errors_doc"
    )
    sections = re.split(r"^## ", doc, flags=re.M)
    for table in errors_doc.TABLES:
        section = next(s for s in sections if s.startswith(table.title))
        rows = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", section, flags=re.M))
        assert rows == set(table.reasons().__members__), table.key


def test_protos_point_at_docs_errors_md() -> None:
    """Each service contract's header comment (before ``package``) names the reason list."""
    protos = sorted((REPO_ROOT / "protos" / "atlas").glob("*/v1/*_service.proto"))
    assert len(protos) >= 5
    for proto in protos:
        header = proto.read_text(encoding="utf-8").partition("\npackage ")[0]
        assert "docs/errors.md" in header, proto
    for table in errors_doc.TABLES:
        assert not table.proto or (REPO_ROOT / table.proto).is_file(), table.proto


# -- the scan itself can fail --------------------------------------------------------------------

SYNTHETIC = """
from atlas_core.errors import InvalidArgument, NotFound

LOOKUP_REASON = "BRAND_NEW_REASON_FROM_CONSTANT"

def check(x):
    if x is None:
        raise InvalidArgument("x is missing", reason="DATASET_NOT_FOUND")
    if x == 1:
        raise InvalidArgument("x is one", reason="BRAND_NEW_REASON")
    if x == 2:
        raise NotFound("x is two", reason=LOOKUP_REASON)
    why = "EMPTY_NAME" if x else "BRAND_NEW_REASON_FROM_BRANCH"
    raise InvalidArgument("x", reason=why)

class FreshError(InvalidArgument):
    default_reason = "BRAND_NEW_DEFAULT"
"""


def test_a_new_unlisted_reason_fails_the_check() -> None:
    found = list(scan_source(SYNTHETIC, "data", "synthetic.py"))
    assert {item.reason for item in found} == {
        "DATASET_NOT_FOUND",
        "BRAND_NEW_REASON",
        "BRAND_NEW_REASON_FROM_CONSTANT",
        "EMPTY_NAME",
        "BRAND_NEW_REASON_FROM_BRANCH",
        "BRAND_NEW_DEFAULT",
    }
    problems = unlisted(found, registries())
    flagged = {p.split("reason ")[1].split(" ")[0].strip("'") for p in problems}
    assert flagged == {
        "BRAND_NEW_REASON",
        "BRAND_NEW_REASON_FROM_CONSTANT",
        "BRAND_NEW_REASON_FROM_BRANCH",
        "BRAND_NEW_DEFAULT",
        "DATASET_NOT_FOUND",  # listed as NOT_FOUND, raised here as INVALID_ARGUMENT
    }
    assert any("raised as INVALID_ARGUMENT, listed as NOT_FOUND" in p for p in problems)
    # The same reasons raised from another service are not data's: they are unlisted there.
    graph_problems = unlisted(list(scan_source(SYNTHETIC, "graph", "g.py")), registries())
    assert any("'EMPTY_NAME' is not listed in graph" in p for p in graph_problems)
    assert any("'DATASET_NOT_FOUND' is not listed in graph" in p for p in graph_problems)


def test_an_unresolvable_reason_must_be_classified() -> None:
    with pytest.raises(UnclassifiedReason, match="reason=compute"):
        list(scan_source("raise InvalidArgument('x', reason=compute())", "data", "s.py"))
    # Forwarding another error's reason is checked where that reason was raised.
    assert list(scan_source("raise Internal('x', reason=err.reason)", "data", "s.py")) == []
    # A not-an-error call with a reason= keyword is skipped by name.
    assert list(scan_source("store.interrupt(reason='restarted')", "data", "s.py")) == []
