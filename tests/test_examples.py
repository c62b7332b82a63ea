"""Every example runs as-is and says what it should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(name: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_async_bot() -> None:
    out = run("async_bot.py", "--users", "10", "--payments", "2")
    assert "10 users, 20 payments" in out


def test_trio_bot() -> None:
    out = run("trio_bot.py", "--users", "5")
    assert "recipient balance 125" in out


def test_game_loop() -> None:
    out = run("game_loop.py", "--frames", "420")
    assert "active -> expired (time)" in out
    assert "purchases" in out
    purchases = int(out.rsplit("frames, ", 1)[1].split(" purchases")[0])
    assert 1 <= purchases <= 10


@pytest.mark.parametrize("explicit", [False, True])
def test_persistence(tmp_path: Path, explicit: bool) -> None:
    args = [str(tmp_path / "s.json")] if explicit else []
    out = run("persistence.py", *args)
    assert "run 1: active, 3 calls left" in out
    assert "run 2: restored active, 3 calls left" in out
    assert "recipient balance 10" in out
    if explicit:
        assert (tmp_path / "s.json").stat().st_mode & 0o777 == 0o600


def test_hub_bot() -> None:
    out = run("hub_bot.py", "--users", "6")
    assert "run 1: 6 users, 36 payments" in out
    renewals = int(out.split("payments, ")[1].split(" renewals")[0])
    assert renewals >= 6  # every user's session was replaced at least once
    assert "run 2: restored states ['active'], recipient balance 42" in out
