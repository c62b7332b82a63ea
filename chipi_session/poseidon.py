"""Poseidon (Starknet's Hades permutation, ``poseidon_hash_many``) through the fastest
implementation installed.

* ``starknet-pathfinder-crypto`` (Rust, pathfinder's own crypto crate): ~8 µs per permutation.
  Its wheels cover CPython 3.11 on Linux x86_64/aarch64, macOS arm64 and Windows (and 3.12 on
  Linux aarch64), so pyproject installs it only there (environment markers).
* ``poseidon-py`` (C through ctypes, a starknet-py dependency, every platform): ~75 µs per
  permutation. It is the fallback and the reference the tests compare against.

Both compute the same function, so the choice changes speed, never results; inputs the native
module refuses (values >= P) are handed to the fallback so that edge cases behave exactly as
starknet-py does. README's Performance section has the measurements behind the choice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

__all__ = ["poseidon_many", "POSEIDON_BACKEND"]

_Impl = Callable[[Sequence[int]], int]


def _fallback_impl() -> _Impl:
    from poseidon_py.poseidon_hash import poseidon_hash_many

    def hash_many(values: Sequence[int]) -> int:
        return int(poseidon_hash_many(list(values)))

    return hash_many


def _load() -> tuple[str, _Impl]:
    try:
        from starknet_pathfinder_crypto import poseidon_hash_many as native
    except ImportError:
        return "poseidon-py", _fallback_impl()
    fallback: list[_Impl] = []

    def hash_many(values: Sequence[int]) -> int:
        try:
            return int(native(values))
        except (ValueError, OverflowError, TypeError):
            # out of the field (or not ints): let the reference implementation decide
            if not fallback:
                fallback.append(_fallback_impl())
            return fallback[0](values)

    return "starknet-pathfinder-crypto", hash_many


_LOADED = _load()
#: Which implementation :func:`poseidon_many` runs ("starknet-pathfinder-crypto" or "poseidon-py").
POSEIDON_BACKEND: Final[str] = _LOADED[0]
_impl: Final[_Impl] = _LOADED[1]


def poseidon_many(values: Sequence[int]) -> int:
    """``poseidon_hash_many(values)`` as Cairo's corelib and starknet-py compute it."""
    return _impl(values)
