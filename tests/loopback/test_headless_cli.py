"""The headless CLI as separate processes: two of them call each other on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from desktop_call.server import RoomServer, ServerConfig

APP = [sys.executable, "-m", "desktop_call", "--headless", "--ice-servers", "none"]


async def run_app(*args: str, timeout: float = 90) -> tuple[int, str, str]:
    """Run the app; on a timeout, its Python stacks (faulthandler) go into the failure."""
    proc = await asyncio.create_subprocess_exec(
        *APP,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    communicating = asyncio.ensure_future(proc.communicate())
    try:
        async with asyncio.timeout(timeout):
            out, err = await asyncio.shield(communicating)
    except TimeoutError:
        proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
        out, err = await communicating
        raise AssertionError(
            f"the app did not finish within {timeout} s:\n{out.decode()}\n{err.decode()}"
        ) from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def server():
    async with RoomServer(ServerConfig(port=0)) as srv:
        yield srv


def read_report(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_two_processes_call_each_other_and_report_media_both_ways(server, tmp_path, codec):
    reports = [tmp_path / "a.json", tmp_path / "b.json"]
    common = ["--server", server.url, "--duration", "3", "--codec", codec]
    (code_a, out_a, err_a), (code_b, out_b, err_b) = await asyncio.gather(
        run_app("--join", "7k3m-q9vd-x2ha", "--name", "A", "--report", str(reports[0]), *common),
        run_app("--join", " 7K3M Q9VD X2HA ", "--name", "B", "--report", str(reports[1]), *common),
    )
    assert code_a == 0, err_a + out_a
    assert code_b == 0, err_b + out_b
    a, b = read_report(reports[0]), read_report(reports[1])
    for report in (a, b):
        assert report["connected"] and report["media_both_ways"]
        assert report["video_frames_received"] > 30
        assert report["audio_frames_received"] > 50
        assert 400 < report["audio_dominant_hz"] < 480  # the 440 Hz tone
        assert report["latency_ms"]["samples"] > 0
        assert 0 < report["latency_ms"]["p50"] < 1000
        assert report["codec"] == codec
        assert report["candidate_type"] == "host"
        assert report["video_resolution"] == "640x480"
        assert report["errors"] == []
    assert a["sas"] is not None and a["sas"] == b["sas"]


async def test_create_hosts_a_call_that_another_process_joins(tmp_path):
    report = tmp_path / "joiner.json"
    creator = await asyncio.create_subprocess_exec(
        *APP,
        "--create",
        "--port",
        "0",
        "--duration",
        "2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            line = (await creator.stdout.readline()).decode()
        match = re.search(r"dcall://127\.0\.0\.1:\d+/[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}", line)
        assert match, line
        code, out, err = await run_app(
            "--join", match.group(0), "--duration", "2", "--report", str(report)
        )
        assert code == 0, err + out
        assert read_report(report)["media_both_ways"]
        async with asyncio.timeout(30):
            assert await creator.wait() == 0
    finally:
        if creator.returncode is None:
            creator.kill()
            await creator.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--join", "not a call!"], "not a call ID"),
        (["not a call!"], "not a call ID"),  # a link as the argument is --join's
        (["--join", "abcd", "--resolution", "big"], "is not WxH"),
        (["--join", "abcd", "--source", "camera"], "use testpattern, tone or file:PATH"),
        (["--join", "abcd", "--source", "file:/nonexistent/clip.mp4"], "no such file"),
        (["--join", "abcd", "--ice-servers", "http://x"], "not a STUN/TURN URL"),
        (["--join", "abcd", "--ice-servers", "turn:127.0.0.1:3478"], "needs a username"),
    ],
)
async def test_bad_input_gets_a_clear_message_and_a_usage_exit(args, message):
    code, out, err = await run_app(*args, timeout=30)
    assert code == 64, (code, out, err)
    assert message in err
    assert "Traceback" not in err


async def test_a_link_and_join_together_are_refused():
    code, out, err = await run_app("7k3m-q9vd-x2ha", "--join", "7k3m-q9vd-x2ha", timeout=30)
    assert code == 2 and "give a link, or --join, or --create" in err


async def test_a_full_room_fails_with_the_reason(server, tmp_path):
    async def occupant(name: str):
        return await run_app("--join", "full-room", "--server", server.url, "--duration", "4")

    first = asyncio.ensure_future(occupant("A"))
    second = asyncio.ensure_future(occupant("B"))
    async with asyncio.timeout(30):
        while server.stats()["peers"] < 2:  # noqa: ASYNC110 - no event to wait on across processes
            await asyncio.sleep(0.05)
    code, out, err = await run_app("--join", "full-room", "--server", server.url, timeout=30)
    assert code == 2, (out, err)
    assert "room-full" in err
    assert [r[0] for r in await asyncio.gather(first, second)] == [0, 0]
