#!/usr/bin/env python3
"""Signaling benchmark: the project's room server beside the two anchors, in one run.

    python bench/signaling.py [--quick] [--passes N] [--rooms 10,100,500] [--idle 1000,10000]
                              [--skip-anchors partykit] [--anchors DIR]
    python bench/signaling.py --report bench/results/<stamp>.json     # Markdown tables

Servers: "ours" (``python -m desktop_call.server --loop uvloop``), "ours-asyncio" (``--loop
asyncio``), "nodews" and "partykit" (the anchors of ``<project>/../shared/anchors``, installed into
the git-ignored ``bench/.anchors/``).  Every cell gets a fresh server process; servers are
interleaved (and their order rotated every pass) so that drift of this noisy machine hits them all.

1. Load cells: R rooms x 2 clients, driven by the anchors' own client (``bench/bench.py``, the
   same for every server) in mode "sat" (M=200, 4 in flight per client) and "paced" (M=50, one
   message per client every 100 ms).  Median over the passes.
2. Idle cells: N connections (N/2 rooms of 2), each joined and welcomed, held open; server RSS
   after minus before, per connection.
3. Ratios ours/anchor per cell, and the targets of issue 2 with pass/fail.

One JSON object goes to stdout and to ``bench/results/<stamp>.json`` (the raw bench.py lines to
``<stamp>.raw.jsonl``); progress goes to stderr.  Loopback (127.0.0.1) only.  Linux only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import platform
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _procs
from _procs import PROJECT_ROOT, Server, ServerSpec, ServerStartError

BENCH_DIR = PROJECT_ROOT / "bench"
RESULTS_DIR = BENCH_DIR / "results"
ANCHORS_COPY = BENCH_DIR / ".anchors"  # git-ignored working copy with node_modules
DEFAULT_ANCHORS = PROJECT_ROOT.parent / "shared" / "anchors"
OURS_MODULE = "desktop_call.server"
SCHEMA = "desktop-call/bench-signaling/1"

OURS, OURS_ASYNCIO, NODEWS, PARTYKIT = "ours", "ours-asyncio", "nodews", "partykit"
ANCHOR_NAMES = (NODEWS, PARTYKIT)
OURS_NAMES = (OURS, OURS_ASYNCIO)

# exactly the arguments of the anchors' run_all.sh
MODES: dict[str, list[str]] = {
    "sat": ["--messages", "200", "--window", "4"],
    "paced": ["--messages", "50", "--window", "4", "--interval-ms", "100"],
}
CLIENT_ARGS = ["--concurrency", "50", "--timeout", "55"]
CLIENT_TIMEOUT_S = 75.0
SETTLE_S = 1.0  # after "ready", as run_all.sh

IDLE_PAIRS_IN_FLIGHT = 25  # per client process: rooms being joined at once
IDLE_CONNS_PER_PROC = 2500
IDLE_MAX_PROCS = 4
IDLE_TIMEOUT_S = 120.0
# PartyKit makes one Durable Object per room.  At 10,000 connections `partykit dev` answered
# HTTP 500 after ~6,000 of them (2 GB RSS, 31 s) on the 2-core machine: off by default.
PARTYKIT_IDLE_MAX = 1000

BUSY_WARN_CORES = 0.2  # other load before the start worth a warning

TARGET_CONNECT_P99_MS = 50.0
TARGET_CONNECT_ROOMS = 500
TARGET_IDLE_KIB = 20.0
TARGET_HELD = 10_000


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# =============================================================================================
# configuration


@dataclass
class Config:
    passes: int
    rooms: list[int]
    modes: list[str]
    idle_counts: list[int]
    partykit_idle_max: int
    anchors_src: Path
    skip: set[str]
    ours_module: str
    max_minutes: float
    quick: bool
    stamp: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))

    @property
    def log_dir(self) -> Path:
        return RESULTS_DIR / "logs" / self.stamp


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip() and x.strip() != "none"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="1 pass, rooms 10,100 (~2.5 min)")
    ap.add_argument("--passes", type=int, help="passes over every load cell (default 3)")
    ap.add_argument("--rooms", type=int_list, help="room counts (default 10,100,500)")
    ap.add_argument("--modes", default="sat,paced", help="load modes (default sat,paced)")
    ap.add_argument(
        "--idle",
        type=int_list,
        default=[1000, 10_000],
        help="idle connection counts, 'none' to skip (default 1000,10000)",
    )
    ap.add_argument(
        "--partykit-idle-max",
        type=int,
        default=PARTYKIT_IDLE_MAX,
        help="largest idle count also run on partykit (default %(default)s)",
    )
    ap.add_argument("--skip-anchors", default="", help="e.g. partykit or nodews,partykit")
    ap.add_argument("--skip-ours", action="store_true", help="measure the anchors only")
    ap.add_argument(
        "--anchors",
        type=Path,
        default=DEFAULT_ANCHORS,
        help="the anchors folder (default <project>/../shared/anchors)",
    )
    ap.add_argument(
        "--ours-module",
        default=OURS_MODULE,
        help="module run as `python -m MODULE` for ours (default %(default)s)",
    )
    ap.add_argument(
        "--max-minutes",
        type=float,
        default=25.0,
        help="skip the cells that would start after this much time",
    )
    ap.add_argument(
        "--report",
        type=Path,
        metavar="RESULT_JSON",
        help="print Markdown tables of a result file and exit",
    )
    return ap.parse_args(argv)


def make_config(args: argparse.Namespace) -> Config:
    skip = {s.strip() for s in args.skip_anchors.split(",") if s.strip()}
    unknown = skip - set(ANCHOR_NAMES)
    if unknown:
        sys.exit(f"--skip-anchors: unknown {sorted(unknown)}; known: {list(ANCHOR_NAMES)}")
    if args.skip_ours:
        skip |= set(OURS_NAMES)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(modes) <= set(MODES):
        sys.exit(f"--modes: known modes are {list(MODES)}")
    default_rooms = [10, 100] if args.quick else [10, 100, 500]
    return Config(
        passes=args.passes or (1 if args.quick else 3),
        rooms=args.rooms or default_rooms,
        modes=modes,
        idle_counts=args.idle,
        partykit_idle_max=args.partykit_idle_max,
        anchors_src=args.anchors.resolve(),
        skip=skip,
        ours_module=args.ours_module,
        max_minutes=args.max_minutes,
        quick=args.quick,
    )


# =============================================================================================
# anchors: copy from shared/ into bench/.anchors and `npm ci` there


def _copy_writable(src: str, dst: str) -> None:
    shutil.copyfile(src, dst)
    shutil.copymode(src, dst)
    os.chmod(dst, os.stat(dst).st_mode | 0o200)  # shared/ has no write bits


def _lock_text(folder: Path) -> str | None:
    lock = folder / "package-lock.json"
    return lock.read_text() if lock.exists() else None


def install_anchors(src: Path, names: list[str], dst: Path = ANCHORS_COPY) -> None:
    """Sync the anchors' files into dst; `npm ci` where node_modules is missing or stale."""
    if not (src / "bench" / "bench.py").exists():
        raise SystemExit(f"no anchors at {src} (use --anchors DIR)")
    stale = {
        name
        for name in names
        if not (dst / name / "node_modules").exists()
        or _lock_text(src / name) != _lock_text(dst / name)
    }
    shutil.copytree(
        src,
        dst,
        dirs_exist_ok=True,
        copy_function=_copy_writable,
        ignore=shutil.ignore_patterns("node_modules", "logs", "results", "venv"),
    )
    for name in sorted(stale):
        log(f"npm ci in {dst / name}")
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=dst / name,
            check=True,
            stdout=sys.stderr,
            stderr=sys.stderr,
        )
    if PARTYKIT in names:  # `partykit dev` binds 0.0.0.0 unless patched (idempotent)
        subprocess.run(
            ["sh", "./patch-loopback.sh"], cwd=dst / PARTYKIT, check=True, stdout=subprocess.DEVNULL
        )


