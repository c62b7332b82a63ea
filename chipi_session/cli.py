"""The ``chipi-session`` command: ``demo``, ``diagram``, ``localnet`` and ``watch``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

__all__ = ["main"]

DIAGRAM_PATH = Path("diagrams") / "lifecycle.mmd"


def _diagram(args: argparse.Namespace) -> int:
    from .lifecycle import mermaid_diagram

    out = Path(args.output)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(mermaid_diagram())
    except OSError as exc:
        print(f"chipi-session diagram: cannot write {out}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def _output_path(text: str) -> str:
    """argparse type: a writable-looking path (a NUL byte is a usage error, not a crash)."""
    from .errors import ChipiSessionError
    from .validate import check_path

    try:
        return check_path(text, "output")
    except ChipiSessionError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _demo(args: argparse.Namespace) -> int:
    import anyio

    from .demo import run_demo

    return anyio.run(run_demo, print, args.fast_kdf, backend=args.async_backend)


def _localnet(argv: list[str]) -> int:
    import importlib

    try:
        localnet = importlib.import_module("chipi_session.localnet")
    except ImportError as exc:  # the server's dependencies are an extra
        print(f"localnet needs the server extra: pip install 'chipi-session[localnet]' ({exc})")
        return 2
    return int(localnet.main(argv))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["localnet"]:
        return _localnet(argv[1:])
    if argv[:1] == ["watch"]:
        from .watch import main as watch

        return watch(argv[1:])
    parser = argparse.ArgumentParser(prog="chipi-session", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the whole session lifecycle on the embedded chain")
    demo.add_argument(
        "--async-backend",
        "--backend",  # the flag's first name, kept working
        dest="async_backend",
        choices=["asyncio", "trio"],
        default="asyncio",
        help="the event loop (anyio backend) to run on",
    )
    demo.add_argument(
        "--fast-kdf", action="store_true", help="cheap Argon2id cost (tests only, not secure)"
    )
    demo.set_defaults(func=_demo)
    diagram = sub.add_parser("diagram", help="write the lifecycle's mermaid diagram")
    diagram.add_argument("--output", type=_output_path, default=str(DIAGRAM_PATH))
    diagram.set_defaults(func=_diagram)
    sub.add_parser("localnet", help="a local Chipi-compatible REST + JSON-RPC server")
    sub.add_parser("watch", help="a live view of a localnet's or a hub store's sessions")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
