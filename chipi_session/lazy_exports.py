"""Lazy package exports (PEP 562): a name's module is imported on first access.

Why: ``from chipi_session import ChipiSession`` must not import every backend, store and the
localnet server (import time is measured: README "Performance"), and optional extras
(psycopg, prometheus-client, hypothesis) must only be needed when their names are used. Every
package ``__init__`` builds its ``__getattr__`` / ``__dir__`` here instead of repeating them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str], needs_extra: Mapping[str, str] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__, __dir__ = lazy_exports(__name__, {"Name": "module", ...})``: ``Name``
    comes from ``package.module`` on first access and is then cached in the package. A name
    in ``needs_extra`` whose import fails says which extra to install."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            imported = importlib.import_module(f".{module}", package)
        except ImportError as exc:
            extra = (needs_extra or {}).get(name)
            if extra is None:
                raise
            raise ImportError(
                f"{package}.{name} needs the {extra!r} extra: pip install 'chipi-session[{extra}]'"
            ) from exc
        value = getattr(imported, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
