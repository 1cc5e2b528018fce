#!/usr/bin/env python3
"""Media benchmark (issue 3): two headless calls beside raw aiortc, in one run.

    python bench/media.py [--seconds 30] [--quick]          # the cells, ~4-5 min (quick ~1 min)
    python bench/media.py --long [--long-seconds 600] [--long-baseline]   # RSS over a long call
    python bench/media.py --cells 480p-VP8,720p-H264 --passes 3 [--seconds 20]   # subset, repeated
    python bench/media.py --markdown bench/results/media-<stamp>.json     # tables for the docs

Cells: 480p (640x480) and 720p (1280x720) x VP8 and H264, ``--seconds`` each (``--quick``: 8 s,
480p VP8 and 720p VP8 only).  In every cell, interleaved (the order flips from cell to cell so
that drift of this shared machine hits both):

- ours: a fresh room server (``python -m desktop_call.server``, ready on GET /healthz), then
  headless process A (``--join``, first; B is started once A prints ``state: waiting``), then
  B, both ``--ice-servers none --duration S --report F`` with the cell's size and codec;
- baseline: ``bench/_media_baseline.py``: raw aiortc, two RTCPeerConnections in one process,
  the same sources and receivers, codec forced with setCodecPreferences, no signaling.

Measured per side: join -> first remote frame, capture -> receive latency p50/p95/p99 (from the
stamps in the test pattern), fps, CPU of each process over the media phase (/proc/<pid>/stat
utime+stime every 0.1 s, cut at the phase's ends), RSS (/proc/<pid>/status VmRSS, once at
"connected" and every second after).  The media phase runs from the later "state: connected"
line to the earlier end of the --duration, minus 0.3 s.  CPU per stream: a headless process
encodes one video (and one audio) stream and decodes one, the baseline process two of each, so
its CPU is halved.  Then ratios ours/baseline and the targets of issue 3 with pass/fail.

One JSON object goes to stdout and to ``bench/results/media-<stamp>.json`` (children's output
under ``bench/results/logs/media-<stamp>/``); progress goes to stderr.  127.0.0.1 only.
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _children import (
    HOST,
    Child,
    kill_all,
    kill_group,
    log,
    read_json,
    spawn,
    start_server,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = PROJECT_ROOT / "bench"
RESULTS_DIR = BENCH_DIR / "results"
BASELINE_SCRIPT = BENCH_DIR / "_media_baseline.py"
SCHEMA = "desktop-call/bench-media/1"

sys.path.insert(0, str(PROJECT_ROOT))

RESOLUTIONS = {"480p": "640x480", "720p": "1280x720"}
CODECS = ("VP8", "H264")
QUICK_CELLS = (("480p", "VP8"), ("720p", "VP8"))

CPU_PERIOD_S = 0.1
RSS_PERIOD_S = 1.0
WINDOW_END_MARGIN_S = 0.3  # the processes hang up at connected + duration
JOIN_TIMEOUT_S = 30.0  # A's start-up until "state: waiting"
EXIT_GRACE_S = 60.0  # beyond the duration: start-up, connecting, hang-up, report
LONG_MARK_S = 30.0
SETTLE_S = 10.0

TARGET_FIRST_FRAME_MS = 150.0
TARGET_LATENCY_P50_MS = 50.0
TARGET_LATENCY_P99_MS = 100.0
TARGET_FPS = 29.0
TARGET_CPU_RATIO = 1.2
TARGET_RSS_GROWTH_KB = 5 * 1024


# =============================================================================================
# /proc


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process (all its threads), s; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def machine_busy_s() -> float:
    """CPU time all cores spent busy since boot, s (first line of /proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLK_TCK


CLK_TCK = os.sysconf("SC_CLK_TCK")


class Sampler:
    """Samples CPU (every 0.1 s) and RSS (every 1 s) of the watched pids in a thread."""

    def __init__(self) -> None:
        self.cpu: dict[int, list[tuple[float, float]]] = {}
        self.rss: dict[int, list[tuple[float, int]]] = {}
        self.machine: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._thread.start()

    def watch(self, pid: int) -> None:
        with self._lock:
            self.cpu.setdefault(pid, [])
            self.rss.setdefault(pid, [])
        self.sample_rss(pid)

    def sample_rss(self, pid: int) -> int | None:
        rss = proc_rss_kb(pid)
        if rss is not None:
            with self._lock:
                self.rss.setdefault(pid, []).append((time.monotonic(), rss))
        return rss

    def _run(self) -> None:
        next_rss = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                pids = list(self.cpu)
            for pid in pids:
                cpu = proc_cpu_s(pid)
                if cpu is not None:
                    with self._lock:
                        self.cpu[pid].append((time.monotonic(), cpu))
            with contextlib.suppress(OSError):
                self.machine.append((time.monotonic(), machine_busy_s()))
            if now >= next_rss:
                next_rss = now + RSS_PERIOD_S
                for pid in pids:
                    self.sample_rss(pid)
            self._stop.wait(CPU_PERIOD_S)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    # --- reading

    @staticmethod
    def _at(samples: list[tuple[float, float]], t: float) -> float | None:
        """Linear between the samples around t; None outside them (no extrapolation)."""
        if not samples or t < samples[0][0] - CPU_PERIOD_S or t > samples[-1][0] + CPU_PERIOD_S:
            return None
        before = [s for s in samples if s[0] <= t] or samples[:1]
        after = [s for s in samples if s[0] >= t] or samples[-1:]
        (t0, v0), (t1, v1) = before[-1], after[0]
        return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)

    def cpu_between(self, pid: int, start: float, end: float) -> float | None:
        with self._lock:
            samples = list(self.cpu.get(pid, []))
        c0, c1 = self._at(samples, start), self._at(samples, end)
        return None if c0 is None or c1 is None else c1 - c0

    def machine_between(self, start: float, end: float) -> float | None:
        c0, c1 = self._at(self.machine, start), self._at(self.machine, end)
        return None if c0 is None or c1 is None else c1 - c0

    def rss_series(self, pid: int) -> list[tuple[float, int]]:
        with self._lock:
            return list(self.rss.get(pid, []))


