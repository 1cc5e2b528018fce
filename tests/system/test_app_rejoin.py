"""An app killed mid-call and started again takes its place back at once.

Without that, the room server keeps the dead run's place for the grace period (30 s),
and a room of two is full: the restarted app would be refused by its own ghost.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from desktop_call.server import RoomServer, ServerConfig

CALL = "reja-inhe-rexx"


@pytest.fixture
async def server():
    async with RoomServer(ServerConfig(port=0)) as srv:  # the default 30 s grace
        yield srv


def app(tmp: Path, server: RoomServer, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "desktop_call", "--join", CALL, "--server", server.url,
        "--name", "Ana", "--source", "testpattern", "--settings-file", str(tmp / "ana.ini"),
        *extra,
    ]  # fmt: skip


async def line_with(stream: asyncio.StreamReader, text: str, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while text not in (await stream.readline()).decode():
            pass


async def test_a_killed_app_started_again_rejoins_its_call_at_once(server, tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    bo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "desktop_call", "--headless", "--join", CALL,
        "--server", server.url, "--name", "Bo", "--ice-servers", "none", "--duration", "120",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    first = await asyncio.create_subprocess_exec(
        *app(tmp_path, server, "--duration", "120"), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await line_with(bo.stdout, "state: connected")
        first.kill()  # no hang-up, no leave: the server keeps Ana's place
        await first.wait()
        assert server.stats()["peers"] == 2  # Bo, and Ana's place in its grace period
        report = tmp_path / "again.json"
        again = await asyncio.create_subprocess_exec(
            *app(tmp_path, server, "--duration", "3", "--report", str(report)), env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(90):
            _, err = await again.communicate()
        assert again.returncode == 0, err.decode()[-3000:]  # not "room-full"
        result = json.loads(report.read_text())
        assert result["connected"] and result["video_frames_received"] > 0
        assert result["time_to_connected_ms"] < 15_000  # well inside the 30 s grace
    finally:
        for proc in (first, bo):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(20):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
