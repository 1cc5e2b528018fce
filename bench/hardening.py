#!/usr/bin/env python3
"""Hardening benchmark: a neighbour room's relay latency while the server is abused.

    python bench/hardening.py [--connections 10000] [--batch 500] [--grace 30]

One room server process (``python -m desktop_call.server``, per-address limits off: the
abuse stands for many addresses, where those limits do not help). Then, at once:

* **churn**: ``--connections`` short-lived connections opened and dropped in batches of
  ``--batch``, a quarter each: TCP connect and close; handshake and drop; join a room of
  its own and drop uncleanly (the slot then waits out the grace period); join and close
  cleanly;
* **flood**: one room whose two peers both send 60 KB signals at 48/s (the server's rate
  limit is 50/s sustained), reading everything;
* **neighbour**: one room where a sends 20 timestamped signals a second to b, which
  records the one-way relay latency.

Each runs in its own process (a generator's loop lag must not count as relay latency).
Reported: the neighbour's p50/p99/max latency and whether every message arrived (target
p99 < 200 ms); the server's RSS before, at its peak, right after the load and once the
grace period has freed the dropped slots; its open file descriptors before and after;
its CPU time. One JSON object on stdout (``--out`` also writes it to a file); progress
on stderr. Loopback only. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _load
import _procs

SCHEMA = "desktop-call/bench-hardening/1"
TARGET_P99_MS = 200.0


def log(message: str) -> None:
    print(f"[hardening] {message}", file=sys.stderr, flush=True)


def server_sample(srv: _procs.Server) -> dict[str, int]:
    status = _procs.proc_status(srv.popen.pid)
    return {
        "rss_kb": status.get("VmRSS", -1),
        "peak_rss_kb": status.get("VmHWM", -1),
        "fds": _load.open_fds(srv.popen.pid),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    _procs.raise_nofile_limit()
    extra = ("--grace", str(args.grace))
    spec = _procs.ours_spec("ours", "desktop_call.server", args.loop, extra)
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="hardening-") as tmp:
        work = Path(tmp)
        srv = _procs.start(spec, work / "logs")
        try:
            return _measure(args, srv, ctx)
        finally:
            _procs.stop(srv)


def _measure(args: argparse.Namespace, srv: _procs.Server, ctx: Any) -> dict:
    pid = srv.popen.pid
    idle = _load.settled_fds(pid)  # the readiness probe's socket may still be closing
    before = server_sample(srv)
    before["fds"] = idle
    cpu_before = _procs.proc_cpu_s(pid) or 0.0
    log(f"server pid {pid} on port {srv.port}: {before}")

    out = ctx.Queue()
    stop = ctx.Event()
    ready = [ctx.Event(), ctx.Event()]
    steady = [
        ctx.Process(
            target=_load.neighbour_process,
            args=(srv.port, args.neighbour_rate, ready[0], stop, out),
        ),
        ctx.Process(
            target=_load.flood_process,
            args=(srv.port, args.flood_rate, args.flood_size, ready[1], stop, out),
        ),
    ]
    for proc in steady:
        proc.start()
    if not all(event.wait(60) for event in ready):
        raise RuntimeError("the neighbour and flood rooms did not start")
    time.sleep(args.warmup)  # the neighbour's quiet baseline, before the churn

    log(f"churning {args.connections} connections in batches of {args.batch}")
    churner = ctx.Process(
        target=_load.churn_process, args=(srv.port, args.connections, args.batch, out)
    )
    churn_started = time.monotonic_ns()
    churner.start()
    peak_connections = 0
    while churner.is_alive():
        health = _procs.healthz(srv.port, timeout=5)
        if health:
            peak_connections = max(peak_connections, health["connections"])
        churner.join(0.5)
    churn_ended = time.monotonic_ns()
    during = server_sample(srv)
    time.sleep(args.cooldown)
    stop.set()
    results: dict[str, Any] = {}
    for _ in range(3):
        kind, result = out.get(timeout=120)
        results[kind] = result
    for proc in [*steady, churner]:
        proc.join(30)
    cpu_load = (_procs.proc_cpu_s(pid) or 0.0) - cpu_before
    after_load = server_sample(srv)
    log(f"load done: {after_load}; waiting out the grace period ({args.grace} s)")

    def settled() -> bool:
        health = _procs.healthz(srv.port)
        return bool(health) and health["peers"] == 0 and health["connections"] <= 1

    settled_ok = _load.wait_for(settled, args.grace + 30, period=0.5)
    fds_back = _load.wait_for(lambda: _load.open_fds(pid) <= before["fds"], 15)
    after = server_sample(srv)
    neighbour = results["neighbour"]
    samples = neighbour.pop("samples")
    in_churn = [ms for t, ms in samples if churn_started <= t <= churn_ended]
    neighbour["during_churn"] = {
        "count": len(in_churn),
        "p50_ms": _load.percentile(in_churn, 50),
        "p99_ms": _load.percentile(in_churn, 99),
        "max_ms": max(in_churn) if in_churn else None,
    }
    return {
        "schema": SCHEMA,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg_at_start": os.getloadavg(),
        },
        "config": {
            "connections": args.connections,
            "batch": args.batch,
            "grace_s": args.grace,
            "loop": args.loop,
            "neighbour_rate_per_s": args.neighbour_rate,
            "flood_rate_per_s": args.flood_rate,
            "flood_size": args.flood_size,
        },
        "churn": results["churn"],
        "flood": results["flood"],
        "neighbour": neighbour,
        "server": {
            "rss_kb_before": before["rss_kb"],
            "rss_kb_peak": after_load["peak_rss_kb"],
            "rss_kb_end_of_churn": during["rss_kb"],
            "rss_kb_after_load": after_load["rss_kb"],
            "rss_kb_after_grace": after["rss_kb"],
            "fds_before": before["fds"],
            "fds_after": after["fds"],
            "peak_connections_seen": peak_connections,
            "cpu_s_under_load": round(cpu_load, 2),
            "settled": settled_ok and fds_back,
        },
        "targets": {
            "neighbour_p99_ms": TARGET_P99_MS,
            "neighbour_p99_ok": neighbour["p99_ms"] is not None
            and neighbour["p99_ms"] < TARGET_P99_MS,
            "every_neighbour_message": neighbour["received"] == neighbour["sent"],
            "fds_back_to_baseline": after["fds"] == before["fds"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500, help="connections at once")
    parser.add_argument("--grace", type=float, default=30.0, help="the server's --grace")
    parser.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto")
    parser.add_argument("--neighbour-rate", type=float, default=20.0)
    parser.add_argument("--flood-rate", type=float, default=48.0)
    parser.add_argument("--flood-size", type=int, default=60_000)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before the churn")
    parser.add_argument("--cooldown", type=float, default=1.0, help="seconds after it")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.batch < 1:
        parser.error("--connections and --batch must be at least 1")
    if not 0 < args.flood_rate < 50:
        parser.error("--flood-rate must stay under the server's 50 messages/s")
    return _procs.run_and_report(lambda: run(args), args.out)


if __name__ == "__main__":
    sys.exit(main())