def rss_at_or_after(series: list[tuple[float, int]], t: float) -> tuple[float, int] | None:
    return next((s for s in series if s[0] >= t), None)


def rss_at_or_before(series: list[tuple[float, int]], t: float) -> tuple[float, int] | None:
    return next((s for s in reversed(series) if s[0] <= t), None)


# =============================================================================================
# one call of ours, one baseline run


@dataclass
class Cell:
    label: str  # "480p"
    codec: str

    @property
    def resolution(self) -> str:
        return RESOLUTIONS[self.label]

    @property
    def name(self) -> str:
        return f"{self.label}-{self.codec}"


def _rss_on_connect(sampler: Sampler) -> Callable[[Child, str], None]:
    def on_line(child: Child, line: str) -> None:
        if line.startswith("state: connected"):
            sampler.sample_rss(child.pid)

    return on_line


def window_of(connected: list[float], duration: float) -> tuple[float, float]:
    start = max(connected)
    end = min(connected) + duration - WINDOW_END_MARGIN_S
    return start, end


def process_metrics(
    sampler: Sampler, pid: int, connected: float | None, start: float, end: float
) -> dict[str, Any]:
    cpu = sampler.cpu_between(pid, start, end)
    wall = end - start
    series = sampler.rss_series(pid)
    at_connect = rss_at_or_after(series, connected) if connected is not None else None
    at_end = rss_at_or_before(series, end)
    growth = at_end[1] - at_connect[1] if at_connect and at_end else None
    # The codecs allocate their buffers over the first seconds of media: growth from
    # connect + 10 s on is the part that could be a leak.
    settled = rss_at_or_after(series, connected + SETTLE_S) if connected is not None else None
    steady = at_end[1] - settled[1] if settled and at_end and settled[0] < at_end[0] else None
    return {
        "cpu_s": round(cpu, 3) if cpu is not None else None,
        "cpu_pct": round(100 * cpu / wall, 1) if cpu is not None and wall > 0 else None,
        "rss_connect_kb": at_connect[1] if at_connect else None,
        "rss_end_kb": at_end[1] if at_end else None,
        "rss_growth_kb": growth,
        "rss_growth_after_10s_kb": steady,
        "rss_series_kb": rss_marks(series, connected, end),
        # every sample from connect to the end (about one a second), kB
        "rss_1s_kb": [kb for t, kb in series if connected is not None and connected <= t <= end],
    }


