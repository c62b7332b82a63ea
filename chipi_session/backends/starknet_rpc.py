"""Session reads over any Starknet JSON-RPC node (spec 0.7-0.9 method shapes).

Why not starknet-py's ``FullNodeClient``: it is aiohttp-based (asyncio only), and the official
SDKs' session reads are broken (docs/wire-protocol.md, "get_session_data"). This backend decodes
the contract's real layouts:
``get_session_data`` = ``[valid_until, max_calls, calls_used, allowed_len]`` plus the whitelist via
``get_session_allowed_entrypoint_at``, and ``get_spending_policy`` = 8 felts. A contract or
entrypoint that does not exist reads as "no session" (zeros), never as a crash; a node that
cannot be reached is ``BACKEND_UNAVAILABLE`` (retryable).

The backend is a :class:`~chipi_session.backends.base.SessionReader` only: it has no write
methods, and a session on it refuses writes with ``NOT_SUPPORTED``. For transactions use
:class:`~chipi_session.backends.chipi_api.ChipiApiBackend` (which uses this class for its reads).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ChipiSessionError, ErrorCode
from ..felts import parse_felt, parse_felts, parse_selector, selector, to_hex
from ..http import HttpClient, Timeouts
from ..logs import get_logger
from ..types import SessionStatus, SpendingPolicy
from .rpc_transactions import TransactionReads
from .rpc_wire import (
    RPC_CONTRACT_ERROR,
    RPC_CONTRACT_NOT_FOUND,
    ReceiptEvent,
    StarknetRpcError,
    TransactionReceipt,
    TransactionStatus,
)

if TYPE_CHECKING:  # pragma: no cover
    import httpx

__all__ = [
    "StarknetRpcBackend",
    "StarknetRpcError",
    "TransactionStatus",
    "TransactionReceipt",
    "ReceiptEvent",
    "BlockId",
    "RPC_CONTRACT_NOT_FOUND",
    "RPC_CONTRACT_ERROR",
]

logger = get_logger(__name__)

BlockId = str | Mapping[str, Any]

#: A whitelist longer than this is not something a wallet registers; a node claiming it is
#: broken or hostile, and we will not issue billions of calls to find out.
MAX_WHITELIST_LEN = 4096
_BATCH_CHUNK = 64
_SNAPSHOT_ATTEMPTS = 3

_SEL_GET_SESSION_DATA = selector("get_session_data")
_SEL_ALLOWED_AT = selector("get_session_allowed_entrypoint_at")
_SEL_GET_SPENDING_POLICY = selector("get_spending_policy")
_SEL_NONCE_VALID = selector("is_valid_outside_execution_nonce")


class StarknetRpcBackend(TransactionReads):
    """Reads session state from a Starknet JSON-RPC URL (``http(s)://.../rpc/v0_8`` etc.).

    ``block_id`` selects the state read (``"latest"`` by default; ``"pre_confirmed"`` on 0.9
    nodes sees transactions a few seconds earlier). Reads are idempotent, so they are retried
    on transport errors and 429/5xx within ``timeout``. Close with :meth:`aclose` or
    ``async with``.

    A :class:`~chipi_session.backends.base.SessionReader` with every read capability (chain
    time, batched statuses, nonce reads, confirmation, execution results) and no writes: a
    session on it refuses writes with ``NOT_SUPPORTED``.
    """

    def __init__(
        self,
        rpc_url: str,
        *,
        timeout: Timeouts | float | None = None,
        block_id: BlockId = "latest",
        retries: int = 2,
        batch_size: int = 64,
        confirm_finality: str = "ACCEPTED_ON_L2",
        confirm_timeout: float = 180.0,
        confirm_poll_interval: float = 1.0,
        http: HttpClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not 1 <= batch_size <= 1000:
            raise ChipiSessionError(ErrorCode.INVALID_INPUT, "batch_size must be in [1, 1000]")
        super().__init__(
            rpc_url,
            timeout=timeout,
            retries=retries,
            confirm_finality=confirm_finality,
            confirm_timeout=confirm_timeout,
            confirm_poll_interval=confirm_poll_interval,
            http=http,
            transport=transport,
        )
        self._block_id: BlockId = block_id
        self._batch_size = batch_size
        self._chain_id: int | None = None

    def __repr__(self) -> str:
        return f"StarknetRpcBackend({self._origin}, block_id={self._block_id!r})"

    # -- generic reads -----------------------------------------------------------------

    async def call(
        self,
        contract_address: int,
        entrypoint: int | str,
        calldata: Sequence[int] = (),
        *,
        block_id: BlockId | None = None,
    ) -> list[int]:
        """``starknet_call``; ``entrypoint`` is a selector felt (int or hex) or a name."""
        result = await self.request(
            "starknet_call", self._call_params(contract_address, entrypoint, calldata, block_id)
        )
        return self._felts(result, "starknet_call")

    def _call_params(
        self,
        contract_address: int,
        entrypoint: int | str,
        calldata: Sequence[int],
        block_id: BlockId | None,
    ) -> dict[str, Any]:
        return {
            "request": {
                "contract_address": to_hex(contract_address),
                "entry_point_selector": to_hex(parse_selector(entrypoint)),
                "calldata": [to_hex(x) for x in calldata],
            },
            "block_id": self._block_id if block_id is None else block_id,
        }

    def _felts(self, result: Any, what: str) -> list[int]:
        try:
            return list(parse_felts(result, what))
        except ChipiSessionError:
            raise self._bad_response(what, "a result that is not a list of felts") from None

    async def chain_id(self) -> int:
        """``starknet_chainId`` (cached: a node does not change chains)."""
        if self._chain_id is None:
            self._chain_id = self._felt(await self.request("starknet_chainId", []), "chainId")
        return self._chain_id

    async def spec_version(self) -> str:
        return str(await self.request("starknet_specVersion", []))

    async def block_number(self) -> int:
        value = await self.request("starknet_blockNumber", [])
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self._bad_response("starknet_blockNumber", "a non-integer block number")
        return value

    async def chain_time(self) -> int:
        """The latest block's timestamp (what decides whether a SNIP-9 window has closed)."""
        return await self.block_timestamp()

    async def block_timestamp(self, block_id: BlockId | None = None) -> int:
        """Timestamp of a block (``latest`` by default): the chain's notion of now."""
        block = await self.request(
            "starknet_getBlockWithTxHashes",
            {"block_id": "latest" if block_id is None else block_id},
        )
        ts = block.get("timestamp") if isinstance(block, Mapping) else None
        if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
            raise self._bad_response("starknet_getBlockWithTxHashes", "no timestamp")
        return ts

    async def get_nonce(self, contract_address: int, *, block_id: BlockId | None = None) -> int:
        value = await self.request(
            "starknet_getNonce",
            {
                "block_id": self._block_id if block_id is None else block_id,
                "contract_address": to_hex(contract_address),
            },
        )
        return self._felt(value, "nonce")

    async def get_class_hash_at(
        self, contract_address: int, *, block_id: BlockId | None = None
    ) -> int | None:
        """The class hash, or None if no contract is deployed there."""
        try:
            value = await self.request(
                "starknet_getClassHashAt",
                {
                    "block_id": self._block_id if block_id is None else block_id,
                    "contract_address": to_hex(contract_address),
                },
            )
        except StarknetRpcError as exc:
            if exc.rpc_code == RPC_CONTRACT_NOT_FOUND:
                return None
            raise
        return self._felt(value, "class hash")

    def _felt(self, value: Any, what: str) -> int:
        try:
            return parse_felt(value, what)
        except ChipiSessionError:
            raise self._bad_response(what, "a value that is not a felt") from None

    async def is_valid_outside_execution_nonce(
        self, wallet_address: int, nonce: int, *, block_id: BlockId | None = None
    ) -> bool:
        """True if the SNIP-9 ``nonce`` is still unused by the wallet (so that outside
        execution has not happened); False once it was consumed."""
        result = await self.call(wallet_address, _SEL_NONCE_VALID, [nonce], block_id=block_id)
        if len(result) != 1 or result[0] not in (0, 1):
            raise self._bad_response("is_valid_outside_execution_nonce", "not a bool")
        return result[0] == 1

    async def outside_nonce_used(self, wallet_address: int, nonce: int) -> bool:
        """NonceReader: True once the SNIP-9 ``nonce`` was consumed."""
        return not await self.is_valid_outside_execution_nonce(wallet_address, nonce)

    # -- SessionBackend reads -------------------------------------------------------------

    async def get_session_status(
        self, wallet_address: int, session_public_key: int
    ) -> SessionStatus:
        """``get_session_data`` (the real 4-felt layout) plus the whitelist, as one snapshot.

        A missing contract or entrypoint reads as zeros (no session). When there is a
        whitelist, the header is re-read in the same batch as the entries and the read is
        repeated if it changed in between, so the result is not a mix of two registrations.
        """
        first = await self._session_data(wallet_address, session_public_key)
        return await self._snapshot(wallet_address, session_public_key, first)

    async def _snapshot(
        self, wallet_address: int, session_public_key: int, first: list[int] | None
    ) -> SessionStatus:
        for _ in range(_SNAPSHOT_ATTEMPTS):
            if first is None:
                return SessionStatus(0, 0, 0, ())
            length = first[3]
            if length == 0:
                return SessionStatus.from_felts(first)
            if length > MAX_WHITELIST_LEN:
                raise self._bad_response(
                    "get_session_data", f"a whitelist length of {length} (max {MAX_WHITELIST_LEN})"
                )
            entries, again = await self._whitelist_snapshot(
                wallet_address, session_public_key, length
            )
            if again == first:
                return SessionStatus.from_felts(first, entries)
            first = again
        raise ChipiSessionError(
            ErrorCode.BACKEND_UNAVAILABLE,
            "session data kept changing while its whitelist was read; try again",
            retryable=True,
        )

    async def get_session_statuses(
        self, targets: Sequence[tuple[int, int]]
    ) -> list[SessionStatus | ChipiSessionError]:
        """Many ``(wallet, session_public_key)`` statuses in few round trips (the hub's poller).

        One JSON-RPC batch of ``get_session_data`` per ``batch_size`` targets; sessions with a
        whitelist then need one more batch each, as in :meth:`get_session_status`. Per-target
        failures come back as errors in the list; a failed request raises.
        """
        results: list[SessionStatus | ChipiSessionError] = []
        for start in range(0, len(targets), self._batch_size):
            chunk = targets[start : start + self._batch_size]
            answers = await self.batch_items(
                [
                    (
                        "starknet_call",
                        self._call_params(wallet, _SEL_GET_SESSION_DATA, [key], None),
                    )
                    for wallet, key in chunk
                ]
            )
            for (wallet, key), answer in zip(chunk, answers, strict=True):
                results.append(await self._status_from_answer(wallet, key, answer))
        return results

    async def _status_from_answer(
        self, wallet: int, key: int, answer: Any
    ) -> SessionStatus | ChipiSessionError:
        if isinstance(answer, StarknetRpcError):
            return SessionStatus(0, 0, 0, ()) if answer.is_not_found else answer
        try:
            felts = self._felts(answer, "get_session_data")
            self._check_session_data(felts)
            return await self._snapshot(wallet, key, felts)
        except ChipiSessionError as exc:
            return exc

    async def _session_data(self, wallet: int, key: int) -> list[int] | None:
        try:
            felts = await self.call(wallet, _SEL_GET_SESSION_DATA, [key])
        except StarknetRpcError as exc:
            if exc.is_not_found:
                logger.debug(
                    "get_session_data on %s: %s -> no session", to_hex(wallet), exc.message
                )
                return None
            raise
        self._check_session_data(felts)
        return felts

    def _check_session_data(self, felts: Sequence[int]) -> None:
        if len(felts) != 4:
            raise self._bad_response(
                "get_session_data", f"{len(felts)} felts (the contract returns exactly 4)"
            )

    async def _whitelist_snapshot(
        self, wallet: int, key: int, length: int
    ) -> tuple[list[int], list[int] | None]:
        entries: list[int] = []
        header: list[int] | None = None
        for start in range(0, length, _BATCH_CHUNK):
            chunk = range(start, min(start + _BATCH_CHUNK, length))
            calls: list[tuple[str, Mapping[str, Any]]] = [
                ("starknet_call", self._call_params(wallet, _SEL_ALLOWED_AT, [key, i], None))
                for i in chunk
            ]
            last_chunk = start + _BATCH_CHUNK >= length
            if last_chunk:
                calls.append(
                    ("starknet_call", self._call_params(wallet, _SEL_GET_SESSION_DATA, [key], None))
                )
            try:
                results = await self.batch(calls)
            except StarknetRpcError as exc:
                if exc.is_not_found:
                    return entries, None
                raise
            for res in results[: len(chunk)]:
                felts = self._felts(res, "get_session_allowed_entrypoint_at")
                if len(felts) != 1:
                    raise self._bad_response("get_session_allowed_entrypoint_at", "not one felt")
                entries.append(felts[0])
            if last_chunk:
                header = self._felts(results[-1], "get_session_data")
                self._check_session_data(header)
        return entries, header

    async def get_spending_policy(
        self, wallet_address: int, session_public_key: int, token: int
    ) -> SpendingPolicy:
        """The 8-felt policy; all zeros (``exists`` False) when none is set or the wallet has
        no such entrypoint."""
        try:
            felts = await self.call(
                wallet_address, _SEL_GET_SPENDING_POLICY, [session_public_key, token]
            )
        except StarknetRpcError as exc:
            if exc.is_not_found:
                return SpendingPolicy(0, 0, 0, 0, 0)
            raise
        if len(felts) != 8:
            raise self._bad_response("get_spending_policy", f"{len(felts)} felts (expected 8)")
        return SpendingPolicy.from_felts(felts)
