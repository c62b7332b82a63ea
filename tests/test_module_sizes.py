"""Every module of the package stays readable: about 500 lines at most, one responsibility
(docs/architecture.md, "Module map"). A module that grows past the limit is split, not waved
through; the exception below is being split (issue 10) and leaves this list when it is."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "chipi_session"
LIMIT = 500  # the brief's "~500 lines"; every module but engine.py is within it
BEING_SPLIT = {"engine.py"}


def test_no_module_is_longer_than_the_limit() -> None:
    too_long = {
        str(path.relative_to(PACKAGE)): n
        for path in sorted(PACKAGE.rglob("*.py"))
        if str(path.relative_to(PACKAGE)) not in BEING_SPLIT
        and (n := len(path.read_text().splitlines())) > LIMIT
    }
    assert not too_long, too_long


def test_the_exceptions_still_exist() -> None:
    """An exception for a file that no longer exists hides nothing: drop it from the list."""
    assert all((PACKAGE / name).is_file() for name in BEING_SPLIT)
