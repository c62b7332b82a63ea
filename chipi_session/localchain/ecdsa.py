"""The Cairo corelib's ``check_ecdsa_signature``: what the v33 contract accepts as a signature.

The client's :func:`chipi_session.keys.verify` is the standard Stark ECDSA verifier, which also
demands ``r``, ``s``, ``s⁻¹`` and the hash below 2**251. The contract is looser, and the
simulated contract must not be stricter than the chain (docs/contract.md §7.1): it refuses only

* ``s == 0``, ``s == ORDER`` or ``r == ORDER``;
* a public key or an ``r`` that is not the x-coordinate of a curve point;
* a failed equation ``(z·G ± r·Q).x == (s·R).x`` (``Q``, ``R`` the points with x = key, x = r;
  every scalar a felt, used as an EC multiplier; an infinite side never matches).

Signatures inside the standard ranges (all real ones) go to the native verifier, which decides
them identically: ``(w·(z·G ± r·Q)).x == r`` with ``w = s⁻¹`` says the same as the equation
above. Only forged-range signatures take the slow path on python-ecdsa's point arithmetic (the
``ecdsa`` package, a starknet-py dependency): about 5x the native verifier's time, measured
side by side (8.3 ms against 1.7 ms on a loaded 2-core machine), plus ~40 ms once for the
generator's table.
"""

from __future__ import annotations

import functools
from typing import Any

from ..felts import CURVE_ORDER, FIELD_PRIME
from ..keys import verify_in_range

__all__ = ["check_ecdsa_signature", "check_by_curve_arithmetic", "point_from_x", "generator"]

_ALPHA = 1
_BETA = 0x6F21413EFBE40DE150E596D72F7A8C5609AD26C15C915C1F4CDFCB99CEE9E89
_GEN_X = 0x1EF15C18599971B7BECED415A40F0C7DEACFD9B0D1819E03D723D8BC943CFCA
_GEN_Y = 0x5668060AA49730B7BE4801DF46EC62DE53ECD11ABE43A32873000C36E8DC1F
_STANDARD_BOUND = 2**251


@functools.cache
def _curve() -> Any:
    """``y² = x³ + α·x + β`` over the Stark field (python-ecdsa is imported on first use: only
    forged-range signatures need it, and it costs ~65 ms to import)."""
    from ecdsa.ellipticcurve import CurveFp

    return CurveFp(FIELD_PRIME, _ALPHA, _BETA)


@functools.cache
def generator() -> Any:
    """The Stark curve's generator, a python-ecdsa ``PointJacobi`` with a precomputed table."""
    from ecdsa.ellipticcurve import PointJacobi

    return PointJacobi(_curve(), _GEN_X, _GEN_Y, 1, CURVE_ORDER, generator=True)


@functools.lru_cache(maxsize=256)
def point_from_x(x: int) -> Any:
    """A curve point with this x (either sign), or None: corelib ``EcPointTrait::new_from_x``."""
    if not 0 <= x < FIELD_PRIME:
        return None
    rhs = (x * x * x + _ALPHA * x + _BETA) % FIELD_PRIME
    if pow(rhs, (FIELD_PRIME - 1) // 2, FIELD_PRIME) != 1:  # the curve has no point with y = 0
        return None
    from ecdsa.ellipticcurve import PointJacobi
    from ecdsa.numbertheory import square_root_mod_prime

    y = square_root_mod_prime(rhs, FIELD_PRIME)
    return PointJacobi(_curve(), x, y, 1, CURVE_ORDER)


def _x(point: Any) -> int | None:
    from ecdsa.ellipticcurve import INFINITY

    return None if point == INFINITY else int(point.x())


def _is_standard(msg_hash: int, r: int, s: int) -> bool:
    """Inside the ranges every standard verifier accepts (there it decides as the corelib)."""
    return (
        msg_hash < _STANDARD_BOUND
        and 0 < r < _STANDARD_BOUND
        and 0 < s < _STANDARD_BOUND
        and pow(s, -1, CURVE_ORDER) < _STANDARD_BOUND
    )


def check_ecdsa_signature(msg_hash: int, public_key: int, r: int, s: int) -> bool:
    """True if the contract's ``check_ecdsa_signature(msg_hash, public_key, r, s)`` is true.

    Arguments are felts (``[0, P)``); anything else is simply not valid. Never raises.
    """
    values = (msg_hash, public_key, r, s)
    if any(
        isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < FIELD_PRIME for v in values
    ):
        return False
    if s == 0 or s == CURVE_ORDER or r == CURVE_ORDER:
        return False
    if _is_standard(msg_hash, r, s):
        return verify_in_range(public_key, msg_hash, r, s)  # ranges checked just above
    return check_by_curve_arithmetic(msg_hash, public_key, r, s)


def check_by_curve_arithmetic(msg_hash: int, public_key: int, r: int, s: int) -> bool:
    """The corelib's computation itself, step by step, without the ``s``/``r`` == 0 / ORDER
    rules (the slow path of :func:`check_ecdsa_signature`; tests hold it against the fast one)."""
    q = point_from_x(public_key)
    big_r = point_from_x(r)
    if q is None or big_r is None:
        return False
    sr_x = _x(big_r * s)
    if sr_x is None:
        return False
    zg = generator() * msg_hash
    rq = q * r
    minus_rq = rq if _x(rq) is None else -rq
    return sr_x in (_x(zg + rq), _x(zg + minus_rq))
