"""``desktop-call``: the application's entry point.

Today the app runs its embedded default: it hosts the room server on this
computer and prints a fresh call link that a second instance or any v1 client
can join. The call engine (headless calls) and the windows build on this.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from desktop_call import APP_NAME, __version__
from desktop_call.server import RoomServer, ServerConfig
from desktop_call.signaling.ids import DEFAULT_PORT, make_call_link, new_call_id


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=APP_NAME, description="Peer-to-peer video calls.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the embedded room server listens on (0.0.0.0 for the LAN)",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="default: %(default)s")
    return parser


async def host_embedded(config: ServerConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with RoomServer(config) as server:
        link = make_call_link(server.url, new_call_id())
        print(f"{APP_NAME} {__version__}: hosting calls on {server.url}", flush=True)
        print(f"New call: {link}", flush=True)
        print("Press Ctrl+C to stop.", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        print(f"{APP_NAME}: --port {args.port} is not a port", file=sys.stderr)
        return 2
    try:
        asyncio.run(host_embedded(ServerConfig(host=args.host, port=args.port)))
    except OSError as exc:
        print(f"{APP_NAME}: cannot host calls on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
