#!/usr/bin/env python3
"""UI benchmark (issue 4): a call between two app windows beside the same call headless.

    python bench/ui.py [--passes 2] [--seconds 30] [--quick]     # ~4.5 min (quick: ~1 min)
    python bench/ui.py --markdown bench/results/ui-<stamp>.json  # tables for the docs

Rows: 480p (640x480) and 720p (1280x720).  In every pass and row, interleaved (the order of the
two kinds flips from row to row and from pass to pass, so that drift of the machine hits both):

- gui: two app processes under ``QT_QPA_PLATFORM=offscreen``, each
  ``python -m desktop_call --join ID --source testpattern --host 127.0.0.1 --port P --name A|B
  --duration S --report F --settings-file F.ini``, the INI giving ``resolution`` and
  ``ice_servers=none``.  A is started first and hosts the room server on P (embedded); B is
  started once A waits in the room and shares A's server.
- headless: a fresh room server (``python -m desktop_call.server``, ready on GET /healthz) and
  two ``python -m desktop_call --headless --join ID --server ws://... --resolution WxH
  --ice-servers none --duration S --report F`` processes, A first, then B.

Every app process is started through a small wrapper (``python -c TRACER mode args...``) that
runs the app's own ``desktop_call.__main__.main`` unchanged and only observes it:

- gui: the app's ``LagMonitor`` (the 10 ms asyncio timer on the Qt main thread, whose summary
  is the report's ``event_loop_lag_ms``) gets a sample list that also keeps, per sample, the
  time and the counters ``remote_view.frames_painted``, ``local_view.frames_painted`` and the
  remote receivers' ``frames_received``/``frames_delivered``; state changes are printed.
- headless: the same 10 ms timer, on the headless asyncio loop (the headless mode has none of its
  own), sampling the receivers' counters; the headless mode prints its states itself.

The wrapper writes these samples to a trace file when the process ends, so the numbers below
are cut to the media window: from the later "connected" of the two sides + 1 s to the earlier
"connected" + S - 0.3 s (each process hangs up S s after its own "connected").

Measured per process over the window: event-loop lag p50/p99/max (ms), frames painted per
second (remote view; gui only), frames received per second, CPU (/proc/<pid>/stat utime+stime
every 0.1 s, in % of one core).  Per row: the medians over passes, and the CPU ratio gui /
headless (both processes of the call summed, per pass, then the median of the per-pass ratios).
The app's own whole-run report figures (painted_fps, event_loop_lag_ms, cpu_seconds, max_rss_kb,
video_fps, latency_ms) are kept beside them.  Targets (issue 4, the 720p row): lag p99 <= 16 ms
(the worse side), >= 29 painted fps (the worse side), CPU <= 1.2x headless.

This machine is shared: before measuring, the harness waits (``--wait-quiet`` minutes, polling
every 30 s) until no other benchmark, app or test process runs and the machine is idle, and
records how busy it was; before each call it waits again (``--gate-wait`` s at most).  Each call
records the cores the whole machine used during its window and how much of that was not ours
(``other_cores_busy``); a call during which others used more than ``--max-other-cores`` is
measured again (``--retries`` times at most; the discarded attempts are listed in the JSON).

One JSON object goes to stdout and to ``bench/results/ui-<stamp>.json`` (children's output and
traces under ``bench/results/logs/ui-<stamp>/``); progress goes to stderr.  127.0.0.1 only.
Linux only (/proc).  Every process started here is killed on error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from _children import (
    HOST,
    Child,
    free_port,
    kill_all,
    kill_group,
    live_pids,
    log,
    read_json,
    spawn,
    start_server,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
SCHEMA = "desktop-call/bench-ui/1"

sys.path.insert(0, str(PROJECT_ROOT))

RESOLUTIONS = {"480p": "640x480", "720p": "1280x720"}
KINDS = ("gui", "headless")

CPU_PERIOD_S = 0.1
SETTLE_S = 1.0  # decoders, first key frame, first paints: skipped at the window's start
WINDOW_END_MARGIN_S = 0.3  # the processes hang up at connected + duration
JOIN_TIMEOUT_S = 60.0  # A's start-up until "state: waiting" (PySide6 imports take seconds)
EXIT_GRACE_S = 90.0  # beyond the duration: start-up, connecting, hang-up, report
EXIT_AFTER_REPORT_S = 15.0  # a process still running this long after its report and trace: hung
QUIET_POLL_S = 30.0
QUIET_BUSY_CORES = 0.3
GATE_MAX_WAIT_S = 180.0  # before each call: wait this long at most for a quiet machine
GATE_POLL_S = 5.0
MAX_OTHER_CORES = 0.3  # a call during which other processes used more is measured again
RETRIES = 2

TARGET_LAG_P99_MS = 16.0
TARGET_PAINTED_FPS = 29.0
TARGET_CPU_RATIO = 1.2

TRACE_ENV = "DESKTOP_CALL_BENCH_TRACE"

# Runs the app's entry point unchanged; only observes (see the module docstring).
TRACER = r"""
import asyncio, atexit, json, os, sys, time

