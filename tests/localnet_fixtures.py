"""The localnet fixtures the HTTP test modules share (conftest.py imports them).

``server``: one ``LocalnetServer`` per test module, on a ``ManualClock`` (``clock``) that
starts at the module's ``LOCALNET_START`` (default :data:`LOCALNET_START`); ``http``: an
``httpx`` client with the server's API key and a user bearer token; ``funded``: a new wallet
holding a new token on the server's chain. ``chipi_session.localnet`` and ``httpx`` are
imported when a fixture runs, so a module that skips without the ``localnet`` extra is not
broken by them. A module may still define a fixture of the same name: its own wins.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

from chipi_session.clock import ManualClock
from chipi_session.vault import KdfCost

from .helpers import Funded, fund_wallet

if TYPE_CHECKING:
    import httpx

    from chipi_session.localnet import LocalnetServer

__all__ = ["LOCALNET_START", "clock", "funded", "http", "server"]

LOCALNET_START = 1_800_000_000


@pytest.fixture(scope="module")
def clock(request: pytest.FixtureRequest) -> ManualClock:
    return ManualClock(getattr(request.module, "LOCALNET_START", LOCALNET_START))


@pytest.fixture(scope="module")
def server(clock: ManualClock) -> Iterator[LocalnetServer]:
    from chipi_session.localnet import LocalnetServer

    with LocalnetServer(clock=clock, kdf_cost=KdfCost.FAST_FOR_TESTS) as srv:
        yield srv


@pytest.fixture
async def http(server: LocalnetServer) -> AsyncIterator[httpx.AsyncClient]:
    import httpx

    headers = {"x-api-key": server.api_key, "authorization": "Bearer user-jwt"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def funded(server: LocalnetServer) -> Funded:
    return fund_wallet(server)
