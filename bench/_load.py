"""Load clients for the hardening and soak benchmarks: churn, a flooding room, a measuring room.

Each ``*_process`` function is the body of one child process (``multiprocessing``, spawn):
the load generators must not share an event loop with the clients that measure latency,
or the measurement would be the generator's own lag. Everything connects to 127.0.0.1
(or other 127/8 addresses, which Linux routes to the loopback interface). Linux only (/proc).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

HOST = "127.0.0.1"


# ---------------------------------------------------------------------------------------------
# /proc


def open_fds(pid: int) -> int:
    """Open file descriptors of a process (-1 if it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def settled_fds(pid: int, *, steady: int = 5, within: float = 5.0) -> int:
    """The process's descriptor count once it has stopped changing (``steady`` equal
    readings 50 ms apart, e.g. after a readiness probe's socket has closed); the last
    reading if it has not settled ``within`` seconds. A poll: the count is another
    process's state, with no event to wait on."""
    deadline = time.monotonic() + within
    last, same = open_fds(pid), 1
    while same < steady and time.monotonic() < deadline:
        time.sleep(0.05)
        now = open_fds(pid)
        same = same + 1 if now == last else 1
        last = now
    return last


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# ---------------------------------------------------------------------------------------------
# a raw WebSocket client, cheap enough to churn thousands of connections from one core


def _upgrade(port: int, room: str) -> bytes:
    return (
        f"GET /rooms/{room} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def masked_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A final, masked client frame (mask 0: the payload goes as is, which is allowed)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(2)
    n = head[1] & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    return head[0] & 0x0F, await reader.readexactly(n)


CHURN_KINDS = ("tcp-only", "handshake-drop", "join-drop", "join-close")
_JOIN = masked_frame(json.dumps({"type": "join", "v": 1, "name": "churn"}).encode())
_CLOSE_1000 = masked_frame((1000).to_bytes(2, "big"), opcode=0x8)


CHURN_TIMEOUT_S = 30.0


async def churn_one(port: int, index: int) -> str:
    """One short-lived connection; what it does depends on ``index`` (see CHURN_KINDS):
    connect and close; handshake and drop; join a room of its own and drop (its slot
    then waits out the grace period); join and close cleanly (1000)."""
    kind = CHURN_KINDS[index % len(CHURN_KINDS)]
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        async with asyncio.timeout(CHURN_TIMEOUT_S):
            if kind == "tcp-only":
                return kind
            writer.write(_upgrade(port, f"churn-{index:07d}"))
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                return "refused:" + head.split(b"\r\n", 1)[0].decode(errors="replace")
            if kind == "handshake-drop":
                return kind
            writer.write(_JOIN)
            opcode, payload = await _read_frame(reader)
            if opcode != 0x1 or not payload.startswith(b'{"type":"welcome"'):
                return "no-welcome"
            if kind == "join-drop":
                return kind
            writer.write(_CLOSE_1000)
            while (await _read_frame(reader))[0] != 0x8:
                pass
            await reader.read()  # the server closes the TCP connection
            return kind
    finally:
        writer.transport.abort()


async def churn(port: int, connections: int, batch: int) -> dict[str, Any]:
    outcomes: dict[str, int] = {}
    errors: dict[str, int] = {}
    started = time.monotonic()
    for first in range(0, connections, batch):
        indices = range(first, min(connections, first + batch))
        results = await asyncio.gather(
            *(churn_one(port, i) for i in indices), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                name = type(result).__name__
                errors[name] = errors.get(name, 0) + 1
            else:
                outcomes[result] = outcomes.get(result, 0) + 1
    seconds = time.monotonic() - started
    return {
        "connections": connections,
        "batch": batch,
        "seconds": round(seconds, 2),
        "per_s": round(connections / seconds, 1) if seconds > 0 else None,
        "outcomes": outcomes,
        "errors": errors,
    }


def churn_process(port: int, connections: int, batch: int, out: Any) -> None:
    _raise_nofile()
    out.put(("churn", asyncio.run(churn(port, connections, batch))))


# ---------------------------------------------------------------------------------------------
# rooms that stay: a neighbour pair that measures, a pair that floods


async def ws(port: int, room: str, local: str = HOST, **kwargs: Any) -> ClientConnection:
    return await connect(
        f"ws://{HOST}:{port}/rooms/{room}",
        compression=None,
        ping_interval=None,
        max_size=1 << 22,
        local_addr=(local, 0),
        **kwargs,
    )


async def join_pair(port: int, room: str) -> tuple[ClientConnection, ClientConnection]:
    a = await ws(port, room)
    await a.send(json.dumps({"type": "join", "v": 1, "name": "a"}))
    assert json.loads(await a.recv())["type"] == "welcome"
    b = await ws(port, room)
    await b.send(json.dumps({"type": "join", "v": 1, "name": "b"}))
    assert json.loads(await b.recv())["type"] == "welcome"
    assert json.loads(await a.recv())["type"] == "peer-joined"
    return a, b


async def _wait_event(event: Any) -> None:
    """Wait for a ``multiprocessing`` event (the parent's "stop") without blocking the loop."""
    await asyncio.to_thread(event.wait)


async def neighbour(port: int, rate: float, ready: Any, stop: Any) -> dict[str, Any]:
    """a sends ``rate`` timestamped signals a second to b until ``stop``; b records the
    one-way relay latency (both ends in this process: one monotonic clock)."""
    a, b = await join_pair(port, "neighbour-room")
    latencies: list[float] = []
    samples: list[tuple[int, float]] = []  # (sent at, monotonic ns; latency, ms)
    sent = 0
    done = asyncio.Event()
    target = -1

    async def receive() -> None:
        async for raw in b:
            message = json.loads(raw)
            if message.get("type") != "signal":
                continue
            latency = (time.monotonic_ns() - message["data"]["t"]) / 1e6
            latencies.append(latency)
            samples.append((message["data"]["t"], round(latency, 3)))
            if message["data"]["n"] == target:
                done.set()

    receiver = asyncio.create_task(receive())
    ready.set()
    stopping = asyncio.create_task(_wait_event(stop))
    interval = 1 / rate
    next_at = time.monotonic()
    while not stopping.done():
        await a.send(json.dumps({"type": "signal", "data": {"n": sent, "t": time.monotonic_ns()}}))
        sent += 1
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    target = sent - 1
    if len(latencies) < sent:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await done.wait()
    receiver.cancel()
    with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
        await receiver
    await a.close()
    await b.close()
    return {
        "rate_per_s": rate,
        "sent": sent,
        "received": len(latencies),
        "p50_ms": _round(percentile(latencies, 50)),
        "p99_ms": _round(percentile(latencies, 99)),
        "max_ms": _round(max(latencies) if latencies else None),
        "samples": samples,
    }


async def flood(port: int, rate: float, size: int, ready: Any, stop: Any) -> dict[str, Any]:
    """Both peers of a room send ``size``-byte signals at ``rate`` a second (the server's
    rate limit is 50/s), and read everything the other sends."""
    a, b = await join_pair(port, "flood-room")
    pad = "x" * max(0, size - 40)
    sent = {a: 0, b: 0}
    received = {a: 0, b: 0}
    closed_by_server: list[int | None] = []
    progress = asyncio.Event()

    async def sender(ws: ClientConnection) -> None:
        interval, next_at = 1 / rate, time.monotonic()
        while not stopping.done():
            await ws.send(json.dumps({"type": "signal", "data": {"p": pad}}))
            sent[ws] += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def reader(ws: ClientConnection) -> None:
        try:
            async for message in ws:
                if message.startswith('{"type":"signal"'):  # not the peer-left at the end
                    received[ws] += 1
                    progress.set()
        except ConnectionClosed:
            pass
        if not stopping.done():
            closed_by_server.append(ws.close_code)
            progress.set()

    ready.set()
    stopping = asyncio.create_task(_wait_event(stop))
    senders = [asyncio.create_task(sender(w)) for w in (a, b)]
    readers = [asyncio.create_task(reader(w)) for w in (a, b)]
    await stopping
    for task in senders:
        with contextlib.suppress(ConnectionClosed):
            await task
    with contextlib.suppress(TimeoutError):  # what is still in flight, bounded
        async with asyncio.timeout(15):
            while not closed_by_server and (received[a], received[b]) != (sent[b], sent[a]):
                progress.clear()
                await progress.wait()
    await a.close()
    await b.close()
    for task in readers:
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await task
    return {
        "rate_per_s": rate,
        "size": size,
        "sent": sent[a] + sent[b],
        "received": received[a] + received[b],
        "closed_by_server": closed_by_server[0] if closed_by_server else None,
    }


def neighbour_process(port: int, rate: float, ready: Any, stop: Any, out: Any) -> None:
    """``ready``/``stop``: ``multiprocessing`` events; the result goes to queue ``out``."""
    out.put(("neighbour", asyncio.run(neighbour(port, rate, ready, stop))))


def flood_process(port: int, rate: float, size: int, ready: Any, stop: Any, out: Any) -> None:
    out.put(("flood", asyncio.run(flood(port, rate, size, ready, stop))))


# ---------------------------------------------------------------------------------------------


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _raise_nofile() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def wait_for(predicate: Callable[[], bool], timeout: float, period: float = 0.1) -> bool:
    """Poll ``predicate`` (a /proc or /healthz query: no event exists) until true or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return predicate()
