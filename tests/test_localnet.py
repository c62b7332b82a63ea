"""localnet on the wire: the request shapes both official SDKs send (docs/wire-protocol.md), its auth,
its errors, its JSON-RPC, and the ``chipi-session localnet`` CLI. Raw HTTP over loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import httpx
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from chipi_session.clock import ManualClock  # noqa: E402
from chipi_session.errors import ChipiSessionError, ErrorCode  # noqa: E402
from chipi_session.felts import encode_short_string, selector  # noqa: E402
from chipi_session.hashing import SN_MAIN, typed_data_message_hash  # noqa: E402
from chipi_session.keys import SecretKey, public_key_of  # noqa: E402
from chipi_session.localnet import LocalnetServer, main  # noqa: E402
from chipi_session.localnet.wire import WireError, wire_felt, wire_signature  # noqa: E402
from chipi_session.vault import KdfCost, Vault  # noqa: E402

from .helpers import Funded, fund_wallet  # noqa: E402
from .localnet_fixtures import LOCALNET_START  # noqa: E402

pytestmark = pytest.mark.anyio

START = LOCALNET_START  # the shared clock's start (localnet_fixtures)
Q = {"__chipi_api_version": "2025-12-30"}


async def prepare(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    r = await http.post("/v1/transactions/prepare-typed-data", params=Q, json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    assert out["walletType"] == "CHIPI"
    return out["typedData"]  # type: ignore[no-any-return]


async def execute(http: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await http.post("/v1/transactions/execute-sponsored-transaction", params=Q, json=body)


async def ts_register(
    http: httpx.AsyncClient, w: Funded, session: SecretKey, *, allowed: list[str] | None = None
) -> int:
    """The TS SDK's owner path: contractAddress, entrypoint name, hex calldata, no walletType;
    userSignature {r, s} as decimal strings, saveToDatabase false."""
    valid_until = START + 3600
    entries = allowed or []
    td = await prepare(
        http,
        {
            "publicKey": hex(w.wallet.address),
            "calls": [
                {
                    "contractAddress": hex(w.wallet.address),
                    "entrypoint": "add_or_update_session_key",
                    "calldata": [
                        hex(session.public_key),
                        hex(valid_until),
                        "0x5",
                        hex(len(entries)),
                        *entries,
                    ],
                }
            ],
            "accountClassHash": "0x053f4f8791ed5bed0fddaa553d180c664e32cfaf8316bb232ae77bb08f459f2a",
        },
    )
    r, s = w.owner.sign(typed_data_message_hash(td, w.wallet.address))
    resp = await execute(
        http,
        {
            "publicKey": hex(w.wallet.address),
            "typedData": td,
            "userSignature": {"r": str(r), "s": str(s)},
            "saveToDatabase": False,
            "walletType": "CHIPI",
        },
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["transactionHash"].startswith("0x")
    return valid_until


async def prepare_transfer(
    http: httpx.AsyncClient, w: Funded, calldata: list[str], **extra: Any
) -> dict[str, Any]:
    """The TS SDK's session path: one ``transfer`` on the wallet's token (camelCase call)."""
    call = {"contractAddress": hex(w.token), "entrypoint": "transfer", "calldata": calldata}
    return await prepare(http, {"publicKey": hex(w.wallet.address), "calls": [call], **extra})


def session_sig(td: dict[str, Any], w: Funded, session: SecretKey, valid_until: int) -> list[str]:
    """The 4-felt session signature over ``td``, as hex strings."""
    r, s = session.sign(typed_data_message_hash(td, w.wallet.address))
    return [hex(session.public_key), hex(r), hex(s), hex(valid_until)]


async def execute_signed(
    http: httpx.AsyncClient, w: Funded, td: dict[str, Any], signature: Any, **extra: Any
) -> httpx.Response:
    body = {
        "publicKey": hex(w.wallet.address),
        "typedData": td,
        "userSignature": signature,
        **extra,
    }
    return await execute(http, body)


async def test_ts_sdk_shapes_full_flow(http: httpx.AsyncClient, funded: Funded) -> None:
    session = SecretKey.generate()
    valid_until = await ts_register(http, funded, session)
    # TS session path: walletType CHIPI, mixed hex/decimal calldata; 4 hex felts + flag
    td = await prepare_transfer(
        http,
        funded,
        ["0x1234", "1000", "0"],
        accountClassHash="0x053f4f87",
        walletType="CHIPI",
    )
    signature = session_sig(td, funded, session, valid_until)
    resp = await execute_signed(
        http,
        funded,
        td,
        signature,
        saveToDatabase=True,
        walletType="CHIPI",
        isSessionSignature=True,
    )
    assert resp.status_code == 200, resp.text
    assert funded.balance(0x1234) == 1000

    # the same body again: single-use nonce
    again = await execute_signed(http, funded, td, signature)
    assert again.status_code == 409
    assert again.json()["code"] == "NONCE_USED" and again.json()["message"]
    assert funded.balance(0x1234) == 1000


async def test_python_sdk_shapes(http: httpx.AsyncClient, funded: Funded) -> None:
    """snake_case calls, the READY class hash, {sessionSignature: [...]} with decimal felts."""
    session = SecretKey.generate()
    valid_until = await ts_register(http, funded, session)
    td = await prepare(
        http,
        {
            "publicKey": hex(funded.wallet.address),
            "calls": [
                {
                    "contract_address": hex(funded.token),
                    "entrypoint": "transfer",
                    "calldata": [hex(0x4321), hex(5), hex(0)],
                }
            ],
            "accountClassHash": "0x036078334509b514626504edc9fb252328d1a240e4e948bef8d0c08dff45927f",
        },
    )
    r, s = session.sign(typed_data_message_hash(td, funded.wallet.address))
    resp = await execute_signed(
        http,
        funded,
        td,
        {"sessionSignature": [hex(session.public_key), str(r), str(s), str(valid_until)]},
        saveToDatabase=True,
        walletType="CHIPI",
    )
    assert resp.status_code == 200, resp.text
    assert funded.balance(0x4321) == 5


async def test_old_ts_name_whitelist_bug_is_reproduced(
    http: httpx.AsyncClient, funded: Funded
) -> None:
    """TS <= 14.13 sends whitelist names as text: encoded as a short string, never a selector."""
    session = SecretKey.generate()
    valid_until = await ts_register(http, funded, session, allowed=["transfer"])
    status = await rpc(
        http,
        "starknet_call",
        {
            "request": {
                "contract_address": hex(funded.wallet.address),
                "entry_point_selector": hex(selector("get_session_allowed_entrypoint_at")),
                "calldata": [hex(session.public_key), "0x0"],
            },
            "block_id": "latest",
        },
    )
    assert int(status["result"][0], 16) == encode_short_string("transfer")
    td = await prepare_transfer(http, funded, ["0x1", "0x1", "0x0"])
    resp = await execute_signed(http, funded, td, session_sig(td, funded, session, valid_until))
    assert resp.status_code == 400
    assert resp.json()["code"] == "SESSION_ENTRYPOINT_NOT_ALLOWED"


async def test_altered_typed_data_is_rejected(http: httpx.AsyncClient, funded: Funded) -> None:
    session = SecretKey.generate()
    valid_until = await ts_register(http, funded, session)
    td = await prepare_transfer(http, funded, ["0x77", "0x1", "0x0"])
    td["message"]["Calls"][0]["Calldata"][1] = hex(10**6)  # more money, freshly signed
    resp = await execute_signed(http, funded, td, session_sig(td, funded, session, valid_until))
    assert resp.status_code == 400
    assert resp.json()["code"] == "INVALID_INPUT" and "altered" in resp.json()["message"]
    assert funded.balance(0x77) == 0


async def test_auth_is_required(server: LocalnetServer, funded: Funded) -> None:
    body = {
        "publicKey": hex(funded.wallet.address),
        "calls": [{"contractAddress": hex(funded.token), "entrypoint": "transfer", "calldata": []}],
    }
    url = server.url + "/v1/transactions/prepare-typed-data"
    cases = [
        ({}, "Missing API key"),
        (
            {"x-api-key": "pk_test_" + "a" * 32, "authorization": "Bearer t"},
            "Invalid API key format",
        ),
        ({"x-api-key": "pk_dev_" + "b" * 32, "authorization": "Bearer t"}, "Invalid API key"),
        ({"x-api-key": server.api_key}, "Missing bearer token"),
        ({"x-api-key": server.api_key, "authorization": "Bearer"}, "Missing bearer token"),
        ({"x-api-key": server.api_key, "authorization": "Basic abc"}, "Missing bearer token"),
    ]
    async with httpx.AsyncClient(timeout=10) as client:
        for headers, message in cases:
            r = await client.post(url, json=body, headers=headers)
            assert r.status_code == 401, headers
            assert r.json()["code"] == "UNAUTHORIZED"
            assert r.json()["message"].startswith(message)


async def test_malformed_requests(http: httpx.AsyncClient, funded: Funded) -> None:
    r = await http.post(
        "/v1/transactions/prepare-typed-data",
        content=b"{nope",
        headers={"content-type": "application/json"},
    )
    assert (r.status_code, r.json()["code"]) == (400, "INVALID_INPUT")
    r = await http.post("/v1/transactions/prepare-typed-data", json=[1, 2])
    assert r.status_code == 400
    r = await http.post(
        "/v1/transactions/prepare-typed-data",
        json={"publicKey": hex(funded.wallet.address), "calls": []},
    )
    assert r.status_code == 400
    r = await http.post(
        "/v1/transactions/prepare-typed-data",
        json={"publicKey": "0x1", "calls": [{"contractAddress": "0x1", "entrypoint": "transfer"}]},
    )
    assert (r.status_code, r.json()["code"]) == (400, "INVALID_INPUT")  # no wallet there
    r = await http.post(
        "/v1/transactions/prepare-typed-data",
        json={
            "publicKey": hex(funded.wallet.address),
            "walletType": "SHHH",
            "calls": [{"contractAddress": "0x1", "entrypoint": "transfer"}],
        },
    )
    assert r.json()["code"] == "INVALID_WALLET_TYPE_FOR_SESSION"
    r = await execute(
        http, {"publicKey": hex(funded.wallet.address), "typedData": {}, "userSignature": [1, 2, 3]}
    )
    assert (r.status_code, r.json()["code"]) == (400, "INVALID_SIGNATURE")
    r = await execute(
        http,
        {
            "publicKey": hex(funded.wallet.address),
            "typedData": {"message": {"Nonce": "0x1"}},
            "userSignature": {"r": "1", "s": "2"},
        },
    )
    assert (r.status_code, r.json()["code"]) == (400, "INVALID_INPUT")  # not issued here
    r = await http.post("/v1/transactions/execute-sponsored-raw", json={"accountAddress": "0x1"})
    assert (r.status_code, r.json()["code"]) == (501, "NOT_IMPLEMENTED")
    r = await http.post("/v1/nowhere", json={})
    assert (r.status_code, r.json()["code"]) == (404, "NOT_FOUND")
    r = await http.get("/v1/transactions/prepare-typed-data")
    assert r.status_code == 405 and r.json()["code"] == "METHOD_NOT_ALLOWED"
    r = await http.post("/v1/transactions/prepare-typed-data", content=b"x" * (1024 * 1024 + 1))
    assert r.status_code == 413


def test_wire_parsing() -> None:
    assert wire_felt("0x10", "x") == 16 and wire_felt("16", "x") == 16 and wire_felt(16, "x") == 16
    assert wire_felt("SN_MAIN", "x") == SN_MAIN
    assert wire_signature({"r": "1", "s": "0x2", "recovery": 0}) == ((1, 2), False)
    assert wire_signature(["0x1", "2", "3", "4"]) == ((1, 2, 3, 4), True)
    assert wire_signature({"sessionSignature": ["1", "2", "3", "4"]}) == ((1, 2, 3, 4), True)
    for bad in ("a" * 40, -1, True, None, 2**252):
        with pytest.raises(WireError):
            wire_felt(bad, "x")


# -- JSON-RPC ---------------------------------------------------------------------------------


async def rpc(http: httpx.AsyncClient, method: str, params: Any = ()) -> dict[str, Any]:
    r = await http.post(
        "/rpc",
        json={
            "jsonrpc": "2.0",
            "id": 7,
            "method": method,
            "params": list(params) if isinstance(params, tuple) else params,
        },
    )
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    assert body["id"] == 7
    return body


async def test_rpc_methods(http: httpx.AsyncClient, funded: Funded, clock: ManualClock) -> None:
    assert (await rpc(http, "starknet_chainId"))["result"] == hex(SN_MAIN)
    assert (await rpc(http, "starknet_specVersion"))["result"] == "0.8.1"
    height = (await rpc(http, "starknet_blockNumber"))["result"]
    assert isinstance(height, int)
    block = (await rpc(http, "starknet_getBlockWithTxHashes", {"block_id": "latest"}))["result"]
    assert block["block_number"] == height and block["timestamp"] == int(clock.now())
    hn = (await rpc(http, "starknet_blockHashAndNumber"))["result"]
    by_hash = await rpc(
        http, "starknet_getBlockWithTxHashes", {"block_id": {"block_hash": hn["block_hash"]}}
    )
    assert by_hash["result"]["block_number"] == height
    assert (
        await rpc(http, "starknet_getBlockWithTxHashes", {"block_id": {"block_number": height + 5}})
    )["error"]["code"] == 24
    assert (await rpc(http, "starknet_getNonce", ["latest", hex(funded.wallet.address)]))[
        "result"
    ] == "0x0"
    # a deployed contract that is not an account has nonce 0, as on a node (not an error)
    assert (await rpc(http, "starknet_getNonce", ["latest", hex(funded.token)]))["result"] == "0x0"
    assert (
        await rpc(
            http, "starknet_getNonce", {"block_id": "pre_confirmed", "contract_address": "0x5"}
        )
    )["error"]["code"] == 20
    class_hash = await rpc(
        http,
        "starknet_getClassHashAt",
        {"block_id": {"block_number": 0}, "contract_address": hex(funded.wallet.address)},
    )
    assert class_hash["result"].startswith("0x")
    assert (await rpc(http, "starknet_getClassHashAt", ["latest", "0x5"]))["error"]["code"] == 20

    # starknet_call: real 4-felt layout, canonical hex, positional params, decimal calldata
    call = {
        "contract_address": hex(funded.wallet.address),
        "entry_point_selector": hex(selector("get_session_data")),
        "calldata": ["12345"],
    }
    assert (await rpc(http, "starknet_call", [call, "latest"]))["result"] == ["0x0"] * 4
    missing = await rpc(
        http,
        "starknet_call",
        {"request": {**call, "contract_address": "0x5"}, "block_id": "latest"},
    )
    assert missing["error"] == {"code": 20, "message": "Contract not found"}
    on_token = await rpc(
        http,
        "starknet_call",
        {"request": {**call, "contract_address": hex(funded.token)}, "block_id": "pending"},
    )
    assert on_token["error"]["code"] == 40
    assert "Entry point" in on_token["error"]["data"]["revert_error"]["error"]
    assert "not found" in on_token["error"]["data"]["revert_error"]["error"]

    # receipts and statuses
    session = SecretKey.generate()
    await ts_register(http, funded, session)
    height2 = (await rpc(http, "starknet_blockNumber"))["result"]
    assert height2 == height + 1
    assert (await rpc(http, "starknet_getTransactionStatus", {"transaction_hash": "0x99"}))[
        "error"
    ]["code"] == 29
    assert (await rpc(http, "starknet_getTransactionReceipt", ["0x99"]))["error"]["code"] == 29


async def test_rpc_protocol_errors_and_batches(http: httpx.AsyncClient) -> None:
    assert (await rpc(http, "starknet_nope"))["error"]["code"] == -32601
    assert (await rpc(http, "starknet_call", {"request": {}}))["error"]["code"] == -32602
    assert (await rpc(http, "starknet_getNonce", ["latest"]))["error"]["code"] == -32602
    r = await http.post("/rpc", content=b"{", headers={"content-type": "application/json"})
    assert r.json()["error"]["code"] == -32700
    r = await http.post("/rpc", json={"id": 1, "method": "starknet_chainId"})
    assert r.json()["error"]["code"] == -32600
    r = await http.post(
        "/rpc",
        json=[
            {"jsonrpc": "2.0", "id": 1, "method": "starknet_chainId", "params": []},
            {"jsonrpc": "2.0", "id": 2, "method": "starknet_nope", "params": []},
            {"jsonrpc": "2.0", "method": "starknet_chainId", "params": []},  # notification
        ],
    )
    answers = {a["id"]: a for a in r.json()}
    assert answers[1]["result"] == hex(SN_MAIN) and answers[2]["error"]["code"] == -32601
    assert len(answers) == 2
    r = await http.post("/rpc", json=[])
    assert r.json()["error"]["code"] == -32600


async def test_starknet_call_never_commits(http: httpx.AsyncClient, funded: Funded) -> None:
    """A node's starknet_call is a dry run; __execute__ called that way must not move funds."""
    calldata = [
        "0x1",
        hex(funded.token),
        hex(selector("transfer")),
        "0x3",
        hex(0xE71),
        hex(10**6),
        "0x0",
    ]
    r = await rpc(
        http,
        "starknet_call",
        {
            "request": {
                "contract_address": hex(funded.wallet.address),
                "entry_point_selector": hex(selector("__execute__")),
                "calldata": calldata,
            },
            "block_id": "latest",
        },
    )
    assert "result" in r  # it ran...
    assert funded.balance(0xE71) == 0  # ...and nothing stuck
    assert funded.balance(funded.wallet.address) == 10**9


