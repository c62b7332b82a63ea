"""Signatures the Cairo corelib accepts and a standard Stark verifier refuses (docs/contract.md,
"Signatures"), built without private keys where a range cannot be reached by signing: pick R and s, then
solve the corelib equation for the public key."""

from __future__ import annotations

from typing import Any

from chipi_session.felts import CURVE_ORDER
from chipi_session.localchain.ecdsa import generator, point_from_x

ORDER = CURVE_ORDER
BOUND = 2**251


def point_x(point: Any) -> int:
    return int(point.x())


def forge_key(msg_hash: int, r: int, s: int) -> int:
    """A public key for which ``(r, s)`` satisfies the corelib equation over ``msg_hash``:
    ``Q = r⁻¹·(s·R − z·G)``, so ``z·G + r·Q = s·R``. No private key needed, any r/s allowed."""
    big_r = point_from_x(r)
    assert big_r is not None
    q = (big_r * s + (-(generator() * msg_hash))) * pow(r, -1, ORDER)
    return point_x(q)


def first_curve_x_from(start: int) -> int:
    x = start
    while point_from_x(x) is None:
        x += 1
    return x


R_HIGH = first_curve_x_from(BOUND)  # an r >= 2**251 that is the x of a curve point
R_LOW = point_x(generator() * 0xC0FFEE)  # an ordinary r


def sign_any_hash(msg_hash: int, private_key: int, nonce: int) -> tuple[int, int]:
    """Textbook ECDSA with no range limit on the hash (the client's signer refuses >= 2**251)."""
    r = point_x(generator() * nonce)
    s = pow(nonce, -1, ORDER) * (msg_hash + r * private_key) % ORDER
    return r, s


def s_with_large_inverse() -> int:
    w = BOUND + 12345  # s⁻¹ >= 2**251
    return pow(w, -1, ORDER)


#: (r, s) per range the corelib accepts and the client does not
FORGED_RANGES = {
    "r_at_or_above_2_251": (R_HIGH, 7),
    "s_in_2_251_to_order": (R_LOW, BOUND + 99),
    "s_above_order": (R_LOW, ORDER + 5),
    "s_inverse_at_or_above_2_251": (R_LOW, s_with_large_inverse()),
}
