#!/usr/bin/env python3
"""Soak: short calls through one room server for a long time; does anything grow?

    python bench/soak.py [--minutes 30] [--interval 10] [--loops 8] [--gap 0.1] [--grace 5]

One room server process (``python -m desktop_call.server``, its default per-address
limits on). ``--loops`` callers run signaling-only calls, ``--gap`` s apart: two peers join a
fresh room, exchange an offer, an answer and trickled candidates, and end in one of four
ways, in turn: both ``leave``; both close (1000); one drops (TCP reset) and the other
leaves (the dropped slot waits out ``--grace`` and expires); one closes with an unclean
code (4001), the other sends it three signals, and it resumes within the grace period
and must get them, in order.
Every call comes from another 127/8 source address (1,000 in rotation), so the
per-address records are created and forgotten all along.

Every ``--interval`` s: the server's RSS, open descriptors, and /healthz counts. At the
end the callers stop, the grace period runs out, and the server is sampled once more.
Verdict: the least-squares slope of RSS per minute after the warm-up (the first fifth
of the run, at least a minute when the run is long enough), and the descriptor count
after everything settled minus the idle count before the first call. "flat" means the
slope is under ``--max-slope-kib`` and no descriptor is left over. One JSON object on
stdout (``--out`` also writes it); progress on stderr. Loopback only. Linux only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _load
import _procs
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

SCHEMA = "desktop-call/bench-soak/1"
ENDINGS = ("leave", "close", "drop", "resume")
ADDRESSES = 1000
T = 10.0  # any one expected message, generous on a busy machine
SDP = "v=0\r\n" + "a=candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host\r\n" * 40


def log(message: str) -> None:
    print(f"[soak] {message}", file=sys.stderr, flush=True)


def source_address(n: int) -> str:
    n %= ADDRESSES
    return f"127.0.{1 + n // 250}.{1 + n % 250}"


async def recv_json(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(T):
        return json.loads(await ws.recv())


async def expect(ws: ClientConnection, kind: str) -> dict[str, Any]:
    message = await recv_json(ws)
    if message.get("type") != kind:
        raise AssertionError(f"expected {kind}, got {str(message)[:120]}")
    return message


async def joined(port: int, room: str, local: str, **fields: Any):
    ws = await _load.ws(port, room, local, open_timeout=T, close_timeout=T)
    await ws.send(json.dumps({"type": "join", "v": 1, "name": "soak", **fields}))
    return ws, await expect(ws, "welcome")


async def signal(ws: ClientConnection, data: dict[str, Any]) -> None:
    await ws.send(json.dumps({"type": "signal", "data": data}))


async def expect_signals(ws: ClientConnection, datas: list[dict[str, Any]]) -> None:
    for data in datas:
        got = await expect(ws, "signal")
        if got["data"] != data:
            raise AssertionError(f"expected {str(data)[:60]}, got {str(got['data'])[:60]}")


async def one_call(port: int, n: int) -> str:
    ending = ENDINGS[n % len(ENDINGS)]
    room, local = f"soak-{n:08d}", source_address(n)
    a, welcome_a = await joined(port, room, local)
    b = None
    try:
        b, _ = await joined(port, room, local)
        await expect(a, "peer-joined")
        await signal(b, {"description": {"type": "offer", "sdp": SDP}})
        await expect_signals(a, [{"description": {"type": "offer", "sdp": SDP}}])
        await signal(a, {"description": {"type": "answer", "sdp": SDP}})
        candidates = [{"candidate": {"candidate": f"c{i}", "sdpMid": "0"}} for i in range(4)]
        for data in [*candidates, {"candidate": None}]:
            await signal(a, data)
            await signal(b, data)
        await expect_signals(b, [{"description": {"type": "answer", "sdp": SDP}}])
        await expect_signals(a, [*candidates, {"candidate": None}])
        await expect_signals(b, [*candidates, {"candidate": None}])

        if ending == "leave":
            for ws in (a, b):
                await ws.send('{"type":"leave"}')
        elif ending == "drop":
            a.transport.abort()  # no close frame: the server keeps a's slot for the grace
            await b.send('{"type":"leave"}')
        elif ending == "resume":
            # An unclean close code: the slot waits for a resume, as after a lost network,
            # and (unlike a reset, which races b's signals) the server has seen it by the
            # time the close handshake ends, so b's signals are queued for a, in order.
            await a.close(code=4001, reason="soak: gone")
            queued = [{"queued": i} for i in range(3)]
            for data in queued:
                await signal(b, data)
            a, again = await joined(port, room, local, resume=welcome_a["resume"])
            if again["id"] != welcome_a["id"]:
                raise AssertionError("the resume did not give the same id back")
            await expect_signals(a, queued)
        return ending
    finally:
        for ws in (a, b):
            if ws is not None:
                with contextlib.suppress(ConnectionClosed, TimeoutError, OSError):
                    await ws.close()


async def callers(port: int, loops: int, gap: float, stop: threading.Event, tally: dict) -> None:
    counter = iter(range(1 << 62))

    async def loop() -> None:
        while not stop.is_set():
            n = next(counter)
            try:
                ending = await one_call(port, n)
                tally["calls"][ending] = tally["calls"].get(ending, 0) + 1
            except Exception as exc:  # counted, reported; the soak goes on
                name = f"{type(exc).__name__}: {str(exc)[:80]}"
                tally["errors"][name] = tally["errors"].get(name, 0) + 1
            await asyncio.sleep(gap)  # pacing: a soak, not a stress test

    await asyncio.gather(*(loop() for _ in range(loops)))


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 3:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / var


def sample(srv: _procs.Server, started: float, tally: dict) -> dict[str, Any]:
    status = _procs.proc_status(srv.popen.pid)
    fds = _load.open_fds(srv.popen.pid)  # before /healthz, whose own socket would count
    health = _procs.healthz(srv.port, timeout=5) or {}
    return {
        "t_s": round(time.monotonic() - started, 1),
        "rss_kb": status.get("VmRSS"),
        "fds": fds,
        "calls": sum(list(tally["calls"].values())),
        **{k: health.get(k) for k in ("rooms", "peers", "peers_in_grace", "connections")},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    _procs.raise_nofile_limit()
    extra = (
        "--grace", str(args.grace),
        # ours_spec turns the per-address limits off for the signaling benchmark: back on
        "--max-connections-per-ip", "100", "--connection-rate-per-ip", "20",
    )  # fmt: skip
    spec = _procs.ours_spec("ours", "desktop_call.server", args.loop, extra)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        srv = _procs.start(spec, Path(tmp))
        try:
            return _soak(args, srv)
        finally:
            _procs.stop(srv)


def _soak(args: argparse.Namespace, srv: _procs.Server) -> dict[str, Any]:
    pid = srv.popen.pid
    idle_fds = _load.settled_fds(pid)  # the readiness probe's socket may still be closing
    tally: dict[str, Any] = {"calls": {}, "errors": {}}
    stop = threading.Event()
    started = time.monotonic()
    series = [sample(srv, started, tally)]
    worker = threading.Thread(
        target=lambda: asyncio.run(callers(srv.port, args.loops, args.gap, stop, tally)),
        daemon=True,
    )
    worker.start()
    duration = args.minutes * 60
    while time.monotonic() - started < duration and worker.is_alive():
        time.sleep(min(args.interval, max(0.0, started + duration - time.monotonic())))
        series.append(sample(srv, started, tally))
        last = series[-1]
        log(
            f"{last['t_s']:.0f} s: {last['calls']} calls, rss {last['rss_kb']} kB, "
            f"fds {last['fds']}, errors {sum(list(tally['errors'].values()))}"
        )
    stop.set()
    worker.join(60)
    load_seconds = time.monotonic() - started

    def settled() -> bool:
        health = _procs.healthz(srv.port) or {}
        return health.get("peers") == 0 and health.get("connections", 99) <= 1

    settled_ok = _load.wait_for(settled, args.grace + 30, period=0.5)
    fds_ok = _load.wait_for(lambda: _load.open_fds(pid) <= idle_fds, 15)
    final = sample(srv, started, tally)

    warmup = min(max(60.0, load_seconds / 5), load_seconds / 2)
    steady = [(s["t_s"], s["rss_kb"]) for s in series if s["t_s"] >= warmup and s["rss_kb"]]
    slope = slope_per_minute(steady)
    fd_delta = final["fds"] - idle_fds
    calls = sum(tally["calls"].values())
    return {
        "schema": SCHEMA,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "config": {
            "minutes": args.minutes,
            "interval_s": args.interval,
            "loops": args.loops,
            "gap_s": args.gap,
            "grace_s": args.grace,
            "loop": args.loop,
            "source_addresses": ADDRESSES,
        },
        "calls": calls,
        "calls_per_s": round(calls / load_seconds, 1) if load_seconds else None,
        "endings": tally["calls"],
        "errors": tally["errors"],
        "series": series,
        "final": final,
        "verdict": {
            "warmup_s": round(warmup, 1),
            "rss_slope_kib_per_min": None if slope is None else round(slope, 1),
            "max_slope_kib_per_min": args.max_slope_kib,
            "rss_kb_at_warmup_end": steady[0][1] if steady else None,
            "rss_kb_at_end": series[-1]["rss_kb"],
            "rss_kb_settled": final["rss_kb"],
            "fds_idle": idle_fds,
            "fds_settled": final["fds"],
            "fd_delta": fd_delta,
            "settled": settled_ok and fds_ok,
            "flat": slope is not None and slope < args.max_slope_kib and fd_delta == 0,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--loops", type=int, default=8, help="callers at once")
    parser.add_argument("--gap", type=float, default=0.1, help="seconds between a caller's calls")
    parser.add_argument("--grace", type=float, default=5.0, help="the server's --grace")
    parser.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto")
    parser.add_argument(
        "--max-slope-kib", type=float, default=64.0, help="RSS growth per minute called flat"
    )
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.interval <= 0 or args.loops < 1:
        parser.error("--minutes and --interval must be positive, --loops at least 1")
    return _procs.run_and_report(lambda: run(args), args.out)


if __name__ == "__main__":
    sys.exit(main())
