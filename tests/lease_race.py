"""Leases across processes: four child processes race to acquire the same 25 keys at once.

Shared by the SQLite (test_store.py) and PostgreSQL (test_pgstore.py) tests. Half the keys
carry an expired lease of a dead owner (token 1); every key must end with exactly one winner,
whose token is the one after the dead owner's (2) or the first (1), as the store's row says.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from chipi_session.stores import Lease

__all__ = ["check_lease_race"]

_CHILD = """
import json, os, sys, time
{open_store}
owner, go, ready = sys.argv[1:4]
keys = json.loads(sys.argv[4])
open(ready, "w").close()
deadline = time.monotonic() + 20
while not os.path.exists(go):
    if time.monotonic() > deadline:
        sys.exit(2)
    time.sleep(0.001)
won = {{}}
for key in keys:
    token = store.acquire_lease(key, owner, 60, 1000.0)
    if token is not None:
        won[key] = token
store.close()
print(json.dumps(won))
"""


def check_lease_race(
    tmp_path: Path, open_store: Callable[[], AbstractContextManager[Any]], child_open: str
) -> None:
    """``open_store()`` opens the store here; ``child_open`` is the child's code that binds
    ``store`` to the same store."""
    keys = [f"user-{i}" for i in range(25)]
    with open_store() as store:  # an expired lease of a dead process on half the keys
        for key in keys[::2]:
            assert store.acquire_lease(key, "dead", 10, 0) == 1
    child = _CHILD.format(open_store=textwrap.dedent(child_open).strip())
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", child, f"proc-{n}", str(go)]
            + [str(tmp_path / f"ready-{n}"), json.dumps(keys)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(4)
    ]
    try:
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"ready-{n}").exists() for n in range(4)):
            assert time.monotonic() < deadline, "children did not start"
            assert all(p.poll() is None for p in procs), "a child died early"
            time.sleep(0.005)
        go.touch()  # all start racing at once
        results = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err.decode()
            results.append(json.loads(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    with open_store() as store:
        for i, key in enumerate(keys):
            winners = [(n, won[key]) for n, won in enumerate(results) if key in won]
            assert len(winners) == 1, (key, winners)
            n, token = winners[0]
            assert token == (2 if i % 2 == 0 else 1)  # after the dead owner's token 1
            assert store.get_lease(key) == Lease(f"proc-{n}", token, 1060.0)