TRACE = os.environ["DESKTOP_CALL_BENCH_TRACE"]
MODE, ARGV = sys.argv[1], sys.argv[2:]
samples = []   # (monotonic s, lag s, painted remote, painted local, received, delivered)
info = {"mode": MODE}
held = {}

def dump():
    try:
        tmp = TRACE + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"info": info, "samples": samples}, f)
        os.replace(tmp, TRACE)
    except Exception as exc:
        print(f"bench tracer: {exc}", file=sys.stderr)

atexit.register(dump)

def receiver_counts(receivers):
    return (sum(r.frames_received for r in receivers),
            sum(r.frames_delivered for r in receivers))

if MODE == "gui":
    from desktop_call.ui import app as ui_app

    def gui_counts():
        app = held.get("app")
        window = getattr(app, "window", None)
        controller = getattr(app, "controller", None)
        last = samples[-1] if samples else (0, 0, 0, 0, 0, 0)
        painted = (window.remote_view.frames_painted, window.local_view.frames_painted) \
            if window is not None else last[2:4]
        got = receiver_counts(controller.video_receivers) if controller is not None else last[4:6]
        return (*painted, *got)

    class TracingSamples(list):
        def append(self, lag):
            super().append(lag)
            samples.append((time.monotonic(), lag, *gui_counts()))

    class TracingLag(ui_app.LagMonitor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.samples = TracingSamples()
            info["lag_interval_s"] = self.interval

        async def stop(self):
            await super().stop()
            dump()

    ui_app.LagMonitor = TracingLag
    original_init = ui_app.DesktopCallApp.__init__
    original_on_state = ui_app.DesktopCallApp._on_state

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        held["app"] = self

    def on_state(self, record, state):
        original_on_state(self, record, state)
        print(f"state: {state}", flush=True)
        window = self.window
        if state == "connected" and window is not None and "window_size" not in info:
            from PySide6.QtGui import QGuiApplication
            screen = QGuiApplication.primaryScreen()
            info.update(
                platform=QGuiApplication.platformName(),
                screen=[screen.size().width(), screen.size().height()] if screen else None,
                device_pixel_ratio=window.devicePixelRatio(),
                window_size=[window.width(), window.height()],
                remote_view_size=[window.remote_view.width(), window.remote_view.height()],
                local_view_size=[window.local_view.width(), window.local_view.height()],
            )

    ui_app.DesktopCallApp.__init__ = init
    ui_app.DesktopCallApp._on_state = on_state
else:
    from desktop_call import headless

    original_run = headless.run
    original_on_remote_track = headless._Media.on_remote_track

    def on_remote_track(self, track):
        held["media"] = self
        original_on_remote_track(self, track)

    async def lag_monitor(interval=0.01):
        # The same timer as the app's LagMonitor, on the headless loop.
        info["lag_interval_s"] = interval
        loop = asyncio.get_running_loop()
        while True:
            planned = loop.time() + interval
            await asyncio.sleep(interval)
            lag = max(0.0, loop.time() - planned)
            media = held.get("media")
            got = receiver_counts(media.video_receivers) if media is not None else (0, 0)
            samples.append((time.monotonic(), lag, 0, 0, *got))

    async def run(args):
        monitor = asyncio.ensure_future(lag_monitor())
        try:
            return await original_run(args)
        finally:
            monitor.cancel()
            try:
                await monitor
            except asyncio.CancelledError:
                pass
            dump()

    headless._Media.on_remote_track = on_remote_track
    headless.run = run

from desktop_call.__main__ import main
sys.exit(main(ARGV))
"""


# =============================================================================================
# /proc


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int, thread: int | None = None) -> float | None:
    """utime + stime of a process (all its threads), or of one of its threads, s; None once it
    is gone."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    try:
        stat = Path(path).read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s() -> float:
    """CPU time all cores spent busy since boot, s (first line of /proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLK_TCK


def busy_cores(seconds: float = 2.0) -> float:
    b0, t0 = machine_busy_s(), time.monotonic()
    time.sleep(seconds)
    return round((machine_busy_s() - b0) / (time.monotonic() - t0), 2)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def competing_processes() -> list[dict[str, Any]]:
    """Other benchmarks or app processes on this machine (not this harness or its children)."""
    mine = {os.getpid(), *live_pids()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        cmd = _cmdline(int(entry.name))
        if not cmd or "python" not in cmd.split(" ", 1)[0]:
            continue
        if any(word in cmd for word in ("desktop_call", "bench/", "py-spy", "pytest")):
            found.append({"pid": int(entry.name), "cmd": cmd[:160]})
    return found


class Sampler:
    """Samples the CPU time of the watched pids and of the machine every 0.1 s, in a thread."""

    def __init__(self) -> None:
        self.cpu: dict[int, list[tuple[float, float]]] = {}
        self.main: dict[int, list[tuple[float, float]]] = {}  # the main thread (tid == pid)
        self.machine: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._thread.start()

    def watch(self, pid: int) -> None:
        with self._lock:
            self.cpu.setdefault(pid, [])
            self.main.setdefault(pid, [])

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                pids = list(self.cpu)
            for pid in pids:
                cpu = proc_cpu_s(pid)
                main = proc_cpu_s(pid, pid)
                now = time.monotonic()
                with self._lock:
                    if cpu is not None:
                        self.cpu[pid].append((now, cpu))
                    if main is not None:
                        self.main[pid].append((now, main))
            with contextlib.suppress(OSError):
                self.machine.append((time.monotonic(), machine_busy_s()))
            self._stop.wait(CPU_PERIOD_S)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _at(samples: list[tuple[float, float]], t: float) -> float | None:
        """Linear between the samples around t; None outside them (no extrapolation)."""
        if not samples or t < samples[0][0] - CPU_PERIOD_S or t > samples[-1][0] + CPU_PERIOD_S:
            return None
        before = [s for s in samples if s[0] <= t] or samples[:1]
        after = [s for s in samples if s[0] >= t] or samples[-1:]
        (t0, v0), (t1, v1) = before[-1], after[0]
        return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)

    def cpu_between(
        self, pid: int, start: float, end: float, main_thread: bool = False
    ) -> float | None:
        with self._lock:
            samples = list((self.main if main_thread else self.cpu).get(pid, []))
        c0, c1 = self._at(samples, start), self._at(samples, end)
        return None if c0 is None or c1 is None else c1 - c0

    def machine_between(self, start: float, end: float) -> float | None:
        c0, c1 = self._at(self.machine, start), self._at(self.machine, end)
        return None if c0 is None or c1 is None else c1 - c0


# =============================================================================================
# one call


def settings_ini(path: Path, name: str, port: int, resolution: str) -> None:
    """The app's settings (QSettings INI keys are the Settings field names)."""
    path.write_text(
        "[General]\n"
        f"display_name={name}\n"
        "server_mode=embedded\n"
        f"embedded_host={HOST}\n"
        f"embedded_port={port}\n"
        "ice_servers=none\n"
        "video_codec=auto\n"
        f"resolution={resolution}\n"
    )


def call_argv(
    kind: str, name: str, call_id: str, port: int, resolution: str, seconds: float, run_dir: Path
) -> list[str]:
    head = [sys.executable, "-c", TRACER, kind, "--join", call_id, "--name", name]
    tail = ["--duration", f"{seconds:g}", "--report", str(run_dir / f"{name}.json")]
    if kind == "gui":
        ini = run_dir / f"{name}.ini"
        settings_ini(ini, name, port, resolution)
        return [
            *head,
            "--source",
            "testpattern",
            "--host",
            HOST,
            "--port",
            str(port),
            "--settings-file",
            str(ini),
            *tail,
        ]
    return [
        *head,
        "--headless",
        "--server",
        f"ws://{HOST}:{port}",
        "--resolution",
        resolution,
        "--ice-servers",
        "none",
        *tail,
    ]


def run_call(kind: str, label: str, seconds: float, env: dict[str, str], run_dir: Path) -> dict:
    """One call of one kind: A joins (and for gui hosts the room server), then B; measured."""
    from desktop_call.signaling.ids import new_call_id

    resolution = RESOLUTIONS[label]
    result: dict[str, Any] = {"kind": kind, "row": label, "ok": False, "errors": []}
    sampler = Sampler()
    children: list[Child] = []
    server: Child | None = None
    child_env = {**env, TRACE_ENV: ""}
    if kind == "gui":
        child_env["QT_QPA_PLATFORM"] = "offscreen"
        # The app's per-user log file and data go under the run's folder, not the home.
        child_env["XDG_DATA_HOME"] = str(run_dir / "xdg-data")
        child_env["XDG_CONFIG_HOME"] = str(run_dir / "xdg-config")
        child_env.setdefault("XDG_RUNTIME_DIR", str(run_dir / "xdg-runtime"))
        Path(child_env["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    started = time.monotonic()
    try:
        call_id = new_call_id()
        if kind == "gui":
            port = free_port()  # A hosts the room server here; B finds it and shares it
        else:
            server, port = start_server(env, run_dir)
            sampler.watch(server.pid)
        for name in ("A", "B"):
            argv = call_argv(kind, name, call_id, port, resolution, seconds, run_dir)
            child = spawn(
                name, argv, {**child_env, TRACE_ENV: str(run_dir / f"{name}.trace.json")}, run_dir
            )
            children.append(child)
            sampler.watch(child.pid)
            if name == "A" and child.wait_line("state: waiting", JOIN_TIMEOUT_S) is None:
                raise RuntimeError(f"A never waited in the room: {child.stderr_tail()}")
        codes, hung = wait_children(children, run_dir, time.monotonic() + seconds + EXIT_GRACE_S)
        result["exit_codes"] = codes
        result["wall_s"] = round(time.monotonic() - started, 1)
        if hung:
            # The app wrote its report and its trace, then did not exit: a bug of the app's
            # (see docs/benchmarks.md), not of this call's measurements, which are kept.
            result["hung_after_report"] = hung
        for c in children:
            if codes[c.name] != 0 and c.name not in hung:
                result["errors"].append(f"{c.name} exited {codes[c.name]}: {c.stderr_tail()}")
        connected = {c.name: c.line_time("state: connected") for c in children}
        reports = {c.name: read_json(run_dir / f"{c.name}.json") for c in children}
        traces = {c.name: read_json(run_dir / f"{c.name}.trace.json") for c in children}
        if None in connected.values():
            result["errors"].append(f"not connected: {connected}")
            return result
        start = max(connected.values()) + SETTLE_S  # type: ignore[type-var]
        end = min(connected.values()) + seconds - WINDOW_END_MARGIN_S  # type: ignore[operator]
        if end - start < 1.0:
            result["errors"].append(f"media window too short: {end - start:.2f} s")
            return result
        result["window_s"] = round(end - start, 2)
        ours = [c.pid for c in children] + ([server.pid] if server else [])
        busy = sampler.machine_between(start, end)
        used = [sampler.cpu_between(pid, start, end) for pid in ours]
        if busy is not None:
            result["machine_cores_busy"] = round(busy / (end - start), 2)
            if None not in used:
                result["other_cores_busy"] = round((busy - sum(used)) / (end - start), 2)  # type: ignore[arg-type]
        if server is not None:
            cpu = sampler.cpu_between(server.pid, start, end)
            result["server_cpu_pct"] = round(100 * cpu / (end - start), 1) if cpu else cpu
        result["sides"] = {
            c.name: side_metrics(
                kind,
                sampler.cpu_between(c.pid, start, end),
                sampler.cpu_between(c.pid, start, end, main_thread=True),
                start,
                end,
                traces[c.name],
                reports[c.name],
            )
            for c in children
        }
        for name, side in result["sides"].items():
            side["exit_code"] = codes[name]
        result["ok"] = not result["errors"] and all(
            s["lag_ms"]["p99"] is not None for s in result["sides"].values()
        )
        return result
    except Exception as exc:  # one failed call must not lose the others
        result["errors"].append(f"{type(exc).__name__}: {exc}")
        return result
    finally:
        sampler.stop()
        for c in children:
            kill_group(c.popen)
        if server is not None:
            kill_group(server.popen)


def wait_children(
    children: list[Child], run_dir: Path, deadline: float
) -> tuple[dict[str, int | None], list[str]]:
    """Exit codes (None: killed); and the names of those killed because they were still running
    EXIT_AFTER_REPORT_S after writing both their report and their trace."""
    codes: dict[str, int | None] = {}
    hung: list[str] = []
    done_at: dict[str, float] = {}
    while len(codes) < len(children):
        now = time.monotonic()
        for c in children:
            if c.name in codes:
                continue
            code = c.popen.poll()
            files = (run_dir / f"{c.name}.json", run_dir / f"{c.name}.trace.json")
            if code is None and c.name not in done_at and all(f.exists() for f in files):
                done_at[c.name] = now
            overdue = c.name in done_at and now - done_at[c.name] > EXIT_AFTER_REPORT_S
            if code is not None or overdue or now > deadline:
                if code is None:
                    why = "after its report" if overdue else "at the deadline"
                    log(f"{c.name}: still running {why}, killed")
                    hung += [c.name] if overdue else []
                codes[c.name] = c.wait(5.0) if code is not None else _kill(c)
        time.sleep(0.2)
    return codes, hung


def _kill(child: Child) -> None:
    kill_group(child.popen)
    if child._reader is not None:
        child._reader.join(5)


def _percentile(ordered: list[float], q: float) -> float | None:
    """Same rule as the app's LagMonitor (index int(q * n), clamped), in ms."""
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def _rate(samples: list[list[float]], column: int, start: float, end: float) -> float | None:
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    first, last = inside[0], inside[-1]
    return round((last[column] - first[column]) / (last[0] - first[0]), 2)


def side_metrics(
    kind: str,
    cpu: float | None,
    main_cpu: float | None,
    start: float,
    end: float,
    trace: dict[str, Any] | None,
    report: dict[str, Any] | None,
) -> dict[str, Any]:
    wall = end - start
    samples: list[list[float]] = (trace or {}).get("samples") or []
    lags = sorted(s[1] for s in samples if start <= s[0] <= end)
    report = report or {}
    lat = report.get("latency_ms") or {}
    out: dict[str, Any] = {
        "cpu_s": round(cpu, 3) if cpu is not None else None,
        "cpu_pct": round(100 * cpu / wall, 1) if cpu is not None and wall > 0 else None,
        "main_thread_cpu_pct": round(100 * main_cpu / wall, 1) if main_cpu is not None else None,
        "lag_ms": {
            "p50": _percentile(lags, 0.50),
            "p99": _percentile(lags, 0.99),
            "max": round(lags[-1] * 1000, 2) if lags else None,
            "samples": len(lags),
            "expected_samples": int(wall / 0.01),
        },
        "painted_fps": _rate(samples, 2, start, end) if kind == "gui" else None,
        "local_painted_fps": _rate(samples, 3, start, end) if kind == "gui" else None,
        "received_fps": _rate(samples, 4, start, end),
        "delivered_fps": _rate(samples, 5, start, end),
        "report": {
            "frames_painted": report.get("frames_painted"),
            "painted_fps": report.get("painted_fps"),
            "event_loop_lag_ms": report.get("event_loop_lag_ms"),
            "video_fps": report.get("video_fps"),
            "video_frames_received": report.get("video_frames_received"),
            "video_frames_dropped": report.get("video_frames_dropped"),
            "video_resolution": report.get("video_resolution"),
            "latency_ms": {k: lat.get(k) for k in ("p50", "p95", "p99")},
            "codec": report.get("codec"),
            "cpu_seconds": report.get("cpu_seconds"),
            "max_rss_kb": report.get("max_rss_kb"),
        },
    }
    if kind == "gui":
        out["view"] = {
            k: (trace or {}).get("info", {}).get(k)
            for k in ("platform", "window_size", "remote_view_size", "local_view_size")
        }
    return out


# =============================================================================================
# summary


def median(values: Iterable[float | None], ndigits: int = 2) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), ndigits) if vals else None


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def row_summary(runs: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """Medians over passes, per kind and side; the CPU ratio gui / headless paired by pass."""
    row: dict[str, Any] = {"resolution": RESOLUTIONS[label]}
    for kind in KINDS:
        ok = [r for r in runs if r["row"] == label and r["kind"] == kind and r["ok"]]
        sides = {}
        for name in ("A", "B"):

            def med(*path: str, _name: str = name, _ok: list = ok) -> float | None:
                return median(_get(r["sides"][_name], *path) for r in _ok)

            sides[name] = {
                "cpu_pct": med("cpu_pct"),
                "main_thread_cpu_pct": med("main_thread_cpu_pct"),
                "lag_p50_ms": med("lag_ms", "p50"),
                "lag_p99_ms": med("lag_ms", "p99"),
                "lag_max_ms": med("lag_ms", "max"),
                "painted_fps": med("painted_fps"),
                "local_painted_fps": med("local_painted_fps"),
                "received_fps": med("received_fps"),
                "report_lag_p99_ms": med("report", "event_loop_lag_ms", "p99"),
                "report_painted_fps": med("report", "painted_fps"),
                "latency_p50_ms": med("report", "latency_ms", "p50"),
                "max_rss_kb": median(
                    (_get(r["sides"][name], "report", "max_rss_kb") for r in ok), 0
                ),
            }
        row[kind] = {
            "passes_ok": len(ok),
            "sides": sides,
            "cpu_pct_call": median(sum_cpu(r) for r in ok),
            "machine_cores_busy": median(r.get("machine_cores_busy") for r in ok),
            "other_cores_busy": median(r.get("other_cores_busy") for r in ok),
            "codec": next((_get(r, "sides", "A", "report", "codec") for r in ok), None),
        }
    ratios = []
    for p in sorted({r["pass"] for r in runs}):
        g = next((r for r in runs if (r["row"], r["kind"], r["pass"]) == (label, "gui", p)), None)
        h = next(
            (r for r in runs if (r["row"], r["kind"], r["pass"]) == (label, "headless", p)), None
        )
        if g and h and g["ok"] and h["ok"] and sum_cpu(g) and sum_cpu(h):
            ratios.append(sum_cpu(g) / sum_cpu(h))  # type: ignore[operator]
    row["cpu_ratio_gui_headless"] = median(ratios, 2)
    row["cpu_ratio_per_pass"] = [round(x, 2) for x in ratios]
    return row


def sum_cpu(run: dict[str, Any]) -> float | None:
    """CPU of the call's two app processes (not the room server), % of one core."""
    values = [_get(run, "sides", n, "cpu_pct") for n in ("A", "B")]
    return round(sum(values), 1) if None not in values else None  # type: ignore[arg-type]


def verdict(value: float | None, ok: bool | None, **extra: Any) -> dict[str, Any]:
    return {"value": value, **extra, "pass": ok}


def row_targets(row: dict[str, Any]) -> dict[str, Any]:
    gui = row["gui"]["sides"]
    lag = [gui[n]["lag_p99_ms"] for n in ("A", "B") if gui[n]["lag_p99_ms"] is not None]
    fps = [gui[n]["painted_fps"] for n in ("A", "B") if gui[n]["painted_fps"] is not None]
    ratio = row["cpu_ratio_gui_headless"]
    worst_lag = max(lag) if lag else None
    worst_fps = min(fps) if fps else None
    return {
        "lag_p99_ms": verdict(
            worst_lag,
            None if worst_lag is None else worst_lag <= TARGET_LAG_P99_MS,
            target=f"<= {TARGET_LAG_P99_MS:g}",
            per_side=[gui[n]["lag_p99_ms"] for n in "AB"],
        ),
        "painted_fps": verdict(
            worst_fps,
            None if worst_fps is None else worst_fps >= TARGET_PAINTED_FPS,
            target=f">= {TARGET_PAINTED_FPS:g}",
            per_side=[gui[n]["painted_fps"] for n in "AB"],
        ),
        "cpu_ratio_gui_headless": verdict(
            ratio,
            None if ratio is None else ratio <= TARGET_CPU_RATIO,
            target=f"<= {TARGET_CPU_RATIO:g}",
            gui_pct_call=row["gui"]["cpu_pct_call"],
            headless_pct_call=row["headless"]["cpu_pct_call"],
        ),
    }


# =============================================================================================
# main


def wait_quiet(minutes: float) -> dict[str, Any]:
    """Wait until no other benchmark/app process runs and the machine is idle (or time is up)."""
    t0 = time.monotonic()
    deadline = t0 + 60 * minutes
    while True:
        others = competing_processes()
        busy = busy_cores(2.0)
        if not others and busy < QUIET_BUSY_CORES:
            return {
                "quiet": True,
                "waited_s": round(time.monotonic() - t0),
                "busy_cores": busy,
                "competing": [],
            }
        if time.monotonic() + QUIET_POLL_S > deadline:
            log(
                f"machine not quiet after {minutes:g} min (busy {busy} cores, "
                f"{len(others)} other processes): measuring anyway"
            )
            return {
                "quiet": False,
                "waited_s": round(time.monotonic() - t0),
                "busy_cores": busy,
                "competing": others,
            }
        names = ", ".join(o["cmd"][:60] for o in others[:3])
        log(f"waiting for a quiet machine: busy {busy} cores; others: {names or 'none'}")
        time.sleep(QUIET_POLL_S)


def machine_info(quiet: dict[str, Any]) -> dict[str, Any]:
    import aiortc
    import av
    import PySide6

    try:
        import qasync

        qasync_version = getattr(qasync, "__version__", None)
        if qasync_version is None:
            from importlib.metadata import version

            qasync_version = version("qasync")
    except Exception:  # only for the record
        qasync_version = None
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pyside6": PySide6.__version__,
        "qasync": qasync_version,
        "aiortc": aiortc.__version__,
        "av": av.__version__,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "busy_cores_before": quiet.get("busy_cores"),
        "quiet_before": quiet.get("quiet"),
        "waited_for_quiet_s": quiet.get("waited_s"),
        "competing_processes_before": quiet.get("competing"),
    }


def describe(run: dict[str, Any]) -> str:
    if not run["ok"]:
        return f"FAILED {run['errors'][:2]}"
    parts = []
    for name, s in run["sides"].items():
        fps = f" painted {s['painted_fps']} fps" if s["painted_fps"] is not None else ""
        parts.append(
            f"{name}: cpu {s['cpu_pct']}% lag p50 {s['lag_ms']['p50']} p99 {s['lag_ms']['p99']} ms"
            f"{fps} recv {s['received_fps']} fps"
        )
    return "; ".join(parts) + f" (machine {run.get('machine_cores_busy')} cores)"


def gate(max_wait_s: float) -> dict[str, Any]:
    """Before a call: wait (up to max_wait_s) until no other benchmark, app or test process runs
    and the machine is idle; returns what it saw last."""
    t0 = time.monotonic()
    said = False
    while True:
        others = competing_processes()
        busy = busy_cores(1.0)
        waited = time.monotonic() - t0
        if (not others and busy < QUIET_BUSY_CORES) or waited >= max_wait_s:
            if said or waited >= max_wait_s:
                log(f"  after {waited:.0f} s: busy {busy} cores, {len(others)} other processes")
            return {"busy_cores": busy, "competing": len(others), "waited_s": round(waited)}
        if not said:
            log(f"  waiting for a quiet machine (busy {busy} cores, {len(others)} others)")
            said = True
        time.sleep(GATE_POLL_S)


def measured_call(
    args: argparse.Namespace,
    kind: str,
    label: str,
    pass_no: int,
    env: dict[str, str],
    log_root: Path,
) -> dict[str, Any]:
    """One call, measured again (up to RETRIES times) when other processes used the machine."""
    discarded: list[dict[str, Any]] = []
    for attempt in range(1 + args.retries):
        suffix = f"-retry{attempt}" if attempt else ""
        run_dir = log_root / f"pass{pass_no}-{label}-{kind}{suffix}"
        log(f"pass {pass_no}/{args.passes} {label} {kind}: {args.seconds:g} s call{suffix}")
        before = gate(args.gate_wait) if args.gate_wait > 0 else {}
        run = run_call(kind, label, args.seconds, env, run_dir)
        run["pass"] = pass_no
        run["before"] = before
        log(f"  {describe(run)}")
        other = run.get("other_cores_busy")
        polluted = other is not None and other > args.max_other_cores
        if not polluted or attempt == args.retries:
            if polluted:
                log(f"  other processes used {other} cores: kept anyway (no retries left)")
            run["polluted"] = polluted
            run["discarded_attempts"] = discarded
            return run
        log(f"  other processes used {other} cores (> {args.max_other_cores}): measuring again")
        discarded.append(
            {
                "other_cores_busy": other,
                "summary": describe(run),
                "logs": str(run_dir.relative_to(PROJECT_ROOT)),
            }
        )
    raise AssertionError("unreachable")


def measure(args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    log_root = RESULTS_DIR / "logs" / f"ui-{stamp}"
    quiet = (
        wait_quiet(args.wait_quiet)
        if args.wait_quiet > 0
        else {"quiet": None, "busy_cores": busy_cores(2.0), "competing": competing_processes()}
    )
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "stamp": stamp,
        "machine": machine_info(quiet),
        "config": {
            "passes": args.passes,
            "seconds": args.seconds,
            "rows": args.rows,
            "settle_s": SETTLE_S,
            "max_other_cores": args.max_other_cores,
            "retries": args.retries,
            "gate_wait_s": args.gate_wait,
            "window_end_margin_s": WINDOW_END_MARGIN_S,
            "logs": str(log_root.relative_to(PROJECT_ROOT)),
        },
        "runs": [],
        "interrupted": False,
    }
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    try:
        step = 0
        for p in range(args.passes):
            rows = args.rows if p % 2 == 0 else list(reversed(args.rows))
            for label in rows:
                kinds = KINDS if step % 2 == 0 else tuple(reversed(KINDS))
                step += 1
                for kind in kinds:
                    run = measured_call(args, kind, label, p + 1, env, log_root)
                    result["runs"].append(run)
    except KeyboardInterrupt:
        result["interrupted"] = True
        log("interrupted: writing what was measured")
    finally:
        kill_all()
    result["rows"] = {label: row_summary(result["runs"], label) for label in args.rows}
    main_row = "720p" if "720p" in result["rows"] else args.rows[-1]
    result["targets"] = {"row": main_row, **row_targets(result["rows"][main_row])}
    result["targets_by_row"] = {label: row_targets(row) for label, row in result["rows"].items()}
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["elapsed_s"] = round(time.monotonic() - t0, 1)
    return result


def markdown(result: dict[str, Any]) -> str:
    """The tables of docs/benchmarks.md from a result file."""
    lines = [
        "| row | kind | side | CPU % of a core | main thread % | lag p50 ms | lag p99 ms | "
        "lag max ms | painted fps | received fps | self-view fps | max RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(v: Any) -> str:
        return "-" if v is None else f"{v:g}" if isinstance(v, float | int) else str(v)

    for label, row in result["rows"].items():
        for kind in KINDS:
            for name, s in row[kind]["sides"].items():
                rss = s["max_rss_kb"] / 1024 if s["max_rss_kb"] else None
                lines.append(
                    f"| {label} | {kind} | {name} | {f(s['cpu_pct'])} | "
                    f"{f(s.get('main_thread_cpu_pct'))} | {f(s['lag_p50_ms'])} | "
                    f"{f(s['lag_p99_ms'])} | {f(s['lag_max_ms'])} | {f(s['painted_fps'])} | "
                    f"{f(s['received_fps'])} | {f(s['local_painted_fps'])} | "
                    f"{f(round(rss) if rss else None)} |"
                )
    lines += [
        "",
        "| pass | row | kind | window s | machine cores busy | of which others | retried | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in result["runs"]:
        retried = len(run.get("discarded_attempts") or [])
        flag = " (polluted)" if run.get("polluted") else ""
        lines.append(
            f"| {run['pass']} | {run['row']} | {run['kind']} | {f(run.get('window_s'))} | "
            f"{f(run.get('machine_cores_busy'))} | {f(run.get('other_cores_busy'))}{flag} | "
            f"{retried} | {run_note(run)} |"
        )
    lines += [
        "",
        "| row | CPU gui (A+B) | CPU headless (A+B) | ratio (median) | per pass |",
        "|---|---|---|---|---|",
    ]
    for label, row in result["rows"].items():
        lines.append(
            f"| {label} | {f(row['gui']['cpu_pct_call'])} % | "
            f"{f(row['headless']['cpu_pct_call'])} % | {f(row['cpu_ratio_gui_headless'])}x | "
            f"{', '.join(f'{x:g}' for x in row['cpu_ratio_per_pass'])} |"
        )
    lines += ["", "| target (row) | value | target | result |", "|---|---|---|---|"]
    for label, targets in result["targets_by_row"].items():
        for key, t in targets.items():
            res = {True: "pass", False: "**fail**", None: "-"}[t["pass"]]
            lines.append(f"| {key} ({label}) | {f(t['value'])} | {t['target']} | {res} |")
    return "\n".join(lines)


def run_note(run: dict[str, Any]) -> str:
    notes = []
    if not run.get("ok"):
        notes.append("failed: " + "; ".join(run.get("errors") or [])[:80])
    if run.get("hung_after_report"):
        notes.append(f"{', '.join(run['hung_after_report'])} did not exit after its report")
    return "; ".join(notes).replace("|", "/")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passes", type=int, default=2, help="passes over the rows (default 2)")
    parser.add_argument("--seconds", type=float, default=30.0, help="call length (default 30)")
    parser.add_argument("--quick", action="store_true", help="1 pass of 10 s calls")
    parser.add_argument("--rows", default="480p,720p", help="480p,720p (default: both)")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=20.0,
        metavar="MIN",
        help="wait up to MIN minutes for no other benchmark and an idle machine (0: don't)",
    )
    parser.add_argument(
        "--max-other-cores",
        type=float,
        default=MAX_OTHER_CORES,
        metavar="C",
        help="measure a call again when other processes used more than C cores during it "
        f"(default {MAX_OTHER_CORES:g})",
    )
    parser.add_argument(
        "--retries", type=int, default=RETRIES, help=f"at most this many times (default {RETRIES})"
    )
    parser.add_argument(
        "--gate-wait",
        type=float,
        default=GATE_MAX_WAIT_S,
        metavar="S",
        help="before each call, wait up to S s for a quiet machine (default "
        f"{GATE_MAX_WAIT_S:g}; 0: don't)",
    )
    parser.add_argument("--markdown", metavar="RESULT.json", help="print the docs' tables")
    args = parser.parse_args(argv)
    if args.quick:
        args.passes, args.seconds = 1, 10.0
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in args.rows if r not in RESOLUTIONS]
    if unknown or not args.rows:
        parser.error(f"--rows: use {', '.join(RESOLUTIONS)}")
    if args.passes < 1 or args.seconds < 5:
        parser.error("--passes >= 1 and --seconds >= 5")
    return args


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        result = measure(args, stamp)
    except KeyboardInterrupt:
        kill_all()
        log("interrupted before anything was measured")
        return 130
    finally:
        kill_all()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"ui-{stamp}.json"
    text = json.dumps(result, indent=1)
    out.write_text(text + "\n")
    print(text)
    log(f"saved {out.relative_to(PROJECT_ROOT)}")
    return 130 if result["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