# =============================================================================================
# servers


def server_specs(cfg: Config) -> tuple[list[ServerSpec], dict[str, str]]:
    """The servers of this run, and why the others are left out."""
    specs: list[ServerSpec] = []
    skipped: dict[str, str] = {name: "skipped on the command line" for name in sorted(cfg.skip)}
    ours_wanted = [n for n in OURS_NAMES if n not in cfg.skip]
    if ours_wanted and not _procs.module_available(cfg.ours_module):
        for name in ours_wanted:
            skipped[name] = f"not available: `python -m {cfg.ours_module}` not found"
        ours_wanted = []
    loops = {OURS: "uvloop", OURS_ASYNCIO: "asyncio"}
    specs += [_procs.ours_spec(n, cfg.ours_module, loops[n]) for n in ours_wanted]
    anchors_wanted = [n for n in ANCHOR_NAMES if n not in cfg.skip]
    if anchors_wanted:
        if shutil.which("node") is None or shutil.which("npm") is None:
            skipped.update({n: "node/npm not installed" for n in anchors_wanted})
        else:
            install_anchors(cfg.anchors_src, anchors_wanted)
            makers = {NODEWS: _procs.nodews_spec, PARTYKIT: _procs.partykit_spec}
            specs += [makers[n](ANCHORS_COPY) for n in anchors_wanted]
    return specs, skipped


def rotated(items: list[ServerSpec], k: int) -> list[ServerSpec]:
    k %= max(1, len(items))
    return items[k:] + items[:k]


