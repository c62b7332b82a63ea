"""Issue 13's rules where HTTP shows them (docs/contract.md §14): localnet's JSON-RPC and Chipi
REST API answer from the same LocalChain, so the contract's fidelity is visible on the wire.
The LocalChain side of each rule is in test_localchain_fidelity.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from chipi_session.clock import ManualClock  # noqa: E402
from chipi_session.felts import selector  # noqa: E402
from chipi_session.hashing import typed_data_message_hash  # noqa: E402
from chipi_session.keys import SecretKey, public_key_of  # noqa: E402
from chipi_session.localchain.account import VALID  # noqa: E402
from chipi_session.localchain.testing import owner_invoke, session_invoke  # noqa: E402
from chipi_session.localnet import LocalnetServer  # noqa: E402
from chipi_session.types import Call  # noqa: E402

from .forged_signatures import FORGED_RANGES, forge_key  # noqa: E402

pytestmark = pytest.mark.anyio

HOUR = 3600
START = LOCALNET_START = 1_800_001_000  # 1000 s into an hour (the shared clock's start)
SESSION = SecretKey(0x5E5510_4B3C2A19)
ISRC5_OZ_V3 = 0x3F918D17E5EE77373B56385708F855659A07F75997F365CF87748628532A055
ISRC5_WRONG = 0x3F918D17E5EE77373B56385708F855659A07F75997F365CF87F6E7F2E4C01A
TRANSFER_EV = selector("Transfer")
APPROVAL_EV = selector("Approval")
Q = {"__chipi_api_version": "2025-12-30"}


async def rpc(http: httpx.AsyncClient, method: str, params: Any) -> Any:
    r = await http.post(
        "/rpc", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert "result" in body, body
    return body["result"]


async def starknet_call(
    http: httpx.AsyncClient, contract: int, entrypoint: str, calldata: Sequence[int]
) -> list[int]:
    request = {
        "contract_address": hex(contract),
        "entry_point_selector": hex(selector(entrypoint)),
        "calldata": [hex(v) for v in calldata],
    }
    return [int(v, 16) for v in await rpc(http, "starknet_call", [request, "latest"])]


async def test_over_http_is_valid_signature_follows_the_corelib(
    http: httpx.AsyncClient, server: LocalnetServer
) -> None:
    r, s = FORGED_RANGES["r_at_or_above_2_251"]
    key = forge_key(0xABC123, r, s)
    with server.locked() as chain:
        account = chain.deploy_account(key)
    assert await starknet_call(http, account, "is_valid_signature", [0xABC123, 2, r, s]) == [VALID]
    assert await starknet_call(http, account, "is_valid_signature", [0xABC124, 2, r, s]) == [0]


async def test_over_http_supports_interface_knows_oz_v3_isrc5_id(
    http: httpx.AsyncClient, server: LocalnetServer
) -> None:
    with server.locked() as chain:
        account = chain.deploy_account(public_key_of(0x5151))
    assert await starknet_call(http, account, "supports_interface", [ISRC5_OZ_V3]) == [1]
    assert await starknet_call(http, account, "supports_interface", [ISRC5_WRONG]) == [0]


async def test_over_http_transfer_from_receipt_has_approval_then_transfer(
    http: httpx.AsyncClient, server: LocalnetServer
) -> None:
    holder, spender = SecretKey(0xA1), SecretKey(0xB2)
    with server.locked() as chain:
        a = chain.deploy_account(holder.public_key)
        b = chain.deploy_account(spender.public_key)
        token = chain.deploy_token("TKN", 6)
        chain.mint(token, a, 1000)
        approve = Call(to=token, selector="approve", calldata=[b, 300, 0])
        assert owner_invoke(chain, a, holder, [approve]).succeeded
        pull = Call(to=token, selector="transfer_from", calldata=[a, 0xCAFE, 100, 0])
        tx_hash = owner_invoke(chain, b, spender, [pull]).tx_hash
    receipt = await rpc(http, "starknet_getTransactionReceipt", [tx_hash])
    assert [(e["keys"], e["data"]) for e in receipt["events"]] == [
        ([hex(APPROVAL_EV), hex(a), hex(b)], ["0xc8", "0x0"]),
        ([hex(TRANSFER_EV), hex(a), hex(0xCAFE)], ["0x64", "0x0"]),
    ]


async def test_over_http_is_valid_signature_accepts_a_signed_valid_until_above_the_stored_one(
    http: httpx.AsyncClient, server: LocalnetServer
) -> None:
    owner = SecretKey(0xC3)
    with server.locked() as chain:
        account = chain.deploy_account(owner.public_key)
        stored = chain.now() + HOUR
        add = Call(
            to=account,
            selector="add_or_update_session_key",
            calldata=[SESSION.public_key, stored, 3, 0],
        )
        assert owner_invoke(chain, account, owner, [add]).succeeded
    r, s = SESSION.sign(0xFEED)
    signature = [SESSION.public_key, r, s, stored + 10**6]
    result = await starknet_call(http, account, "is_valid_signature", [0xFEED, 4, *signature])
    assert result == [VALID]


async def test_over_http_sponsored_execution_sees_the_real_block_timestamp(
    http: httpx.AsyncClient, server: LocalnetServer, clock: ManualClock
) -> None:
    """Rule 1's other half: SNIP-9 runs in the execute phase, so a session expired by real time
    is refused even within the hour (only a direct INVOKE's __validate__ sees rounded time)."""
    owner, session = SecretKey(0xD4), SecretKey(0xE5)
    with server.locked() as chain:
        wallet = chain.deploy_account(owner.public_key)
        token = chain.deploy_token("TKN", 6)
        chain.mint(token, wallet, 1000)
        now = chain.now()
        valid_until = now - now % HOUR + HOUR - 10  # the end of this hour is after it
        add = Call(
            to=wallet,
            selector="add_or_update_session_key",
            calldata=[session.public_key, valid_until, 5, 0],
        )
        assert owner_invoke(chain, wallet, owner, [add]).succeeded
    call = {"contractAddress": hex(token), "entrypoint": "transfer", "calldata": ["0x77", "9", "0"]}
    r = await http.post(
        "/v1/transactions/prepare-typed-data",
        params=Q,
        json={"publicKey": hex(wallet), "calls": [call]},
    )
    assert r.status_code == 200, r.text
    td = r.json()["typedData"]
    clock.set(valid_until + 5)  # same hour: a direct INVOKE would still pass __validate__
    sig_r, sig_s = session.sign(typed_data_message_hash(td, wallet))
    signature = [hex(session.public_key), hex(sig_r), hex(sig_s), hex(valid_until)]
    resp = await http.post(
        "/v1/transactions/execute-sponsored-transaction",
        params=Q,
        json={"publicKey": hex(wallet), "typedData": td, "userSignature": signature},
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == "SESSION_EXPIRED"
    assert "Session: unauthorized selector" in resp.json()["message"]
    with server.locked() as chain:
        assert chain.balance_of(token, 0x77) == 0


async def test_over_http_spending_revert_shows_the_consumed_call_and_the_nonce_bump(
    http: httpx.AsyncClient, server: LocalnetServer
) -> None:
    """Rule 5 on the wire: a direct session INVOKE reverted by the spending check is a REVERTED
    receipt, and the node reports the nonce bump and the used call."""
    owner, session = SecretKey(0xF6), SecretKey(0xF7)
    with server.locked() as chain:
        wallet = chain.deploy_account(owner.public_key)
        token = chain.deploy_token("TKN", 6)
        chain.mint(token, wallet, 1000)
        valid_until = chain.now() + HOUR
        setup = [
            Call(
                to=wallet,
                selector="add_or_update_session_key",
                calldata=[session.public_key, valid_until, 5, 0],
            ),
            Call(
                to=wallet,
                selector="set_spending_policy",
                calldata=[session.public_key, token, 100, 0, 1000, 0, 86400],
            ),
        ]
        assert owner_invoke(chain, wallet, owner, setup).succeeded
        over = [Call(to=token, selector="transfer", calldata=[0x99, 500, 0])]
        tx_hash = session_invoke(chain, wallet, session, over, valid_until=valid_until).tx_hash
    receipt = await rpc(http, "starknet_getTransactionReceipt", [tx_hash])
    assert receipt["execution_status"] == "REVERTED"
    assert receipt["revert_reason"] == "Spending: exceeds per-call"
    assert await rpc(http, "starknet_getNonce", ["latest", hex(wallet)]) == "0x2"
    data = await starknet_call(http, wallet, "get_session_data", [session.public_key])
    assert data == [valid_until, 5, 1, 0]
    policy = await starknet_call(http, wallet, "get_spending_policy", [session.public_key, token])
    assert policy[5:7] == [0, 0]  # nothing spent
