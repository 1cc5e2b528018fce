"""Server processes for the signaling benchmark: start, wait until ready, sample /proc, stop.

Every server runs in its own process group (``start_new_session``), so stopping it also stops
whatever it spawned (PartyKit's ``partykit dev`` starts workerd and esbuild).  Everything listens
on 127.0.0.1 only.  Linux only (/proc).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 5.0

_live: set[subprocess.Popen[bytes]] = set()  # every server started and not yet stopped


class ServerStartError(RuntimeError):
    """The server exited or did not become ready in time."""


# ---------------------------------------------------------------------------------------------
# /proc sampling


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM of a process in kB ({} if it is gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        return {}
    return out


def rss_kb(pids: list[int]) -> int:
    """Sum of VmRSS over pids, kB."""
    return sum(proc_status(pid).get("VmRSS", 0) for pid in pids)


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU time of a process, s (10 ms ticks); None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU time all cores spent not idle since boot, s (from the first line of /proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # without guest (in user)


class CpuTimeline:
    """Samples the CPU time of a process and of the whole machine every `period` s in a thread,
    so that one phase of the process's life can be cut out afterwards."""

    def __init__(self, pid: int, period: float = 0.01) -> None:
        self.pid = pid
        self.period = period
        # (time.monotonic(), process cpu s, machine busy s)
        self.samples: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            cpu = proc_cpu_s(self.pid)
            if cpu is not None:
                self.samples.append((time.monotonic(), cpu, machine_busy_s()))
            self._stop.wait(self.period)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _at(self, t: float, column: int) -> float | None:
        """A column at monotonic time t (linear between samples, clamped at the ends)."""
        if not self.samples:
            return None
        before = [s for s in self.samples if s[0] <= t] or self.samples[:1]
        after = [s for s in self.samples if s[0] >= t] or self.samples[-1:]
        a, b = before[-1], after[0]
        if b[0] == a[0]:
            return a[column]
        return a[column] + (b[column] - a[column]) * (t - a[0]) / (b[0] - a[0])

    def cores(self, start: float, end: float, machine: bool = False) -> float | None:
        """Average cores used by the process (or by the whole machine) between two times."""
        column = 2 if machine else 1
        c0, c1 = self._at(start, column), self._at(end, column)
        if c0 is None or c1 is None or end <= start:
            return None
        return (c1 - c0) / (end - start)


def proc_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def child_pids(pid: int) -> list[int]:
    """Direct children of pid (from /proc/*/stat)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            children.append(int(entry.name))
    return children


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (children inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


# ---------------------------------------------------------------------------------------------
# readiness probes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def tcp_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
        return True
    return False


def healthz(port: int, timeout: float = 2.0) -> dict[str, Any] | None:
    """GET /healthz -> its JSON object, or None unless HTTP 200 with a JSON object."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            return None
        data = json.loads(body)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# servers


@dataclass
class Server:
    """A started server: its process group leader and the pids to sample."""

    name: str
    port: int
    popen: subprocess.Popen[bytes]
    pids: list[int]
    url_template: str
    has_healthz: bool
    log_path: Path


@dataclass
class ServerSpec:
    """How to start one kind of server.

    ``argv(port)`` is the command; ``ready(server, log_text)`` says it is serving;
    ``sample_pids(server)`` lists the processes whose CPU/RSS count as "the server".
    """

    name: str
    argv: Callable[[int], list[str]]
    cwd: Path
    ready: Callable[[Server, str], bool]
    path: str = "/rooms/{room}"
    has_healthz: bool = False
    env: dict[str, str] = field(default_factory=dict)
    sample_pids: Callable[[Server], list[int]] = lambda srv: [srv.popen.pid]