class Budget:
    """Wall-clock budget: cells that would start after it are skipped (and listed)."""

    def __init__(self, minutes: float) -> None:
        self.t0 = time.monotonic()
        self.limit_s = minutes * 60
        self.skipped: list[str] = []

    def allows(self, what: str) -> bool:
        if time.monotonic() - self.t0 < self.limit_s:
            return True
        self.skipped.append(what)
        return False

    def elapsed_s(self) -> float:
        return time.monotonic() - self.t0


# =============================================================================================
# 1. load cells (the anchors' bench.py as the client)


def run_client(srv: Server, mode: str, rooms: int, out: Path) -> dict[str, Any]:
    """Run bench.py once against srv; returns {"rc", "result"} or {"rc", "error"}."""
    out.unlink(missing_ok=True)
    pid_args = [a for pid in srv.pids for a in ("--server-pid", str(pid))]
    cmd = [
        sys.executable,
        str(ANCHORS_COPY / "bench" / "bench.py"),
        "--url-template",
        srv.url_template,
        "--rooms",
        str(rooms),
        *CLIENT_ARGS,
        *MODES[mode],
        *pid_args,
        "--label",
        f"{srv.name}/{mode}",
        "--json-out",
        str(out),
    ]
    popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    timeline = _procs.CpuTimeline(popen.pid)
    try:
        output, _ = popen.communicate(timeout=CLIENT_TIMEOUT_S)
    except BaseException as e:  # timeout, Ctrl-C, SIGTERM: never leave the client running
        popen.kill()
        popen.communicate()
        if not isinstance(e, subprocess.TimeoutExpired):
            raise
        return {"rc": None, "error": f"client timed out after {CLIENT_TIMEOUT_S:.0f} s"}
    finally:
        t_exit = time.monotonic()
        timeline.stop()
    lines = out.read_text().splitlines() if out.exists() else []
    if not lines:
        return {"rc": popen.returncode, "error": output[-800:]}
    result = json.loads(lines[-1])
    # the message phase, counted back from the client's exit (its close phase comes last)
    msg_end = t_exit - result["close_phase_s"]
    msg_start = msg_end - result["message_phase_s"]
    for key, machine in (("client_cores_msg_phase", False), ("machine_cores_msg_phase", True)):
        cores = timeline.cores(msg_start, msg_end, machine=machine)
        result[key] = None if cores is None else round(cores, 3)
    return {"rc": popen.returncode, "result": result}


def run_fails(result: dict[str, Any]) -> int:
    """Problems in one bench.py result (the same count as the anchors' table.py)."""
    return (
        len(result["errors"])
        + result["echo_to_sender"]
        + result.get("unexpected_frames", 0)
        + (result["delivered"] != result["expected"])
        + (result["rooms_ok"] != result["rooms"])
        + (result["peer_left_seen"] != result["rooms_ok"])
    )


def load_cell(spec: ServerSpec, mode: str, rooms: int, cfg: Config) -> dict[str, Any]:
    record: dict[str, Any] = {"server": spec.name, "mode": mode, "rooms": rooms}
    try:
        with _procs.running(spec, cfg.log_dir) as srv:
            time.sleep(SETTLE_S)
            record |= run_client(srv, mode, rooms, cfg.log_dir / "client.jsonl")
    except ServerStartError as e:
        record["error"] = f"server did not start: {e}"
    except Exception as e:  # one broken cell must not lose the others
        record["error"] = f"{type(e).__name__}: {e}"
    return record


def describe_run(record: dict[str, Any]) -> str:
    r = record.get("result")
    if r is None:
        return f"FAILED: {record.get('error', '?')[-300:]}"
    fails = run_fails(r)
    return (
        f"connect p99 {r['connect_ms']['p99']} ms, relay p50/p99 {r['latency_ms']['p50']}/"
        f"{r['latency_ms']['p99']} ms, {r['msgs_per_s']} msg/s, server "
        f"{r['server_cpu_us_per_msg']} us/msg, client {r['client_cores_msg_phase']} cores"
        + (f", {fails} FAILS: {r['errors'][:3]}" if fails else "")
    )


def run_load_cells(
    cfg: Config,
    specs: list[ServerSpec],
    budget: Budget,
    raw_path: Path,
    records: list[dict[str, Any]],
) -> None:
    """Every load cell, appended to records (and raw_path) as soon as it is measured."""
    total = cfg.passes * len(cfg.rooms) * len(cfg.modes) * len(specs)
    for p in range(cfg.passes):
        for rooms in cfg.rooms:
            for mode in cfg.modes:
                for spec in rotated(specs, p):
                    what = f"pass {p + 1}/{cfg.passes} {spec.name} {mode} rooms={rooms}"
                    if not budget.allows(what):
                        continue
                    log(f"[{len(records) + 1}/{total}] {what}")
                    record = {"pass": p + 1, **load_cell(spec, mode, rooms, cfg)}
                    log(f"    {describe_run(record)}")
                    records.append(record)
                    with raw_path.open("a") as f:
                        f.write(json.dumps(record) + "\n")


