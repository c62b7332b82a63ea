"""Shared test configuration: anyio on both backends, the ``world`` fixture, the localnet
fixtures (localnet_fixtures.py), PostgreSQL (pg_fixtures.py), a CI hypothesis profile.
Fixtures are defined here once; helpers (``World``, ``make_world``, ``fund_wallet``) live in
helpers.py."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from .helpers import World, make_world
from .localnet_fixtures import clock, funded, http, server  # noqa: F401  (see localnet_fixtures)
from .pg_fixtures import pg_server, pg_url  # noqa: F401  (a real PostgreSQL, see pg_fixtures)

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.register_profile(
    "dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def world() -> World:
    """A fresh LocalChain world on a manual clock: a funded wallet, a cheap KDF."""
    return make_world()
