"""The documentation site's promises (built by ``mkdocs build --strict`` in .ci/run): every
public name has a page entry in docs/api/, and every public class and function documented
there has a docstring."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import chipi_session

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api"


def documented_modules() -> list[str]:
    found = []
    for page in sorted(API.glob("*.md")):
        found += re.findall(r"^::: ([\w.]+)$", page.read_text(), flags=re.M)
    return found


def public_names(module_name: str) -> list[tuple[str, object]]:
    module = importlib.import_module(module_name)
    return [(name, getattr(module, name)) for name in getattr(module, "__all__", [])]


def test_every_top_level_name_has_a_page_entry() -> None:
    documented = set(documented_modules())
    for name in chipi_session.__all__:
        obj = getattr(chipi_session, name)
        homes = {m for m in documented if any(o is obj for _, o in public_names(m))}
        assert homes, f"chipi_session.{name} is on no page of docs/api/"


def test_every_documented_class_and_function_has_a_docstring() -> None:
    missing = []
    for module_name in documented_modules():
        module = importlib.import_module(module_name)
        assert module.__doc__, module_name
        for name, obj in public_names(module_name):
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and not inspect.getdoc(obj):
                missing.append(f"{module_name}.{name}")
    assert not missing, f"public names without a docstring: {missing}"


def test_the_site_lists_every_guide() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f" {page.name}" in config, f"docs/{page.name} is not in mkdocs.yml's nav"
