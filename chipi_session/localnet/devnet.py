"""localnet as a dev chain: starknet-devnet's JSON-RPC methods, and its state in a file.

Why: other languages' test suites (Chipi's TS SDK, starknet.js, starknet-py) drive a local chain
the way they drive starknet-devnet: move time to test expiry, mint test tokens, save and restore
the chain, reset it. These are the same methods with devnet's names and shapes (as sent by the
npm ``starknet-devnet`` package's ``DevnetProvider`` 0.7), over localnet's loopback-only RPC:

* ``devnet_increaseTime {time}`` -> ``{time, block_hash}``: chain time moves ``time`` seconds on.
* ``devnet_setTime {time, generate_block?}`` -> ``{time, block_hash?}``: chain time is ``time``
  (it may go back, as on devnet) and keeps running from there.
* ``devnet_mint {address, amount, unit?}`` -> ``{new_balance, unit, tx_hash}``: ``FRI`` mints
  STRK, ``WEI`` ETH (18-decimal tokens at their mainnet addresses, deployed on first use). A
  localnet extension, ``token``, mints any deployed ERC-20 instead (e.g. the demo wallet's).
  ``tx_hash`` identifies the mint; LocalChain records no transaction for it (no receipt).
* ``devnet_dump {path?}``: the state to ``path`` (JSON, mode 0600, replaced atomically), or,
  without a path, as the result. ``devnet_load {path}``: replace the state with a dump.
* ``devnet_restart {}``: back to the state the localnet served its first request with.

A dump holds every contract's storage (wallets, session keys and their whitelists, spending
policies, balances), nonces, events, receipts, the block number and the time offset; typed data
issued by the paymaster but not yet executed is not kept (prepare it again). The format is plain
JSON, decoded into chipi-session's own value types only: loading a file runs no code from it.
"""

from __future__ import annotations

import enum
import hashlib
import importlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ..clock import Clock
from ..errors import ChipiSessionError, ErrorCode
from ..felts import parse_felt, to_hex
from ..localchain import ChainSnapshot, LocalChain
from .rpc import RpcFault, block_hash

__all__ = [
    "DevnetMethods",
    "OffsetClock",
    "STRK_ADDRESS",
    "ETH_ADDRESS",
    "dump_state",
    "load_state",
    "read_state_file",
    "state_to_json",
    "state_from_json",
]

#: The fee tokens' mainnet addresses (what devnet clients expect ``devnet_mint`` to fund).
STRK_ADDRESS = 0x04718F5A0FC34CC1AF16A1CDEE98FFB20C31F5CD61D6AB07201858F4287C938D
ETH_ADDRESS = 0x049D36570D4E46F48E99674BD3FCC84644DDD6B96F7C741B1562B82F9E004DC7
_UNITS = {"FRI": ("STRK", STRK_ADDRESS), "WEI": ("ETH", ETH_ADDRESS)}
_FORMAT = "chipi-localnet-state"
_VERSION = 1


class OffsetClock:
    """Another clock shifted by :attr:`offset` seconds: the chain's time after time travel."""

    def __init__(self, base: Clock, offset: float = 0.0) -> None:
        self.base = base
        self.offset = float(offset)

    def now(self) -> float:
        return self.base.now() + self.offset

    async def sleep_until(self, deadline: float) -> None:
        await self.base.sleep_until(deadline - self.offset)

    def __repr__(self) -> str:
        return f"OffsetClock({self.base!r}, offset={self.offset})"


def _offset_clock(chain: LocalChain) -> OffsetClock:
    """The chain's clock as an :class:`OffsetClock` (wrapping the one it had, once)."""
    if not isinstance(chain.clock, OffsetClock):
        chain.clock = OffsetClock(chain.clock)
    return chain.clock


