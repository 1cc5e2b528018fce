"""Fuzzing the room server over real sockets (PROTOCOL.md v1, "Nothing that one
connection sends can reach a connection in another room, or crash, stall or slow
the server for other rooms").

One server per test function, hosted on an event loop in a background thread;
each hypothesis example runs its coroutine on that loop. In every example an
attacker connection in room A sends random or mutated frames; then two peers
that live in room B for the whole test exchange signals and must see exactly
the expected messages, ``/healthz`` must answer, and the server's counts must
show room B as it was (and nothing left behind in room A).

The attacker's own outcome is checked against a small model of the contract
where the contract is unambiguous (the error code and close code of the first
fatal frame, the welcome, unknown-peer answers, leave).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Coroutine
from contextlib import suppress
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from desktop_call.server import RoomServer, ServerConfig

pytestmark = pytest.mark.loopback

T = 2.0
MAX_FRAME = 65_536
ROOM_A = "room-aaaa"
ROOM_B = "room-bbbb"
PROBE_TO = "no-such-peer-probe"
# Stand-ins for room B's peer ids in generated frames, replaced when sent (room B is
# re-created after a failed example, with new ids; the examples must stay replayable).
B1_MARK, B2_MARK = "@room-b-peer-1@", "@room-b-peer-2@"
CLOSE_FOR = {
    "bad-request": 4400,
    "too-large": 4413,
    "version": 4426,
    "rate-limited": 4429,
    "unauthorized": 4401,
    "room-full": 4409,
    "bad-room": 4404,
    "replaced": 4000,
}

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -------------------------------------------------------------- loop in a thread


class LoopThread:
    """An event loop running in a background thread; ``run`` blocks on a coroutine."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> LoopThread:
        self.thread.start()
        return self

    def run(self, coro: Coroutine[Any, Any, Any], limit: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(limit)

    def __exit__(self, *exc: object) -> None:
        async def cancel_rest() -> None:
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        with suppress(Exception):
            self.run(cancel_rest(), 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


# --------------------------------------------------------------------- the world


def _parse(data: str | bytes) -> Any:
    assert isinstance(data, str), f"the server sent a binary frame {data[:60]!r}"
    return json.loads(data)


async def _recv(ws: ClientConnection) -> Any:
    async with asyncio.timeout(T):
        return _parse(await ws.recv())


class World:
    """A server, and room B with two peers that stay for the whole test."""

    server: RoomServer
    b1: ClientConnection
    b2: ClientConnection
    b1_id: str
    b2_id: str

    def __init__(self) -> None:
        self.round = 0
        self.dirty = False  # a check failed: room B may hold stale messages

    async def start(self) -> None:
        self.server = RoomServer(
            ServerConfig(
                host="127.0.0.1",
                port=0,
                capacity=2,
                grace=30.0,
                queue_limit=64,
                token=None,
                rate=10_000.0,  # the persistent peers send a few messages per example
                burst=10_000,
                join_timeout=10.0,
                handshake_timeout=10.0,
                ping_interval=20.0,
                ping_timeout=20.0,
                close_timeout=2.0,
                # Hundreds of connections a second from 127.0.0.1: the per-address
                # limits (tests/loopback/test_server_abuse.py) are not under test.
                max_connections_per_ip=0,
                connection_rate_per_ip=0,
            )
        )
        await self.server.start()
        self.port = int(self.server.url.rsplit(":", 1)[1])
        await self._open_room_b()

    async def _open_room_b(self) -> None:
        self.b1, self.b1_id = await self._join(ROOM_B, "b1")
        self.b2, self.b2_id = await self._join(ROOM_B, "b2")
        assert await _recv(self.b1) == {
            "type": "peer-joined",
            "peer": {"id": self.b2_id, "name": "b2"},
        }
        self.baseline = self._counts()
        assert self.baseline == {"rooms": 1, "peers": 2, "peers_in_grace": 0}

    async def _join(self, room: str, name: str) -> tuple[ClientConnection, str]:
        ws = await self.connect(room)
        await ws.send(json.dumps({"type": "join", "v": 1, "name": name}))
        welcome = await _recv(ws)
        assert welcome["type"] == "welcome", welcome
        return ws, welcome["id"]

    async def connect(self, room: str) -> ClientConnection:
        return await connect(
            f"{self.server.url}/rooms/{room}",
            compression=None,
            open_timeout=T,
            close_timeout=T,
            ping_interval=None,
        )

    def _counts(self) -> dict[str, int]:
        stats = self.server.stats()
        return {k: stats[k] for k in ("rooms", "peers", "peers_in_grace")}

    async def stop(self) -> None:
        await self.server.close()

    async def reset_room_b(self) -> None:
        """After a failed example, start room B afresh so the next one is judged alone."""
        for ws in (self.b1, self.b2):
            with suppress(Exception):
                async with asyncio.timeout(T):
                    await ws.close()
            ws.transport.abort()
        async with asyncio.timeout(T):
            while self.server.stats()["connections"]:  # noqa: ASYNC110 (a query)
                await asyncio.sleep(0.002)
        await self._open_room_b()
        self.dirty = False

    async def attack_then_check(self, attack: Coroutine[Any, Any, None]) -> None:
        if self.dirty:
            await self.reset_room_b()
        self.dirty = True
        await attack
        await self.check_room_b()
        self.dirty = False

    # ------------------------------------------------------------ after an attack

    async def check_room_b(self) -> None:
        """Room B is intact: exact messages both ways, nothing extra, counts as before."""
        self.round += 1
        n = self.round
        # The attacker's connection is gone (it always ends): wait for the server to see it.
        async with asyncio.timeout(T):
            while self.server.stats()["connections"] != 2:  # noqa: ASYNC110 (a query)
                await asyncio.sleep(0.002)
        assert self._counts() == self.baseline, (self._counts(), self.baseline)

        await self.b1.send(json.dumps({"type": "signal", "to": self.b2_id, "data": {"n": n}}))
        assert await _recv(self.b2) == {"type": "signal", "from": self.b1_id, "data": {"n": n}}
        await self.b2.send(json.dumps({"type": "signal", "data": {"m": n}}))
        assert await _recv(self.b1) == {"type": "signal", "from": self.b2_id, "data": {"m": n}}
        for ws in (self.b1, self.b2):  # nothing else arrived (see the probe in the contract)
            await ws.send(json.dumps({"type": "signal", "to": PROBE_TO, "data": {}}))
            msg = await _recv(ws)
            assert msg["type"] == "error" and msg["code"] == "unknown-peer", msg

        status, body = await self.healthz()
        assert status == 200
        doc = json.loads(body)
        assert {k: doc[k] for k in ("rooms", "peers", "peers_in_grace")} == self.baseline

    async def healthz(self) -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            async with asyncio.timeout(T):
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
            return int(head.split(b" ", 2)[1]), body
        finally:
            writer.transport.abort()

    # ------------------------------------------------------------ the attacks

    async def attack_frames(
        self, join_first: bool, frames: list[tuple[str, bytes]], strict: bool = True
    ) -> None:
        """Send ``frames`` (kind "text" or "binary") from room A, then close cleanly.

        ``strict``: check what the attacker saw against :func:`model` where it can
        tell; otherwise only that every answer has the contract's shape.
        """
        frames = [
            (
                kind,
                data.replace(B1_MARK.encode(), self.b1_id.encode()).replace(
                    B2_MARK.encode(), self.b2_id.encode()
                ),
            )
            for kind, data in frames
        ]
        ws = await self.connect(ROOM_A)
        received: list[Any] = []
        first = asyncio.Event()

        async def read_all() -> None:
            with suppress(ConnectionClosed):
                async for message in ws:
                    received.append(_parse(message))
                    first.set()

        reader = asyncio.create_task(read_all())
        try:
            if join_first:
                await ws.send(json.dumps({"type": "join", "v": 1, "name": "attacker"}))
                async with asyncio.timeout(T):
                    await first.wait()
                assert received[0]["type"] == "welcome", received
            for i, (kind, data) in enumerate(frames):
                with suppress(ConnectionClosed):
                    await ws.send(data, text=kind == "text")
                # The server answers a ping after everything sent before it: once the pong
                # is back, every answer to the frames is in (a stalled server times out
                # here). Strict runs wait after each frame, so that each one is read on
                # its own; the others send them back to back (one read may hold several).
                if strict or i == len(frames) - 1:
                    with suppress(ConnectionClosed):
                        async with asyncio.timeout(T):
                            await (await ws.ping())
            async with asyncio.timeout(2 * T):
                await ws.close()
                await reader
        finally:
            reader.cancel()
            ws.transport.abort()
        code = ws.close_code
        assert code != 1006, f"the server dropped the connection without a close: {received}"
        outcome = [_summary(m) for m in received]
        expected = model(join_first, frames) if strict else None
        if expected is not None:
            assert (outcome, code) in expected, (
                f"frames {_show(frames)}: got {outcome} close {code}, expected one of {expected}"
            )
        else:  # no exact prediction: still only contract-shaped answers
            assert code in {1000, 1007, *CLOSE_FOR.values()}, (code, received)
            for message in received:
                assert message["type"] in ("welcome", "error"), received
            if code not in (1000, 1007):
                assert received and received[-1]["type"] == "error", (code, received)
                assert CLOSE_FOR[received[-1]["code"]] == code, (code, received)

    async def attack_raw(self, handshake: bool, data: bytes, abort: bool) -> None:
        """Raw bytes on a TCP connection to room A (before or after a real handshake)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            if handshake:
                writer.write(
                    f"GET /rooms/{ROOM_A} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n".encode()
                )
                async with asyncio.timeout(T):
                    head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 101"), head
            writer.write(data)
            if abort:
                await writer.drain()
                return
            writer.write_eof()
            async with asyncio.timeout(T):  # the server must end it, not hang on
                while await reader.read(65536):
                    pass
        finally:
            writer.transport.abort()


def _show(frames: list[tuple[str, bytes]]) -> str:
    return repr([(k, d if len(d) < 300 else d[:100] + b"...%d bytes" % len(d)) for k, d in frames])


def _summary(message: dict[str, Any]) -> tuple[str, ...]:
    if message["type"] == "error":
        assert isinstance(message.get("message"), str), message
        return ("error", message["code"])
    if message["type"] == "welcome":
        assert message["peers"] == [], message  # room A holds nobody else
        assert message["v"] == 1 and message["capacity"] == 2, message
        return ("welcome",)
    return (message["type"],)


# ------------------------------------------------------------------ the model


class _NoPrediction(Exception):
    pass


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: JSON, but how a server treats it is a grey area
        raise _NoPrediction
    return value


def _ill_typed(msg: dict[str, Any]) -> bool:
    kind = msg["type"]
    if kind == "signal":
        return not isinstance(msg.get("data"), dict) or (
            "to" in msg and not isinstance(msg["to"], str)
        )
    if kind == "join":
        v, name = msg.get("v"), msg.get("name")
        return (
            "v" not in msg
            or not isinstance(v, int)
            or isinstance(v, bool)
            or not isinstance(name, str)
            or len(name) > 64
            or any(k in msg and not isinstance(msg[k], str) for k in ("resume", "token"))
        )
    return False


Outcome = tuple[list[tuple[str, ...]], int]  # (messages summarised, close code)


def model(join_first: bool, frames: list[tuple[str, bytes]]) -> list[Outcome] | None:
    """What the attacker, alone in room A, may see: the acceptable outcomes.

    None where the contract leaves the answer open (or the model does not know).
    """
    joined = join_first
    out: list[tuple[str, ...]] = [("welcome",)] if join_first else []

    def fatal(code: str) -> list[Outcome]:
        return [([*out, ("error", code)], CLOSE_FOR[code])]

    for kind, data in frames:
        if len(data) > MAX_FRAME:
            return fatal("too-large")
        if kind == "binary":
            return fatal("bad-request")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # 4400 after an error message, or 1007 from the WebSocket layer.
            return [*fatal("bad-request"), (out, 1007)]
        if text.startswith("\ufeff"):
            return None  # a byte order mark may be ignored (RFC 8259)
        try:
            msg = json.loads(text, parse_constant=_reject_constant, parse_float=_finite)
        except _NoPrediction:
            return None
        except (ValueError, RecursionError):
            return fatal("bad-request")  # not JSON
        if not isinstance(msg, dict) or msg.get("type") not in ("join", "signal", "leave"):
            return fatal("bad-request")  # not an object, unknown or missing type
        if (msg["type"] == "join") == joined or _ill_typed(msg):
            return fatal("bad-request")  # join not first, second join, ill-typed field
        if msg["type"] == "join":
            if msg["v"] != 1:
                return fatal("version")
            joined = True
            out.append(("welcome",))
        elif msg["type"] == "signal":
            if "to" in msg:  # alone in room A: every `to` is unknown (room B's ids too)
                out.append(("error", "unknown-peer"))
        else:  # leave
            return [(out, 1000)]
    return [(out, 1000)]


# ---------------------------------------------------------------- strategies

JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
KIND = st.sampled_from(["text", "text", "binary"])


def valid_messages() -> st.SearchStrategy[dict[str, Any]]:
    join = st.fixed_dictionaries(
        {
            "type": st.just("join"),
            "v": st.sampled_from([1, 1, 1, 2, 0]),
            "name": st.text(max_size=70),
        },
        optional={"resume": st.text(max_size=10), "token": st.text(max_size=10)},
    )
    signal = st.fixed_dictionaries(
        {
            "type": st.just("signal"),
            "data": st.dictionaries(st.text(max_size=6), JSON_VALUE, max_size=3),
        },
        optional={"to": st.sampled_from([B1_MARK, B2_MARK]) | st.text(max_size=8)},
    )
    return join | signal | st.just({"type": "leave"})


@st.composite
def mutated_frames(draw: st.DrawFn) -> tuple[str, bytes]:
    msg = dict(draw(valid_messages()))
    for _ in range(draw(st.integers(0, 2))):
        op = draw(st.sampled_from(["drop", "set", "add", "type"]))
        if op == "drop" and msg:
            del msg[draw(st.sampled_from(sorted(msg)))]
        elif op == "set" and msg:
            msg[draw(st.sampled_from(sorted(msg)))] = draw(JSON_VALUE)
        elif op == "add":
            msg[draw(st.sampled_from(["to", "data", "v", "name", "x"]) | st.text(max_size=5))] = (
                draw(JSON_VALUE)
            )
        else:
            msg["type"] = draw(
                st.sampled_from(["join", "signal", "leave", "", "JOIN", "welcome"]) | JSON_VALUE
            )
    data = bytearray(json.dumps(msg, ensure_ascii=draw(st.booleans())).encode())
    for _ in range(draw(st.integers(0, 2))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete":
            del data[pos]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[pos:]
    return draw(KIND), bytes(data)


class Padded(bytes):
    """A big frame that shows as its size in hypothesis' reports."""

    def __repr__(self) -> str:
        return f"Padded(<a signal of {len(self)} bytes>)"


@st.composite
def sized_frames(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid signal padded to a size around the 64 KiB limit."""
    size = draw(st.sampled_from([65_535, 65_536, 65_537, 70_000]))
    head, tail = b'{"type":"signal","data":{"pad":"', b'"}}'
    return draw(KIND), Padded(head + b"x" * (size - len(head) - len(tail)) + tail)


random_frames = st.tuples(KIND, st.binary(max_size=200) | st.text(max_size=80).map(str.encode))


# ---------------------------------------------------------------------- tests


@pytest.fixture
def world():
    with LoopThread() as lt:
        w = World()
        lt.run(w.start())
        try:
            yield lt, w
        finally:
            lt.run(w.stop())


def test_random_frames_never_reach_or_hurt_another_room(world: tuple[LoopThread, World]) -> None:
    lt, w = world

    @SETTINGS
    @given(join_first=st.booleans(), frames=st.lists(random_frames, min_size=1, max_size=3))
    def attack(join_first: bool, frames: list[tuple[str, bytes]]) -> None:
        lt.run(w.attack_then_check(w.attack_frames(join_first, frames)))

    attack()
    assert w.round >= 100  # the examples really ran


def test_mutated_messages_never_reach_or_hurt_another_room(
    world: tuple[LoopThread, World],
) -> None:
    lt, w = world

    @SETTINGS
    @given(
        join_first=st.booleans(),
        frames=st.lists(mutated_frames() | sized_frames(), min_size=1, max_size=3),
    )
    def attack(join_first: bool, frames: list[tuple[str, bytes]]) -> None:
        lt.run(w.attack_then_check(w.attack_frames(join_first, frames, strict=False)))

    attack()
    assert w.round >= 100


def test_mutated_messages_answered_per_contract(world: tuple[LoopThread, World]) -> None:
    """The same attacks, and the attacker's answers exactly as the contract says."""
    lt, w = world

    @SETTINGS
    @given(
        join_first=st.booleans(),
        frames=st.lists(mutated_frames() | sized_frames(), min_size=1, max_size=3),
    )
    def attack(join_first: bool, frames: list[tuple[str, bytes]]) -> None:
        lt.run(w.attack_then_check(w.attack_frames(join_first, frames, strict=True)))

    attack()
    assert w.round >= 100


def test_raw_bytes_never_hurt_another_room(world: tuple[LoopThread, World]) -> None:
    lt, w = world
    prefixes = st.sampled_from(
        [b"", b"GET /rooms/room-aaaa HTTP/1.1\r\n", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"]
    )

    @SETTINGS
    @given(
        handshake=st.booleans(),
        prefix=prefixes,
        data=st.binary(max_size=300),
        abort=st.booleans(),
    )
    def attack(handshake: bool, prefix: bytes, data: bytes, abort: bool) -> None:
        data = (b"" if handshake else prefix) + data
        lt.run(w.attack_then_check(w.attack_raw(handshake, data, abort)))

    attack()
    assert w.round >= 100


def test_model_sanity() -> None:
    """The model itself (so a wrong model can neither hide a server bug nor invent one)."""
    join = json.dumps({"type": "join", "v": 1, "name": "x"}).encode()
    welcome, bad = ("welcome",), ("error", "bad-request")
    assert model(False, [("text", join)]) == [([welcome], 1000)]
    assert model(False, [("binary", join)]) == [([bad], 4400)]
    assert model(True, [("text", join)]) == [([welcome, bad], 4400)]
    signal_to = b'{"type":"signal","to":"p1","data":{}}'
    assert model(True, [("text", signal_to)]) == [([welcome, ("error", "unknown-peer")], 1000)]
    assert model(True, [("text", b'{"type":"signal","data":{}}')]) == [([welcome], 1000)]
    assert model(False, [("text", b'{"type":"signal","data":{}}')]) == [([bad], 4400)]
    assert model(True, [("text", b'{"type":"signal","to":null,"data":{}}')]) == [
        ([welcome, bad], 4400)
    ]
    assert model(False, [("text", b'{"type":"join","v":2}')]) == [([bad], 4400)]
    assert model(False, [("text", b'{"type":"join","v":true,"name":""}')]) == [([bad], 4400)]
    assert model(False, [("text", b'{"type":"join","v":2,"name":""}')]) == [
        ([("error", "version")], 4426)
    ]
    assert model(True, [("text", b'{"type":"leave"}'), ("text", b"x")]) == [([welcome], 1000)]
    assert model(False, [("text", b"\xff")]) == [([bad], 4400), ([], 1007)]
    assert model(False, [("text", b"x" * 65_537)]) == [([("error", "too-large")], 4413)]
    assert model(False, [("text", b'{"a":NaN}')]) == [([bad], 4400)]
    assert model(False, [("text", b'{"a":1e400}')]) is None