def _spawn(spec: ServerSpec, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PORT": str(port), **spec.env}
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            spec.argv(port),
            cwd=spec.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _live.add(popen)
    return popen


def _wait_ready(spec: ServerSpec, srv: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.popen.poll() is not None:
            raise ServerStartError(
                f"{spec.name} exited with {srv.popen.returncode}: {tail(srv.log_path)}"
            )
        if spec.ready(srv, srv.log_path.read_text(errors="replace")):
            return
        time.sleep(0.1)
    raise ServerStartError(f"{spec.name} not ready after {timeout:.0f} s: {tail(srv.log_path)}")


def tail(path: Path, chars: int = 600) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def start(spec: ServerSpec, log_dir: Path, timeout: float = START_TIMEOUT_S) -> Server:
    """Start spec on a free port and wait until it is ready (stops it again on failure).

    Tried twice: the free port may be taken by someone else before the server binds it.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _start_once(spec, log_dir, timeout)
    except ServerStartError:
        return _start_once(spec, log_dir, timeout)


def _start_once(spec: ServerSpec, log_dir: Path, timeout: float) -> Server:
    port = free_port()
    log_path = log_dir / f"{spec.name}-{port}.log"
    popen = _spawn(spec, port, log_path)
    url_template = f"ws://{HOST}:{port}{spec.path}"
    srv = Server(spec.name, port, popen, [popen.pid], url_template, spec.has_healthz, log_path)
    try:
        _wait_ready(spec, srv, timeout)
        srv.pids = spec.sample_pids(srv)
    except BaseException:
        stop(srv)
        raise
    return srv


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(srv: Server, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the server's process group, wait, then SIGKILL what is left."""
    stop_popen(srv.popen, timeout)


def stop_popen(popen: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> None:
    pgid = popen.pid  # start_new_session: the leader's pid is the group id
    for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            popen.poll()
            if popen.returncode is not None and not _group_alive(pgid):
                _live.discard(popen)
                return
            time.sleep(0.05)
    popen.poll()
    _live.discard(popen)


def stop_all() -> None:
    """Stop every server this process started and has not stopped yet (for finally / signals)."""
    for popen in list(_live):
        stop_popen(popen, timeout=2.0)


@contextlib.contextmanager
def running(spec: ServerSpec, log_dir: Path) -> Iterator[Server]:
    srv = start(spec, log_dir)
    try:
        yield srv
    finally:
        stop(srv)


# ---------------------------------------------------------------------------------------------
# the servers of this benchmark


def ours_spec(name: str, module: str, loop: str, extra: tuple[str, ...] = ()) -> ServerSpec:
    """The project's room server: ``python -m <module> --loop <loop> [extra]``, ready on
    /healthz. Later options in ``extra`` override the defaults here (argparse: last wins)."""

    def argv(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            module,
            "--host",
            HOST,
            "--port",
            str(port),
            "--loop",
            loop,
            "--capacity",
            "2",
            # thousands of clients from 127.0.0.1: the per-address limits would refuse them
            "--max-connections-per-ip",
            "0",
            "--connection-rate-per-ip",
            "0",
            *extra,
        ]

    return ServerSpec(
        name=name,
        argv=argv,
        cwd=PROJECT_ROOT,
        has_healthz=True,
        ready=lambda srv, _log: healthz(srv.port, timeout=0.5) is not None,
    )


def module_available(module: str) -> bool:
    """Can ``python -m module`` run from the project root (without running it)?"""
    code = (
        "import importlib.util as u, sys\n"
        "s = u.find_spec(sys.argv[1])\n"
        "ok = s is not None and (s.submodule_search_locations is None\n"
        "                        or u.find_spec(sys.argv[1] + '.__main__') is not None)\n"
        "sys.exit(0 if ok else 1)\n"
    )
    try:
        res = subprocess.run(
            [sys.executable, "-c", code, module],
            cwd=PROJECT_ROOT,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return res.returncode == 0


def nodews_spec(anchors: Path) -> ServerSpec:
    return ServerSpec(
        name="nodews",
        argv=lambda port: ["node", "server.js"],
        cwd=anchors / "nodews",
        ready=lambda srv, log: "pid=" in log and tcp_open(srv.port),
    )


def _workerd_pid(leader: int, timeout: float = 10.0) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in child_pids(leader):
            if proc_name(pid) == "workerd":
                return pid
        time.sleep(0.2)
    return None


def _partykit_pids(srv: Server) -> list[int]:
    """The partykit CLI (node) and its workerd child, which serves the rooms."""
    workerd = _workerd_pid(srv.popen.pid)
    if workerd is None:
        raise ServerStartError("partykit: no workerd child")
    return [srv.popen.pid, workerd]


def partykit_spec(anchors: Path) -> ServerSpec:
    def argv(port: int) -> list[str]:
        return [
            "./node_modules/.bin/partykit",
            "dev",
            "--port",
            str(port),
            "--disable-request-cf-fetch",
            "--persist",
            "false",
            "--no-hotkeys",
        ]

    return ServerSpec(
        name="partykit",
        argv=argv,
        cwd=anchors / "partykit",
        env={"PARTYKIT_DEV_HOST": HOST},
        ready=lambda srv, log: "Ready on" in log and tcp_open(srv.port),
        sample_pids=_partykit_pids,
    )


def run_and_report(run: Callable[[], dict[str, Any]], out: Path | None) -> int:
    """Run a benchmark, stop every server it started (even on failure), then print its
    JSON report on stdout and, with ``out``, write it there too."""
    try:
        report = run()
    finally:
        stop_all()
    text = json.dumps(report, indent=2)
    print(text, flush=True)
    if out:
        out.write_text(text + "\n")
    return 0
