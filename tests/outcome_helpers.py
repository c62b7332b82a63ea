"""Shared setup for the execution-outcome tests (issue 9 §1): the failing call kinds, an
active session on LocalChain, an event recorder, and a session-signed direct INVOKE."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from chipi_session.engine import ChipiSession
from chipi_session.events import Event
from chipi_session.hashing import session_validate_hash
from chipi_session.keys import SecretKey
from chipi_session.types import Call

from .helpers import RECIPIENT, World

OTHER = 0xC0FFEE
NOWHERE = 0x1234567

#: (name, call factory given the token, the panic text the chain reports for it)
FailingCall = tuple[str, Callable[[int], Call], str]
FAILING_CALLS: list[FailingCall] = [
    (
        "unaffordable transfer",
        lambda t: Call(to=t, selector="transfer", calldata=[RECIPIENT, 10**15, 0]),
        "ERC20: insufficient balance",
    ),
    (
        "transfer to 0",
        lambda t: Call(to=t, selector="transfer", calldata=[0, 5, 0]),
        "ERC20: transfer to 0",
    ),
    (
        "missing entrypoint",
        lambda t: Call(to=t, selector="no_such_entrypoint", calldata=[]),
        "ENTRYPOINT_NOT_FOUND",
    ),
    (
        "short calldata",
        lambda t: Call(to=t, selector="transfer", calldata=[RECIPIENT]),
        "Failed to deserialize param #2",
    ),
    (
        "bad u256",
        lambda t: Call(to=t, selector="transfer", calldata=[RECIPIENT, 2**128, 0]),
        "Failed to deserialize param #2",
    ),
    (
        "transfer_from without allowance",
        lambda t: Call(to=t, selector="transfer_from", calldata=[OTHER, RECIPIENT, 5, 0]),
        "ERC20: insufficient allowance",
    ),
    (
        "no contract at the address",
        lambda t: Call(to=NOWHERE, selector="transfer", calldata=[RECIPIENT, 5, 0]),
        "Contract not found",
    ),
]
KINDS = [pytest.param(k, id=k[0]) for k in FAILING_CALLS]


def transfer(token: int, amount: int, to: int = RECIPIENT) -> Call:
    return Call(to=token, selector="transfer", calldata=[to, amount, 0])


@contextlib.asynccontextmanager
async def active(world: World, max_calls: int = 5, **kw: Any) -> AsyncIterator[ChipiSession]:
    async with world.session(**kw) as session:
        await session.create_session(duration_seconds=3600)
        await session.register_session(max_calls=max_calls)
        yield session


def record(session: ChipiSession) -> list[Event]:
    events: list[Event] = []
    session.add_listener(events.append)
    return events


def calls_used(world: World, session: ChipiSession) -> int:
    assert session.session is not None
    return world.chain.session_status(world.wallet.address, session.session.public_key).calls_used


def invoke_as_session(
    chain: Any, wallet: int, key: SecretKey, valid_until: int, calls: Sequence[Call]
) -> str:
    h = session_validate_hash(
        account=wallet,
        chain_id=chain.chain_id,
        nonce=chain.get_nonce(wallet),
        valid_until=valid_until,
        calls=list(calls),
    )
    r, s = key.sign(h)
    return str(chain.invoke(wallet, list(calls), [key.public_key, r, s, valid_until]).tx_hash)
