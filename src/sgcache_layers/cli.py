"""The ``sgcache-layers`` command: ``serve`` a loopback ShotGrid site, and more to come.

Each subcommand is a subparser whose handler is a ``_cmd_<name>(args) -> int`` function in
this file.  Bad arguments give a one-line error and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Callable, Dict, List, NoReturn, Optional, Sequence

PROG = "sgcache-layers"

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A bad command line; reported in one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


# ----------------------------------------------------------------------------------- serve


def _cmd_serve(args: argparse.Namespace) -> int:
    """Run the loopback ShotGrid server with the demo production until Ctrl-C."""
    from .testing.server import ShotgridServer

    server = ShotgridServer(
        scale=args.scale,
        seed=args.seed,
        port=args.port,
        script_name=args.script_name,
        api_key=args.api_key,
        latency=args.latency or None,
    )
    try:
        server.start()
    except OSError as exc:
        print(
            f"{PROG}: error: cannot listen on port {args.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    counts = ", ".join(f"{len(v)} {k}" for k, v in server.production.items())
    print(f"ShotGrid test server listening (demo production: {counts or 'empty'})")
    print(f"URL: {server.url}")
    print(f"Script name: {server.script_name}")
    print(f"API key: {server.api_key}")
    if args.latency:
        print(f"Latency: {args.latency:.3f} s per request")
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
    print(f"Stopped after {server.request_count} requests.", flush=True)
    return 0


def _add_serve(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run a loopback ShotGrid server with a demo production",
        description="Serve ShotGrid's JSON API on 127.0.0.1 from an in-memory demo site.",
    )
    parser.add_argument("--port", type=_port, default=0, help="TCP port (default: a free one)")
    parser.add_argument(
        "--latency",
        type=_non_negative_float,
        default=0.0,
        help="seconds added to every answer (default: 0)",
    )
    parser.add_argument(
        "--scale",
        type=_positive_float,
        default=1.0,
        help="production size; 1.0 is ~500 shots and ~5,000 tasks (default: 1.0)",
    )
    parser.add_argument("--seed", type=_int, default=0, help="production seed (default: 0)")
    parser.add_argument(
        "--script-name",
        default="sgcache_tests",
        help="script name clients use (default: sgcache_tests)",
    )
    parser.add_argument("--api-key", default=None, help="API key (default: a random one)")
    parser.set_defaults(handler=_cmd_serve)


# ------------------------------------------------------------------------- demo (to fill in)


def _cmd_demo(args: argparse.Namespace) -> int:
    """Placeholder: the ``demo`` subcommand is written elsewhere."""
    print(f"{PROG}: error: 'demo' is not implemented yet", file=sys.stderr)
    return 1


def _add_demo(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    parser = subparsers.add_parser("demo", help="show the cache layers at work (not yet)")
    parser.set_defaults(handler=_cmd_demo)


# ------------------------------------------------------------------------ stats (to fill in)


def _cmd_stats(args: argparse.Namespace) -> int:
    """Placeholder: the ``stats`` subcommand is written elsewhere."""
    print(f"{PROG}: error: 'stats' is not implemented yet", file=sys.stderr)
    return 1


def _add_stats(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    parser = subparsers.add_parser("stats", help="show cache statistics (not yet)")
    parser.set_defaults(handler=_cmd_stats)


# ------------------------------------------------------------------------ clear (to fill in)


def _cmd_clear(args: argparse.Namespace) -> int:
    """Placeholder: the ``clear`` subcommand is written elsewhere."""
    print(f"{PROG}: error: 'clear' is not implemented yet", file=sys.stderr)
    return 1


def _add_clear(subparsers: argparse._SubParsersAction[_Parser]) -> None:
    parser = subparsers.add_parser("clear", help="clear cached data (not yet)")
    parser.set_defaults(handler=_cmd_clear)


# ---------------------------------------------------------------------------------- wiring

SUBCOMMANDS: Dict[str, Callable[[argparse._SubParsersAction[_Parser]], None]] = {
    "serve": _add_serve,
    "demo": _add_demo,
    "stats": _add_stats,
    "clear": _add_clear,
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (one subparser per entry of :data:`SUBCOMMANDS`)."""
    from . import __version__

    parser = _Parser(prog=PROG, description="Layered caching for ShotGrid tools.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for add in SUBCOMMANDS.values():
        add(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``sgcache-layers``; returns the exit status."""
    parser = build_parser()
    arguments: List[str] = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(arguments)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
