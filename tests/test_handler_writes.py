"""handlers/writes.py on its own: ``send_write`` and ``unknown_outcome`` driven directly.

The journal is a recorder of the ``ActionJournal`` calls; ``send`` is a LocalChain execute
(the path that works) or a fake that reports what it is about to send and then fails, hangs
or is cancelled; the facade's callbacks are recorders. Every rule of docs/engine.md's
"In-doubt writes" that these two functions own has a test: journalled before sending,
finished once decided, held (never finished) while in doubt, resolved from the chain.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import anyio
import attrs
import pytest

from chipi_session.backends.base import OnSubmit
from chipi_session.errors import ChipiSessionError, ErrorCode
from chipi_session.handlers.writes import send_write, unknown_outcome
from chipi_session.session_inputs import AppliedHashLost
from chipi_session.types import SubmitInfo

from .helpers import World, settle

pytestmark = pytest.mark.anyio

KEY = 0x5E55
INFO = SubmitInfo("execute", 0xACC0, 41, 0x1234, 2_000_000)
LATER = attrs.evolve(INFO, outside_nonce=42)


@attrs.define
class Journal:
    """An ActionJournal that records its calls; tokens are ``("token", n)``."""

    calls: list[tuple[Any, ...]] = attrs.Factory(list)

    async def begin(self, action: str, session_public_key: int) -> object:
        await anyio.lowlevel.checkpoint()
        token = ("token", len(self.calls))
        self.calls.append(("begin", action, session_public_key, token))
        return token

    async def submitted(self, token: object, info: SubmitInfo) -> None:
        self.calls.append(("submitted", token, info))

    async def finish(self, token: object) -> None:
        await anyio.lowlevel.checkpoint()
        self.calls.append(("finish", token))

    def mark_dirty(self) -> None:
        pass

    async def flush(self) -> None:
        pass

    def kinds(self) -> list[str]:
        return [call[0] for call in self.calls]


class Unknown(Exception):
    """What the fake ``unknown`` raises, carrying what it was handed."""

    def __init__(self, action: str, info: SubmitInfo | None, token: object) -> None:
        self.args_seen = (action, info, token)


async def unknown(action: str, info: SubmitInfo | None, token: object) -> NoReturn:
    raise Unknown(action, info, token)


@attrs.define
class Held:
    """The facade's "hold it" callbacks, recorded."""

    cancelled: list[tuple[str, SubmitInfo, object]] = attrs.Factory(list)
    in_doubt: list[tuple[SubmitInfo, bool, object]] = attrs.Factory(list)
    refetches: int = 0

    def hold_cancelled(self, action: str, info: SubmitInfo, token: object) -> None:
        self.cancelled.append((action, info, token))

    def hold_in_doubt(self, info: SubmitInfo, count: bool, token: object) -> None:
        self.in_doubt.append((info, count, token))

    def refetch_soon(self) -> None:
        self.refetches += 1


def failing_send(error: BaseException, *infos: SubmitInfo) -> Callable[[OnSubmit], Awaitable[str]]:
    """A send that reports ``infos`` as about to be sent, then raises ``error``."""

    async def send(on_submit: OnSubmit) -> str:
        for info in infos:
            await on_submit(info)  # type: ignore[misc]
        raise error

    return send


async def send(
    journal: Journal | None, sender: Callable[[OnSubmit], Awaitable[str]], held: Held
) -> str:
    return await send_write(
        journal, "execute", KEY, sender, hold_cancelled=held.hold_cancelled, unknown=unknown
    )


# -- send_write ------------------------------------------------------------------------------
@pytest.mark.parametrize("journalled", [True, False])
async def test_a_sent_write_is_journalled_around_the_send(world: World, journalled: bool) -> None:
    session = await world.register_key()

    async def execute(on_submit: OnSubmit) -> str:
        return await world.chain.execute_with_session(
            world.wallet,
            world.signer(session),
            valid_until=session.valid_until,
            calls=[world.transfer(25)],
            on_submit=on_submit,
        )

    journal = Journal() if journalled else None
    before = world.balance(world.wallet.address)
    tx = await send(journal, execute, Held())
    assert world.chain.get_receipt(tx) is not None
    assert world.balance(world.wallet.address) == before - 25
    if journal is not None:
        token = journal.calls[0][3]
        assert journal.calls[0] == ("begin", "execute", KEY, token)
        (_, sent_token, info), finish = journal.calls[1:]
        assert sent_token is token
        assert world.chain.is_outside_nonce_used(world.wallet.address, info.outside_nonce)
        assert finish == ("finish", token)


async def test_a_refused_write_is_finished_and_raised() -> None:
    journal, held = Journal(), Held()
    refused = ChipiSessionError(ErrorCode.SESSION_EXPIRED, "expired")
    with pytest.raises(ChipiSessionError) as caught:
        await send(journal, failing_send(refused), held)
    assert caught.value is refused
    assert journal.kinds() == ["begin", "finish"]


async def test_a_refused_write_after_it_was_reported_is_finished_too() -> None:
    """A definite refusal (not UNKNOWN_OUTCOME) is an outcome even after on_submit."""
    journal, held = Journal(), Held()
    refused = ChipiSessionError(ErrorCode.TRANSACTION_REJECTED, "rejected")
    with pytest.raises(ChipiSessionError):
        await send(journal, failing_send(refused, INFO), held)
    assert journal.kinds() == ["begin", "submitted", "finish"]


