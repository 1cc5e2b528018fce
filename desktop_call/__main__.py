"""``desktop-call``: the application's entry point.

- ``desktop-call --headless --join ID_OR_LINK`` / ``--create``: a call with no
  window (:mod:`desktop_call.headless`).
- ``desktop-call``: the embedded default. Until the windows exist, it hosts the
  room server on this computer and prints a fresh call link that a second
  instance (``--headless --join LINK``) or any v1 client can join.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from desktop_call import APP_NAME, __version__
from desktop_call.signaling.ids import DEFAULT_PORT


def build_parser() -> argparse.ArgumentParser:
    from desktop_call import headless

    parser = argparse.ArgumentParser(prog=APP_NAME, description="Peer-to-peer video calls.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--headless", action="store_true", help="run a call with no window")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the embedded room server listens on (0.0.0.0 for the LAN)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="embedded room server port (default 8787)"
    )
    parser.add_argument(
        "--log-level", default="warning", choices=("debug", "info", "warning", "error")
    )
    headless.add_arguments(parser)
    return parser


async def host_embedded(host: str, port: int) -> None:
    from desktop_call.server import RoomServer, ServerConfig
    from desktop_call.signaling.ids import make_call_link, new_call_id

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with RoomServer(ServerConfig(host=host, port=port)) as server:
        link = make_call_link(server.url, new_call_id())
        print(f"{APP_NAME} {__version__}: hosting calls on {server.url}", flush=True)
        print(f"New call: {link}", flush=True)
        print(f"Join it from another terminal: {APP_NAME} --headless --join {link}", flush=True)
        print("Press Ctrl+C to stop.", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a port")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    if (args.join or args.create) and not args.headless:
        parser.error("--join and --create need --headless until the call window exists")
    try:
        if args.headless:
            if not (args.join or args.create):
                parser.error("--headless needs --join ID_OR_LINK or --create")
            from desktop_call import headless

            return asyncio.run(headless.run(args))
        asyncio.run(host_embedded(args.host, args.port))
    except OSError as exc:
        print(f"{APP_NAME}: cannot host calls on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