def rss_marks(
    series: list[tuple[float, int]], connected: float | None, end: float
) -> list[list[float]]:
    """[seconds after connect, VmRSS kB] at connect, every 30 s after it, and at the end."""
    if connected is None:
        return []
    marks = []
    k = 0
    while connected + k * LONG_MARK_S < end:
        sample = rss_at_or_after(series, connected + k * LONG_MARK_S)
        if sample is None or sample[0] > end:
            break
        marks.append([round(sample[0] - connected, 1), sample[1]])
        k += 1
    last = rss_at_or_before(series, end)
    if last is not None and (not marks or last[0] - connected > marks[-1][0]):
        marks.append([round(last[0] - connected, 1), last[1]])
    return marks


def side_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The per-direction numbers of a headless (or baseline) report, renamed."""
    lat = report.get("latency_ms") or {}
    return {
        "join_to_first_frame_ms": report.get("time_to_first_frame_ms"),
        "time_to_connected_ms": report.get("time_to_connected_ms"),
        "latency_ms": {k: lat.get(k) for k in ("p50", "p95", "p99", "samples")},
        "fps": report.get("video_fps"),
        "video_frames_received": report.get("video_frames_received"),
        "video_frames_missing": report.get("video_frames_missing"),
        "video_frames_dropped": report.get("video_frames_dropped"),
        "video_resolution": report.get("video_resolution"),
        "audio_frames_received": report.get("audio_frames_received"),
        "codec": report.get("codec"),
    }


def run_ours(cell: Cell, seconds: float, env: dict[str, str], log_dir: Path) -> dict[str, Any]:
    """A fresh room server and two headless processes; A joins first, then B."""
    from desktop_call.signaling.ids import new_call_id

    result: dict[str, Any] = {"ok": False, "errors": []}
    sampler = Sampler()
    children: list[Child] = []
    server: Child | None = None
    try:
        server, port = start_server(env, log_dir)
        call_id = new_call_id()
        children_args = {}
        for name in ("A", "B"):
            children_args[name] = [
                sys.executable, "-m", "desktop_call", "--headless",
                "--join", call_id,
                "--server", f"ws://{HOST}:{port}",
                "--name", name,
                "--resolution", cell.resolution,
                "--codec", cell.codec,
                "--ice-servers", "none",
                "--duration", f"{seconds:g}",
                "--report", str(log_dir / f"{name}.json"),
            ]  # fmt: skip
        on_line = _rss_on_connect(sampler)
        a = spawn("A", children_args["A"], env, log_dir, on_line)
        children.append(a)
        sampler.watch(a.pid)
        if a.wait_line("state: waiting", JOIN_TIMEOUT_S) is None:
            raise RuntimeError(f"A never waited in the room: {a.stderr_tail()}")
        b = spawn("B", children_args["B"], env, log_dir, on_line)
        children.append(b)
        sampler.watch(b.pid)
        codes = {c.name: c.wait(seconds + EXIT_GRACE_S) for c in children}
        result["exit_codes"] = codes
        for c in children:
            if codes[c.name] != 0:
                result["errors"].append(f"{c.name} exited {codes[c.name]}: {c.stderr_tail()}")
        reports = {c.name: read_json(log_dir / f"{c.name}.json") for c in children}
        connected = {c.name: c.line_time("state: connected") for c in children}
        joined = {c.name: c.line_time("state: joining") for c in children}
        if None in connected.values() or None in reports.values():
            result["errors"].append(f"no connection or no report: connected={connected}")
            return result
        start, end = window_of(list(connected.values()), seconds)  # type: ignore[arg-type]
        result["window_s"] = round(end - start, 2)
        busy = sampler.machine_between(start, end)
        sides = {}
        for c in children:
            report = reports[c.name] or {}
            side = side_metrics(report)
            raw = side["join_to_first_frame_ms"]
            side["join_to_first_frame_raw_ms"] = raw
            if c.name == "A" and raw is not None and joined["A"] and joined["B"]:
                # A's clock started at its own join, while nobody else was there: count from
                # B's join, when a call became possible (both "joining" lines on our clock).
                side["join_to_first_frame_ms"] = round(raw - 1000 * (joined["B"] - joined["A"]), 1)
            side.update(process_metrics(sampler, c.pid, connected[c.name], start, end))
            side["max_rss_kb"] = report.get("max_rss_kb")
            side["cpu_seconds_total"] = report.get("cpu_seconds")
            side["candidate_type"] = report.get("candidate_type")
            side["exit_code"] = codes[c.name]
            if report.get("errors"):
                result["errors"].extend(f"{c.name}: {e}" for e in report["errors"])
            sides[c.name] = side
        result["sides"] = sides
        ours_cpu = [s["cpu_pct"] for s in sides.values()]
        result["cpu_pct_per_stream"] = mean(ours_cpu, 1)
        if busy is not None and end > start:
            result["machine_cores_busy"] = round(busy / (end - start), 2)
            ours_cores = sum((s["cpu_s"] or 0) for s in sides.values()) / (end - start)
            result["other_cores_busy"] = round(max(0.0, busy / (end - start) - ours_cores), 2)
        result["ok"] = all(code == 0 for code in codes.values())
    except Exception as exc:
        result["errors"].append(f"{type(exc).__name__}: {exc}")
    finally:
        for c in children:
            kill_group(c.popen)
        if server is not None:
            kill_group(server.popen)
        sampler.stop()
    return result


def run_baseline(
    cell: Cell, seconds: float, env: dict[str, str], log_dir: Path, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    result: dict[str, Any] = {"ok": False, "errors": []}
    sampler = Sampler()
    child: Child | None = None
    try:
        report_path = log_dir / "baseline.json"
        argv = [
            sys.executable, str(BASELINE_SCRIPT),
            "--resolution", cell.resolution,
            "--codec", cell.codec,
            "--duration", f"{seconds:g}",
            "--report", str(report_path),
            *extra,
        ]  # fmt: skip
        child = spawn("baseline", argv, env, log_dir, _rss_on_connect(sampler))
        sampler.watch(child.pid)
        code = child.wait(seconds + EXIT_GRACE_S)
        result["exit_codes"] = {"baseline": code}
        if code != 0:
            result["errors"].append(f"baseline exited {code}: {child.stderr_tail()}")
        report = read_json(report_path)
        connected = child.line_time("state: connected")
        if connected is None or report is None:
            result["errors"].append("baseline: no connection or no report")
            return result
        start, end = window_of([connected], seconds)
        result["window_s"] = round(end - start, 2)
        proc = process_metrics(sampler, child.pid, connected, start, end)
        proc["max_rss_kb"] = report.get("max_rss_kb")
        proc["cpu_seconds_total"] = report.get("cpu_seconds")
        proc["exit_code"] = code
        result["process"] = proc
        result["sides"] = {s["name"]: side_metrics(s) for s in report.get("sides", [])}
        cpu = proc["cpu_pct"]
        result["cpu_pct_per_stream"] = round(cpu / 2, 1) if cpu is not None else None
        busy = sampler.machine_between(start, end)
        if busy is not None and end > start and proc["cpu_s"] is not None:
            result["machine_cores_busy"] = round(busy / (end - start), 2)
            result["other_cores_busy"] = round(max(0.0, (busy - proc["cpu_s"]) / (end - start)), 2)
        result["ok"] = code == 0
    except Exception as exc:
        result["errors"].append(f"{type(exc).__name__}: {exc}")
    finally:
        if child is not None:
            kill_group(child.popen)
        sampler.stop()
    return result


# =============================================================================================
# aggregation


def mean(values: Iterable[float | None], ndigits: int = 2) -> float | None:
    got = [v for v in values if v is not None]
    return round(statistics.fmean(got), ndigits) if got else None


def median(values: Iterable[float | None], ndigits: int = 1) -> float | None:
    got = [v for v in values if v is not None]
    return round(statistics.median(got), ndigits) if got else None


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def side_values(run: dict[str, Any], getter: Callable[[dict[str, Any]], Any]) -> list[Any]:
    return [getter(s) for s in (run.get("sides") or {}).values()]


def cell_summary(ours: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Means over the two directions, ours beside the baseline, and ours/baseline."""

    def both(run: dict[str, Any]) -> dict[str, Any]:
        return {
            "join_to_first_frame_ms": mean(
                side_values(run, lambda s: s["join_to_first_frame_ms"]), 1
            ),
            "latency_p50_ms": mean(side_values(run, lambda s: s["latency_ms"]["p50"])),
            "latency_p99_ms": mean(side_values(run, lambda s: s["latency_ms"]["p99"])),
            "fps": mean(side_values(run, lambda s: s["fps"])),
            "cpu_pct_per_stream": run.get("cpu_pct_per_stream"),
        }

    o, b = both(ours), both(base)
    return {
        "ours": o,
        "baseline": b,
        "ratio": {
            "cpu_per_stream": ratio(o["cpu_pct_per_stream"], b["cpu_pct_per_stream"]),
            "latency_p50": ratio(o["latency_p50_ms"], b["latency_p50_ms"]),
            "latency_p99": ratio(o["latency_p99_ms"], b["latency_p99_ms"]),
            "fps": ratio(o["fps"], b["fps"]),
        },
    }


