"""``desktop-call``: the application's entry point.

- ``desktop-call``: the home window (New call, Join, settings), hosting the room
  server on this computer by default.
- ``desktop-call --join ID_OR_LINK``: straight into the call window (for links and
  tests); ``--duration`` hangs up after that many seconds, ``--report`` writes JSON.
- ``desktop-call --headless --join ID_OR_LINK`` / ``--create``: a call with no
  window (:mod:`desktop_call.headless`).
- ``desktop-call --check [--server URL]``: test the room server and the STUN/TURN
  servers, print what will and won't work, exit 0 if calls can work, 1 if not, 64
  for bad input (:mod:`desktop_call.netcheck`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from desktop_call import APP_NAME, __version__


def build_parser() -> argparse.ArgumentParser:
    from desktop_call import headless

    parser = argparse.ArgumentParser(prog=APP_NAME, description="Peer-to-peer video calls.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "link",
        nargs="?",
        metavar="LINK",
        help="a call link to open (what a clicked dcall:// link passes): the app opens "
        "and joins it; with --headless, the same as --join",
    )
    parser.add_argument("--headless", action="store_true", help="run a call with no window")
    parser.add_argument(
        "--check",
        action="store_true",
        help="test the connection (room server, STUN, TURN) and exit: 0 when calls can "
        "work, 1 when they cannot, 64 for bad input; --report - prints JSON",
    )
    call = parser.add_argument_group("calls")
    target = call.add_mutually_exclusive_group()
    target.add_argument("--join", metavar="ID_OR_LINK", help="call ID or dcall:// link to join")
    target.add_argument(
        "--create",
        action="store_true",
        help="(--headless) make a new call, print its link and wait in it",
    )
    call.add_argument("--server", metavar="URL", help="room server for a bare call ID")
    call.add_argument("--token", help="room server token, if it requires one")
    call.add_argument("--name", help="display name")
    call.add_argument(
        "--source",
        metavar="testpattern|tone|file:PATH",
        help="what to send instead of the camera and microphone",
    )
    call.add_argument("--duration", type=float, help="seconds to stay once connected")
    call.add_argument("--report", metavar="FILE", help="write a JSON report here ('-': stdout)")
    hosting = parser.add_argument_group("hosting (this computer)")
    hosting.add_argument("--host", help="address the embedded room server listens on")
    hosting.add_argument("--port", type=int, help="port of the embedded room server")
    parser.add_argument("--settings-file", help="read and write settings in this INI file")
    parser.add_argument(
        "--log-level", default="warning", choices=("debug", "info", "warning", "error")
    )
    headless.add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.port is not None and not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a port")
    if args.link is not None and (args.join or args.create):
        parser.error("give a link, or --join, or --create: one of them")
    if args.link is not None and args.headless:
        args.join, args.link = args.link, None
    if args.check:
        if args.headless or args.join or args.create:
            parser.error("--check runs alone: not with --headless, --join or --create")
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
        from desktop_call import netcheck

        return netcheck.main(args)
    if args.headless:
        if not (args.join or args.create):
            parser.error("--headless needs --join ID_OR_LINK or --create")
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
        from desktop_call import headless

        try:
            return asyncio.run(headless.run(args))
        except KeyboardInterrupt:
            return 130
    if args.create:
        parser.error("--create is for --headless; in the window, press New call")
    if args.source not in (None, "testpattern"):
        parser.error("the window sends the camera, or --source testpattern")
    from desktop_call.ui.app import main as gui_main

    return gui_main(args)


if __name__ == "__main__":
    sys.exit(main())
