"""ChipiApiBackend and StarknetRpcBackend against a real localnet over loopback HTTP.

One localnet per module (a background thread with its own loop), a shared manual clock, and
each test on both asyncio and trio.
"""

from __future__ import annotations

import contextlib
import copy
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import attrs
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from chipi_session.backends import SessionBackend, SessionReader, SessionWriter  # noqa: E402
from chipi_session.backends.chipi_api import (  # noqa: E402
    ChipiApiBackend,
    ChipiApiError,
    OutcomeResolution,
    UnknownOutcomeError,
    check_prepared_typed_data,
    normalize_base_url,
)
from chipi_session.backends.starknet_rpc import StarknetRpcBackend  # noqa: E402
from chipi_session.clock import ManualClock  # noqa: E402
from chipi_session.errors import ChipiSessionError, ErrorCode  # noqa: E402
from chipi_session.felts import encode_short_string, selector  # noqa: E402
from chipi_session.hashing import (  # noqa: E402
    ANY_CALLER,
    SN_MAIN,
    SN_SEPOLIA,
    outside_execution_typed_data,
    typed_data_message_hash,
)
from chipi_session.http import Exchange  # noqa: E402
from chipi_session.keys import SecretKey, generate_private_key  # noqa: E402
from chipi_session.localnet import LocalnetServer  # noqa: E402
from chipi_session.types import Call, WalletType  # noqa: E402
from chipi_session.vault import KdfCost  # noqa: E402

from .helpers import Funded  # noqa: E402
from .localnet_fixtures import LOCALNET_START  # noqa: E402

pytestmark = pytest.mark.anyio

START = LOCALNET_START  # the shared clock's start (localnet_fixtures)
TOKEN = "tok_test"
RECIPIENT = 0xBEEF
TRANSFER = selector("transfer")
APPROVE = selector("approve")


@pytest.fixture(autouse=True)
def _reset_faults(server: LocalnetServer) -> Iterator[None]:
    yield
    server.faults.reset()


@attrs.define
class Recorder:
    exchanges: list[Exchange] = attrs.field(factory=list)
    timings: list[tuple[str, float]] = attrs.field(factory=list)

    def paths(self) -> list[str]:
        """REST endpoints hit, in order (JSON-RPC traffic left out)."""
        return [e.path.rsplit("/", 1)[-1] for e in self.exchanges if e.path.startswith("/v1/")]


def make_backend(
    server: LocalnetServer, clock: ManualClock, recorder: Recorder | None = None, **kw: Any
) -> ChipiApiBackend:
    rec = recorder or Recorder()
    kw.setdefault("timeout", 5.0)
    return ChipiApiBackend(
        server.api_key,
        base_url=server.url,
        rpc_url=server.rpc_url,
        clock=clock,
        on_exchange=rec.exchanges.append,
        on_timing=lambda p, s: rec.timings.append((p, s)),
        **kw,
    )


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def backend(
    server: LocalnetServer, clock: ManualClock, recorder: Recorder
) -> AsyncIterator[ChipiApiBackend]:
    async with make_backend(server, clock, recorder) as b:
        yield b


def transfer(token: int, amount: int, to: int = RECIPIENT) -> Call:
    return Call(to=token, selector="transfer", calldata=[to, amount, 0])


async def register(
    b: ChipiApiBackend,
    f: Funded,
    session: SecretKey,
    clock: ManualClock,
    *,
    max_calls: int = 10,
    allowed: tuple[int, ...] = (),
    duration: int = 3600,
) -> int:
    valid_until = int(clock.now()) + duration
    tx = await b.add_or_update_session_key(
        f.wallet,
        f.owner,
        session_public_key=session.public_key,
        valid_until=valid_until,
        max_calls=max_calls,
        allowed_entrypoints=allowed,
        bearer_token=TOKEN,
    )
    assert tx.startswith("0x")
    return valid_until


def balance(server: LocalnetServer, token: int, owner: int) -> int:
    with server.locked() as chain:
        return chain.balance_of(token, owner)


class CountingKey(SecretKey):
    """A SecretKey that counts signatures (to prove nothing was signed)."""

    signed = 0

    def sign(self, msg_hash: int) -> tuple[int, int]:
        type(self).signed += 1
        return super().sign(msg_hash)


# -- the happy path ------------------------------------------------------------------------