def verdict(value: Any, ok: bool | None, **extra: Any) -> dict[str, Any]:
    return {"value": value, "pass": ok, **extra}


def targets(cells: list[dict[str, Any]], long: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    firsts = [
        s["join_to_first_frame_ms"]
        for c in cells
        for s in (c["ours"].get("sides") or {}).values()
        if s["join_to_first_frame_ms"] is not None
    ]
    if firsts:
        value = median(firsts)
        out["join_to_first_frame_p50_ms"] = verdict(
            value,
            value <= TARGET_FIRST_FRAME_MS,
            target=f"<= {TARGET_FIRST_FRAME_MS:g}",
            samples=len(firsts),
            baseline=median(
                s["join_to_first_frame_ms"]
                for c in cells
                for s in (c["baseline"].get("sides") or {}).values()
            ),
            note="median over cells and both sides; A counted from B's join",
        )
    by_name: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        by_name.setdefault(c["cell"], []).append(c)

    def all_sides(name: str, kind: str, getter: Callable[[dict[str, Any]], Any]) -> list[Any]:
        return [v for c in by_name.get(name, []) for v in side_values(c[kind], getter)]

    def lat(q: str) -> Callable[[dict[str, Any]], Any]:
        return lambda s: s["latency_ms"][q]

    p50s = all_sides("480p-VP8", "ours", lat("p50"))
    if p50s:
        for q, limit in (("p50", TARGET_LATENCY_P50_MS), ("p99", TARGET_LATENCY_P99_MS)):
            value = max_or_none(all_sides("480p-VP8", "ours", lat(q)))
            out[f"latency_480p_vp8_{q}_ms"] = verdict(
                value,
                _le(value, limit),
                target=f"<= {limit:g}",
                baseline=max_or_none(all_sides("480p-VP8", "baseline", lat(q))),
                note="worse of the two directions (and of the passes)",
            )
    fps = all_sides("720p-VP8", "ours", lambda s: s["fps"])
    if fps:
        low = min_or_none(fps)
        out["fps_720p_vp8"] = verdict(
            low,
            low is not None and low >= TARGET_FPS,
            target=f">= {TARGET_FPS:g} both ways",
            both_ways=fps,
            baseline=all_sides("720p-VP8", "baseline", lambda s: s["fps"]),
        )
    ratios = {
        name: median((c["summary"]["ratio"]["cpu_per_stream"] for c in group), 2)
        for name, group in by_name.items()
    }
    got = [r for r in ratios.values() if r is not None]
    if got:
        worst = max(got)
        out["cpu_per_stream_vs_baseline"] = verdict(
            worst,
            worst <= TARGET_CPU_RATIO,
            target=f"<= {TARGET_CPU_RATIO:g}x in every cell",
            per_cell=ratios,
            note="per cell: median over the passes" if len(cells) > len(by_name) else None,
        )
    if long is not None and long.get("growth_from_minute_1_kb") is not None:
        growth = long["growth_from_minute_1_kb"]
        out["rss_growth_kb"] = verdict(
            growth,
            growth <= TARGET_RSS_GROWTH_KB,
            target=f"<= {TARGET_RSS_GROWTH_KB} kB",
            note=f"--long: worse process, minute 1 to {long['seconds']:g} s",
        )
    else:
        sides = [s for c in cells for s in (c["ours"].get("sides") or {}).values()]
        growths = [s["rss_growth_kb"] for s in sides if s.get("rss_growth_kb") is not None]
        steady = [s["rss_growth_after_10s_kb"] for s in sides]
        base = [(c["baseline"].get("process") or {}) for c in cells]
        if growths:
            out["rss_growth_kb"] = verdict(
                max_or_none(steady),
                None,
                target=f"<= {TARGET_RSS_GROWTH_KB} kB over 10 min (run --long)",
                indicative=True,
                connect_to_end_kb=max(growths),
                baseline=max_or_none(p.get("rss_growth_after_10s_kb") for p in base),
                baseline_connect_to_end_kb=max_or_none(p.get("rss_growth_kb") for p in base),
                note="largest growth of a process from connect + 10 s to the end of the short "
                "cells (connect_to_end_kb: from connect, codec buffers included); "
                "not the 10-minute target, pass/fail comes from --long",
            )
    return out


def _le(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def max_or_none(values: Iterable[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return max(got) if got else None


def min_or_none(values: Iterable[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return min(got) if got else None


# =============================================================================================
# runs


def describe(run: dict[str, Any]) -> str:
    if not run.get("sides"):
        return f"FAILED {run.get('errors')}"
    parts = []
    for name, s in run["sides"].items():
        lat = s["latency_ms"]
        parts.append(
            f"{name}: first {s['join_to_first_frame_ms']} ms, lat {lat['p50']}/{lat['p99']} ms, "
            f"{s['fps']} fps" + (f", cpu {s['cpu_pct']}%" if "cpu_pct" in s else "")
        )
    extra = f"; cpu/stream {run.get('cpu_pct_per_stream')}%"
    if "other_cores_busy" in run:
        extra += f"; others {run['other_cores_busy']} cores"
    if run.get("errors"):
        extra += f"; errors {run['errors']}"
    return " | ".join(parts) + extra


def run_cells(
    cells: list[Cell], seconds: float, env: dict[str, str], log_root: Path, passes: int = 1
) -> list[Any]:
    out = []
    plan = [(p, cell) for p in range(1, passes + 1) for cell in cells]
    for i, (p, cell) in enumerate(plan):
        order = ("ours", "baseline") if i % 2 == 0 else ("baseline", "ours")
        runs: dict[str, dict[str, Any]] = {}
        tag = f"{cell.name}" if passes == 1 else f"{cell.name}-pass{p}"
        for kind in order:
            log_dir = log_root / f"{tag}-{kind}"
            log(f"{tag} {kind}: {seconds:g} s ...")
            runner = run_ours if kind == "ours" else run_baseline
            runs[kind] = runner(cell, seconds, env, log_dir)
            log(f"{tag} {kind}: {describe(runs[kind])}")
        out.append(
            {
                "cell": cell.name,
                "pass": p,
                "resolution": cell.resolution,
                "codec": cell.codec,
                "seconds": seconds,
                "order": list(order),
                "ours": runs["ours"],
                "baseline": runs["baseline"],
                "summary": cell_summary(runs["ours"], runs["baseline"]),
            }
        )
    return out


def long_summary(run: dict[str, Any], seconds: float) -> dict[str, Any]:
    """RSS every 30 s after connect, and the growth from minute 1 to the end, per process."""
    out: dict[str, Any] = {"seconds": seconds, "ok": run.get("ok"), "errors": run.get("errors")}
    procs = run.get("sides") or {}
    if "process" in run:  # baseline
        procs = {"baseline": run["process"]}
    growths = {}
    for name, p in procs.items():
        series = p.get("rss_series_kb") or []
        minute1 = next((kb for t, kb in series if t >= 60), None)
        end_kb = p.get("rss_end_kb")
        growths[name] = end_kb - minute1 if minute1 is not None and end_kb is not None else None
        out[name] = {
            "rss_every_30s_kb": series,
            "rss_connect_kb": p.get("rss_connect_kb"),
            "rss_minute_1_kb": minute1,
            "rss_end_kb": end_kb,
            "growth_from_minute_1_kb": growths[name],
            "growth_from_connect_kb": p.get("rss_growth_kb"),
        }
    out["growth_from_minute_1_kb"] = max_or_none(growths.values())
    return out


def machine_info() -> dict[str, Any]:
    import aiortc
    import av

    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "aiortc": aiortc.__version__,
        "av": av.__version__,
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def measure(args: argparse.Namespace, stamp: str) -> dict[str, Any]:
    env = dict(os.environ)  # one environment for every child of the run
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    log_root = RESULTS_DIR / "logs" / f"media-{stamp}"
    result: dict[str, Any] = {"schema": SCHEMA, "stamp": stamp, "machine": machine_info()}
    started = time.monotonic()
    long: dict[str, Any] | None = None
    if args.long:
        cell = Cell("480p", "VP8")
        log(f"long call: 480p VP8, {args.long_seconds:g} s")
        run = run_ours(cell, args.long_seconds, env, log_root / "long-ours")
        long = long_summary(run, args.long_seconds)
        result["long"] = {"ours": long, "run": run}
        log(f"long ours: growth from minute 1 {long['growth_from_minute_1_kb']} kB")
        if args.long_baseline:
            run = run_baseline(cell, args.long_seconds, env, log_root / "long-baseline")
            result["long"]["baseline"] = long_summary(run, args.long_seconds)
            result["long"]["baseline_run"] = run
        cells: list[dict[str, Any]] = []
    else:
        seconds = 8.0 if args.quick and args.seconds is None else (args.seconds or 30.0)
        wanted = (
            [Cell(r, c) for r, c in QUICK_CELLS]
            if args.quick
            else [Cell(r, c) for r in RESOLUTIONS for c in CODECS]
        )
        if args.cells:
            wanted = [Cell(*name.split("-", 1)) for name in args.cells]
        cells = run_cells(wanted, seconds, env, log_root, args.passes)
        result["cells"] = cells
    result["targets"] = targets(cells, long)
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    return result


# =============================================================================================
# markdown


def markdown(result: dict[str, Any]) -> str:
    lines = []
    cells = result.get("cells") or []
    if cells:
        lines += [
            "| cell | side | join→first frame ms (ours / base) | latency p50 ms (ours / base) "
            "| latency p99 ms (ours / base) | fps (ours / base) |",
            "|---|---|---|---|---|---|",
        ]
        for c in cells:
            for name in ("A", "B"):
                o = (c["ours"].get("sides") or {}).get(name)
                b = (c["baseline"].get("sides") or {}).get(name)
                if o is None or b is None:
                    continue
                lines.append(
                    f"| {c['cell']} | {name} | {o['join_to_first_frame_ms']} / "
                    f"{b['join_to_first_frame_ms']} | {o['latency_ms']['p50']} / "
                    f"{b['latency_ms']['p50']} | {o['latency_ms']['p99']} / "
                    f"{b['latency_ms']['p99']} | {o['fps']} / {b['fps']} |"
                )
        lines += [
            "",
            "| cell | CPU % of a core, A / B (ours) | baseline process % | CPU per stream "
            "ours / base | ratio CPU | ratio lat p50 | ratio lat p99 | ratio fps "
            "| RSS connect→end MB, A / B (ours) | other load (cores) ours / base |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in cells:
            o, b, s = c["ours"], c["baseline"], c["summary"]
            sides = o.get("sides") or {}
            cpu = " / ".join(str(sides.get(n, {}).get("cpu_pct")) for n in ("A", "B"))
            rss = " / ".join(_rss_text(sides.get(n, {})) for n in ("A", "B"))
            r = s["ratio"]
            lines.append(
                f"| {c['cell']} | {cpu} | {(b.get('process') or {}).get('cpu_pct')} | "
                f"{s['ours']['cpu_pct_per_stream']} / {s['baseline']['cpu_pct_per_stream']} | "
                f"{r['cpu_per_stream']} | {r['latency_p50']} | {r['latency_p99']} | {r['fps']} "
                f"| {rss} | {o.get('other_cores_busy')} / {b.get('other_cores_busy')} |"
            )
    lines += ["", "| target | value | pass |", "|---|---|---|"]
    for name, t in (result.get("targets") or {}).items():
        ok = "indication" if t.get("pass") is None else ("yes" if t["pass"] else "**no**")
        lines.append(f"| {name} ({t.get('target')}) | {t['value']} | {ok} |")
    return "\n".join(lines)


def _rss_text(side: dict[str, Any]) -> str:
    a, b = side.get("rss_connect_kb"), side.get("rss_end_kb")
    if a is None or b is None:
        return "?"
    return f"{a / 1024:.1f}→{b / 1024:.1f}"


# =============================================================================================
# main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, help="media phase per cell (default 30; quick 8)")
    ap.add_argument("--quick", action="store_true", help="8 s, 480p VP8 and 720p VP8 only")
    ap.add_argument("--long", action="store_true", help="only one long 480p VP8 call (RSS)")
    ap.add_argument("--long-seconds", type=float, default=600.0, help="default 600")
    ap.add_argument(
        "--long-baseline", action="store_true", help="with --long: the baseline as long, after"
    )
    ap.add_argument(
        "--cells",
        type=lambda text: [x.strip() for x in text.split(",") if x.strip()],
        help="only these cells, e.g. 480p-VP8,720p-H264",
    )
    ap.add_argument("--passes", type=int, default=1, help="run the cells N times (default 1)")
    ap.add_argument("--markdown", type=Path, metavar="RESULT", help="print tables of a result")
    args = ap.parse_args(argv)
    for name in args.cells or []:
        label, _, codec = name.partition("-")
        if label not in RESOLUTIONS or codec not in CODECS:
            ap.error(f"--cells: {name!r} is not one of 480p|720p-VP8|H264")
    if args.passes < 1:
        ap.error("--passes must be at least 1")
    if args.seconds is not None and args.seconds < 3:
        ap.error("--seconds must be at least 3")
    if args.long and args.long_seconds < 90:
        ap.error("--long-seconds must be at least 90 (growth is counted from minute 1)")
    return args


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    stamp = time.strftime("%Y%m%d-%H%M%S")
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = measure(args, stamp)
    finally:
        kill_all()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"media-{stamp}.json"
    text = json.dumps(result, indent=2)
    out.write_text(text + "\n")
    print(text, flush=True)
    log(f"wrote {out.relative_to(PROJECT_ROOT)} in {result['elapsed_s']:.0f} s")
    for name, t in result["targets"].items():
        state = "indication" if t["pass"] is None else ("pass" if t["pass"] else "MISS")
        log(f"target {name}: {t['value']} ({t['target']}): {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
