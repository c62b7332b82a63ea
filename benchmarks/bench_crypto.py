"""Crypto micro-benchmarks: native signer vs starknet-py, hashes, and the vault KDF.

Run: ``python benchmarks/bench_crypto.py`` (``--quick`` for fewer repetitions). Prints the median
time per operation; native and starknet-py are measured side by side in the same run, on the
same inputs, so their ratio is meaningful on any machine. "vault decrypt" rows are end to end
(KDF, cipher, and the public-key derivation that checks the result). The OutsideExecution rows
are one execute's hash three ways: nothing cached, the call's own hash memoized (a repeated
call), and the memo hit LocalChain's contract gets for the hash its signer just computed.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable

import nacl.pwhash.argon2id as argon2id

import chipi_session.keys as keys
from chipi_session.hashing import (
    ANY_CALLER,
    SN_MAIN,
    clear_hash_caches,
    outside_execution_hash,
    outside_execution_typed_data,
    session_validate_hash,
    typed_data_message_hash,
)
from chipi_session.localchain.ecdsa import check_ecdsa_signature
from chipi_session.poseidon import POSEIDON_BACKEND, poseidon_many
from chipi_session.types import Call
from chipi_session.vault import HighEntropyKey, KdfCost, Vault

USDC = 0x033068F6539F8E6E6B131E6B2B814E6C34A5224BC66947C47DAB9DFEE93B35FB
ETH = 0x49D36570D4E46F48E99674BD3FCC84644DDD6B96F7C741B1562B82F9E004DC7


def median_seconds(fn: Callable[[int], object], count: int) -> float:
    """Median wall time of ``fn(i)`` over ``count`` calls (``i`` varies the input)."""
    fn(0)  # warm up: imports, caches
    samples = []
    for i in range(count):
        started = time.perf_counter()
        fn(i + 1)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def fmt(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:9.2f} ms"
    return f"{seconds * 1e6:9.1f} us"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    many, few, kdf = (50, 5, 3) if args.quick else (200, 10, 7)

    native = keys._native  # type: ignore[attr-defined]
    private_keys = [keys.generate_private_key() for _ in range(many + 1)]
    hashes = [1 + (k * 0x9E3779B97F4A7C15) % (2**251 - 1) for k in private_keys]
    public_keys = [keys.public_key_of(k) for k in private_keys]
    signatures = [keys.sign(h, k) for h, k in zip(hashes, private_keys, strict=True)]

    def with_backend(backend: object, op: Callable[[int], object]) -> Callable[[int], object]:
        def run(i: int) -> object:
            saved = keys._native  # type: ignore[attr-defined]
            keys._native = backend  # type: ignore[attr-defined,assignment]
            try:
                return op(i)
            finally:
                keys._native = saved  # type: ignore[attr-defined]

        return run

    def sign_op(i: int) -> object:
        return keys.sign(hashes[i], private_keys[i])

    def verify_op(i: int) -> object:
        r, s = signatures[i]
        return keys.verify(public_keys[i], hashes[i], r, s)

    def pubkey_op(i: int) -> object:
        return keys.public_key_of(private_keys[i])

    rows: list[tuple[str, str, int, float]] = []
    results: dict[str, float] = {}
    for name, op in (("sign", sign_op), ("verify", verify_op), ("public key", pubkey_op)):
        if native is not None:
            t = median_seconds(with_backend(native, op), many)
            rows.append((name, "fast-stark-crypto", many, t))
            results[f"{name}/native"] = t
        t = median_seconds(with_backend(None, op), few)
        rows.append((name, "starknet-py", few, t))
        results[f"{name}/starknet-py"] = t

    # The spec's signature vector: one USDC transfer as a SNIP-9 OutsideExecution.
    transfer = Call(to=USDC, selector="transfer", calldata=[0x1234, 0x3E8, 0])
    typed = outside_execution_typed_data(
        caller=ANY_CALLER,
        nonce=1,
        execute_after=1,
        execute_before=0x77359400,
        calls=[transfer],
        chain_id=SN_MAIN,
    )
    rows.append(
        (
            "SNIP-12 message hash",
            "starknet-py TypedData",
            many,
            median_seconds(lambda i: typed_data_message_hash(typed, 0x555AA11 + i), many),
        )
    )
    oe = dict(
        account=0x555AA11,
        chain_id=SN_MAIN,
        caller=ANY_CALLER,
        execute_after=1,
        execute_before=0x77359400,
        calls=[transfer],
    )

    def oe_cold(i: int) -> object:
        clear_hash_caches()
        return outside_execution_hash(nonce=i, **oe)  # type: ignore[arg-type]

    from poseidon_py.poseidon_hash import poseidon_hash_many as poseidon_py_many

    felts19 = [(k * 0x9E3779B97F4A7C15) % (2**251) for k in range(19)]
    rows += [
        (
            "OutsideExecution hash",
            "cold (Poseidon)",
            many,
            median_seconds(oe_cold, many),
        ),
        (
            "OutsideExecution hash",
            "call hash memoized",
            many,
            median_seconds(lambda i: outside_execution_hash(nonce=10**9 + i, **oe), many),  # type: ignore[arg-type]
        ),
        (
            "OutsideExecution hash",
            "memo hit (the contract)",
            many,
            median_seconds(lambda i: outside_execution_hash(nonce=7, **oe), many),  # type: ignore[arg-type]
        ),
        (
            "Poseidon, 19 felts",
            POSEIDON_BACKEND,
            many,
            median_seconds(lambda i: poseidon_many(felts19), many),
        ),
        (
            "Poseidon, 19 felts",
            "poseidon-py",
            many,
            median_seconds(lambda i: poseidon_py_many(felts19), many),
        ),
        (
            "contract signature check",
            "check_ecdsa_signature",
            many,
            median_seconds(
                lambda i: check_ecdsa_signature(hashes[i], public_keys[i], *signatures[i]), many
            ),
        ),
    ]
    call = Call(to=ETH, selector="transfer", calldata=[0xBEEF, 100, 0])
    rows.append(
        (
            "session validate hash",
            "Poseidon",
            many,
            median_seconds(
                lambda i: session_validate_hash(
                    account=0x1234ABCD, chain_id=SN_MAIN, nonce=i, valid_until=1, calls=[call]
                ),
                many,
            ),
        )
    )

    default_vault, fast_vault = Vault(KdfCost.DEFAULT), Vault(KdfCost.FAST_FOR_TESTS)
    key = private_keys[0]
    default_blob = default_vault.encrypt(key, "1234")
    fast_blob = fast_vault.encrypt(key, "1234")
    hek = HighEntropyKey.generate()
    hek_blob = fast_vault.encrypt(key, hek)
    legacy_blob = fast_vault.encrypt_legacy_cryptojs(key, "1234")
    cost, fast = KdfCost.DEFAULT, KdfCost.FAST_FOR_TESTS
    salt = bytes(range(16))
    rows += [
        (
            "KDF (Argon2id only)",
            f"DEFAULT o={cost.ops},m={cost.mem // 2**20}MiB",
            kdf,
            median_seconds(
                lambda i: argon2id.kdf(32, b"1234", salt, opslimit=cost.ops, memlimit=cost.mem), kdf
            ),
        ),
        (
            "KDF (Argon2id only)",
            f"FAST_FOR_TESTS o={fast.ops},m={fast.mem // 1024}KiB",
            many,
            median_seconds(
                lambda i: argon2id.kdf(32, b"1234", salt, opslimit=fast.ops, memlimit=fast.mem),
                many,
            ),
        ),
        (
            "vault decrypt",
            f"Argon2id o={cost.ops},m={cost.mem // 2**20}MiB",
            kdf,
            median_seconds(lambda i: default_vault.decrypt(default_blob, "1234"), kdf),
        ),
        (
            "vault decrypt",
            "Argon2id FAST_FOR_TESTS",
            many,
            median_seconds(lambda i: fast_vault.decrypt(fast_blob, "1234"), many),
        ),
        (
            "vault decrypt",
            "HighEntropyKey (BLAKE2b)",
            many,
            median_seconds(lambda i: fast_vault.decrypt(hek_blob, hek), many),
        ),
        (
            "vault decrypt",
            "legacy CryptoJS (MD5+AES)",
            many,
            median_seconds(lambda i: fast_vault.decrypt(legacy_blob, "1234"), many),
        ),
    ]

    print(f"Python {platform.python_version()} on {platform.machine()} ({platform.system()})")
    print(f"default signer backend: {keys.SIGNER_BACKEND}; Poseidon: {POSEIDON_BACKEND}")
    print()
    print(f"{'operation':<24} {'implementation':<28} {'n':>5} {'median/op':>12}")
    print("-" * 72)
    for name, impl, n, t in rows:
        print(f"{name:<24} {impl:<28} {n:>5} {fmt(t):>12}")
    print()
    if native is None:
        print("fast-stark-crypto not installed: no native/starknet-py ratio")
        return 0
    for name in ("sign", "verify", "public key"):
        ratio = results[f"{name}/starknet-py"] / results[f"{name}/native"]
        print(f"{name:<12} native is {ratio:8.0f}x faster than starknet-py")
    sign_ratio = results["sign/starknet-py"] / results["sign/native"]
    verdict = "OK" if sign_ratio >= 100 else "BELOW TARGET"
    print(f"signing speed-up target >= 100x: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
