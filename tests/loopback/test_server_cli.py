"""The room server's command line, run as a real process (``python -m desktop_call.server``)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from desktop_call import __version__

pytestmark = pytest.mark.loopback

REPO = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"^desktop-call-server (\S+) listening on ws://127\.0\.0\.1:(\d+)\s*$")
START_LIMIT = 15.0  # interpreter start and imports, on a slow machine
T = 3.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DESKTOP_CALL_SERVER_TOKEN", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@asynccontextmanager
async def server_process(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """Start the server on a free port; yield (process, port); kill it if still running."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "desktop_call.server",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(START_LIMIT):
            line = (await proc.stdout.readline()).decode()
        match = LISTENING.match(line)
        if match is None:
            stderr = b""
            if proc.stderr is not None:
                with suppress(TimeoutError):
                    async with asyncio.timeout(T):
                        stderr = await proc.stderr.read()
            raise AssertionError(f"unexpected first line {line!r}; stderr {stderr[-2000:]!r}")
        assert match.group(1) == __version__
        yield proc, int(match.group(2))
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _join(port: int, name: str, room: str = "cli-test", **fields: str) -> ClientConnection:
    ws = await connect(
        f"ws://127.0.0.1:{port}/rooms/{room}", compression=None, open_timeout=T, ping_interval=None
    )
    await ws.send(json.dumps({"type": "join", "v": 1, "name": name, **fields}))
    return ws


async def _recv(ws: ClientConnection) -> dict:
    async with asyncio.timeout(T):
        return json.loads(await ws.recv())


async def test_serves_then_sigterm_closes_clients_1001_and_exits_0() -> None:
    async with server_process() as (proc, port):
        a = await _join(port, "a")
        welcome = await _recv(a)
        assert welcome["type"] == "welcome" and welcome["capacity"] == 2
        b = await _join(port, "b")
        assert (await _recv(b))["peers"] == [{"id": welcome["id"], "name": "a"}]
        assert (await _recv(a))["type"] == "peer-joined"

        # /healthz on the same port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(T):
            response = await reader.read()
        writer.close()
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert json.loads(body)["peers"] == 2

        proc.send_signal(signal.SIGTERM)
        for ws in (a, b):
            async with asyncio.timeout(T):
                await ws.wait_closed()
            assert ws.close_code == 1001, ws.close_code
        async with asyncio.timeout(5):
            code = await proc.wait()
        assert code == 0


async def test_sigint_also_stops_cleanly() -> None:
    async with server_process() as (proc, port):
        a = await _join(port, "a")
        assert (await _recv(a))["type"] == "welcome"
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(T):
            await a.wait_closed()
        assert a.close_code == 1001
        async with asyncio.timeout(5):
            assert await proc.wait() == 0


async def test_flags_take_effect_capacity_and_token() -> None:
    async with server_process("--capacity", "3", "--token", "s3cret") as (proc, port):
        nobody = await _join(port, "x")  # no token
        msg = await _recv(nobody)
        assert msg["type"] == "error" and msg["code"] == "unauthorized", msg
        async with asyncio.timeout(T):
            await nobody.wait_closed()
        assert nobody.close_code == 4401
        peers = []
        for name in ("a", "b", "c"):
            ws = await _join(port, name, token="s3cret")
            welcome = await _recv(ws)
            assert welcome["type"] == "welcome" and welcome["capacity"] == 3, welcome
            peers.append(ws)
        d = await _join(port, "d", token="s3cret")
        msg = await _recv(d)
        assert msg["type"] == "error" and msg["code"] == "room-full", msg
        async with asyncio.timeout(T):
            await d.wait_closed()
        assert d.close_code == 4409
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            assert await proc.wait() == 0


async def test_port_in_use_exits_non_zero_with_message() -> None:
    async with server_process() as (_, port):
        result = await asyncio.to_thread(_run, "--host", "127.0.0.1", "--port", str(port))
        assert result.returncode != 0
        assert str(port) in result.stderr, result.stderr
        assert "listening" not in result.stdout


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "desktop_call.server", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(),
        timeout=START_LIMIT,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--port", "70000"], "70000"),
        (["--port", "-1"], "port"),
        (["--port", "http"], "port"),
        (["--capacity", "0"], "capacity"),
        (["--capacity", "-2"], "capacity"),
        (["--capacity", "two"], "capacity"),
        (["--rate", "0"], "rate"),
        (["--burst", "0"], "burst"),
        (["--grace", "-1"], "grace"),
        (["--no-such-flag"], "--no-such-flag"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_flags_exit_non_zero_with_message(args: list[str], mentions: str) -> None:
    result = _run("--host", "127.0.0.1", *args)
    assert result.returncode != 0
    assert mentions in result.stderr, result.stderr
    assert "listening" not in result.stdout
    assert "Traceback" not in result.stderr, result.stderr


def test_cert_without_key(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not really a certificate\n")
    result = _run("--host", "127.0.0.1", "--port", "0", "--cert", str(cert))
    assert result.returncode != 0
    assert "--key" in result.stderr, result.stderr
    assert "listening" not in result.stdout
    assert "Traceback" not in result.stderr, result.stderr


def test_key_without_cert(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("not really a key\n")
    result = _run("--host", "127.0.0.1", "--port", "0", "--key", str(key))
    assert result.returncode != 0
    assert "--cert" in result.stderr, result.stderr
    assert "listening" not in result.stdout


def test_version() -> None:
    result = _run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"desktop-call-server {__version__}"