async def test_legacy_session_layout(clock: ManualClock) -> None:
    with LocalnetServer(
        clock=clock, kdf_cost=KdfCost.FAST_FOR_TESTS, legacy_session_layout=True
    ) as srv:
        w = fund_wallet(srv)
        headers = {"x-api-key": srv.api_key, "authorization": "Bearer t"}
        async with httpx.AsyncClient(base_url=srv.url, headers=headers, timeout=10) as http:
            session = SecretKey.generate()
            await ts_register(http, w, session, allowed=[hex(selector("transfer"))])
            out = await rpc(
                http,
                "starknet_call",
                {
                    "request": {
                        "contract_address": hex(w.wallet.address),
                        "entry_point_selector": hex(selector("get_session_data")),
                        "calldata": [hex(session.public_key)],
                    },
                    "block_id": "latest",
                },
            )
    assert out["result"] == ["0x1", hex(START + 3600), "0x5", "0x1", hex(selector("transfer"))]


def test_only_loopback() -> None:
    with pytest.raises(ChipiSessionError) as e:
        LocalnetServer(host="0.0.0.0", kdf_cost=KdfCost.FAST_FOR_TESTS)
    assert e.value.code is ErrorCode.INVALID_INPUT
    assert main(["--host", "192.0.2.1", "--port", "0", "--fast-kdf"]) == 2


