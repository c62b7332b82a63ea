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
        "('starknet_py', 'nacl', 'httpx', 'transitions', 'fast_stark_crypto', 'Crypto', "
        "'psycopg', 'sqlite3')]; "
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


def test_application_names_come_from_the_package() -> None:
    """Stores, SubmitInfo, Subscription, KeySource: one import path for applications."""
    from chipi_session import keys, pubsub, stores, types
    from chipi_session.stores import postgres

    assert chipi_session.MemoryStore is stores.MemoryStore
    assert chipi_session.JsonFileStore is stores.JsonFileStore
    assert chipi_session.SqliteStore is stores.SqliteStore
    assert chipi_session.SessionStore is stores.SessionStore
    assert chipi_session.SubmitInfo is types.SubmitInfo
    assert chipi_session.ExecutionResult is types.ExecutionResult
    assert chipi_session.Subscription is pubsub.Subscription
    assert chipi_session.KeySource is keys.KeySource
    # PostgresStore needs an extra: lazily importable, but not in ``import *``
    assert chipi_session.PostgresStore is postgres.PostgresStore
    assert "PostgresStore" not in chipi_session.__all__
    from chipi_session import metrics

    assert chipi_session.ChipiMetrics is metrics.ChipiMetrics
    assert "ChipiMetrics" not in chipi_session.__all__


def test_postgres_store_without_its_extra_says_which_extra() -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None; import chipi_session\n"
        "try:\n    chipi_session.PostgresStore\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'chipi-session[postgres]'" in out.stdout


def test_old_store_modules_still_import_the_same_objects() -> None:
    """chipi_session.store / pgstore / asyncstore are compatibility re-exports of stores/."""
    from chipi_session import asyncstore, pgstore, store, stores
    from chipi_session.stores import postgres

    for name in store.__all__:
        assert getattr(store, name) is getattr(stores, name)
    assert pgstore.PostgresStore is postgres.PostgresStore
    assert asyncstore.ThreadedStore is stores.ThreadedStore


def test_a_memory_store_does_not_import_sqlite() -> None:
    code = (
        "import sys; from chipi_session.stores import MemoryStore; MemoryStore(); "
        "print('sqlite3' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
