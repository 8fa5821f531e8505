"""Documentation that tests cite exists: every ``docs/<page>.md#<section>`` named in a test
resolves to a heading of that page (so the conventions a test enforces stay written down)."""

from __future__ import annotations

import re
from pathlib import Path

CITATION = re.compile(r"docs/([\w/-]+\.md)#([\w-]+)")


def anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces -> -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors_of(page: Path) -> set[str]:
    headings = re.findall(r"^#{1,6} +(.+?) *$", page.read_text(), flags=re.MULTILINE)
    return {anchor(h) for h in headings}


def test_anchor_follows_github() -> None:
    assert anchor("Jobs") == "jobs"
    assert anchor("Embedded defaults and production backends") == (
        "embedded-defaults-and-production-backends"
    )
    assert anchor("Processes and heavy work") == "processes-and-heavy-work"


def test_every_cited_section_exists(repo_root: Path) -> None:
    cited = {
        (page, section, str(path.relative_to(repo_root)))
        for path in (repo_root / "tests").rglob("*.py")
        for page, section in CITATION.findall(path.read_text())
    }
    assert any(page == "architecture.md" for page, _, _ in cited)  # the contract tests cite it
    missing = []
    for page, section, where in sorted(cited):
        doc = repo_root / "docs" / page
        if not doc.is_file():
            missing.append(f"{where}: docs/{page} does not exist")
        elif section not in anchors_of(doc):
            missing.append(f"{where}: docs/{page} has no section #{section}")
    assert not missing, "\n".join(missing)
