"""Size and start time of the frozen build (Linux), as JSON (docs/benchmarks.md).

    python packaging/measure.py [--folder dist/desktop-call] [--archive FILE] [--runs 5]

- sizes: the unpacked folder, the .tar.xz artifact, and the same folder as .tar.gz
  (gzip -6) for comparison with the naive build's figure;
- start: exec -> the home window mapped on Xvfb (MapNotify seen by a second X client,
  packaging/xwindow.py), each run with new settings; "warm" runs after one unmeasured
  run, "cold" runs after emptying the page cache (root only), and the same for the
  venv's ``desktop-call`` for comparison.

Writes ``dist/measurements.json`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from xwindow import MapWatcher, drop_caches, x_display  # noqa: E402


def folder_size(path: Path) -> tuple[int, int]:
    files = [f for f in path.rglob("*") if f.is_file() and not f.is_symlink()]
    return sum(f.stat().st_size for f in files), len(files)


def gzip_size(folder: Path) -> int:
    tar = subprocess.Popen(
        ["tar", "-C", str(folder.parent), "-cf", "-", folder.name], stdout=subprocess.PIPE
    )
    gz = subprocess.run(["gzip", "-6", "-c"], stdin=tar.stdout, capture_output=True, check=True)
    tar.wait()
    return len(gz.stdout)


def start_once(command: list[str], display: str, watcher: MapWatcher, cold: bool) -> float:
    if cold and not drop_caches():
        raise PermissionError("cannot drop the page cache (not root)")
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb", XDG_CONFIG_HOME=tmp)
        env.pop("WAYLAND_DISPLAY", None)
        started = time.monotonic()
        proc = subprocess.Popen(
            [*command, "--settings-file", f"{tmp}/settings.ini", "--host", "127.0.0.1",
             "--port", "0"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            shown = watcher.wait_for_window(started, timeout=60)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if shown is None:
            raise RuntimeError(f"{command[0]}: no window within 60 s")
        time.sleep(0.3)
        return shown - started


def series(command, display, watcher, runs: int, cold: bool) -> dict:
    if not cold:
        start_once(command, display, watcher, cold=False)  # page cache warm
    times = [start_once(command, display, watcher, cold) for _ in range(runs)]
    return {
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
        "runs": [round(t, 3) for t in times],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=ROOT / "dist" / "desktop-call")
    parser.add_argument("--archive", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--build-seconds", type=float)
    parser.add_argument("--no-venv", action="store_true", help="skip the venv comparison")
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "measurements.json")
    args = parser.parse_args()

    unpacked, files = folder_size(args.folder)
    result: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "unpacked_mb": round(unpacked / 1e6, 1),
        "files": files,
        "tar_gz_mb": round(gzip_size(args.folder) / 1e6, 1),
    }
    if args.archive and args.archive.is_file():
        result["artifact"] = args.archive.name
        result["artifact_mb"] = round(args.archive.stat().st_size / 1e6, 1)
    if args.build_seconds:
        result["build_seconds"] = args.build_seconds
    load = os.getloadavg()[0]
    result["load_average_before"] = round(load, 2)
    frozen = [str(args.folder / "desktop-call")]
    venv = [str(ROOT / ".venv" / "bin" / "desktop-call")]
    os.environ.setdefault("DESKTOP_CALL_XVFB", "1")
    with x_display() as display:
        watcher = MapWatcher(display)
        try:
            result["start_warm"] = series(frozen, display, watcher, args.runs, cold=False)
            try:
                result["start_cold"] = series(
                    frozen, display, watcher, max(3, args.runs // 2), True
                )
            except PermissionError as exc:
                result["start_cold"] = str(exc)
            if not args.no_venv and Path(venv[0]).is_file():
                result["venv_start_warm"] = series(venv, display, watcher, args.runs, cold=False)
                try:
                    result["venv_start_cold"] = series(venv, display, watcher, 3, cold=True)
                except PermissionError as exc:
                    result["venv_start_cold"] = str(exc)
        finally:
            watcher.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
