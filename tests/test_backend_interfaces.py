"""The backend interfaces of backends/base.py: what a reader, a writer and each capability is,
how the engine treats a read-only backend, and that remembered capability answers stay true to
each object."""

from __future__ import annotations

from typing import Any

import pytest

from chipi_session import ChipiSessionError, ErrorCode, SessionState
from chipi_session.backends import (
    BatchStatusReader,
    ChainTimeReader,
    ClockProvider,
    ExecutionResultReader,
    NonceReader,
    SessionBackend,
    SessionReader,
    SessionWriter,
    TransactionConfirmer,
)
from chipi_session.backends.base import is_reader, needs_bearer_token, require_writer
from chipi_session.backends.faults import FaultInjectingBackend
from chipi_session.validate import check_backend

from .helpers import World

pytestmark = pytest.mark.anyio


class ReadOnly:
    """The reads of a LocalChain and nothing else (what StarknetRpcBackend offers a session)."""

    def __init__(self, world: World) -> None:
        self.get_session_status = world.chain.get_session_status
        self.get_spending_policy = world.chain.get_spending_policy


class Delegating:
    """Everything of ``inner``, found only through ``__getattr__`` (like many test doubles)."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_local_chain_is_a_full_backend_with_its_capabilities(world: World) -> None:
    chain = world.chain
    for protocol in (SessionReader, SessionWriter, SessionBackend, ClockProvider, ChainTimeReader,
                     NonceReader, TransactionConfirmer, ExecutionResultReader):
        assert isinstance(chain, protocol), protocol.__name__
    assert not isinstance(chain, BatchStatusReader)
    assert require_writer(chain, "write") is chain and not needs_bearer_token(chain)


def test_a_reader_is_refused_writes_with_not_supported(world: World) -> None:
    reader = ReadOnly(world)
    assert is_reader(reader) and check_backend(reader) is reader
    assert not isinstance(reader, SessionWriter) and not needs_bearer_token(reader)
    with pytest.raises(ChipiSessionError) as e:
        require_writer(reader, "execute transactions")
    assert e.value.code is ErrorCode.NOT_SUPPORTED and not e.value.retryable
    assert "read-only" in e.value.message and "execute transactions" in e.value.message


def test_check_backend_names_what_is_missing() -> None:
    with pytest.raises(ChipiSessionError) as e:
        check_backend(object())
    assert e.value.code is ErrorCode.INVALID_INPUT
    assert "get_session_status" in e.value.message and "get_spending_policy" in e.value.message


def test_remembered_answers_belong_to_each_object(world: World) -> None:
    """Two objects of one class that delegate to different backends keep different answers:
    a "yes" is remembered per class only when the class itself has every member."""
    writer, reader = Delegating(world.chain), Delegating(ReadOnly(world))
    for _ in range(2):  # asked twice: the second answer comes from memory
        assert require_writer(writer, "write") is writer
        with pytest.raises(ChipiSessionError):
            require_writer(reader, "write")
        assert is_reader(writer) and is_reader(reader)


def test_fault_wrapper_has_the_capabilities_of_what_it_wraps(world: World) -> None:
    wrapped = FaultInjectingBackend(world.chain, seed=0, clock=world.clock)
    assert isinstance(wrapped, SessionBackend) and isinstance(wrapped, NonceReader)
    assert isinstance(wrapped, ExecutionResultReader) and isinstance(wrapped, TransactionConfirmer)


async def test_a_session_on_a_reader_reads_and_refuses_every_write(
    world: World, anyio_backend: str
) -> None:
    async with world.session(backend=ReadOnly(world)) as session:
        data = await session.create_session(3600)
        for action, args in (
            ("register_session", {"max_calls": 3}),
            ("revoke_session", {}),
        ):
            with pytest.raises(ChipiSessionError) as e:
                await getattr(session, action)(**args)
            assert e.value.code is ErrorCode.NOT_SUPPORTED and not e.value.retryable
            assert session.session_state is SessionState.CREATED
        status = await session.refetch_status()
        assert status is not None and not status.exists
        assert world.chain.session_status(world.wallet.address, data.public_key).calls_used == 0
