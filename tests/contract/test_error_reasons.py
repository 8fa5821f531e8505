"""Every error reason the code raises is a listed, documented constant (docs/errors.md).

The scan (atlas_core.tools.reason_scan) reads the source: each ``reason=`` keyword argument and
each exception class's ``default_reason`` under src/atlas_core (the shared list) and
services/<svc>/ (that service's list, or the shared one), walked recursively so modules may
move within a service package without touching this test.
"""

from __future__ import annotations

import re

import pytest

from atlas_core.errors import Code
from atlas_core.reasons import SharedReason
from atlas_core.tools import errors_doc
from atlas_core.tools.reason_scan import (
    REASON_PATTERN,
    SHARED,
    Raised,
    UnclassifiedReason,
    scan_source,
    scan_tree,
    services_without_list,
    stubs,
    unlisted,
)

REPO_ROOT = errors_doc.REPO_ROOT


registries = errors_doc.registries


# -- the contract ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raised() -> list[Raised]:
    return scan_tree(REPO_ROOT)


def test_scan_finds_reasons_of_every_service(raised: list[Raised]) -> None:
    owners = {item.owner for item in raised}
    assert {SHARED, "data", "trainer", "graph", "serving", "labeling"} <= owners
    assert len({item.reason for item in raised}) > 150


def test_every_service_that_raises_reasons_has_a_reason_enum(raised: list[Raised]) -> None:
    assert not services_without_list(raised, registries())


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
    # A service with no reason enum at all is named, and stubs are offered for the unlisted.
    newcomer = list(scan_source(SYNTHETIC, "newsvc", "n.py"))
    assert services_without_list(newcomer, registries()) == ["newsvc"]
    lines = stubs(found, registries())["data"]
    assert (
        '    BRAND_NEW_REASON = auto(), INVALID_ARGUMENT, "TODO meaning.", "TODO action."' in lines
    )
    assert not any("EMPTY_NAME" in line for line in lines)  # listed for data already


def test_an_unresolvable_reason_must_be_classified() -> None:
    with pytest.raises(UnclassifiedReason, match="reason=compute"):
        list(scan_source("raise InvalidArgument('x', reason=compute())", "data", "s.py"))
    # Forwarding another error's reason is checked where that reason was raised.
    assert list(scan_source("raise Internal('x', reason=err.reason)", "data", "s.py")) == []
    # A not-an-error call with a reason= keyword is skipped by name.
    assert list(scan_source("store.interrupt(reason='restarted')", "data", "s.py")) == []
    # Nor is a SQL row's reason column (labeling's correction queue), while an error is found.
    row = "insert(corrections).values(reason='bad_case')"
    assert list(scan_source(row, "labeling", "s.py")) == []
    assert [i.reason for i in scan_source("raise NotFound('x', reason='bad_case')", "l", "s")] == [
        "bad_case"
    ]
