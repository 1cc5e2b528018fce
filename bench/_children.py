"""Child processes of the benchmarks that run the app (bench/media.py, bench/ui.py).

Each child runs in its own process group (so a hang-up kills what it started too), its
stdout lines are timestamped as they arrive (``Child.wait_line``), its stderr goes to a
file beside them; ``kill_all`` ends whatever is still alive. ``start_server`` gives a
fresh room server on a free port, ready when ``/healthz`` answers.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SERVER_START_TIMEOUT_S = 30.0

__all__ = [
    "HOST",
    "Child",
    "free_port",
    "healthz_ok",
    "kill_all",
    "kill_group",
    "live_pids",
    "log",
    "read_json",
    "spawn",
    "start_server",
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


_live: set[subprocess.Popen[bytes]] = set()


def kill_group(popen: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """SIGTERM the child's process group (start_new_session), wait, then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        if popen.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(wait_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)  # anything left in the group
    popen.poll()
    _live.discard(popen)


def live_pids() -> set[int]:
    """The processes started here and still counted as running."""
    return {popen.pid for popen in _live}


def kill_all() -> None:
    for popen in list(_live):
        kill_group(popen, timeout=2.0)


@dataclass
class Child:
    """A child process whose stdout lines are timestamped (time.monotonic()) as they arrive."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    lines: list[tuple[float, str]] = field(default_factory=list)
    on_line: Callable[[Child, str], None] | None = None
    _reader: threading.Thread | None = None
    _changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read(self) -> None:
        assert self.popen.stdout is not None
        with open(self.log_path, "ab") as log_file:
            for raw in self.popen.stdout:
                now = time.monotonic()
                line = raw.decode(errors="replace").rstrip("\n")
                log_file.write(f"{now:.3f} {line}\n".encode())
                log_file.flush()
                if self.on_line is not None:
                    with contextlib.suppress(Exception):
                        self.on_line(self, line)
                with self._changed:
                    self.lines.append((now, line))
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def line_time(self, prefix: str) -> float | None:
        return next((t for t, line in self.lines if line.startswith(prefix)), None)

    def wait_line(self, prefix: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                t = self.line_time(prefix)
                if t is not None:
                    return t
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and not self._reader_alive()):
                    return None
                self._changed.wait(min(left, 0.2))

    def _reader_alive(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def wait(self, timeout: float) -> int | None:
        """Exit code, or None after killing it when it overran the timeout."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            stack = dump_stack(self.pid, self.log_path.with_suffix(".stack"))
            log(f"{self.name}: still running after {timeout:.0f} s, killed{stack}")
            kill_group(self.popen)
            code = None
        if self._reader is not None:
            self._reader.join(5)
        kill_group(self.popen)  # anything it left in its group
        return code

    def stderr_tail(self, chars: int = 600) -> str:
        try:
            return self.log_path.with_suffix(".err").read_text(errors="replace")[-chars:].strip()
        except OSError:
            return ""


def dump_stack(pid: int, path: Path) -> str:
    """Save the Python stacks of a stuck process with py-spy, if it is installed (optional)."""
    exe = Path(sys.executable).with_name("py-spy")
    tool = str(exe) if exe.exists() else shutil.which("py-spy")
    if tool is None:
        return ""
    try:
        out = subprocess.run(
            [tool, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    path.write_text(out.stdout + out.stderr)
    return f" (stacks in {path})"


def spawn(
    name: str,
    argv: list[str],
    env: dict[str, str],
    log_dir: Path,
    on_line: Callable[[Child, str], None] | None = None,
) -> Child:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.out"
    with open(log_path.with_suffix(".err"), "wb") as err:
        popen = subprocess.Popen(
            argv,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
    _live.add(popen)
    child = Child(name, popen, log_path, on_line=on_line)
    child._reader = threading.Thread(target=child._read, name=f"read-{name}", daemon=True)
    child._reader.start()
    return child


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def healthz_ok(port: int) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=0.5)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def start_server(env: dict[str, str], log_dir: Path) -> tuple[Child, int]:
    """A fresh room server on a free port, ready (GET /healthz 200). Tried twice (port race)."""
    error = ""
    for attempt in (1, 2):
        port = free_port()
        argv = [sys.executable, "-m", "desktop_call.server", "--host", HOST, "--port", str(port)]
        server = spawn(f"server-{attempt}", [*argv, "--log-level", "warning"], env, log_dir)
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline and server.popen.poll() is None:
            if healthz_ok(port):
                return server, port
            time.sleep(0.05)
        error = f"exit {server.popen.poll()}: {server.stderr_tail()}"
        kill_group(server.popen)
    raise RuntimeError(f"the room server did not become ready: {error}")


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