# -- the state as JSON ---------------------------------------------------------------------


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, bool | str) and not isinstance(value, enum.Enum):
        return value
    if isinstance(value, enum.Enum):
        return {"e": _name(type(value)), "v": value.value}
    if isinstance(value, int):
        return value
    if attrs.has(type(value)):
        fields = {f.name: _encode(getattr(value, f.name)) for f in attrs.fields(type(value))}
        return {"c": _name(type(value)), "f": fields}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple record
        record: Any = value
        return {"c": _name(type(value)), "f": {k: _encode(v) for k, v in record._asdict().items()}}
    if isinstance(value, tuple):
        return {"t": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {"d": [[_encode(k), _encode(v)] for k, v in value.items()]}
    raise TypeError(f"cannot dump a {type(value).__name__}")


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _class(name: Any) -> type:
    """A chipi-session value class by name (nothing else can be named in a dump)."""
    if not isinstance(name, str) or not name.startswith("chipi_session.") or ":" not in name:
        raise ValueError(f"unknown type {name!r}")
    module, _, qualname = name.partition(":")
    cls = getattr(importlib.import_module(module), qualname, None)
    if not isinstance(cls, type) or not (
        attrs.has(cls) or issubclass(cls, enum.Enum) or hasattr(cls, "_fields")
    ):
        raise ValueError(f"unknown type {name!r}")
    return cls


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "t" in value:
        return tuple(_decode(v) for v in value["t"])
    if "d" in value:
        return {_decode(k): _decode(v) for k, v in value["d"]}
    if "e" in value:
        return _class(value["e"])(value["v"])
    if "c" in value:
        return _class(value["c"])(**{k: _decode(v) for k, v in value["f"].items()})
    raise ValueError("malformed state")


def state_to_json(chain: LocalChain, *, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The chain's state as a JSON-able dict (``extra``: the caller's own JSON metadata)."""
    snapshot = chain.snapshot()
    offset = chain.clock.offset if isinstance(chain.clock, OffsetClock) else 0.0
    return {
        "format": _FORMAT,
        "version": _VERSION,
        "chainId": to_hex(chain.chain_id),
        "timeOffset": offset,
        "blockNumber": snapshot.block_number,
        "state": _encode(snapshot.state),
        "receipts": _encode(snapshot.receipts),
        "extra": dict(extra or {}),
    }


def state_from_json(chain: LocalChain, data: Any) -> dict[str, Any]:
    """Replace the chain's state with a dump (same chain id); returns the dump's ``extra``.
    A malformed dump is ``INVALID_STORED_DATA`` and changes nothing."""
    try:
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            raise ValueError("not a chipi-session localnet state")
        if data.get("version") != _VERSION:
            raise ValueError(f"unsupported state version {data.get('version')!r}")
        if parse_felt(data["chainId"], "chainId") != chain.chain_id:
            raise ValueError(f"the state is of chain {data['chainId']}")
        offset = float(data["timeOffset"])
        snapshot = ChainSnapshot(
            state=_decode(data["state"]),
            receipts=_decode(data["receipts"]),
            block_number=int(data["blockNumber"]),
            paymaster=chain.snapshot().paymaster,  # requests issued by this run stay
        )
        extra = dict(data.get("extra") or {})
    except (ValueError, TypeError, KeyError, AttributeError, ImportError, ChipiSessionError) as exc:
        raise ChipiSessionError(
            ErrorCode.INVALID_STORED_DATA, f"cannot load the chain state: {exc}"
        ) from None
    chain.restore(snapshot)
    _offset_clock(chain).offset = offset
    return extra


def dump_state(
    chain: LocalChain, path: str | os.PathLike[str], *, extra: Mapping[str, Any] | None = None
) -> None:
    """Write :func:`state_to_json` to ``path`` (0600, atomic replace)."""
    target = Path(path)
    text = json.dumps(state_to_json(chain, extra=extra), separators=(",", ":"))
    fd, tmp = tempfile.mkstemp(prefix=".localnet-state-", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_state_file(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The JSON of a state file written by :func:`dump_state`; None if there is no file."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ChipiSessionError(
            ErrorCode.INVALID_STORED_DATA, f"cannot read the chain state {path}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise ChipiSessionError(ErrorCode.INVALID_STORED_DATA, f"{path}: not a chain state")
    return data


def load_state(chain: LocalChain, path: str | os.PathLike[str]) -> dict[str, Any]:
    """:func:`state_from_json` from a file written by :func:`dump_state`."""
    data = read_state_file(path)
    if data is None:
        raise ChipiSessionError(ErrorCode.INVALID_STORED_DATA, f"no chain state at {path}")
    return state_from_json(chain, data)


# -- the RPC methods -----------------------------------------------------------------------


def _params(params: Any, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, Any]:
    """Named params (devnet's form); a list is taken positionally in required+optional order."""
    names = required + optional
    if isinstance(params, list):
        if len(params) > len(names):
            raise RpcFault(-32602, "Invalid params: too many positional params")
        params = dict(zip(names, params, strict=False))
    if not isinstance(params, Mapping):
        raise RpcFault(-32602, "Invalid params")
    unknown = set(params) - set(names)
    if unknown:
        raise RpcFault(-32602, f"Invalid params: unexpected {sorted(unknown)[0]}")
    for name in required:
        if params.get(name) is None:
            raise RpcFault(-32602, f"Invalid params: missing {name}")
    return {n: params.get(n) for n in names}


def _whole(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise RpcFault(-32602, f"Invalid params: {what} must be a whole number")
    return int(value)


def _path(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RpcFault(-32602, "Invalid params: path must be a non-empty string")
    return value


class DevnetMethods:
    """The ``devnet_*`` methods over ``chain`` (call with the chain's lock held)."""

    methods = (
        "devnet_increaseTime",
        "devnet_setTime",
        "devnet_mint",
        "devnet_dump",
        "devnet_load",
        "devnet_restart",
    )

    def __init__(self, chain: LocalChain) -> None:
        self._chain = chain
        self._genesis: dict[str, Any] | None = None
        self._mints = 0

    def mark_genesis(self) -> None:
        """Make the chain as it is now what ``devnet_restart`` returns to."""
        self._genesis = state_to_json(self._chain)

    def ensure_genesis(self) -> None:
        """Mark the genesis unless already marked (the dispatcher calls this per request)."""
        if self._genesis is None:
            self.mark_genesis()

    def call(self, method: str, params: Any) -> Any:
        self.ensure_genesis()
        handler = {
            "devnet_increaseTime": self._increase_time,
            "devnet_setTime": self._set_time,
            "devnet_mint": self._mint,
            "devnet_dump": self._dump,
            "devnet_load": self._load,
            "devnet_restart": self._restart,
        }[method]
        return handler({} if params is None else params)

    def _block_hash(self) -> str:
        return to_hex(block_hash(int(self._chain.block_number)))

    def _increase_time(self, params: Any) -> dict[str, Any]:
        seconds = _whole(_params(params, ("time",), ())["time"], "time")
        if seconds < 0:
            raise RpcFault(-32602, "Invalid params: time must be >= 0")
        _offset_clock(self._chain).offset += seconds
        return {"time": self._chain.now(), "block_hash": self._block_hash()}

    def _set_time(self, params: Any) -> dict[str, Any]:
        p = _params(params, ("time",), ("generate_block",))
        target = _whole(p["time"], "time")
        if target < 0:
            raise RpcFault(-32602, "Invalid params: time must be >= 0")
        clock = _offset_clock(self._chain)
        clock.offset = target - clock.base.now()
        out: dict[str, Any] = {"time": target}
        if p["generate_block"]:
            out["block_hash"] = self._block_hash()
        return out

    def _mint(self, params: Any) -> dict[str, Any]:
        p = _params(params, ("address", "amount"), ("unit", "token"))
        try:
            address = parse_felt(p["address"], "address")
        except ChipiSessionError:
            raise RpcFault(-32602, "Invalid params: address is not a felt") from None
        amount = p["amount"]
        if isinstance(amount, str):
            try:
                amount = int(amount, 0)
            except ValueError:
                raise RpcFault(-32602, "Invalid params: amount") from None
        amount = _whole(amount, "amount")
        if amount < 0:
            raise RpcFault(-32602, "Invalid params: amount must be >= 0")
        unit = "FRI" if p["unit"] is None else p["unit"]
        if unit not in _UNITS:
            raise RpcFault(-32602, "Invalid params: unit must be FRI or WEI")
        token = self._token(unit, p["token"])
        try:
            self._chain.mint(token, address, amount)
        except ChipiSessionError as exc:
            raise RpcFault(-32602, f"Invalid params: {exc.message}") from None
        self._mints += 1
        digest = hashlib.sha256(
            b"chipi-localnet-mint:%d:%d:%d:%d" % (self._mints, token, address, amount)
        ).digest()
        tx_hash = int.from_bytes(digest, "big") & ((1 << 250) - 1)
        balance = self._chain.balance_of(token, address)
        return {"new_balance": str(balance), "unit": unit, "tx_hash": to_hex(tx_hash)}

    def _token(self, unit: str, token: Any) -> int:
        if token is not None:
            try:
                return parse_felt(token, "token")
            except ChipiSessionError:
                raise RpcFault(-32602, "Invalid params: token is not a felt") from None
        symbol, address = _UNITS[unit]
        if self._chain.class_hash_at(address) is None:
            self._chain.deploy_token(symbol, 18, address=address)
        return address

    def _dump(self, params: Any) -> Any:
        path = _params(params, (), ("path",))["path"]
        if path is None:
            return state_to_json(self._chain)
        try:
            dump_state(self._chain, _path(path))
        except OSError as exc:
            raise RpcFault(-32603, f"cannot write {path}: {exc.strerror}") from None
        return None

    def _load(self, params: Any) -> None:
        path = _path(_params(params, ("path",), ())["path"])
        try:
            load_state(self._chain, path)
        except ChipiSessionError as exc:
            raise RpcFault(-32602, exc.message) from None
        return None

    def _restart(self, params: Any) -> None:
        _params(params, (), ("restart_l1_to_l2_messaging",))
        assert self._genesis is not None  # call() marked it
        state_from_json(self._chain, self._genesis)
        return None
