"""The demo (the main job) and the diagram command."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from chipi_session.cli import main
from chipi_session.demo import run_demo
from chipi_session.lifecycle import mermaid_diagram

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_demo_shows_all_five_states_with_reasons(backend: str) -> None:
    lines: list[str] = []
    status = anyio.run(run_demo, lines.append, True, backend=backend)
    text = "\n".join(lines)
    assert status == 0
    assert "states seen: none, created, active, expired, revoked" in text
    assert "active -> expired  (calls)" in text
    assert "active -> expired  (time)" in text
    assert "active -> revoked  (revoke)" in text
    assert "SESSION_ENTRYPOINT_NOT_ALLOWED" in text
    assert "balances: wallet=999588995 alice=351000 bob=60005" in text


@pytest.mark.parametrize("flag", ["--async-backend", "--backend"])
def test_cli_demo_exit_status(capsys: pytest.CaptureFixture[str], flag: str) -> None:
    """``--async-backend`` picks the event loop; ``--backend``, its first name, still works."""
    assert main(["demo", "--fast-kdf", flag, "trio"]) == 0
    assert "states seen" in capsys.readouterr().out


def test_diagram_command_writes_the_generated_diagram(tmp_path: Path) -> None:
    out = tmp_path / "d.mmd"
    assert main(["diagram", "--output", str(out)]) == 0
    assert out.read_text() == mermaid_diagram()


def test_readme_embeds_the_current_diagram() -> None:
    assert mermaid_diagram().strip() in (ROOT / "README.md").read_text()