async def test_full_lifecycle(
    backend: ChipiApiBackend,
    server: LocalnetServer,
    clock: ManualClock,
    funded: Funded,
    recorder: Recorder,
) -> None:
    assert isinstance(backend, SessionBackend)
    assert backend.requires_bearer_token
    session = SecretKey.generate()
    wallet = funded.wallet.address

    before = await backend.get_session_status(wallet, session.public_key)
    assert (before.valid_until, before.max_calls, before.calls_used) == (0, 0, 0)

    valid_until = await register(
        backend, funded, session, clock, max_calls=5, allowed=(TRANSFER, APPROVE)
    )
    status = await backend.get_session_status(wallet, session.public_key)
    assert status.valid_until == valid_until
    assert (status.max_calls, status.calls_used) == (5, 0)
    assert status.allowed_entrypoints == (TRANSFER, APPROVE)
    assert status.is_active(int(clock.now()))

    tx = await backend.execute_with_session(
        funded.wallet,
        session,
        valid_until=valid_until,
        calls=[transfer(funded.token, 1_000)],
        bearer_token=TOKEN,
    )
    assert balance(server, funded.token, RECIPIENT) >= 1_000
    assert balance(server, funded.token, wallet) == 10**9 - 1_000
    tx_status = await backend.rpc.get_transaction_status(tx)
    assert tx_status is not None and tx_status.succeeded and tx_status.is_final
    receipt = await backend.rpc.get_transaction_receipt(tx)
    assert receipt is not None and receipt.succeeded
    assert receipt.events and receipt.events[0].from_address == funded.token
    assert (await backend.get_session_status(wallet, session.public_key)).calls_used == 1

    # spending policy: set, read, enforce, remove
    await backend.set_spending_policy(
        funded.wallet,
        funded.owner,
        session_public_key=session.public_key,
        token=funded.token,
        max_per_call=500,
        max_per_window=800,
        window_seconds=3600,
        bearer_token=TOKEN,
    )
    policy = await backend.get_spending_policy(wallet, session.public_key, funded.token)
    assert (policy.max_per_call, policy.max_per_window, policy.window_seconds) == (500, 800, 3600)
    assert policy.spent_in_window == 0 and policy.window_start == int(clock.now())
    await backend.execute_with_session(
        funded.wallet,
        session,
        valid_until=valid_until,
        calls=[transfer(funded.token, 400)],
        bearer_token=TOKEN,
    )
    assert (
        await backend.get_spending_policy(wallet, session.public_key, funded.token)
    ).spent_in_window == 400
    with pytest.raises(ChipiApiError) as over:
        await backend.execute_with_session(
            funded.wallet,
            session,
            valid_until=valid_until,
            calls=[transfer(funded.token, 500)],
            bearer_token=TOKEN,
        )
    assert over.value.code is ErrorCode.SESSION_SPENDING_LIMIT_EXCEEDED
    assert over.value.status == 400 and not over.value.retryable
    await backend.remove_spending_policy(
        funded.wallet,
        funded.owner,
        session_public_key=session.public_key,
        token=funded.token,
        bearer_token=TOKEN,
    )
    assert not (await backend.get_spending_policy(wallet, session.public_key, funded.token)).exists

    await backend.revoke_session_key(
        funded.wallet, funded.owner, session_public_key=session.public_key, bearer_token=TOKEN
    )
    revoked = await backend.get_session_status(wallet, session.public_key)
    assert (revoked.valid_until, revoked.max_calls, revoked.allowed_entrypoints) == (0, 0, ())
    with pytest.raises(ChipiApiError) as gone:
        await backend.execute_with_session(
            funded.wallet,
            session,
            valid_until=valid_until,
            calls=[transfer(funded.token, 1)],
            bearer_token=TOKEN,
        )
    assert gone.value.code is ErrorCode.SESSION_NOT_REGISTERED

    # every write was prepare + execute, with the four timing phases reported
    assert recorder.paths().count("prepare-typed-data") == recorder.paths().count(
        "execute-sponsored-transaction"
    )
    assert {p for p, _ in recorder.timings} == {"prepare", "check", "sign", "execute"}
    assert all(e.server_ms is not None for e in recorder.exchanges if e.status == 200)


async def test_whitelist_longer_than_one_batch(
    backend: ChipiApiBackend, clock: ManualClock, funded: Funded
) -> None:
    session = SecretKey.generate()
    allowed = tuple(range(1, 71))  # 70 entries: two JSON-RPC batches
    await register(backend, funded, session, clock, allowed=allowed)
    status = await backend.get_session_status(funded.wallet.address, session.public_key)
    assert status.allowed_entrypoints == allowed


# -- Chipi error codes ---------------------------------------------------------------------