# -- the CLI ---------------------------------------------------------------------------------------


def test_cli_banner_and_demo_wallet() -> None:
    """`chipi-session localnet --json` in a subprocess: the banner's wallet decrypts with the
    PIN (CryptoJS format, as the JS SDK needs), its owner key matches the chain, and the
    server answers on both URLs; SIGTERM stops it cleanly."""
    code = "import sys; from chipi_session.localnet import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--port", "0", "--json", "--fast-kdf", "--pin", "4321"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        info = json.loads(line)
        wallet = info["demoWallet"]
        assert wallet["pin"] == "4321" and wallet["walletType"] == "CHIPI"
        assert wallet["encryptedPrivateKey"].startswith("U2FsdGVkX1")
        assert info["apiKey"].startswith("pk_dev_") and len(info["apiKey"]) == 39
        owner = Vault().decrypt(wallet["encryptedPrivateKey"], "4321")
        with httpx.Client(timeout=10) as client:
            got = client.post(
                info["rpcUrl"],
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "starknet_call",
                    "params": {
                        "request": {
                            "contract_address": wallet["publicKey"],
                            "entry_point_selector": hex(selector("get_public_key")),
                            "calldata": [],
                        },
                        "block_id": "latest",
                    },
                },
            ).json()
            assert int(got["result"][0], 16) == public_key_of(owner.reveal())
            balance = client.post(
                info["rpcUrl"],
                json={
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "starknet_call",
                    "params": {
                        "request": {
                            "contract_address": wallet["token"],
                            "entry_point_selector": hex(selector("balance_of")),
                            "calldata": [wallet["publicKey"]],
                        },
                        "block_id": "latest",
                    },
                },
            ).json()
            assert int(balance["result"][0], 16) == int(wallet["balance"])
            health = client.get(info["restUrl"].removesuffix("/v1") + "/health").json()
            assert health["status"] == "ok" and health["chainId"] == info["chainId"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
