"""One v33 account on a bare LocalChain, for the contract-level tests (no engine, no vault).

``ChainEnv.make(start, owner)`` deploys the account of ``owner`` on a chain whose manual clock
starts at ``start`` (and, with ``minted``, a 6-decimals token holding that much for it). The
contract test modules (test_localchain_contract, test_localchain_protocol,
test_localchain_fidelity, test_rules_account) subclass it with the calls they make; the engine
tests use ``helpers.World`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import attrs

from chipi_session.clock import ManualClock
from chipi_session.keys import SecretKey
from chipi_session.localchain import LocalChain
from chipi_session.types import Call

__all__ = ["ChainEnv"]


@attrs.define
class ChainEnv:
    clock: ManualClock
    chain: LocalChain
    account: int
    token: int = 0  #: 0 unless made with ``minted``

    @classmethod
    def make(cls, start: int, owner: SecretKey, *, minted: int | None = None) -> Self:
        clock = ManualClock(start)
        chain = LocalChain(clock=clock)
        account = chain.deploy_account(owner.public_key)
        token = 0
        if minted is not None:
            token = chain.deploy_token("USDC", 6)
            chain.mint(token, account, minted)
        return cls(clock, chain, account, token)

    @property
    def now(self) -> int:
        return self.chain.now()

    def as_self(self, entrypoint: str, calldata: Sequence[int] = ()) -> list[int]:
        """Call one of the account's entrypoints as the account itself (its admin calls)."""
        return self.chain.call(self.account, entrypoint, calldata, caller=self.account)

    def session_data(self, key: int) -> list[int]:
        """``get_session_data(key)``: valid_until, max_calls, calls_used, entrypoint count."""
        return self.chain.call(self.account, "get_session_data", [key])

    def balance(self, owner: int) -> int:
        return self.chain.balance_of(self.token, owner)

    def validate(self, calls: Sequence[Call], signature: Sequence[int], *, caller: int = 0) -> int:
        """``__validate__`` called directly with the transaction's signature cheated in (as
        snforge does), at the account's current nonce."""
        calldata = [len(calls)]
        for c in calls:
            calldata += [c.to, c.selector, len(c.calldata), *c.calldata]
        nonce = self.chain.get_nonce(self.account)
        (result,) = self.chain.call(
            self.account, "__validate__", calldata, caller=caller, signature=signature, nonce=nonce
        )
        return result
