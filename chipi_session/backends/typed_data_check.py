"""Checking what the Chipi API prepared before signing it: never sign what we did not ask for.

The prepared SNIP-9 v2 typed data must be exactly the calls we sent, for our chain, with an
acceptable caller and a sane time window, and its SNIP-12 hash must equal the hash of the typed
data we would have built ourselves (docs/wire-protocol.md). Pure: no I/O, time is an argument.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import attrs

from ..errors import ChipiSessionError, ErrorCode
from ..felts import (
    U64_MAX,
    parse_felt,
    parse_felt_or_short_string,
    parse_felts,
    parse_selector,
    to_hex,
)
from ..hashing import (
    ANY_CALLER,
    OUTSIDE_EXECUTION_DOMAIN_NAME,
    outside_execution_hash,
    outside_execution_typed_data,
    typed_data_message_hash,
)
from ..types import Call

__all__ = ["PreparedExecution", "check_prepared_typed_data"]


@attrs.frozen
class PreparedExecution:
    """A prepared OutsideExecution that passed every check, and the hash to sign."""

    typed_data: Mapping[str, Any] = attrs.field(repr=False)
    caller: int
    nonce: int
    execute_after: int
    execute_before: int
    message_hash: int


def _invalid(detail: str) -> ChipiSessionError:
    return ChipiSessionError(
        ErrorCode.SESSION_INVALID_RESPONSE,
        f"refusing to sign the prepared typed data: {detail}",
    )


def _types_for(time_type: str) -> Mapping[str, Any]:
    probe = outside_execution_typed_data(
        caller=0,
        nonce=0,
        execute_after=0,
        execute_before=0,
        calls=(),
        chain_id=0,
        time_type=time_type,
    )
    types: Mapping[str, Any] = probe["types"]
    return types


_EXPECTED_TYPES = {t: _types_for(t) for t in ("u128", "felt")}


def _field_felt(value: Any, what: str) -> int:
    try:
        return parse_felt(value, what)
    except ChipiSessionError:
        raise _invalid(f"{what} is not a felt") from None


def _shortstring_felt(value: Any, what: str) -> int:
    """A SNIP-12 ``shortstring`` field: a number (hex/decimal) or ASCII text."""
    if isinstance(value, str):
        try:
            return parse_felt_or_short_string(value, what)
        except ChipiSessionError:
            raise _invalid(f"{what} is not a short string") from None
    return _field_felt(value, what)


def check_prepared_typed_data(
    typed_data: Any,
    *,
    wallet_address: int,
    calls: Sequence[Call],
    chain_id: int,
    now: float,
    allowed_callers: Collection[int] = (),
    max_window: int = 24 * 3600,
    max_clock_skew: int = 60,
) -> PreparedExecution:
    """Check a prepared SNIP-9 v2 typed data against what we asked for; return what to sign.

    Accepted: exactly the standard types (u128 or legacy felt timestamps), domain
    ``Account.execute_from_outside`` v2 rev 1 on ``chain_id``, caller ``ANY_CALLER``/0 or one of
    ``allowed_callers`` (when empty: any address other than the wallet itself), exactly
    ``calls`` in order, ``execute_after < now`` and ``now < execute_before <= now + max_window``
    (each with ``max_clock_skew`` of tolerance). Raises ``SESSION_INVALID_RESPONSE`` otherwise.
    """
    if not isinstance(typed_data, Mapping):
        raise _invalid("typedData is not an object")
    if set(typed_data) != {"types", "primaryType", "domain", "message"}:
        raise _invalid("typedData must have exactly types, primaryType, domain, message")
    if typed_data["primaryType"] != "OutsideExecution":
        raise _invalid("primaryType is not OutsideExecution")
    time_type = next((t for t, v in _EXPECTED_TYPES.items() if typed_data["types"] == v), None)
    if time_type is None:
        raise _invalid("types are not the SNIP-9 v2 OutsideExecution types")

    domain = typed_data["domain"]
    if not isinstance(domain, Mapping) or set(domain) != {"name", "version", "chainId", "revision"}:
        raise _invalid("domain must have exactly name, version, chainId, revision")
    if domain["name"] != OUTSIDE_EXECUTION_DOMAIN_NAME:
        raise _invalid("domain name is not Account.execute_from_outside")
    if _shortstring_felt(domain["version"], "domain.version") != 2:
        raise _invalid("domain version is not 2")
    if _shortstring_felt(domain["revision"], "domain.revision") != 1:
        raise _invalid("domain revision is not 1")
    if _shortstring_felt(domain["chainId"], "domain.chainId") != chain_id:
        raise _invalid(f"domain chainId is not this chain ({to_hex(chain_id)})")

    message = typed_data["message"]
    if not isinstance(message, Mapping) or set(message) != {
        "Caller",
        "Nonce",
        "Execute After",
        "Execute Before",
        "Calls",
    }:
        raise _invalid("message must have exactly Caller, Nonce, Execute After/Before, Calls")
    caller = _field_felt(message["Caller"], "Caller")
    if caller not in (0, ANY_CALLER):
        if allowed_callers:
            if caller not in allowed_callers:
                raise _invalid(f"caller {to_hex(caller)} is not an allowed relayer")
        elif caller == wallet_address or caller >= 2**251:
            raise _invalid(f"caller {to_hex(caller)} is not a plausible relayer address")
    nonce = _field_felt(message["Nonce"], "Nonce")
    after = _field_felt(message["Execute After"], "Execute After")
    before = _field_felt(message["Execute Before"], "Execute Before")
    if after > U64_MAX or before > U64_MAX:
        raise _invalid("time window is not u64")
    if not after < now + max_clock_skew:
        raise _invalid(f"Execute After ({after}) is not in the past (now {int(now)})")
    if not before > now - max_clock_skew:
        raise _invalid(f"Execute Before ({before}) is not in the future (now {int(now)})")
    if before > now + max_window + max_clock_skew:
        raise _invalid(f"Execute Before ({before}) is more than {max_window}s away")
    if before <= after:
        raise _invalid("empty time window")

    got = message["Calls"]
    if not isinstance(got, list) or len(got) != len(calls):
        raise _invalid(f"expected {len(calls)} call(s)")
    for i, (item, want) in enumerate(zip(got, calls, strict=True)):
        if not isinstance(item, Mapping) or set(item) != {"To", "Selector", "Calldata"}:
            raise _invalid(f"call {i} must have exactly To, Selector, Calldata")
        if _field_felt(item["To"], f"call {i} To") != want.to:
            raise _invalid(f"call {i} targets another contract")
        try:
            sel = parse_selector(item["Selector"], f"call {i} Selector")
        except ChipiSessionError:
            raise _invalid(f"call {i} selector is not a felt or a name") from None
        if sel != want.selector:
            raise _invalid(f"call {i} has another entrypoint")
        try:
            data = parse_felts(item["Calldata"], f"call {i} Calldata")
        except ChipiSessionError:
            raise _invalid(f"call {i} calldata is not a list of felts") from None
        if data != want.calldata:
            raise _invalid(f"call {i} has other calldata")

    ours = outside_execution_typed_data(
        caller=caller,
        nonce=nonce,
        execute_after=after,
        execute_before=before,
        calls=calls,
        chain_id=chain_id,
        time_type=time_type,
    )
    # The contract's own construction from the checked values (Poseidon, ~0.1 ms)...
    expected_hash = outside_execution_hash(
        account=wallet_address,
        chain_id=chain_id,
        caller=caller,
        nonce=nonce,
        execute_after=after,
        execute_before=before,
        calls=calls,
        felt_times=time_type == "felt",
    )
    # ...and if the server spelled the typed data differently from us, the hash of *its* text
    # (what it will verify) must be the same, or a parsing difference could change meaning.
    if typed_data != ours:
        try:
            their_hash = typed_data_message_hash(typed_data, wallet_address)
        except Exception:
            raise _invalid("typed data cannot be hashed") from None
        if their_hash != expected_hash:
            raise _invalid("typed data hashes differently from the calls it lists")
    return PreparedExecution(
        typed_data=typed_data,
        caller=caller,
        nonce=nonce,
        execute_after=after,
        execute_before=before,
        message_hash=expected_hash,
    )