async def test_chain_error_codes(
    backend: ChipiApiBackend, clock: ManualClock, funded: Funded
) -> None:
    async def execute(session: SecretKey, valid_until: int, call: Call) -> None:
        await backend.execute_with_session(
            funded.wallet, session, valid_until=valid_until, calls=[call], bearer_token=TOKEN
        )

    # not allowed by the whitelist
    s1 = SecretKey.generate()
    vu1 = await register(backend, funded, s1, clock, allowed=(APPROVE,))
    with pytest.raises(ChipiApiError) as e:
        await execute(s1, vu1, transfer(funded.token, 1))
    assert e.value.code is ErrorCode.SESSION_ENTRYPOINT_NOT_ALLOWED
    assert e.value.server_code == "SESSION_ENTRYPOINT_NOT_ALLOWED"

    # call budget used up
    s2 = SecretKey.generate()
    vu2 = await register(backend, funded, s2, clock, max_calls=1)
    await execute(s2, vu2, transfer(funded.token, 1))
    with pytest.raises(ChipiApiError) as e:
        await execute(s2, vu2, transfer(funded.token, 1))
    assert e.value.code is ErrorCode.SESSION_MAX_CALLS_EXCEEDED

    # bad signature: the registered public key, another private key
    s3 = SecretKey.generate()
    vu3 = await register(backend, funded, s3, clock)
    impostor = SecretKey(generate_private_key(), public_key=s3.public_key)
    with pytest.raises(ChipiApiError) as e:
        await execute(impostor, vu3, transfer(funded.token, 1))
    assert e.value.code is ErrorCode.INVALID_SIGNATURE

    # never registered
    with pytest.raises(ChipiApiError) as e:
        await execute(SecretKey.generate(), vu3, transfer(funded.token, 1))
    assert e.value.code is ErrorCode.SESSION_NOT_REGISTERED

    # expired (chain time moves past valid_until)
    s4 = SecretKey.generate()
    vu4 = await register(backend, funded, s4, clock, duration=100)
    clock.advance(101)
    with pytest.raises(ChipiApiError) as e:
        await execute(s4, vu4, transfer(funded.token, 1))
    assert e.value.code is ErrorCode.SESSION_EXPIRED

    # a wallet nobody deployed
    ghost = attrs.evolve(funded.wallet, address=0x1234567)
    with pytest.raises(ChipiApiError) as e:
        await backend.revoke_session_key(
            ghost, funded.owner, session_public_key=1, bearer_token=TOKEN
        )
    assert e.value.code is ErrorCode.INVALID_INPUT and e.value.status == 400


async def test_local_refusals_send_nothing(
    backend: ChipiApiBackend, funded: Funded, recorder: Recorder
) -> None:
    session = SecretKey.generate()
    with pytest.raises(ChipiSessionError) as e:
        await backend.revoke_session_key(
            funded.wallet, funded.owner, session_public_key=session.public_key, bearer_token=None
        )
    assert e.value.code is ErrorCode.UNAUTHORIZED
    ready = attrs.evolve(funded.wallet, wallet_type=WalletType.READY)
    with pytest.raises(ChipiSessionError) as e:
        await backend.revoke_session_key(
            ready, funded.owner, session_public_key=session.public_key, bearer_token=TOKEN
        )
    assert e.value.code is ErrorCode.INVALID_WALLET_TYPE_FOR_SESSION
    with pytest.raises(ChipiSessionError) as e:
        await backend.set_spending_policy(
            funded.wallet,
            funded.owner,
            session_public_key=1,
            token=funded.token,
            max_per_call=10,
            max_per_window=5,
            window_seconds=60,
            bearer_token=TOKEN,
        )
    assert e.value.code is ErrorCode.INVALID_SPENDING_POLICY
    with pytest.raises(ChipiSessionError) as e:
        await backend.add_or_update_session_key(
            funded.wallet,
            funded.owner,
            session_public_key=1,
            valid_until=2**64,
            max_calls=1,
            allowed_entrypoints=(),
            bearer_token=TOKEN,
        )
    assert e.value.code is ErrorCode.INVALID_INPUT
    assert recorder.exchanges == []


async def test_unauthorized_api_key(
    server: LocalnetServer, clock: ManualClock, funded: Funded
) -> None:
    wrong = "pk_dev_" + "x" * 32
    async with ChipiApiBackend(
        wrong, base_url=server.url, rpc_url=server.rpc_url, clock=clock
    ) as b:
        with pytest.raises(ChipiApiError) as e:
            await b.revoke_session_key(
                funded.wallet, funded.owner, session_public_key=1, bearer_token=TOKEN
            )
    assert e.value.code is ErrorCode.UNAUTHORIZED and e.value.status == 401
    assert not e.value.retryable


