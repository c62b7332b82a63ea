"""A LocalChain backend whose calls a test can hold at a gate, to force exact interleavings.

``hold(method, when="after")`` makes the next call of ``method`` stop at a gate: ``"before"``
it reaches the chain, or ``"after"`` the chain ran it (a read answered late, a write whose
response is delayed). The test waits for ``gate.reached`` and calls ``gate.release()``.
``raise_after(method, exc)`` makes the next call raise ``exc`` after the chain ran it.
"""

from __future__ import annotations

import collections
from typing import Any

import anyio

from chipi_session.localchain import LocalChain


class Gate:
    def __init__(self) -> None:
        self.reached = anyio.Event()
        self._open = anyio.Event()

    def release(self) -> None:
        self._open.set()

    async def wait(self) -> None:
        self.reached.set()
        await self._open.wait()


class GatedChain:
    """Every SessionBackend method of a LocalChain (plus nonce and time reads), gateable."""

    requires_bearer_token = False

    def __init__(self, chain: LocalChain) -> None:
        self.chain = chain
        self.clock = chain.clock
        self.calls: collections.Counter[str] = collections.Counter()
        self._gates: dict[tuple[str, str], collections.deque[Gate]] = {}
        self._raise: dict[str, collections.deque[BaseException]] = {}
        self.nonce_answers: collections.deque[bool] = collections.deque()

    def hold(self, method: str, when: str = "after") -> Gate:
        gate = Gate()
        self._gates.setdefault((method, when), collections.deque()).append(gate)
        return gate

    def raise_after(self, method: str, exc: BaseException) -> None:
        self._raise.setdefault(method, collections.deque()).append(exc)

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.calls[method] += 1
        before = self._gates.get((method, "before"))
        if before:
            await before.popleft().wait()
        result = await getattr(self.chain, method)(*args, **kwargs)
        after = self._gates.get((method, "after"))
        if after:
            await after.popleft().wait()
        pending = self._raise.get(method)
        if pending:
            raise pending.popleft()
        return result

    async def add_or_update_session_key(self, *args: Any, **kwargs: Any) -> str:
        return str(await self._call("add_or_update_session_key", *args, **kwargs))

    async def revoke_session_key(self, *args: Any, **kwargs: Any) -> str:
        return str(await self._call("revoke_session_key", *args, **kwargs))

    async def execute_with_session(self, *args: Any, **kwargs: Any) -> str:
        return str(await self._call("execute_with_session", *args, **kwargs))

    async def set_spending_policy(self, *args: Any, **kwargs: Any) -> str:
        return str(await self._call("set_spending_policy", *args, **kwargs))

    async def remove_spending_policy(self, *args: Any, **kwargs: Any) -> str:
        return str(await self._call("remove_spending_policy", *args, **kwargs))

    async def get_session_status(self, *args: Any) -> Any:
        return await self._call("get_session_status", *args)

    async def get_spending_policy(self, *args: Any) -> Any:
        return await self._call("get_spending_policy", *args)

    async def outside_nonce_used(self, wallet_address: int, nonce: int) -> bool:
        if self.nonce_answers:
            self.calls["outside_nonce_used"] += 1
            return self.nonce_answers.popleft()
        return bool(await self._call("outside_nonce_used", wallet_address, nonce))

    async def chain_time(self) -> int:
        return int(await self._call("chain_time"))

    async def confirm_transaction(self, tx_hash: str) -> None:
        await self.chain.confirm_transaction(tx_hash)


class BatchedGatedChain(GatedChain):
    """The same, with the batched status read the hub's poller prefers."""

    async def get_session_statuses(self, targets: list[tuple[int, int]]) -> list[Any]:
        self.calls["get_session_statuses"] += 1
        results = [self.chain.session_status(w, p) for w, p in targets]
        after = self._gates.get(("get_session_statuses", "after"))
        if after:
            await after.popleft().wait()
        return results
