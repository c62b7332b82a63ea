"""pytest fixtures for testing a bot built on chipi-session (registered by the plugin).

Synchronous fixtures: ``chipi_world`` (a :class:`~.world.ChainWorld`: LocalChain on a manual
clock with a funded wallet and token) and its parts ``chipi_clock``, ``chipi_chain``,
``chipi_wallet``, ``chipi_token``; ``chipi_faults`` (a :class:`FaultInjectingBackend` over the
world's chain, seed 0, no faults until a test scripts or sets some); ``chipi_localnet`` (a
started ``localnet`` on a free loopback port; needs the ``localnet`` extra).

Async fixtures (anyio's pytest plugin runs them, on the backend the ``anyio_backend`` fixture
names; parametrize that fixture to run on asyncio and trio): ``chipi_session`` (entered, with
a session created and registered: 100 calls, ``transfer`` allowed, one hour), ``chipi_hub`` (an
entered :class:`SessionHub` over the world's chain), and ``chipi_advance``, an async
``advance(seconds)`` that fires the engine's timers in order (see :func:`~.world.travel`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from ..backends.faults import FaultInjectingBackend
from ..clock import ManualClock
from ..engine import ChipiSession
from ..hub import SessionHub
from ..localchain import LocalChain
from ..types import WalletData
from .world import ChainWorld, make_world

if TYPE_CHECKING:
    from ..localnet.server import LocalnetServer

__all__ = [
    "chipi_world",
    "chipi_clock",
    "chipi_chain",
    "chipi_wallet",
    "chipi_token",
    "chipi_faults",
    "chipi_advance",
    "chipi_session",
    "chipi_hub",
    "chipi_localnet",
    "SESSION_DURATION",
    "SESSION_MAX_CALLS",
]

SESSION_DURATION = 3600
SESSION_MAX_CALLS = 100


@pytest.fixture
def chipi_world() -> ChainWorld:
    return make_world()


@pytest.fixture
def chipi_clock(chipi_world: ChainWorld) -> ManualClock:
    return chipi_world.clock


@pytest.fixture
def chipi_chain(chipi_world: ChainWorld) -> LocalChain:
    return chipi_world.chain


@pytest.fixture
def chipi_wallet(chipi_world: ChainWorld) -> WalletData:
    return chipi_world.wallet


@pytest.fixture
def chipi_token(chipi_world: ChainWorld) -> int:
    return chipi_world.token


@pytest.fixture
def chipi_faults(chipi_world: ChainWorld) -> FaultInjectingBackend:
    return FaultInjectingBackend(chipi_world.chain, seed=0, clock=chipi_world.clock)


@pytest.fixture
def chipi_advance(chipi_world: ChainWorld) -> Callable[[float], Awaitable[None]]:
    return chipi_world.advance


@pytest.fixture
async def chipi_session(chipi_world: ChainWorld, anyio_backend: Any) -> AsyncIterator[ChipiSession]:
    async with chipi_world.session() as session:
        await session.create_session(SESSION_DURATION)
        await session.register_session(
            max_calls=SESSION_MAX_CALLS, allowed_entrypoints=["transfer"]
        )
        yield session


@pytest.fixture
async def chipi_hub(chipi_world: ChainWorld, anyio_backend: Any) -> AsyncIterator[SessionHub]:
    hub = SessionHub(backend=chipi_world.chain, clock=chipi_world.clock, vault=chipi_world.vault)
    async with hub:
        yield hub


@pytest.fixture
def chipi_localnet() -> Iterator[LocalnetServer]:
    pytest.importorskip("uvicorn", reason="chipi_localnet needs the 'localnet' extra")
    from ..localnet.server import LocalnetServer
    from ..vault import KdfCost

    with LocalnetServer(port=0, kdf_cost=KdfCost.FAST_FOR_TESTS) as server:
        yield server
