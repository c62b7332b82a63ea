"""Packaging promises: a light import, typed, lazy public names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import chipi_session


def test_import_is_light() -> None:
    code = (
        "import sys, chipi_session; "
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('starknet_py', 'nacl', 'httpx', 'transitions', 'fast_stark_crypto', 'Crypto')]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_py_typed_is_shipped() -> None:
    assert (Path(chipi_session.__file__).parent / "py.typed").exists()


def test_every_public_name_resolves() -> None:
    for name in chipi_session.__all__:
        assert getattr(chipi_session, name) is not None
    assert set(chipi_session.__all__) <= set(dir(chipi_session))
