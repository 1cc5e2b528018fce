"""The room server against abuse on 127.0.0.1: per-address limits, compression bombs,
slow handshakes. (Invalid UTF-8 is covered by test_server_contract.py.)

A second loopback address (127.0.0.2) stands for "another machine" where a test needs
an attacker and a normal client on different addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from desktop_call.server import RoomServer, ServerConfig
from desktop_call.server.limits import MAX_PENDING_REFUSALS

pytestmark = pytest.mark.loopback

REPO = Path(__file__).resolve().parents[2]
T = 5.0
OTHER_HOST = "127.0.0.2"  # Linux routes all of 127/8 to lo


def port_of(server: RoomServer) -> int:
    return server.port


async def ws_connect(
    server: RoomServer, room: str, source: str = "127.0.0.1", **kwargs: Any
) -> ClientConnection:
    kwargs.setdefault("compression", None)
    return await connect(
        f"{server.url}/rooms/{room}",
        open_timeout=T,
        ping_interval=None,
        local_addr=(source, 0),
        **kwargs,
    )


async def join(server: RoomServer, room: str, source: str = "127.0.0.1") -> ClientConnection:
    ws = await ws_connect(server, room, source)
    await ws.send(json.dumps({"type": "join", "v": 1, "name": "n"}))
    assert (await recv(ws))["type"] == "welcome"
    return ws


async def recv(ws: ClientConnection) -> dict:
    async with asyncio.timeout(T):
        return json.loads(await ws.recv())


async def relays(a: ClientConnection, b: ClientConnection, count: int = 5) -> None:
    """``a`` and ``b`` share a room; every signal from a reaches b, in order."""
    for n in range(count):
        await a.send(json.dumps({"type": "signal", "data": {"n": n}}))
    got = []
    while len(got) < count:
        message = await recv(b)
        if message["type"] == "signal":
            got.append(message["data"]["n"])
    assert got == list(range(count))


async def pair(server: RoomServer, room: str, source: str = "127.0.0.1"):
    a = await join(server, room, source)
    b = await join(server, room, source)
    assert (await recv(a))["type"] == "peer-joined"
    return a, b


async def http_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(T):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
        return int(lines[0].split(" ", 2)[1]), headers, body
    finally:
        writer.transport.abort()


def upgrade_request(port: int, path: str = "/rooms/some-room", extra: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


async def wait_until(server: RoomServer, predicate, what: str, within: float = T) -> None:
    try:
        async with asyncio.timeout(within):
            while not predicate(server.stats()):  # noqa: ASYNC110 - a query, no event
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}: {server.stats()}") from None


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < wanted:
        pytest.skip(f"needs {wanted} file descriptors")


@contextlib.asynccontextmanager
async def serving(**overrides: Any) -> AsyncIterator[RoomServer]:
    async with RoomServer(ServerConfig(port=0, **overrides)) as server:
        yield server


# ---------------------------------------------------------------- per-address limits


async def test_connections_per_address_are_limited_with_a_readable_429() -> None:
    async with serving(max_connections_per_ip=3, connection_rate_per_ip=0) as server:
        a, b = await pair(server, "limited")
        c = await ws_connect(server, "limited-too")  # 3: handshake done, not joined
        with pytest.raises(InvalidStatus) as refused:
            await ws_connect(server, "limited")
        response = refused.value.response
        assert response.status_code == 429
        assert b"Too many connections from your address (at most 3" in response.body
        assert response.headers["Retry-After"] == "5"
        status, _, body = await http_exchange(server.port, b"GET /healthz HTTP/1.1\r\n\r\n")
        assert status == 429  # /healthz too: the limit is per socket, whatever it asks
        other = await join(server, "other-room", OTHER_HOST)  # another address: not limited
        await relays(a, b)  # the ones in are untouched
        await c.close()
        await wait_until(server, lambda s: s["connections"] == 3, "c's socket to close")
        d = await ws_connect(server, "limited-too")  # room again
        assert server.stats()["refused"] == 2
        for ws in (a, b, d, other):
            await ws.close()


async def test_new_connections_per_address_are_rate_limited() -> None:
    async with serving(
        max_connections_per_ip=0, connection_rate_per_ip=0.5, connection_burst_per_ip=4
    ) as server:
        opened = [await ws_connect(server, "burst") for _ in range(3)]
        await opened[0].close()  # closing gives no token back
        opened.append(await ws_connect(server, "burst"))  # the 4th of the burst
        with pytest.raises(InvalidStatus) as refused:
            await ws_connect(server, "burst")
        assert refused.value.response.status_code == 429
        assert b"Too many new connections" in refused.value.response.body
        assert refused.value.response.headers["Retry-After"] == "2"
        opened.append(await ws_connect(server, "burst", OTHER_HOST))
        for ws in opened:
            await ws.close()


async def test_exempt_networks_are_not_limited() -> None:
    async with serving(max_connections_per_ip=1, limit_exempt=("127.0.0.1/32",)) as server:
        a, b = await pair(server, "exempt")  # two from 127.0.0.1
        await relays(a, b)
        first = await ws_connect(server, "exempt-2", OTHER_HOST)
        with pytest.raises(InvalidStatus):
            await ws_connect(server, "exempt-2", OTHER_HOST)
        for ws in (a, b, first):
            await ws.close()


async def test_sockets_beyond_the_pending_refusals_are_cut_at_once() -> None:
    async with serving(max_connections_per_ip=1, connection_rate_per_ip=0) as server:
        first = await ws_connect(server, "cut-room")
        silent = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(20)]
        try:
            await wait_until(
                server,
                lambda s: s["refused"] == 20 and s["connections"] == 1 + MAX_PENDING_REFUSALS,
                "the refusals beyond the pending ones to be cut",
            )
            # The first ones wait for their request (to be answered 429); the rest were
            # cut: their connection ended without a byte.
            ended = []
            for reader, _writer in silent:
                try:
                    async with asyncio.timeout(0.2):
                        ended.append(await reader.read(1) == b"")
                except ConnectionResetError:
                    ended.append(True)
                except TimeoutError:
                    ended.append(False)
            assert ended == [False] * MAX_PENDING_REFUSALS + [True] * (20 - MAX_PENDING_REFUSALS)
        finally:
            for _reader, writer in silent:
                writer.transport.abort()
            await first.close()


# ------------------------------------------------------------------ compression bombs


def deflate_frame(payload: bytes) -> bytes:
    """One masked, final text frame with RSV1 set (permessage-deflate), as a bomb would be."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    data = data[:-4]  # RFC 7692: without the 00 00 ff ff tail
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    n = len(data)
    if n < 126:
        header = bytes((0xC1, 0x80 | n))
    elif n < 1 << 16:
        header = bytes((0xC1, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0xC1, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + mask + masked


def vm_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} for {pid}")


async def test_permessage_deflate_is_not_negotiated() -> None:
    async with serving() as server:
        status, headers, _ = await http_exchange(
            server.port,
            upgrade_request(
                server.port,
                extra="Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
            ),
        )
        assert status == 101
        assert "sec-websocket-extensions" not in headers
        ws = await ws_connect(server, "deflate", compression="deflate")  # the library's offer
        assert ws.protocol.extensions == []
        await ws.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_a_64_mib_compression_bomb_is_refused_without_inflating_it() -> None:
    """A server process; a client that offers permessage-deflate, then sends 64 MiB of
    JSON compressed to ~64 KiB anyway: the server closes it (1002, reserved bit set)
    without inflating, its peak memory stays flat, and another room goes on relaying."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "desktop_call.server", "--host", "127.0.0.1", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, cwd=REPO, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(15):
            line = (await proc.stdout.readline()).decode()
        port = int(line.rsplit(":", 1)[1])
        url = f"ws://127.0.0.1:{port}/rooms"

        async def joined(room: str) -> ClientConnection:
            ws = await connect(f"{url}/{room}", compression=None, ping_interval=None)
            await ws.send(json.dumps({"type": "join", "v": 1, "name": "n"}))
            assert (await recv(ws))["type"] == "welcome"
            return ws

        a, b = await joined("calm"), await joined("calm")
        assert (await recv(a))["type"] == "peer-joined"
        peak_before = vm_kib(proc.pid, "VmHWM")

        bomb = b'{"type":"signal","data":{"x":"' + b"a" * (64 << 20) + b'"}}'
        frame = deflate_frame(bomb)
        assert len(frame) < 1 << 20  # what travels is small...
        del bomb  # ...what it inflates to is 64 MiB
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            upgrade_request(port, "/rooms/bomb", "Sec-WebSocket-Extensions: permessage-deflate\r\n")
        )
        async with asyncio.timeout(T):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101") and b"permessage-deflate" not in head
        join = json.dumps({"type": "join", "v": 1, "name": "bomb"}).encode()
        mask = os.urandom(4)
        writer.write(bytes((0x81, 0x80 | len(join))) + mask)
        writer.write(bytes(c ^ mask[i % 4] for i, c in enumerate(join)))
        writer.write(frame)
        async with asyncio.timeout(T):
            rest = await reader.read()  # the welcome, then the close frame, then EOF
        writer.transport.abort()
        close_at = rest.rindex(b"\x88")  # server frames are unmasked: 0x88, length, code
        assert int.from_bytes(rest[close_at + 2 : close_at + 4], "big") == 1002, rest[-40:]

        await relays(a, b)  # the server is healthy for the other room
        grown = vm_kib(proc.pid, "VmHWM") - peak_before
        assert grown < 16 * 1024, f"peak RSS grew {grown} KiB"  # 64 MiB inflated would show
        await a.close()
        await b.close()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


# -------------------------------------------------------------------- slow handshakes


async def _slowloris(port: int, count: int, source: str = "127.0.0.1") -> list[asyncio.Task]:
    """``count`` sockets sending an HTTP request one byte a second; each task ends when
    the server closes its socket, returning how many bytes it had sent."""
    request = upgrade_request(port)

    async def one() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        sent = 0
        try:
            while sent < len(request):
                writer.write(request[sent : sent + 1])
                sent += 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        if await reader.read(1) == b"":  # closed by the server
                            return sent
            return sent
        except ConnectionError:
            return sent
        finally:
            writer.transport.abort()

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    return tasks


async def test_a_thousand_slow_handshakes_are_cut_at_the_deadline_and_block_nobody() -> None:
    raise_fd_limit(4096)
    deadline = 2.0
    async with serving(
        handshake_timeout=deadline, max_connections_per_ip=0, connection_rate_per_ip=0
    ) as server:
        loop = asyncio.get_running_loop()
        started = loop.time()
        slow = await _slowloris(server.port, 1000)
        await wait_until(server, lambda s: s["connections"] >= 1000, "1000 slow sockets")
        a, b = await pair(server, "busy-server")  # while all of them hang
        await relays(a, b, 20)
        async with asyncio.timeout(deadline + 15):  # generous: 2 busy cores
            sent = await asyncio.gather(*slow)
        assert max(sent) < len(upgrade_request(server.port))  # none finished its request
        assert loop.time() - started < deadline + 15
        await wait_until(server, lambda s: s["connections"] == 2, "only the pair left")
        await relays(b, a, 5)
        await a.close()
        await b.close()


async def test_with_the_default_limits_one_address_holds_a_bounded_number_of_sockets() -> None:
    raise_fd_limit(4096)
    async with serving() as server:  # 100 per address, 20/s, bursts of 100
        slow = await _slowloris(server.port, 1000)
        await wait_until(server, lambda s: s["refused"] >= 900, "refusals")
        held = server.stats()["connections"]
        assert held <= 100 + MAX_PENDING_REFUSALS, held
        a, b = await pair(server, "neighbour", OTHER_HOST)
        await relays(a, b, 20)
        for task in slow:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
        await a.close()
        await b.close()


# ---------------------------------------------------------------------------- closing


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    mask = os.urandom(4)
    assert len(payload) < 126
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked


async def test_a_leave_and_a_close_in_one_read_close_the_socket_at_once() -> None:
    """Found by bench/soak.py: the relay's fast path stopped reading after the leave, so
    the client's close frame in the same read was never seen and the socket stayed open
    until the close timeout. Here that timeout is 60 s; the socket must close long before."""
    async with serving(close_timeout=60.0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(upgrade_request(server.port, "/rooms/leave-room"))
            async with asyncio.timeout(T):
                assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
                writer.write(client_frame(b'{"type":"join","v":1,"name":"x"}'))
                head = await reader.readexactly(2)
                assert b'"welcome"' in await reader.readexactly(head[1])
                writer.write(
                    client_frame(b'{"type":"leave"}')
                    + client_frame((1000).to_bytes(2, "big"), opcode=0x8)
                )
                rest = await reader.read()  # EOF: the server closed the TCP connection
            assert rest[:1] == b"\x88" and int.from_bytes(rest[2:4], "big") == 1000
            await wait_until(server, lambda s: s["connections"] == 0, "the socket to go")
        finally:
            writer.transport.abort()


# ---------------------------------------------------------------- handshake bursts


async def test_a_burst_of_handshakes_is_answered_in_turns_while_a_room_keeps_relaying(
    monkeypatch,
) -> None:
    """500 upgrade requests at once: every one is answered, at most HANDSHAKES_PER_TURN
    per turn of the loop (the loop polls its sockets between turns), and a room already
    talking keeps relaying. The latency this buys is bench/hardening.py's."""
    from desktop_call.server import app as server_app

    raise_fd_limit(2_000)
    turns: list[int] = []
    original = server_app.RoomServer._answer_handshakes

    def counted(self) -> None:
        before = len(self._handshakes)
        original(self)
        turns.append(before - len(self._handshakes))

    monkeypatch.setattr(server_app.RoomServer, "_answer_handshakes", counted)
    async with serving(limit_exempt=("127.0.0.0/8",)) as server:
        a, b = await pair(server, "room-talking")
        port = port_of(server)
        streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(500)]
        turns.clear()
        for _, writer in streams:
            writer.write(upgrade_request(port, "/rooms/burst-room"))
        # The room talks while the burst is being answered.
        for n in range(20):
            await a.send(json.dumps({"type": "signal", "data": {"n": n}}))
            message = await recv(b)
            assert message["data"] == {"n": n}
        for reader, writer in streams:
            async with asyncio.timeout(T):
                status = await reader.readuntil(b"\r\n")
            assert status.startswith(b"HTTP/1.1 101"), status
            writer.transport.abort()
        await a.close()
        await b.close()
    assert sum(turns) >= 500
    assert max(turns) <= server_app.HANDSHAKES_PER_TURN
    assert len(turns) >= 500 // server_app.HANDSHAKES_PER_TURN
