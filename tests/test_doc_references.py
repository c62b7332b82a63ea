"""Documentation that resolves inside the repository.

Code and docs cite pages under ``docs/``; a cited page that does not exist, a section name that
is not a heading of the page, a path outside the repository, or a module missing from README's
Layout section is a failure here, not a dead end for a reader.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "chipi_session"
DOCS = ROOT / "docs"

#: ``docs/page.md, "Section"`` (a section cited by its heading text).
_SECTION_REF = re.compile(r'docs/([a-z0-9-]+\.md),?\s+"([^"]+)"')
_PAGE_REF = re.compile(r"docs/([a-z0-9/-]+\.md)")
#: Specs that live outside the repository, and section numbers that only they have.
_OUTSIDE = re.compile(
    r"shared/spec|chipi-wire-protocol\.md|wire spec|\bwire §|(?<!docs/)engine\.md §"
    r"|(?<![/\w])contract\.md §"
)


def _sources() -> list[Path]:
    files = [ROOT / "README.md", *DOCS.rglob("*.md"), *PACKAGE.rglob("*.py")]
    files += (ROOT / "tests").glob("*.py")
    files += (ROOT / "examples").glob("*.py")
    return [f for f in files if f.name != Path(__file__).name]


def _headings(page: Path) -> list[str]:
    return [
        re.sub(r"^[\d.]+\s+", "", line.lstrip("#").strip()).replace("`", "")
        for line in page.read_text().splitlines()
        if line.startswith("#")
    ]


def test_cited_pages_exist() -> None:
    missing = {
        f"{src.relative_to(ROOT)}: docs/{page}"
        for src in _sources()
        for page in _PAGE_REF.findall(src.read_text())
        if not (DOCS / page).is_file()
    }
    assert not missing, sorted(missing)


def test_cited_sections_are_headings() -> None:
    bad = []
    for src in _sources():
        text = " ".join(src.read_text().split())  # a citation may wrap across lines
        text = re.sub(r"\s*#\s*", " ", text)  # ... and across comment lines
        for page, section in _SECTION_REF.findall(text):
            target = DOCS / page
            if not target.is_file():
                continue  # reported by test_cited_pages_exist
            wanted = section.replace("`", "").lower()
            if not any(wanted in h.lower() for h in _headings(target)):
                bad.append(f"{src.relative_to(ROOT)}: docs/{page}, {section!r}")
    assert not bad, bad


def test_no_reference_leaves_the_repository() -> None:
    bad = [
        f"{src.relative_to(ROOT)}:{n}: {line.strip()}"
        for src in _sources()
        for n, line in enumerate(src.read_text().splitlines(), 1)
        if _OUTSIDE.search(line)
    ]
    assert not bad, bad


def test_readme_layout_lists_every_module() -> None:
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    missing = [
        str(module.relative_to(ROOT))
        for module in sorted(PACKAGE.rglob("*.py"))
        if module.name != "__init__.py" and f"`{module.stem}`" not in layout
    ]
    assert not missing, missing
