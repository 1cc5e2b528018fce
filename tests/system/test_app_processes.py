"""The windowed app as processes (Qt offscreen): two instances call each other.

The first instance hosts the room server on this computer (the app's default), the
second finds it on the same port and shares it, as two instances on one machine do.
The call lasts a minute on the qasync loop: PySide6 6.12.0 on Python 3.11 aborted
such calls within 45 s (docs/architecture.md), and this must keep it out.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

CALL_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def start_app(tmp: Path, name: str, port: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "desktop_call",
        "--join",
        "7k3m-q9vd-x2ha",
        "--name",
        name,
        "--source",
        "testpattern",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--duration",
        str(CALL_SECONDS),
        "--report",
        str(tmp / f"{name}.json"),
        "--settings-file",
        str(tmp / f"{name}.ini"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONFAULTHANDLER": "1"},
    )


async def finish(proc: asyncio.subprocess.Process, timeout: float) -> tuple[int, str]:
    try:
        async with asyncio.timeout(timeout):
            _, err = await proc.communicate()
    except TimeoutError:
        proc.send_signal(signal.SIGABRT)  # faulthandler shows where it hung
        _, err = await proc.communicate()
        raise AssertionError(f"the app did not finish:\n{err.decode()}") from None
    return proc.returncode, err.decode()


async def test_two_app_instances_call_each_other_for_a_minute(tmp_path):
    port = free_port()
    first = await start_app(tmp_path, "Ana", port)
    # The first instance must be hosting before the second looks for a server.
    async with asyncio.timeout(30):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)  # another process: nothing to await but the port
                continue
            writer.close()
            break
    second = await start_app(tmp_path, "Bo", port)
    (code_a, err_a), (code_b, err_b) = await asyncio.gather(
        finish(first, CALL_SECONDS + 90), finish(second, CALL_SECONDS + 90)
    )
    assert code_a == 0, err_a
    assert code_b == 0, err_b
    ana = json.loads((tmp_path / "Ana.json").read_text())
    bo = json.loads((tmp_path / "Bo.json").read_text())
    for report in (ana, bo):
        assert report["connected"]
        assert report["frames_painted"] > 100
        assert report["video_frames_received"] > 100
        assert report["audio_frames_received"] > 100
        assert report["errors"] == []
        assert report["event_loop_lag_ms"]["samples"] > 100
    assert ana["sas"] == bo["sas"] is not None
    # Bo joined second and hung up first (same duration, later start): Ana saw it.
    assert "connected" in ana["states"] and ana["final_state"] == "ended"