def run_metrics(r: dict[str, Any]) -> dict[str, Any]:
    """The per-run figures that the cells report (medians are taken over these)."""
    peak_by_proc: dict[str, float] = {}
    for s in r["server"]:
        name = s.get("Name") or str(s["pid"])
        peak_by_proc[name] = peak_by_proc.get(name, 0.0) + s.get("VmHWM", 0) / 1024
    return {
        **{f"connect_{k}": r["connect_ms"][k] for k in ("p50", "p95", "p99")},
        **{f"relay_{k}": r["latency_ms"][k] for k in ("p50", "p95", "p99")},
        "msgs_per_s": r["msgs_per_s"],
        "cpu_us_per_msg": r["server_cpu_us_per_msg"],
        "peak_rss_mib": sum(peak_by_proc.values()),
        **{f"peak_rss_mib.{k}": v for k, v in peak_by_proc.items()},
        "server_cores": (
            r["server_msg_phase_cpu_s"] / r["message_phase_s"]
            if r["server_msg_phase_cpu_s"] is not None and r["message_phase_s"]
            else None
        ),
        "client_cores": r.get("client_cores_msg_phase"),
        "machine_cores": r.get("machine_cores_msg_phase"),
        "fails": run_fails(r),
    }


def median(values: Iterable[float | None], ndigits: int = 2) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), ndigits) if vals else None


def run_errors(record: dict[str, Any]) -> list[str]:
    if "result" not in record:
        return [str(record.get("error", "no result"))]
    return list(record["result"]["errors"])


def aggregate_cell(
    server: str, mode: str, rooms: int, records: list[dict[str, Any]]
) -> dict[str, Any]:
    runs = [run_metrics(rec["result"]) for rec in records if "result" in rec]

    def med(key: str, ndigits: int = 2) -> float | None:
        return median((m.get(key) for m in runs), ndigits)

    by_proc = sorted({k.split(".", 1)[1] for m in runs for k in m if k.startswith("peak_rss_mib.")})
    tput = [m["msgs_per_s"] for m in runs if m["msgs_per_s"] is not None]
    return {
        "server": server,
        "mode": mode,
        "rooms": rooms,
        "n": len(runs),
        "failed_runs": len(records) - len(runs),
        "fails": sum(m["fails"] for m in runs),
        "connect_ms": {k: med(f"connect_{k}") for k in ("p50", "p95", "p99")},
        "relay_ms": {k: med(f"relay_{k}") for k in ("p50", "p95", "p99")},
        "msgs_per_s": {
            "median": med("msgs_per_s", 0),
            "min": min(tput, default=None),
            "max": max(tput, default=None),
        },
        "server_cpu_us_per_msg": med("cpu_us_per_msg", 1),
        "server_peak_rss_mib": med("peak_rss_mib", 1),
        "server_peak_rss_mib_by_proc": {p: med(f"peak_rss_mib.{p}", 1) for p in by_proc},
        # average cores busy during the message phase: the client saturates at ~1 core
        "server_cores_msg_phase": med("server_cores"),
        "client_cores_msg_phase": med("client_cores"),
        # the whole machine: well above server + client means something else was running
        "machine_cores_msg_phase": med("machine_cores"),
        "errors": [e for rec in records for e in run_errors(rec)][:5],
    }


def aggregate_cells(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault((rec["server"], rec["mode"], rec["rooms"]), []).append(rec)
    order = {name: i for i, name in enumerate((*OURS_NAMES, *ANCHOR_NAMES))}
    keys = sorted(groups, key=lambda k: (k[2], list(MODES).index(k[1]), order.get(k[0], 99)))
    return [aggregate_cell(*key, groups[key]) for key in keys]


# =============================================================================================
# 2. idle connections


async def _join(url: str, conns: list[Any]) -> bool:
    """Open one connection, join, wait for welcome; the connection stays in conns."""
    from websockets.asyncio.client import connect

    ws = await connect(url, compression=None, ping_interval=None, open_timeout=30, close_timeout=1)
    conns.append(ws)
    await ws.send(json.dumps({"type": "join", "v": 1, "name": "idle"}))
    reply = json.loads(await ws.recv())
    return reply.get("type") == "welcome"


async def _hold_pairs(
    url_template: str, rooms: list[str], deadline: float, report: Any, release: Any
) -> None:
    """Join both peers of every room, report, then hold everything open until released."""
    conns: list[Any] = []
    counts = {"welcomes": 0}
    errors: list[str] = []
    sem = asyncio.Semaphore(IDLE_PAIRS_IN_FLIGHT)

    async def pair(room: str) -> None:
        async with sem:
            url = url_template.format(room=room)
            for _ in range(2):
                welcomed = await _join(url, conns)  # not `+= await`: that loses updates
                counts["welcomes"] += welcomed

    t0 = time.monotonic()
    tasks = [asyncio.ensure_future(pair(room)) for room in rooms]
    done, pending = await asyncio.wait(tasks, timeout=max(1.0, deadline - time.time()))
    for task in pending:
        task.cancel()
    errors += [f"{type(e).__name__}: {e}" for t in done if (e := t.exception())]
    if pending:
        errors.append(f"deadline: {len(pending)} rooms not joined")
    report.put(
        {
            "welcomes": counts["welcomes"],
            "open": len(conns),
            "errors": errors[:5],
            "n_errors": len(errors),
            "connect_s": time.monotonic() - t0,
        }
    )
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, release.wait, IDLE_TIMEOUT_S + 60)


