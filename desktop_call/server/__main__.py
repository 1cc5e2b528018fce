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
from .turn import DEFAULT_TTL

try:
    import resource
except ImportError:  # Windows: no descriptor limit to raise
    resource = None  # type: ignore[assignment]

TOKEN_ENV = "DESKTOP_CALL_SERVER_TOKEN"
TURN_SECRET_ENV = "DESKTOP_CALL_TURN_SECRET"


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


def _non_negative(kind: type[int] | type[float]):
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value >= 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more (0: no limit)")
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
    turn = parser.add_argument_group(
        "TURN credentials",
        "hand out short-lived TURN credentials in every welcome (coturn's use-auth-secret: "
        "run turnserver with --use-auth-secret --static-auth-secret=<the same secret>)",
    )
    secret = turn.add_mutually_exclusive_group()
    secret.add_argument(
        "--turn-secret",
        help=f"the secret shared with the TURN server (or set ${TURN_SECRET_ENV}; "
        "better --turn-secret-file: a command line is visible to other users)",
    )
    secret.add_argument(
        "--turn-secret-file",
        metavar="PATH",
        help="read the secret from this file (its first line)",
    )
    turn.add_argument(
        "--turn-url",
        action="append",
        dest="turn_urls",
        metavar="URL",
        help="turn:/turns:/stun: URL given to clients, e.g. turn:turn.example.org:3478"
        "?transport=udp (repeatable)",
    )
    turn.add_argument(
        "--turn-ttl",
        type=_positive(float),
        default=DEFAULT_TTL,
        metavar="SECONDS",
        help="how long a credential stays valid (default: %(default)g, 12 hours)",
    )
    limits = parser.add_argument_group(
        "limits per address", "an address is an IPv4 address or an IPv6 /64; 0 turns a limit off"
    )
    limits.add_argument(
        "--max-connections-per-ip",
        type=_non_negative(int),
        default=100,
        metavar="N",
        help="open connections per address (default: %(default)s)",
    )
    limits.add_argument(
        "--connection-rate-per-ip",
        type=_non_negative(float),
        default=20.0,
        metavar="PER_S",
        help="new connections per second per address, sustained (default: %(default)g)",
    )
    limits.add_argument(
        "--connection-burst-per-ip",
        type=_positive(int),
        default=100,
        metavar="N",
        help="new connections per address in a burst (default: %(default)s)",
    )
    limits.add_argument(
        "--limit-exempt",
        action="append",
        metavar="CIDR",
        help="network the limits do not apply to, e.g. a reverse proxy, or 127.0.0.0/8 "
        "(repeatable; default: none, loopback included)",
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
    turn_secret = _turn_secret(args)
    try:
        return _config(args, token, turn_secret)
    except ValueError as exc:
        raise SystemExit(f"desktop-call-server: {exc}") from None


def _turn_secret(args: argparse.Namespace) -> str | None:
    if args.turn_secret_file:
        try:
            with open(args.turn_secret_file, encoding="utf-8") as f:
                secret = f.readline().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SystemExit(
                f"desktop-call-server: cannot read --turn-secret-file {args.turn_secret_file}: "
                f"{getattr(exc, 'strerror', None) or exc}"
            ) from None
        if not secret:
            raise SystemExit(
                f"desktop-call-server: --turn-secret-file {args.turn_secret_file} is empty"
            )
        return secret
    if args.turn_secret is not None:
        if not args.turn_secret.strip():
            raise SystemExit("desktop-call-server: --turn-secret is empty")
        return args.turn_secret
    # The variable only counts with --turn-url (a stray one must not change a plain server).
    env = os.environ.get(TURN_SECRET_ENV, "").strip()
    return env if env and args.turn_urls else None


def _config(args: argparse.Namespace, token: str | None, turn_secret: str | None) -> ServerConfig:
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
        turn_secret=turn_secret,
        turn_urls=tuple(args.turn_urls or ()),
        turn_ttl=args.turn_ttl,
        max_connections_per_ip=args.max_connections_per_ip,
        connection_rate_per_ip=args.connection_rate_per_ip,
        connection_burst_per_ip=args.connection_burst_per_ip,
        limit_exempt=tuple(args.limit_exempt or ()),
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
