"""``chipi-session localnet``: a local Chipi-compatible server for development.

Prints a ready-to-use demo wallet (address, PIN, CryptoJS-encrypted owner key that Chipi's JS
SDK can decrypt, a funded token), the API key, and the two URLs; then serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from ..felts import to_hex
from ..validate import describe

__all__ = ["main", "build_parser"]

DEFAULT_PORT = 5959


def _say(text: str, *, error: bool = False) -> None:
    """The CLI's only output channel (banner on stdout, problems on stderr)."""
    print(text, file=sys.stderr if error else sys.stdout, flush=True)  # noqa: T201


def _port(text: str) -> int:
    """argparse type: a TCP port (a bad one is a usage error, exit status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {describe(text)}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {describe(value)}")
    return value


def _timeout(text: str) -> float:
    """argparse type: seconds, a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {describe(text)}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chipi-session localnet",
        description="Local Chipi REST API + Starknet JSON-RPC over an in-process chain "
        "(loopback only; play money).",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="loopback address to bind (default %(default)s)"
    )
    p.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help="port, 0 = any free one (default %(default)s)",
    )
    p.add_argument(
        "--chain",
        choices=("mainnet", "sepolia"),
        default="mainnet",
        help="chain id to report: SN_MAIN or SN_SEPOLIA (default %(default)s)",
    )
    p.add_argument("--pin", default="1234", help="PIN of the demo wallet (default %(default)s)")
    p.add_argument(
        "--fund",
        type=int,
        default=1_000 * 10**6,
        help="demo token balance in base units, 6 decimals (default %(default)s)",
    )
    p.add_argument(
        "--api-key",
        action="append",
        default=None,
        metavar="KEY",
        help="accepted API key (repeatable; default: a generated pk_dev_ key)",
    )
    p.add_argument(
        "--any-api-key", action="store_true", help="accept any well-formed pk_dev_/pk_prod_ key"
    )
    p.add_argument(
        "--bearer-token",
        action="append",
        default=None,
        metavar="TOKEN",
        help="required bearer token (repeatable; default: any non-empty token)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser requests from this origin (repeatable)",
    )
    p.add_argument(
        "--legacy-session-layout",
        action="store_true",
        help="answer get_session_data in the layout old official SDKs expect (not the chain's)",
    )
    p.add_argument(
        "--fast-kdf",
        action="store_true",
        help="cheapest Argon2id for wallets the chain creates (tests only)",
    )
    p.add_argument(
        "--state-file",
        metavar="PATH",
        help="load the chain (and the demo wallet) from PATH if it exists; save it there on exit",
    )
    p.add_argument(
        "--request-timeout",
        type=_timeout,
        default=30.0,
        metavar="SECONDS",
        help="close a connection whose request has not fully arrived in time (default %(default)s)",
    )
    p.add_argument(
        "--keep-alive",
        type=_timeout,
        default=30.0,
        metavar="SECONDS",
        help="close an idle keep-alive connection after this long (default %(default)s)",
    )
    p.add_argument(
        "--http",
        choices=("auto", "httptools", "h11"),
        default="auto",
        help="HTTP/1.1 parser: httptools (C, fast) when installed, else h11 (default %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print the banner as one JSON line")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return p


def _banner(info: dict[str, Any]) -> str:
    w = info["demoWallet"]
    return "\n".join(
        [
            "chipi-session localnet (play money, loopback only)",
            "",
            f"  REST (alphaUrl / base_url):      {info['restUrl']}",
            f"  RPC  (STARKNET_RPC_URL):         {info['rpcUrl']}",
            f"  chain id:                        {info['chainId']}",
            f"  API key (x-api-key):             {info['apiKey']}",
            f"  bearer token:                    {info['bearerToken']}",
            "",
            "  demo wallet (walletType CHIPI):",
            f"    publicKey:            {w['publicKey']}",
            f"    PIN (encryptKey):     {w['pin']}",
            f"    encryptedPrivateKey:  {w['encryptedPrivateKey']}",
            f"    token (6 decimals):   {w['token']}  balance {w['balance']}",
            "",
            "  Ctrl-C to stop.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``chipi-session localnet``; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        from ..errors import ChipiSessionError
        from ..hashing import SN_MAIN, SN_SEPOLIA
        from ..vault import KdfCost
        from .devnet import dump_state, read_state_file, state_from_json
        from .server import LocalnetServer
    except ImportError as exc:  # the optional server dependencies are missing
        _say(
            f"chipi-session localnet needs the 'localnet' extra "
            f"(pip install 'chipi-session[localnet]'): {exc}",
            error=True,
        )
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.verbose:
        logging.getLogger("chipi_session").setLevel(logging.DEBUG)
    try:
        saved = read_state_file(args.state_file) if args.state_file else None
        extra = saved.get("extra", {}) if saved else {}
        server = LocalnetServer(
            host=args.host,
            port=args.port,
            chain_id=SN_SEPOLIA if args.chain == "sepolia" else SN_MAIN,
            kdf_cost=KdfCost.FAST_FOR_TESTS if args.fast_kdf else KdfCost.DEFAULT,
            api_keys=args.api_key or extra.get("apiKeys"),
            accept_any_api_key=args.any_api_key,
            bearer_tokens=args.bearer_token,
            legacy_session_layout=args.legacy_session_layout,
            cors_origins=tuple(args.cors_origin),
            keep_alive=args.keep_alive,
            request_timeout=args.request_timeout,
            http=args.http,
        )
        if saved is not None:
            state_from_json(server.chain, saved)
        if extra.get("demoWallet"):
            demo = dict(extra["demoWallet"])  # the banner's wallet, with today's balance
            token, owner = int(demo["token"], 16), int(demo["publicKey"], 16)
            demo["balance"] = str(server.chain.balance_of(token, owner))
        else:
            demo = server.create_demo_wallet(args.pin, fund=args.fund).to_json()
        server.bind()
    except ChipiSessionError as exc:
        _say(f"localnet: {exc.message}", error=True)
        return 2
    except OSError as exc:
        _say(f"localnet: cannot listen on {args.host}:{args.port}: {exc.strerror}", error=True)
        return 2
    info = {
        "restUrl": server.rest_url,
        "rpcUrl": server.rpc_url,
        "chainId": to_hex(server.chain.chain_id),
        "apiKey": server.api_key,
        "bearerToken": "any non-empty token" if not args.bearer_token else args.bearer_token[0],
        "demoWallet": demo,
    }
    _say(json.dumps(info) if args.json else _banner(info))
    try:
        server.run()
    except KeyboardInterrupt:  # pragma: no cover - uvicorn normally handles the signal
        pass
    finally:
        if args.state_file:
            keys = sorted(args.api_key or extra.get("apiKeys") or [server.api_key])
            dump_state(server.chain, args.state_file, extra={"demoWallet": demo, "apiKeys": keys})
    return 0