def _idle_worker(
    url_template: str, rooms: list[str], deadline: float, report: Any, release: Any
) -> None:
    _procs.raise_nofile_limit()
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        asyncio.run(_hold_pairs(url_template, rooms, deadline, report, release))
    except BaseException as e:  # report, never hang
        report.put(
            {
                "welcomes": 0,
                "open": 0,
                "errors": [f"worker: {e!r}"],
                "n_errors": 1,
                "connect_s": None,
            }
        )
    os._exit(0)  # the kernel drops the sockets: no closing handshakes to wait for


def _next_report(report: Any) -> dict[str, Any]:
    try:
        return dict(report.get(timeout=IDLE_TIMEOUT_S + 30))
    except queue.Empty:
        return {
            "welcomes": 0,
            "open": 0,
            "errors": ["worker did not report"],
            "n_errors": 1,
            "connect_s": None,
        }


@contextlib.contextmanager
def holding(url_template: str, n_conns: int) -> Iterator[dict[str, Any]]:
    """n_conns connections (n_conns/2 rooms of 2) held open by a few client processes."""
    tag = f"{os.getpid()}-{int(time.time())}"
    rooms = [f"idle-{tag}-{i}" for i in range(n_conns // 2)]
    n_procs = max(1, min(IDLE_MAX_PROCS, math.ceil(n_conns / IDLE_CONNS_PER_PROC)))
    ctx = mp.get_context("fork")
    report, release = ctx.Queue(), ctx.Event()
    deadline = time.time() + IDLE_TIMEOUT_S
    workers = [
        ctx.Process(
            target=_idle_worker,
            daemon=True,
            args=(url_template, rooms[i::n_procs], deadline, report, release),
        )
        for i in range(n_procs)
    ]
    try:
        for w in workers:
            w.start()
        reports = [_next_report(report) for _ in workers]
        yield {
            "procs": n_procs,
            "welcomes": sum(r["welcomes"] for r in reports),
            "open": sum(r["open"] for r in reports),
            "n_errors": sum(r["n_errors"] for r in reports),
            "errors": [e for r in reports for e in r["errors"]][:5],
            "connect_s": max((r["connect_s"] or 0.0 for r in reports), default=None),
        }
    finally:
        release.set()
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.kill()
                w.join(timeout=2)


def warm_up(url_template: str) -> None:
    """One room joined and left, so that lazy imports and first-use caches are in the baseline."""

    async def once() -> None:
        conns: list[Any] = []
        url = url_template.format(room=f"warmup-{os.getpid()}-{int(time.time())}")
        try:
            await _join(url, conns)
            await _join(url, conns)
        finally:
            await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)

    asyncio.run(once())


def idle_cell(spec: ServerSpec, n_conns: int, cfg: Config) -> dict[str, Any]:
    record: dict[str, Any] = {"server": spec.name, "connections": n_conns}
    try:
        with _procs.running(spec, cfg.log_dir) as srv:
            warm_up(srv.url_template)
            time.sleep(0.5)
            before = _procs.rss_kb(srv.pids)
            with holding(srv.url_template, n_conns) as held:
                time.sleep(1.0)
                after = _procs.rss_kb(srv.pids)
                health = _procs.healthz(srv.port, timeout=10) if srv.has_healthz else None
    except ServerStartError as e:
        return record | {"error": f"server did not start: {e}"}
    except Exception as e:  # one broken cell must not lose the others
        return record | {"error": f"{type(e).__name__}: {e}"}
    per_conn = (after - before) / held["welcomes"] if held["welcomes"] else None
    return record | {
        "welcomes": held["welcomes"],
        "healthz": health,
        # ours counts the /healthz request's own connection too: hence >=
        "held_all": held["welcomes"] == n_conns
        and (health is None or health.get("connections", 0) >= n_conns),
        "rss_before_mib": round(before / 1024, 1),
        "rss_after_mib": round(after / 1024, 1),
        "kib_per_conn": None if per_conn is None else round(per_conn, 2),
        "connect_s": None if held["connect_s"] is None else round(held["connect_s"], 2),
        "client_procs": held["procs"],
        "n_errors": held["n_errors"],
        "errors": held["errors"],
    }


def idle_servers(
    specs: list[ServerSpec], n_conns: int, partykit_max: int
) -> tuple[list[ServerSpec], list[str]]:
    """Which servers get an idle cell of n_conns (PartyKit only up to partykit_max)."""
    use = [s for s in specs if s.name != PARTYKIT or n_conns <= partykit_max]
    left_out = [s.name for s in specs if s not in use]
    return use, left_out


def run_idle_cells(
    cfg: Config,
    specs: list[ServerSpec],
    budget: Budget,
    skipped: dict[str, str],
    cells: list[dict[str, Any]],
) -> None:
    """Every idle cell, appended to cells as soon as it is measured."""
    for n_conns in cfg.idle_counts:
        use, left_out = idle_servers(specs, n_conns, cfg.partykit_idle_max)
        for name in left_out:
            skipped[f"idle/{name}/{n_conns}"] = (
                "one Durable Object per room: at 10,000 connections partykit dev answered "
                "HTTP 500 after ~6,000 (2 GB RSS, 31 s) on a 2-core machine; "
                "opt in with --partykit-idle-max"
            )
        for spec in use:
            what = f"idle {spec.name} {n_conns} connections"
            if not budget.allows(what):
                continue
            log(what)
            cell = idle_cell(spec, n_conns, cfg)
            log(f"    {describe_idle(cell)}")
            cells.append(cell)


def describe_idle(cell: dict[str, Any]) -> str:
    if "error" in cell:
        return f"FAILED: {cell['error'][-300:]}"
    health = cell["healthz"]
    return (
        f"{cell['welcomes']} welcomes"
        + (f", healthz connections {health.get('connections')}" if health else "")
        + f" in {cell['connect_s']} s; RSS {cell['rss_before_mib']} -> "
        f"{cell['rss_after_mib']} MiB = {cell['kib_per_conn']} KiB/conn"
        + (f"; {cell['n_errors']} errors {cell['errors'][:2]}" if cell["n_errors"] else "")
    )


# =============================================================================================
# 3. ratios and targets


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def cell_index(cells: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    return {(c["server"], c["mode"], c["rooms"]): c for c in cells}


def compare(ours: dict[str, Any], anchor: dict[str, Any]) -> dict[str, float | None]:
    return {
        "cpu_us_per_msg": ratio(ours["server_cpu_us_per_msg"], anchor["server_cpu_us_per_msg"]),
        "connect_p99": ratio(ours["connect_ms"]["p99"], anchor["connect_ms"]["p99"]),
        "relay_p99": ratio(ours["relay_ms"]["p99"], anchor["relay_ms"]["p99"]),
        "peak_rss": ratio(ours["server_peak_rss_mib"], anchor["server_peak_rss_mib"]),
    }


def ratios(cells: list[dict[str, Any]], idle: list[dict[str, Any]]) -> dict[str, Any]:
    """ours/anchor for every load cell and every idle count (below 1 = ours is lower)."""
    index = cell_index(cells)
    load = [
        {
            "server": o,
            "vs": a,
            "mode": mode,
            "rooms": rooms,
            **compare(index[(o, mode, rooms)], index[(a, mode, rooms)]),
        }
        for (o, mode, rooms) in index
        if o in OURS_NAMES
        for a in ANCHOR_NAMES
        if (a, mode, rooms) in index
    ]
    per_conn = {(c["server"], c["connections"]): c.get("kib_per_conn") for c in idle}
    idle_ratios = [
        {
            "server": o,
            "vs": a,
            "connections": n,
            "kib_per_conn": ratio(per_conn[(o, n)], per_conn[(a, n)]),
        }
        for (o, n) in per_conn
        if o in OURS_NAMES
        for a in ANCHOR_NAMES
        if (a, n) in per_conn
    ]
    return {"load": load, "idle": idle_ratios}


def verdict(value: Any, ok: bool | None, **extra: Any) -> dict[str, Any]:
    return {"value": value, "pass": ok, **extra}


def target_cpu(server: str, cells: list[dict[str, Any]]) -> dict[str, Any]:
    index = cell_index(cells)
    per_cell = [
        {
            "mode": mode,
            "rooms": rooms,
            "ours": index[(server, mode, rooms)]["server_cpu_us_per_msg"],
            "nodews": c["server_cpu_us_per_msg"],
            "ratio": ratio(
                index[(server, mode, rooms)]["server_cpu_us_per_msg"], c["server_cpu_us_per_msg"]
            ),
        }
        for (name, mode, rooms), c in index.items()
        if name == NODEWS and (server, mode, rooms) in index
    ]
    rs = [c["ratio"] for c in per_cell]
    if not per_cell or None in rs:
        return verdict(
            None, None, target="<= nodews in every load cell", cells=per_cell, note="not measured"
        )
    return verdict(
        max(rs),
        max(rs) <= 1.0,
        unit="worst ratio ours/nodews",
        target="<= nodews in every load cell",
        cells=per_cell,
    )


def target_connect(server: str, cells: list[dict[str, Any]]) -> dict[str, Any]:
    p99 = {
        c["mode"]: c["connect_ms"]["p99"]
        for c in cells
        if c["server"] == server and c["rooms"] == TARGET_CONNECT_ROOMS
    }
    target = f"<= {TARGET_CONNECT_P99_MS:.0f} ms at {TARGET_CONNECT_ROOMS} rooms"
    if not p99 or None in p99.values():
        return verdict(
            None,
            None,
            target=target,
            per_mode=p99,
            note=f"not measured (no {TARGET_CONNECT_ROOMS}-room cell in this run)",
        )
    worst = max(v for v in p99.values() if v is not None)
    return verdict(
        worst, worst <= TARGET_CONNECT_P99_MS, unit="ms, worst mode", target=target, per_mode=p99
    )


def target_idle(server: str, idle: list[dict[str, Any]]) -> dict[str, Any]:
    mine = sorted(
        (c for c in idle if c["server"] == server and c.get("kib_per_conn")),
        key=lambda c: c["connections"],
    )
    target = f"<= {TARGET_IDLE_KIB:.0f} KiB per idle connection"
    if not mine:
        return verdict(None, None, target=target, note="not measured")
    largest = mine[-1]
    return verdict(
        largest["kib_per_conn"],
        largest["kib_per_conn"] <= TARGET_IDLE_KIB,
        unit=f"KiB/conn at {largest['connections']} connections",
        target=target,
        per_count={c["connections"]: c["kib_per_conn"] for c in mine},
    )


def target_held(server: str, idle: list[dict[str, Any]]) -> dict[str, Any]:
    cell = next(
        (
            c
            for c in idle
            if c["server"] == server and c["connections"] == TARGET_HELD and "error" not in c
        ),
        None,
    )
    target = f"{TARGET_HELD} concurrent connections held"
    if cell is None:
        return verdict(None, None, target=target, note="not measured")
    health = cell["healthz"] or {}
    return verdict(
        cell["welcomes"],
        cell["held_all"],
        unit="welcomes received",
        target=target,
        healthz_connections=health.get("connections"),
    )


def targets(cells: list[dict[str, Any]], idle: list[dict[str, Any]]) -> dict[str, Any]:
    servers = [
        s
        for s in OURS_NAMES
        if any(c["server"] == s for c in cells) or any(c["server"] == s for c in idle)
    ]
    return {
        s: {
            "cpu_per_msg_le_nodews": target_cpu(s, cells),
            "connect_p99_le_50ms_at_500_rooms": target_connect(s, cells),
            "idle_kib_per_conn_le_20": target_idle(s, idle),
            "holds_10000_connections": target_held(s, idle),
        }
        for s in servers
    }


# =============================================================================================
# output


def _run(cmd: list[str]) -> str | None:
    try:
        res = subprocess.run(
            cmd, capture_output=True, text=True, timeout=10, check=False, cwd=PROJECT_ROOT
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def _meminfo_mib() -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return None


def busy_cores(seconds: float = 2.0) -> float:
    """Cores busy on the whole machine over a short while (before the benchmark starts)."""
    b0 = _procs.machine_busy_s()
    time.sleep(seconds)
    return round((_procs.machine_busy_s() - b0) / seconds, 2)


def machine_info() -> dict[str, Any]:
    import websockets

    busy = busy_cores()
    if busy > BUSY_WARN_CORES:
        log(f"WARNING: {busy} cores already busy before the start: the numbers will be noisy")
    return {
        "busy_cores_before": busy,
        "cpus": os.cpu_count(),
        "mem_mib": _meminfo_mib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": _run(["node", "--version"]),
        "websockets": websockets.__version__,
        "loadavg": os.getloadavg(),
        "nofile_limit": _procs.raise_nofile_limit(),
        "git": _run(["git", "describe", "--always", "--dirty"]),
        "note": "2 cores shared by server and client, noisy: compare servers within one run",
    }


def payload_sizes(records: list[dict[str, Any]]) -> dict[str, Any]:
    r = next((rec["result"] for rec in records if "result" in rec), None)
    keys = ("sdp_frame_bytes", "sdp_data_bytes", "ice_frame_bytes", "ice_data_bytes", "ice_per_sdp")
    return {k: r[k] for k in keys} if r else {}


def write_result(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2)
    path.write_text(text + "\n")
    print(text, flush=True)


def _fmt(v: Any, nd: int = 0) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _triple(d: dict[str, Any], nd: int = 0) -> str:
    return "/".join(_fmt(d.get(k), nd) for k in ("p50", "p95", "p99"))


def markdown(result: dict[str, Any]) -> str:
    """The tables of docs/benchmarks.md from one result."""
    out = [
        "| server | mode | rooms | n | connect p50/p95/p99 ms | relay p50/p95/p99 ms | msg/s "
        "| server CPU µs/msg | server peak RSS MiB | cores server/client/machine | fails |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result["cells"]:
        out.append(
            f"| {c['server']} | {c['mode']} | {c['rooms']} | {c['n']} "
            f"| {_triple(c['connect_ms'])} | {_triple(c['relay_ms'], 1)} "
            f"| {_fmt(c['msgs_per_s']['median'])} | {_fmt(c['server_cpu_us_per_msg'])} "
            f"| {_fmt(c['server_peak_rss_mib'])} | {_fmt(c['server_cores_msg_phase'], 2)}/"
            f"{_fmt(c['client_cores_msg_phase'], 2)}/{_fmt(c['machine_cores_msg_phase'], 2)} "
            f"| {c['fails'] + c['failed_runs']} |"
        )
    out += [
        "",
        "| ours/anchor | mode | rooms | CPU µs/msg | connect p99 | relay p99 | peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["ratios"]["load"]:
        out.append(
            f"| {r['server']}/{r['vs']} | {r['mode']} | {r['rooms']} "
            f"| {_fmt(r['cpu_us_per_msg'], 2)} | {_fmt(r['connect_p99'], 2)} "
            f"| {_fmt(r['relay_p99'], 2)} | {_fmt(r['peak_rss'], 2)} |"
        )
    out += [
        "",
        "| server | connections | welcomes | healthz connections | RSS before → after MiB "
        "| KiB/conn | join time s |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in result["idle"]:
        health = (c.get("healthz") or {}).get("connections")
        out.append(
            f"| {c['server']} | {c['connections']} | {c.get('welcomes', '-')} "
            f"| {'-' if health is None else health} "
            f"| {c.get('rss_before_mib', '-')} → {c.get('rss_after_mib', '-')} "
            f"| {_fmt(c.get('kib_per_conn'), 1)} | {_fmt(c.get('connect_s'), 1)} |"
        )
    out += ["", "| server | target | measured | pass |", "|---|---|---|---|"]
    for server, ts in result["targets"].items():
        for t in ts.values():
            shown = "-" if t["value"] is None else f"{t['value']} {t.get('unit', '')}".strip()
            ok = {True: "yes", False: "**no**", None: "not measured"}[t["pass"]]
            out.append(f"| {server} | {t['target']} | {shown} | {ok} |")
    if result.get("skipped"):
        out += ["", "Left out: " + "; ".join(f"{k}: {v}" for k, v in result["skipped"].items())]
    return "\n".join(out)


# =============================================================================================
# main


def measure(cfg: Config) -> dict[str, Any]:
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    budget = Budget(cfg.max_minutes)
    raw_path = RESULTS_DIR / f"{cfg.stamp}.raw.jsonl"
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    specs, skipped = server_specs(cfg)
    log(f"servers: {[s.name for s in specs]}; left out: {skipped or 'none'}")
    records: list[dict[str, Any]] = []
    idle: list[dict[str, Any]] = []
    interrupted = False
    try:
        run_load_cells(cfg, specs, budget, raw_path, records)
        run_idle_cells(cfg, specs, budget, skipped, idle)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: writing what was measured so far")
    cells = aggregate_cells(records)
    return {
        "schema": SCHEMA,
        "started": started,
        "duration_s": round(budget.elapsed_s(), 1),
        "interrupted": interrupted,
        "machine": machine | {"loadavg_end": os.getloadavg()},
        "config": {
            "passes": cfg.passes,
            "rooms": cfg.rooms,
            "modes": cfg.modes,
            "mode_args": {m: MODES[m] for m in cfg.modes},
            "client_args": CLIENT_ARGS,
            "idle_counts": cfg.idle_counts,
            "quick": cfg.quick,
            "servers": [s.name for s in specs],
            "ours_module": cfg.ours_module,
            "payload": payload_sizes(records),
        },
        "skipped": skipped
        | {f"budget: {w}": f"over --max-minutes {cfg.max_minutes}" for w in budget.skipped},
        "cells": cells,
        "idle": idle,
        "ratios": ratios(cells, idle),
        "targets": targets(cells, idle),
        "raw_runs": str(raw_path.relative_to(PROJECT_ROOT)),
    }


def _sigterm(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        print(markdown(json.loads(args.report.read_text())))
        return 0
    cfg = make_config(args)
    _procs.raise_nofile_limit()  # servers and clients inherit it
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    try:
        result = measure(cfg)
    finally:
        _procs.stop_all()
    out = RESULTS_DIR / f"{cfg.stamp}.json"
    write_result(result, out)
    log(f"wrote {out.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