@pytest.mark.parametrize(
    ("infos", "expected"), [((), None), ((INFO,), INFO), ((INFO, LATER), LATER)]
)
async def test_an_unknown_outcome_is_handed_the_last_reported_send(
    infos: tuple[SubmitInfo, ...], expected: SubmitInfo | None
) -> None:
    journal, held = Journal(), Held()
    lost = ChipiSessionError(ErrorCode.UNKNOWN_OUTCOME, "timed out")
    with pytest.raises(Unknown) as caught:
        await send(journal, failing_send(lost, *infos), held)
    token = journal.calls[0][3]
    assert caught.value.args_seen == ("execute", expected, token)
    assert "finish" not in journal.kinds()  # in doubt: the entry stays for recovery


async def test_an_error_before_anything_was_sent_is_finished_and_raised() -> None:
    journal, held = Journal(), Held()
    with pytest.raises(ValueError, match="boom"):
        await send(journal, failing_send(ValueError("boom")), held)
    assert journal.kinds() == ["begin", "finish"]


async def test_an_error_after_the_send_left_is_an_unknown_outcome() -> None:
    journal, held = Journal(), Held()
    with pytest.raises(Unknown) as caught:
        await send(journal, failing_send(RecursionError("hostile"), INFO), held)
    assert caught.value.args_seen[1] == INFO
    assert "finish" not in journal.kinds()


@pytest.mark.parametrize("reported", [False, True])
async def test_a_cancelled_write_is_held_if_it_may_have_left(reported: bool) -> None:
    journal, held = Journal(), Held()
    after_cancel: list[str] = []

    async def hang(on_submit: OnSubmit) -> str:
        if reported:
            await on_submit(INFO)  # type: ignore[misc]
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def run() -> None:
        await send(journal, hang, held)
        after_cancel.append("returned")

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await settle()
        tg.cancel_scope.cancel()
    assert after_cancel == []  # the cancellation went through
    token = journal.calls[0][3]
    if reported:
        assert held.cancelled == [("execute", INFO, token)]
        assert journal.kinds() == ["begin", "submitted"]  # held, not forgotten
    else:
        assert held.cancelled == []
        assert journal.kinds() == ["begin", "finish"]  # nothing was sent: forgotten


async def test_without_a_journal_failures_still_reach_unknown() -> None:
    held = Held()
    lost = ChipiSessionError(ErrorCode.UNKNOWN_OUTCOME, "timed out")
    with pytest.raises(Unknown) as caught:
        await send(None, failing_send(lost, INFO), held)
    assert caught.value.args_seen == ("execute", INFO, None)


# -- unknown_outcome -------------------------------------------------------------------------
async def resolve_lost(
    action: str,
    info: SubmitInfo | None,
    applied: bool | None,
    *,
    journal: Journal,
    held: Held,
    token: object = ("token", 0),
    resolve: Callable[[SubmitInfo | None], Awaitable[bool | None]] | None = None,
) -> None:
    """``unknown_outcome`` with a resolver that answers ``applied`` (or ``resolve``)."""

    async def answer(_: SubmitInfo | None) -> bool | None:
        return applied

    await unknown_outcome(
        action,
        info,
        token,
        journal=journal,
        resolve=resolve or answer,
        hold_cancelled=held.hold_cancelled,
        hold_in_doubt=held.hold_in_doubt,
        refetch_soon=held.refetch_soon,
    )


@pytest.mark.parametrize(("action", "count"), [("execute", True), ("register", False)])
async def test_an_undecided_write_is_held_in_doubt(action: str, count: bool) -> None:
    journal, held = Journal(), Held()
    with pytest.raises(ChipiSessionError) as caught:
        await resolve_lost(action, INFO, None, journal=journal, held=held)
    error = caught.value
    assert error.code is ErrorCode.UNKNOWN_OUTCOME
    assert error.retryable is False  # do not resend: it may have executed
    assert held.in_doubt == [(INFO, count, ("token", 0))]  # only an execute uses a call
    assert held.refetches == 1
    assert journal.calls == []  # the entry stays until the chain decides


async def test_an_undecided_write_never_reported_is_not_held() -> None:
    journal, held = Journal(), Held()
    with pytest.raises(ChipiSessionError) as caught:
        await resolve_lost("execute", None, None, journal=journal, held=held)
    assert caught.value.code is ErrorCode.UNKNOWN_OUTCOME
    assert held.in_doubt == []
    assert held.refetches == 1


async def test_a_write_that_executed_is_finished_and_reported_as_applied() -> None:
    journal, held = Journal(), Held()
    with pytest.raises(AppliedHashLost) as caught:
        await resolve_lost("execute", INFO, True, journal=journal, held=held)
    assert caught.value.info is INFO
    assert journal.calls == [("finish", ("token", 0))]
    assert held.in_doubt == [] and held.refetches == 0


async def test_a_write_that_never_executed_is_finished_and_safe_to_retry() -> None:
    journal, held = Journal(), Held()
    with pytest.raises(ChipiSessionError) as caught:
        await resolve_lost("execute", INFO, False, journal=journal, held=held)
    error = caught.value
    assert error.code is ErrorCode.BACKEND_UNAVAILABLE
    assert (error.retryable, error.applied) == (True, False)
    assert journal.calls == [("finish", ("token", 0))]
    assert held.in_doubt == []


async def test_a_decided_write_without_a_token_finishes_nothing() -> None:
    journal, held = Journal(), Held()
    with pytest.raises(ChipiSessionError):
        await resolve_lost("execute", INFO, False, journal=journal, held=held, token=None)
    assert journal.calls == []


async def test_giving_up_while_resolving_holds_the_write() -> None:
    journal, held = Journal(), Held()

    async def slow(_: SubmitInfo | None) -> bool | None:
        await anyio.sleep_forever()
        return None

    async def run() -> None:
        await resolve_lost(
            "execute", INFO, None, journal=journal, held=held, token="tok", resolve=slow
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await settle()
        tg.cancel_scope.cancel()
    assert held.cancelled == [("execute", INFO, "tok")]
    assert held.in_doubt == [] and journal.calls == []
