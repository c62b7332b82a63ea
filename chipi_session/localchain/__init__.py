"""LocalChain: a faithful in-process simulation of the Chipi v33 wallet contract.

Real Stark signatures, the contract's checks in the contract's order and with its panic texts,
SNIP-9 outside executions, spending policies, ERC-20 tokens, and a paymaster that plays Chipi's
backend. It implements :class:`chipi_session.backends.SessionBackend`, so the engine, the demo and
the tests run against it with no network. Its behaviour, with sources: docs/contract.md.
"""

from .chain import DEFAULT_RELAYER, ChainSnapshot, LocalChain, default_chain
from .model import ChainEvent, ContractPanic, Receipt, TxInfo

__all__ = [
    "LocalChain",
    "ContractPanic",
    "Receipt",
    "ChainEvent",
    "ChainSnapshot",
    "TxInfo",
    "DEFAULT_RELAYER",
    "default_chain",
]
