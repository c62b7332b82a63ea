"""The pytest entry point (``[project.entry-points.pytest11] chipi_session``).

Why a switch: the entry point is registered whenever chipi-session is installed, but its
fixtures are for projects that asked for them. They are registered when the ``testing`` extra
is installed (detected by ``hypothesis`` being importable; nothing is imported to find out), or
when a project enables them explicitly:

* ``pytest -p chipi_session.testing.fixtures`` (or ``pytest_plugins = [...]`` in a conftest),
* or ``chipi_session_fixtures = on`` in the pytest ini options (``off`` disables them even when
  the extra is installed; ``auto``, the default, is the detection above).

``pytest -p no:chipi_session`` removes the entry point altogether. Every fixture name starts
with ``chipi_`` so that it cannot shadow a project's own fixtures. See docs/testing.md.
"""

from __future__ import annotations

import importlib.util

import pytest

__all__ = ["FIXTURES_MODULE", "fixtures_enabled"]

FIXTURES_MODULE = "chipi_session.testing.fixtures"
_INI = "chipi_session_fixtures"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        _INI,
        "chipi-session fixtures: auto (when the 'testing' extra is installed), on, off",
        default="auto",
    )


def fixtures_enabled(mode: str) -> bool:
    """Whether the fixtures are registered for an ini value of ``mode``."""
    mode = mode.strip().lower()
    if mode in ("on", "true", "1", "yes"):
        return True
    if mode in ("off", "false", "0", "no"):
        return False
    if mode != "auto":
        raise pytest.UsageError(f"{_INI} must be auto, on or off, not {mode!r}")
    return importlib.util.find_spec("hypothesis") is not None


def pytest_configure(config: pytest.Config) -> None:
    manager = config.pluginmanager
    if manager.has_plugin(FIXTURES_MODULE):  # enabled explicitly with -p
        return
    if fixtures_enabled(str(config.getini(_INI))):
        manager.import_plugin(FIXTURES_MODULE)