def test_constructor_validation() -> None:
    with pytest.raises(ChipiSessionError) as e:
        ChipiApiBackend("sk_prod_" + "a" * 40, rpc_url="http://127.0.0.1:1/rpc")
    assert e.value.code is ErrorCode.INVALID_INPUT
    with pytest.raises(ChipiSessionError):
        ChipiApiBackend("pk_dev_" + "a" * 32)  # no rpc
    with pytest.raises(ChipiSessionError):
        ChipiApiBackend(
            "pk_dev_" + "a" * 32, base_url="http://api.example.com", rpc_url="http://127.0.0.1:1"
        )


def test_base_url_normalisation() -> None:
    assert normalize_base_url("https://api.chipipay.com/v1") == "https://api.chipipay.com/v1"
    assert normalize_base_url("https://api.chipipay.com/v1/") == "https://api.chipipay.com/v1"
    assert normalize_base_url("https://h.example/v2") == "https://h.example/v1"
    assert normalize_base_url("https://h.example/") == "https://h.example/v1"
    assert normalize_base_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/v1"
    assert normalize_base_url("http://h.example", allow_insecure_http=True) == "http://h.example/v1"
    for bad in ("", "ftp://h/v1", "http://h.example/v1", "https://h.example/v1?x=1"):
        with pytest.raises(ChipiSessionError):
            normalize_base_url(bad)


# -- the transport failing ---------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_server_down_is_backend_unavailable(clock: ManualClock, funded: Funded) -> None:
    port = _closed_port()
    rec = Recorder()
    async with ChipiApiBackend(
        "pk_dev_" + "a" * 32,
        base_url=f"http://127.0.0.1:{port}",
        rpc_url=f"http://127.0.0.1:{port}/rpc",
        chain_id=SN_MAIN,
        clock=clock,
        timeout=3.0,
        retries=1,
        on_exchange=rec.exchanges.append,
    ) as b:
        with pytest.raises(ChipiSessionError) as e:
            await b.revoke_session_key(
                funded.wallet, funded.owner, session_public_key=1, bearer_token=TOKEN
            )
        assert e.value.code is ErrorCode.BACKEND_UNAVAILABLE and e.value.retryable
        assert [x.sent for x in rec.exchanges] == [False, False]  # retried: nothing left
        with pytest.raises(ChipiSessionError) as e:
            await b.get_session_status(funded.wallet.address, 1)
        assert e.value.code is ErrorCode.BACKEND_UNAVAILABLE and e.value.retryable


async def test_prepare_5xx_is_retried_then_unavailable(
    server: LocalnetServer, clock: ManualClock, funded: Funded
) -> None:
    rec = Recorder()
    server.faults.prepare_status = 503
    async with make_backend(server, clock, rec, retries=2) as b:
        with pytest.raises(ChipiSessionError) as e:
            await b.revoke_session_key(
                funded.wallet, funded.owner, session_public_key=1, bearer_token=TOKEN
            )
    assert e.value.code is ErrorCode.BACKEND_UNAVAILABLE and e.value.retryable
    assert rec.paths().count("prepare-typed-data") == 3
    assert "execute-sponsored-transaction" not in rec.paths()


async def test_rpc_5xx_is_retried_then_unavailable(server: LocalnetServer) -> None:
    server.faults.rpc_status = 502
    async with StarknetRpcBackend(server.rpc_url, retries=1, timeout=3.0) as rpc:
        with pytest.raises(ChipiSessionError) as e:
            await rpc.block_number()
    assert e.value.code is ErrorCode.BACKEND_UNAVAILABLE and e.value.retryable


