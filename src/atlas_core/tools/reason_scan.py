"""Find every error reason the code raises, by reading the source (AST), not by running it.

Each ``reason=`` keyword argument and each exception class's ``default_reason`` under
src/atlas_core (owner "shared") and services/<svc>/ (owner <svc>) is collected with the status
code it is raised with when the call site shows it. Paths are walked recursively, so modules
may move within a package. :func:`unlisted` compares the result with the reason enums
(:mod:`atlas_core.reasons` and each service's ``reasons.py``); ``python -m
atlas_core.tools.errors_doc --check`` and tests/contract/test_error_reasons.py use it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from atlas_core.errors import ERRORS_BY_CODE, Code, ConfigError
from atlas_core.reasons import Reason

SHARED = "shared"
REASON_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]*$")

# Callables that take a ``reason=`` that is not an error reason (prose stored elsewhere).
NOT_ERROR_CALLS = {
    "interrupt": "the job store's interruption note, shown as the job's message",
    "SimilarStudy": "trainer warm-start explanation (why a past study is similar)",
    "WarmStartPrior": "trainer warm-start explanation (why a prior was used)",
    "values": "a SQL insert/update's column value (labeling's correction-queue reason column)",
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


class UnclassifiedReason(ValueError):
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
            default = _getattr_reason_default(kw.value)
            if texts is None and default is not None:
                texts = _strings(default)
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


def _getattr_reason_default(node: ast.expr) -> ast.expr | None:
    """The default of ``getattr(error, "reason", DEFAULT)``, else None."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "getattr"
        and len(node.args) == 3
        and isinstance(node.args[1], ast.Constant)
        and node.args[1].value == "reason"
    ):
        return node.args[2]
    return None


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


def unlisted(raised: list[Raised], lists: Mapping[str, type[Reason]]) -> list[str]:
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


def services_without_list(raised: list[Raised], lists: Mapping[str, type[Reason]]) -> list[str]:
    """Services whose code raises reasons but that have no reason enum at all."""
    return sorted({item.owner for item in raised} - set(lists))


def stubs(raised: list[Raised], lists: Mapping[str, type[Reason]]) -> dict[str, list[str]]:
    """Enum member lines to paste for unlisted reasons, per owner (meaning/action to write)."""
    missing: dict[str, dict[str, set[Code]]] = {}
    for item in raised:
        known = any(
            (enum := lists.get(key)) is not None and item.reason in enum.__members__
            for key in (item.owner, SHARED)
        )
        if not known:
            codes = missing.setdefault(item.owner, {}).setdefault(item.reason, set())
            if item.code is not None:
                codes.add(item.code)
    out: dict[str, list[str]] = {}
    for owner, reasons in sorted(missing.items()):
        lines = out.setdefault(owner, [])
        for reason, codes in sorted(reasons.items()):
            names = sorted(code.value for code in codes) or ["INVALID_ARGUMENT"]
            code = names[0] if len(names) == 1 else "(" + ", ".join(names) + ")"
            lines.append(f'    {reason} = auto(), {code}, "TODO meaning.", "TODO action."')
    return out
