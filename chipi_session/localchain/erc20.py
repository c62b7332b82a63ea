"""A minimal OpenZeppelin-style ERC-20, so session transfers move real balances.

Semantics, panic texts and events follow OZ v3's ERC20 component (u256 amounts as
``(low, high)``, ``transfer`` returns ``true``, ``'ERC20: insufficient balance'``...), with both
snake_case and camelCase entrypoints. Events (docs/contract.md §11.2): ``transfer`` and mint emit
``Transfer``; ``approve`` and ``increase_allowance`` emit ``Approval`` with the new allowance;
``transfer_from`` emits ``Approval`` (the spender's allowance after spending, unless it is
unlimited) and then ``Transfer``. ``name`` / ``symbol`` return short-string felts, as the
mainnet ETH and STRK tokens do (OZ v3 returns a ByteArray).
"""

from __future__ import annotations

from ..felts import selector, split_u256
from .abi import Calldata
from .model import ContractPanic
from .runtime import ContractClass, Frame, Handler
from .state import TokenInfo

__all__ = ["ERC20_CLASS", "ERC20_CLASS_HASH", "constructor"]

#: A made-up class hash recorded for deployed tokens.
ERC20_CLASS_HASH = selector("chipi_session.localchain.ERC20")
_MAX_U256 = 2**256 - 1
_EV_TRANSFER = selector("Transfer")
_EV_APPROVAL = selector("Approval")


def constructor(f: Frame, cd: Calldata) -> list[int]:
    """``(name, symbol, decimals: u8)``; supply starts at 0 (use ``LocalChain.mint``)."""
    name = cd.felt()
    symbol = cd.felt()
    decimals = cd.u8()
    cd.end()
    f.state.token_info.set(f.address, TokenInfo(symbol=symbol, decimals=decimals, name=name))
    return []


def _info(f: Frame) -> TokenInfo:
    info = f.state.token_info.get(f.address)
    assert info is not None  # set by the constructor
    return info


def _update(f: Frame, sender: int, recipient: int, amount: int) -> None:
    """OZ ``_update``: move (or mint, or burn) ``amount`` and emit Transfer."""
    me, balances = f.address, f.state.balances
    if sender == 0:
        supply = f.state.total_supply.get(me) + amount
        if supply > _MAX_U256:
            raise ContractPanic("u256_add Overflow")
        f.state.total_supply.set(me, supply)
    else:
        balance = balances.get((me, sender))
        if balance < amount:
            raise ContractPanic("ERC20: insufficient balance")
        balances.set((me, sender), balance - amount)
    if recipient == 0:
        f.state.total_supply.set(me, f.state.total_supply.get(me) - amount)
    else:
        balances.set((me, recipient), balances.get((me, recipient)) + amount)
    f.emit([_EV_TRANSFER, sender, recipient], split_u256(amount))


def _transfer_checked(f: Frame, sender: int, recipient: int, amount: int) -> None:
    if sender == 0:
        raise ContractPanic("ERC20: transfer from 0")
    if recipient == 0:
        raise ContractPanic("ERC20: transfer to 0")
    _update(f, sender, recipient, amount)


def _approve(f: Frame, owner: int, spender: int, amount: int) -> None:
    """OZ ``_approve``: set the allowance and emit Approval."""
    if owner == 0:
        raise ContractPanic("ERC20: approve from 0")
    if spender == 0:
        raise ContractPanic("ERC20: approve to 0")
    f.state.allowances.set((f.address, owner, spender), amount)
    f.emit([_EV_APPROVAL, owner, spender], split_u256(amount))


def _spend_allowance(f: Frame, owner: int, spender: int, amount: int) -> None:
    """OZ ``_spend_allowance``: an unlimited allowance is left alone (and no event); otherwise
    it goes through ``_approve``, so the spend emits Approval with what is left."""
    current = f.state.allowances.get((f.address, owner, spender))
    if current != _MAX_U256:
        if current < amount:
            raise ContractPanic("ERC20: insufficient allowance")
        _approve(f, owner, spender, current - amount)


def mint(f: Frame, to: int, amount: int) -> None:
    """OZ ``mint``: not an entrypoint; LocalChain's setup helper runs it."""
    if to == 0:
        raise ContractPanic("ERC20: mint to 0")
    _update(f, 0, to, amount)


def _name(f: Frame, cd: Calldata) -> list[int]:
    cd.end()
    return [_info(f).name]


def _symbol(f: Frame, cd: Calldata) -> list[int]:
    cd.end()
    return [_info(f).symbol]


def _decimals(f: Frame, cd: Calldata) -> list[int]:
    cd.end()
    return [_info(f).decimals]


def _total_supply(f: Frame, cd: Calldata) -> list[int]:
    cd.end()
    return [*split_u256(f.state.total_supply.get(f.address))]


def _balance_of(f: Frame, cd: Calldata) -> list[int]:
    account = cd.address()
    cd.end()
    return [*split_u256(f.state.balances.get((f.address, account)))]


def _allowance(f: Frame, cd: Calldata) -> list[int]:
    owner = cd.address()
    spender = cd.address()
    cd.end()
    return [*split_u256(f.state.allowances.get((f.address, owner, spender)))]


def _transfer(f: Frame, cd: Calldata) -> list[int]:
    recipient = cd.address()
    amount = cd.u256()
    cd.end()
    _transfer_checked(f, f.caller, recipient, amount)
    return [1]


def _transfer_from(f: Frame, cd: Calldata) -> list[int]:
    sender = cd.address()
    recipient = cd.address()
    amount = cd.u256()
    cd.end()
    _spend_allowance(f, sender, f.caller, amount)
    _transfer_checked(f, sender, recipient, amount)
    return [1]


def _approve_ep(f: Frame, cd: Calldata) -> list[int]:
    spender = cd.address()
    amount = cd.u256()
    cd.end()
    _approve(f, f.caller, spender, amount)
    return [1]


def _increase_allowance(f: Frame, cd: Calldata) -> list[int]:
    spender = cd.address()
    added = cd.u256()
    cd.end()
    total = f.state.allowances.get((f.address, f.caller, spender)) + added
    if total > _MAX_U256:
        raise ContractPanic("u256_add Overflow")
    _approve(f, f.caller, spender, total)
    return [1]


_ENTRYPOINTS: dict[str, Handler] = {
    "name": _name,
    "symbol": _symbol,
    "decimals": _decimals,
    "total_supply": _total_supply,
    "totalSupply": _total_supply,
    "balance_of": _balance_of,
    "balanceOf": _balance_of,
    "allowance": _allowance,
    "transfer": _transfer,
    "transfer_from": _transfer_from,
    "transferFrom": _transfer_from,
    "approve": _approve_ep,
    "increase_allowance": _increase_allowance,
    "increaseAllowance": _increase_allowance,
}

#: The ERC-20 class: selector -> handler.
ERC20_CLASS: ContractClass = {selector(name): h for name, h in _ENTRYPOINTS.items()}