async def test_timeout_after_execute_sent_is_unknown_outcome_then_executed(
    server: LocalnetServer, clock: ManualClock, funded: Funded
) -> None:
    """The paymaster executes, then the answer is too slow: UNKNOWN_OUTCOME, never retried,
    resolved from the chain as executed, and executed exactly once."""
    async with make_backend(server, clock) as setup:
        session = SecretKey.generate()
        valid_until = await register(setup, funded, session, clock)
    rec = Recorder()
    server.faults.execute_delay_after = 1.5
    async with make_backend(server, clock, rec, timeout=0.5, retries=3) as b:
        with pytest.raises(UnknownOutcomeError) as e:
            await b.execute_with_session(
                funded.wallet,
                session,
                valid_until=valid_until,
                calls=[transfer(funded.token, 777, to=0xCAFE)],
                bearer_token=TOKEN,
            )
        err = e.value
        assert err.code is ErrorCode.UNKNOWN_OUTCOME and not err.retryable
        assert err.pending is not None and b.unresolved_outcomes == (err.pending,)
        assert rec.paths().count("execute-sponsored-transaction") == 1  # no retry
        assert await b.resolve_unknown_outcome(err) is OutcomeResolution.EXECUTED
        assert b.unresolved_outcomes == ()
    assert balance(server, funded.token, 0xCAFE) == 777
    async with StarknetRpcBackend(server.rpc_url) as rpc:
        status = await rpc.get_session_status(funded.wallet.address, session.public_key)
    assert status.calls_used == 1


async def test_unknown_outcome_pending_until_the_paymaster_runs_it(
    server: LocalnetServer, clock: ManualClock, funded: Funded
) -> None:
    async with make_backend(server, clock) as setup:
        session = SecretKey.generate()
        valid_until = await register(setup, funded, session, clock)
    server.faults.execute_delay_before = 0.8
    async with make_backend(server, clock, timeout=0.3) as b:
        with pytest.raises(UnknownOutcomeError) as e:
            await b.execute_with_session(
                funded.wallet,
                session,
                valid_until=valid_until,
                calls=[transfer(funded.token, 5, to=0xD00D)],
                bearer_token=TOKEN,
            )
        assert await b.resolve_unknown_outcome(e.value) is OutcomeResolution.PENDING
        result = await b.wait_for_outcome(e.value, timeout=10, poll_interval=0.1)
        assert result is OutcomeResolution.EXECUTED
    assert balance(server, funded.token, 0xD00D) == 5


async def test_execute_5xx_is_unknown_then_not_executed_after_the_window(
    server: LocalnetServer, clock: ManualClock, funded: Funded
) -> None:
    async with make_backend(server, clock) as setup:
        session = SecretKey.generate()
        valid_until = await register(setup, funded, session, clock, duration=20_000)
    server.faults.execute_status = 500
    async with make_backend(server, clock) as b:
        with pytest.raises(UnknownOutcomeError) as e:
            await b.execute_with_session(
                funded.wallet,
                session,
                valid_until=valid_until,
                calls=[transfer(funded.token, 5, to=0xF00D)],
                bearer_token=TOKEN,
            )
        assert await b.resolve_unknown_outcome(e.value) is OutcomeResolution.PENDING
        assert e.value.pending is not None
        clock.set(e.value.pending.execute_before)
        assert await b.resolve_unknown_outcome(e.value) is OutcomeResolution.NOT_EXECUTED
    assert balance(server, funded.token, 0xF00D) == 0


# -- never signing what we did not ask for ----------------------------------------------------


