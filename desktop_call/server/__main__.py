"""``desktop-call-server``: run the room server from the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from desktop_call import __version__
from desktop_call.signaling.ids import DEFAULT_PORT

from .app import RoomServer, ServerConfig

try:
    import resource
except ImportError:  # Windows: no descriptor limit to raise
    resource = None  # type: ignore[assignment]

TOKEN_ENV = "DESKTOP_CALL_SERVER_TOKEN"


def _positive(kind: type[int] | type[float]):
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="desktop-call-server",
        description="Relay call signaling between desktop-call peers (wire protocol v1).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 for all)",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="default: %(default)s")
    parser.add_argument(
        "--capacity", type=_positive(int), default=2, help="people per call (default: 2)"
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds a dropped peer keeps its place (default: 30)",
    )
    parser.add_argument(
        "--rate", type=_positive(float), default=50.0, help="messages/s per client (default: 50)"
    )
    parser.add_argument(
        "--burst", type=_positive(int), default=200, help="message burst per client (default: 200)"
    )
    parser.add_argument(
        "--token",
        default=None,
        help=f"shared secret clients must send in 'join' (or set ${TOKEN_ENV})",
    )
    parser.add_argument("--cert", help="TLS certificate (PEM); serves wss:// with --key")
    parser.add_argument("--key", help="TLS private key (PEM)")
    parser.add_argument(
        "--origin",
        action="append",
        dest="origins",
        help="allowed Origin header (repeatable; default: any)",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="event loop (default: uvloop where installed)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error")
    )
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    if bool(args.cert) != bool(args.key):
        raise SystemExit("desktop-call-server: --cert and --key go together")
    for path in (args.cert, args.key):
        if path and not os.path.isfile(path):
            raise SystemExit(f"desktop-call-server: no such file: {path}")
    if not 0 <= args.port <= 65535:
        raise SystemExit(f"desktop-call-server: --port {args.port} is not a port")
    if args.grace < 0:
        raise SystemExit("desktop-call-server: --grace cannot be negative")
    return ServerConfig(
        host=args.host,
        port=args.port,
        capacity=args.capacity,
        grace=args.grace,
        rate=args.rate,
        burst=args.burst,
        token=token,
        certfile=args.cert,
        keyfile=args.key,
        origins=tuple(args.origins) if args.origins else None,
    )


def raise_fd_limit() -> None:
    """Allow as many sockets as the system lets this process have (10,000+ clients)."""
    if resource is None:
        return
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard)
            )


async def serve(config: ServerConfig) -> None:
    """Run until SIGINT or SIGTERM, then close every connection with 1001."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: KeyboardInterrupt instead
            loop.add_signal_handler(signum, stop.set)
    async with RoomServer(config) as server:
        print(f"desktop-call-server {__version__} listening on {server.url}", flush=True)
        await stop.wait()


def _runner(choice: str):
    if choice in ("auto", "uvloop"):
        try:
            import uvloop

            return uvloop.run
        except ImportError:
            if choice == "uvloop":
                raise SystemExit("desktop-call-server: uvloop is not installed") from None
    return asyncio.run


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    raise_fd_limit()
    try:
        _runner(args.loop)(serve(config))
    except OSError as exc:
        print(
            f"desktop-call-server: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