def _msg(td: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = td["message"]
    return message


Tamper = Callable[[dict[str, Any]], None]

TAMPERS: dict[str, Tamper] = {
    "amount": lambda td: _msg(td)["Calls"][0]["Calldata"].__setitem__(1, hex(10**9)),
    "recipient": lambda td: _msg(td)["Calls"][0]["Calldata"].__setitem__(0, hex(0xBAD)),
    "extra_call": lambda td: _msg(td)["Calls"].append(copy.deepcopy(_msg(td)["Calls"][0])),
    "target": lambda td: _msg(td)["Calls"][0].__setitem__("To", hex(0xBAD)),
    "selector": lambda td: _msg(td)["Calls"][0].__setitem__("Selector", hex(APPROVE)),
    "chain": lambda td: td["domain"].__setitem__("chainId", hex(SN_SEPOLIA)),
    "domain_name": lambda td: td["domain"].__setitem__("name", "Account.execute"),
    "window_too_long": lambda td: _msg(td).__setitem__(
        "Execute Before", hex(START + 40 * 86400 + 10**6)
    ),
    "starts_in_future": lambda td: _msg(td).__setitem__("Execute After", hex(2**40)),
    "already_closed": lambda td: _msg(td).__setitem__("Execute Before", hex(1000)),
    "types": lambda td: td["types"]["OutsideExecution"].append({"name": "X", "type": "felt"}),
    "primary_type": lambda td: td.__setitem__("primaryType", "Call"),
    "extra_field": lambda td: _msg(td).__setitem__("Extra", "0x1"),
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_every_tamper_changes_the_typed_data(name: str) -> None:
    """The refusal test below is not vacuous: each tamper really edits a typed data."""
    td = outside_execution_typed_data(
        caller=ANY_CALLER,
        nonce=7,
        execute_after=START - 60,
        execute_before=START + 3600,
        calls=[transfer(0x123, 10)],
        chain_id=SN_MAIN,
    )
    before = copy.deepcopy(td)
    TAMPERS[name](td)
    assert td != before


@pytest.mark.parametrize("name", [*sorted(TAMPERS), "caller_is_wallet"])
async def test_tampered_typed_data_is_refused_before_signing(
    name: str,
    server: LocalnetServer,
    clock: ManualClock,
    funded: Funded,
    recorder: Recorder,
    backend: ChipiApiBackend,
) -> None:
    session = CountingKey(generate_private_key())
    valid_until = await register(backend, funded, session, clock)
    recorder.exchanges.clear()

    def hook(td: dict[str, Any]) -> dict[str, Any]:
        td = copy.deepcopy(td)
        if name == "caller_is_wallet":  # needs the wallet address, so not in TAMPERS
            _msg(td)["Caller"] = hex(funded.wallet.address)
        else:
            TAMPERS[name](td)
        return td

    server.faults.prepare_tamper = hook
    CountingKey.signed = 0
    with pytest.raises(ChipiSessionError) as e:
        await backend.execute_with_session(
            funded.wallet,
            session,
            valid_until=valid_until,
            calls=[transfer(funded.token, 10)],
            bearer_token=TOKEN,
        )
    assert e.value.code is ErrorCode.SESSION_INVALID_RESPONSE, e.value
    assert CountingKey.signed == 0
    assert recorder.paths() == ["prepare-typed-data"]  # no execute request


async def test_tampered_owner_write_is_refused(
    server: LocalnetServer, backend: ChipiApiBackend, funded: Funded, recorder: Recorder
) -> None:
    def hook(td: dict[str, Any]) -> dict[str, Any]:
        td = copy.deepcopy(td)
        _msg(td)["Calls"][0]["Calldata"][2] = hex(10**6)  # max_calls raised behind our back
        return td

    server.faults.prepare_tamper = hook
    owner = CountingKey(funded.owner.reveal())
    CountingKey.signed = 0
    with pytest.raises(ChipiSessionError) as e:
        await backend.add_or_update_session_key(
            funded.wallet,
            owner,
            session_public_key=0x1234,
            valid_until=START + 99_999,
            max_calls=3,
            allowed_entrypoints=(),
            bearer_token=TOKEN,
        )
    assert e.value.code is ErrorCode.SESSION_INVALID_RESPONSE
    assert CountingKey.signed == 0 and recorder.paths() == ["prepare-typed-data"]


def _typed(calls: list[Call], **over: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(
        caller=ANY_CALLER,
        nonce=7,
        execute_after=START - 60,
        execute_before=START + 3600,
        calls=calls,
        chain_id=SN_MAIN,
    )
    args.update(over)
    return outside_execution_typed_data(**args)


def test_check_accepts_the_legitimate_variants() -> None:
    calls = [Call(to=0x123, selector="transfer", calldata=[1, 2, 3])]
    wallet = 0x555AA11
    base = dict(wallet_address=wallet, calls=calls, chain_id=SN_MAIN, now=START)
    ok = check_prepared_typed_data(_typed(calls), **base)  # type: ignore[arg-type]
    assert ok.nonce == 7 and ok.caller == ANY_CALLER
    assert ok.message_hash == typed_data_message_hash(_typed(calls), wallet)
    # legacy felt timestamps: accepted, and hashed as what they are
    felt = check_prepared_typed_data(_typed(calls, time_type="felt"), **base)  # type: ignore[arg-type]
    assert felt.message_hash == typed_data_message_hash(_typed(calls, time_type="felt"), wallet)
    assert felt.message_hash != ok.message_hash
    # caller 0 and a named relayer: accepted, the caller read back and the hash their own
    for caller in (0, 0xABC):
        td = _typed(calls, caller=caller)
        got = check_prepared_typed_data(td, **base)  # type: ignore[arg-type]
        assert got.caller == caller
        assert got.message_hash == typed_data_message_hash(td, wallet) != ok.message_hash
    relayer = _typed(calls, caller=0xABC)
    with pytest.raises(ChipiSessionError):
        check_prepared_typed_data(relayer, allowed_callers={0xDEF}, **base)  # type: ignore[arg-type]
    # a short-string chain id and a selector by name encode the same message: same hash
    short = _typed(calls)
    short["domain"]["chainId"] = "SN_MAIN"
    named = _typed(calls)
    named["message"]["Calls"][0]["Selector"] = "transfer"
    for same in (short, named):
        got = check_prepared_typed_data(same, **base)  # type: ignore[arg-type]
        assert got.message_hash == ok.message_hash and got.nonce == ok.nonce
    # a decimal selector: starknet-py would hash it as a *name*; refused, not mis-signed
    decimal = _typed(calls)
    decimal["message"]["Calls"][0]["Selector"] = str(TRANSFER)
    with pytest.raises(ChipiSessionError) as e:
        check_prepared_typed_data(decimal, **base)  # type: ignore[arg-type]
    assert e.value.code is ErrorCode.SESSION_INVALID_RESPONSE
    assert encode_short_string("SN_MAIN") == SN_MAIN


# -- the read-only RPC backend -------------------------------------------------------------------


async def test_rpc_reads(
    server: LocalnetServer, backend: ChipiApiBackend, clock: ManualClock, funded: Funded
) -> None:
    async with StarknetRpcBackend(server.rpc_url) as rpc:
        assert isinstance(rpc, SessionReader) and not isinstance(rpc, SessionWriter)
        assert await rpc.chain_id() == SN_MAIN
        assert await rpc.spec_version() == "0.8.1"
        assert await rpc.block_timestamp() == int(clock.now())
        wallet = funded.wallet.address
        # no contract / no such entrypoint / nothing registered: zeros, not a crash
        for address in (0x999999, funded.token, wallet):
            status = await rpc.get_session_status(address, 0x42)
            assert (status.valid_until, status.max_calls, status.calls_used) == (0, 0, 0)
            assert not (await rpc.get_spending_policy(address, 0x42, funded.token)).exists
        assert await rpc.get_class_hash_at(0x999999) is None
        assert await rpc.get_class_hash_at(wallet) is not None
        assert await rpc.get_nonce(wallet) == 0
        assert await rpc.get_transaction_status("0x1234") is None
        assert await rpc.get_transaction_receipt("0x1234") is None
        height = await rpc.block_number()
        session = SecretKey.generate()
        await register(backend, funded, session, clock)
        assert await rpc.block_number() == height + 1
        assert await rpc.is_valid_outside_execution_nonce(wallet, 12345)


async def test_rpc_backend_is_read_only(
    server: LocalnetServer, clock: ManualClock, funded: Funded
) -> None:
    """A session on a read-only backend reads the chain and refuses every write with
    NOT_SUPPORTED (not retryable), changing nothing."""
    from chipi_session.engine import ChipiSession
    from chipi_session.types import SessionState
    from chipi_session.vault import Vault

    async with StarknetRpcBackend(server.rpc_url) as rpc:
        assert not isinstance(rpc, SessionBackend)
        async with ChipiSession(
            wallet=funded.wallet,
            encrypt_key="1234",
            backend=rpc,
            clock=clock,
            vault=Vault(KdfCost.FAST_FOR_TESTS),
            auto_check_status=False,
        ) as session:
            data = await session.create_session(duration_seconds=3600)
            with pytest.raises(ChipiSessionError) as e:
                await session.register_session(max_calls=3)
            assert e.value.code is ErrorCode.NOT_SUPPORTED and not e.value.retryable
            assert session.session_state is SessionState.CREATED
            with pytest.raises(ChipiSessionError) as e:
                await session.revoke_session()
            assert e.value.code is ErrorCode.NOT_SUPPORTED
            status = await rpc.get_session_status(funded.wallet.address, data.public_key)
            assert not status.exists and status.calls_used == 0


# -- end to end through the engine ---------------------------------------------------------------


@contextlib.asynccontextmanager
async def engine_session(
    server: LocalnetServer, clock: ManualClock, funded: Funded, **backend_kw: Any
) -> AsyncIterator[Any]:
    """A ChipiSession (the engine) on ``funded``'s wallet, over a fresh ChipiApiBackend."""
    engine = pytest.importorskip("chipi_session.engine")
    from chipi_session.vault import Vault

    async def token() -> str:
        return TOKEN

    async with make_backend(server, clock, **backend_kw) as b:
        async with engine.ChipiSession(
            wallet=funded.wallet,
            encrypt_key="1234",
            backend=b,
            get_bearer_token=token,
            clock=clock,
            vault=Vault(KdfCost.FAST_FOR_TESTS),
            auto_check_status=False,
        ) as session:
            yield session


async def test_chipi_session_end_to_end(
    server: LocalnetServer, clock: ManualClock, funded: Funded
) -> None:
    from chipi_session.types import SessionState

    async with engine_session(server, clock, funded) as session:
        await session.create_session(duration_seconds=3600)
        await session.register_session(max_calls=3, allowed_entrypoints=["transfer"])
        assert session.session_state is SessionState.ACTIVE
        tx = await session.execute_with_session([transfer(funded.token, 42, to=0xE2E)])
        assert tx.startswith("0x")
        status = await session.refetch_status()
        assert status is not None and status.calls_used == 1
        assert status.allowed_entrypoints == (TRANSFER,)
        await session.set_spending_policy(funded.token, 100, 200, 3600)
        policy = await session.get_spending_policy(funded.token)
        assert policy is not None and policy.max_per_window == 200
        await session.remove_spending_policy(funded.token)
        await session.revoke_session()
        assert session.session_state is SessionState.REVOKED
    assert balance(server, funded.token, 0xE2E) == 42


async def test_chipi_session_unknown_outcome_resolved_from_the_chain(
    server: LocalnetServer, clock: ManualClock, funded: Funded
) -> None:
    """A lost execute answer through the engine: reported as UNKNOWN_OUTCOME with
    ``applied=True`` (read from the SNIP-9 nonce), executed once, budget counted."""
    async with engine_session(server, clock, funded, timeout=0.5) as session:
        await session.create_session(duration_seconds=3600)
        await session.register_session(max_calls=3)
        server.faults.execute_delay_after = 1.0
        with pytest.raises(ChipiSessionError) as e:
            await session.execute_with_session([transfer(funded.token, 9, to=0xAB5)])
        assert e.value.code is ErrorCode.UNKNOWN_OUTCOME
        assert e.value.applied is True
        assert session.remaining_calls == 2
    assert balance(server, funded.token, 0xAB5) == 9


async def test_batched_statuses_and_confirmation(
    server: LocalnetServer,
    clock: ManualClock,
    funded: Funded,
    recorder: Recorder,
    backend: ChipiApiBackend,
) -> None:
    from chipi_session.backends.base import TransactionConfirmer
    from chipi_session.hashing import session_validate_hash

    plain, listed = SecretKey.generate(), SecretKey.generate()
    vu = await register(backend, funded, plain, clock, max_calls=4)
    await register(backend, funded, listed, clock, allowed=(TRANSFER,))
    wallet = funded.wallet.address
    recorder.exchanges.clear()
    statuses = await backend.get_session_statuses(
        [
            (wallet, plain.public_key),
            (wallet, listed.public_key),
            (wallet, 0x77),
            (0x999999, 1),
            (funded.token, 1),
        ]
    )
    assert [getattr(s, "max_calls", None) for s in statuses] == [4, 10, 0, 0, 0]
    assert statuses[1].allowed_entrypoints == (TRANSFER,)  # type: ignore[union-attr]
    assert len(recorder.exchanges) == 2  # one batch for all, one for the whitelist

    # confirmation: accepted, unknown (times out), reverted
    assert isinstance(backend, TransactionConfirmer)
    tx = await backend.add_or_update_session_key(
        funded.wallet,
        funded.owner,
        session_public_key=plain.public_key,
        valid_until=vu,
        max_calls=4,
        allowed_entrypoints=(),
        bearer_token=TOKEN,
    )
    await backend.confirm_transaction(tx)
    with pytest.raises(ChipiSessionError) as e:
        await backend.rpc.confirm_transaction("0x1234", timeout=0.3, poll_interval=0.05)
    assert e.value.code is ErrorCode.UNKNOWN_OUTCOME
    await backend.set_spending_policy(
        funded.wallet,
        funded.owner,
        session_public_key=plain.public_key,
        token=funded.token,
        max_per_call=10,
        max_per_window=10,
        window_seconds=60,
        bearer_token=TOKEN,
    )
    with server.locked() as chain:  # a protocol INVOKE whose __execute__ panics: REVERTED
        calls = [transfer(funded.token, 100)]
        nonce = chain.get_nonce(wallet)
        h = session_validate_hash(
            account=wallet, chain_id=SN_MAIN, nonce=nonce, valid_until=vu, calls=calls
        )
        r, s = plain.sign(h)
        reverted = chain.invoke(wallet, calls, [plain.public_key, r, s, vu]).tx_hash
    with pytest.raises(ChipiSessionError) as e:
        await backend.confirm_transaction(reverted)
    assert e.value.code is ErrorCode.TRANSACTION_REJECTED and "Spending" in e.value.message
