"""Black-box tests of the room server against its public wire contract (PROTOCOL.md, v1).

Every test talks to a real server on 127.0.0.1 through real sockets: the
``websockets`` client for well-behaved peers, raw asyncio streams (hand-made
handshakes and frames) for peers that misbehave. Nothing here reaches into the
server's internals; ``server.stats()`` (the same dict as ``GET /healthz``) is
the only window used besides the wire.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.utils import apply_mask

from desktop_call.server import RoomServer, ServerConfig

pytestmark = pytest.mark.loopback

# The contract's defaults, spelled out (each test overrides only what it needs).
BASE_CONFIG: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 0,
    "capacity": 2,
    "grace": 30.0,
    "queue_limit": 64,
    "token": None,
    "rate": 50.0,
    "burst": 200,
    "join_timeout": 10.0,
    "handshake_timeout": 10.0,
    "ping_interval": 20.0,
    "ping_timeout": 20.0,
    "close_timeout": 5.0,
}

T = 2.0  # bound on any single await that should complete "at once"
MAX_FRAME = 65_536
ROOM = "room-abcd"
OTHER_ROOM = "room-efgh"
PROBE_TO = "no-such-peer-probe"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def _no_constant(name: str) -> Any:
    raise AssertionError(f"the server sent the non-JSON token {name}")


def parse(text: str) -> Any:
    """Strict JSON, keeping big integers exact (the stdlib parser does)."""
    return json.loads(text, parse_constant=_no_constant)


def canon(value: Any) -> str:
    """A canonical form that tells True from 1 and 1.0 from 1 (dict == does not)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=True)


def join_msg(name: str = "peer", **fields: Any) -> dict[str, Any]:
    return {"type": "join", "v": 1, "name": name, **fields}


def error_is(msg: Any, code: str) -> bool:
    return isinstance(msg, dict) and msg.get("type") == "error" and msg.get("code") == code


# ------------------------------------------------------------------------ clients


class Client:
    """A well-behaved peer on the ``websockets`` client."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.id: str = ""
        self.resume: str = ""
        self.welcome: dict[str, Any] = {}

    async def send(self, msg: Any, **kw: Any) -> None:
        if isinstance(msg, (str, bytes, list)):
            await self.ws.send(msg, **kw)
        else:
            await self.ws.send(json.dumps(msg), **kw)

    async def recv_text(self, within: float = T) -> str:
        async with asyncio.timeout(within):
            data = await self.ws.recv()
        assert isinstance(data, str), f"the server sent a binary frame: {data[:80]!r}"
        return data

    async def recv(self, within: float = T) -> Any:
        return parse(await self.recv_text(within))

    async def join(self, name: str = "peer", **fields: Any) -> dict[str, Any]:
        await self.send(join_msg(name, **fields))
        welcome = await self.recv()
        assert welcome.get("type") == "welcome", welcome
        self.welcome, self.id, self.resume = welcome, welcome["id"], welcome["resume"]
        return welcome

    async def drain_to_close(self, within: float = T) -> tuple[list[Any], int | None]:
        """Every message until the server closes, and the close code received."""
        messages: list[Any] = []
        try:
            async with asyncio.timeout(within):
                while True:
                    try:
                        data = await self.ws.recv()
                    except ConnectionClosed:
                        break
                    messages.append(parse(data) if isinstance(data, str) else data)
                await self.ws.wait_closed()
        except TimeoutError:
            raise AssertionError(
                f"the server did not close the connection within {within} s; got {messages!r}"
            ) from None
        return messages, self.ws.close_code

    async def expect_fatal(self, code: str, close_code: int, within: float = T) -> dict:
        messages, got_close = await self.drain_to_close(within)
        assert messages, f"closed with {got_close} but no error message (expected {code})"
        error = messages[-1]
        assert error_is(error, code), f"expected error {code!r}, got {messages!r}"
        assert isinstance(error.get("message"), str)
        assert got_close == close_code, f"error {code} closed with {got_close}, not {close_code}"
        return error

    async def close_code(self, within: float = T) -> int | None:
        async with asyncio.timeout(within):
            await self.ws.wait_closed()
        return self.ws.close_code

    async def probe(self) -> list[Any]:
        """Messages that arrive before the answer to a signal to nobody.

        The server handles a connection's messages in order, so once the
        ``unknown-peer`` answer is back, everything it would have sent earlier
        has arrived: ``probe() == []`` means "nothing else came", without a timer.
        """
        await self.send({"type": "signal", "to": PROBE_TO, "data": {}})
        seen: list[Any] = []
        while True:
            msg = await self.recv()
            if error_is(msg, "unknown-peer"):
                return seen
            seen.append(msg)

    async def assert_quiet(self) -> None:
        assert await self.probe() == []

    async def signal(self, data: dict[str, Any], to: str | None = None) -> None:
        msg: dict[str, Any] = {"type": "signal", "data": data}
        if to is not None:
            msg["to"] = to
        await self.send(msg)


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        return head + key + apply_mask(payload, key)
    return head + payload


class Raw:
    """A hand-driven WebSocket client on raw asyncio streams, free to misbehave."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.answer_pings = True
        self.pings = 0
        self.id = ""
        self.resume = ""

    @classmethod
    async def open(cls, port: int) -> Raw:
        async with asyncio.timeout(T):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def handshake(self, path: str) -> int:
        key = base64.b64encode(os.urandom(16)).decode()
        port = self.writer.get_extra_info("peername")[1]
        self.writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        async with asyncio.timeout(T):
            head = await self.reader.readuntil(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1])

    def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        self.writer.write(encode_frame(opcode, payload, fin=fin))

    def send_json(self, msg: Any) -> None:
        self.send_frame(OP_TEXT, json.dumps(msg).encode())

    async def read_frame(self) -> tuple[bool, int, bytes] | None:
        """One frame from the server, or None at end of stream."""
        try:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            assert not b1 & 0x80, "the server masked a frame"
            return bool(b0 & 0x80), b0 & 0x0F, await self.reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionResetError):
            return None

    async def recv(self, within: float = T) -> Any:
        """Next text message (parsed), ("close", code) or ("eof",); pings handled."""
        async with asyncio.timeout(within):
            while True:
                frame = await self.read_frame()
                if frame is None:
                    return ("eof",)
                _, opcode, payload = frame
                if opcode == OP_PING:
                    self.pings += 1
                    if self.answer_pings:
                        self.send_frame(OP_PONG, payload)
                elif opcode == OP_TEXT:
                    return parse(payload.decode())
                elif opcode == OP_CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    return ("close", code)

    async def drain_to_close(self, within: float = T) -> tuple[list[Any], int | None]:
        messages: list[Any] = []
        while True:
            msg = await self.recv(within)
            if isinstance(msg, tuple):
                return messages, (msg[1] if msg[0] == "close" else None)
            messages.append(msg)

    async def join(self, room: str, name: str = "raw", **fields: Any) -> dict[str, Any]:
        status = await self.handshake(f"/rooms/{room}")
        assert status == 101, status
        self.send_json(join_msg(name, **fields))
        welcome = await self.recv()
        assert isinstance(welcome, dict) and welcome.get("type") == "welcome", welcome
        self.id, self.resume = welcome["id"], welcome["resume"]
        return welcome

    pong_delay = 0.0

    def _answer(self, payload: bytes) -> None:
        if self.pong_delay:
            asyncio.get_running_loop().call_later(
                self.pong_delay, lambda: self.send_frame(OP_PONG, payload)
            )
        else:
            self.send_frame(OP_PONG, payload)

    async def pump(self, pings: int = 3, within: float = 3) -> str | int | None:
        """Read frames (answering pings if told to) until ``pings`` pings came.

        Returns None then, or how the connection ended first: "eof" or a close code.
        """
        async with asyncio.timeout(within):
            while self.pings < pings:
                frame = await self.read_frame()
                if frame is None:
                    return "eof"
                _, opcode, payload = frame
                if opcode == OP_PING:
                    self.pings += 1
                    if self.answer_pings:
                        self._answer(payload)
                elif opcode == OP_CLOSE:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        return None

    async def wait_eof(self, within: float = T) -> None:
        async with asyncio.timeout(within):
            while await self.read_frame() is not None:
                pass

    def abort(self) -> None:
        self.writer.transport.abort()


# ------------------------------------------------------------------------ harness


class Harness:
    def __init__(self, server: RoomServer) -> None:
        self.server = server
        self.clients: list[Client] = []
        self.raws: list[Raw] = []

    @property
    def port(self) -> int:
        return int(self.server.url.rsplit(":", 1)[1])

    def url(self, room: str) -> str:
        return f"{self.server.url}/rooms/{room}"

    async def connect(self, room: str = ROOM) -> Client:
        ws = await connect(
            self.url(room),
            compression=None,
            open_timeout=T,
            close_timeout=1,
            ping_interval=None,
            max_size=2**22,
        )
        client = Client(ws)
        self.clients.append(client)
        return client

    async def join(self, room: str = ROOM, name: str = "peer", **fields: Any) -> Client:
        client = await self.connect(room)
        await client.join(name, **fields)
        return client

    async def raw(self) -> Raw:
        raw = await Raw.open(self.port)
        self.raws.append(raw)
        return raw

    def stats(self) -> dict[str, Any]:
        return self.server.stats()

    async def wait_until(self, cond: Callable[[], bool], what: str, within: float = T) -> None:
        """Poll the server's own stats (an observable) until ``cond`` holds."""
        try:
            async with asyncio.timeout(within):
                # stats() is a query with no event to await: poll it.
                while not cond():  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; stats {self.stats()}") from None

    async def wait_connections(self, n: int) -> None:
        await self.wait_until(lambda: self.stats()["connections"] == n, f"{n} connections")

    async def http_get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            async with asyncio.timeout(T):
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split(" ", 2)[1])
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                if "content-length" in headers:
                    body = await reader.readexactly(int(headers["content-length"]))
                else:
                    body = await reader.read()
            return status, headers, body
        finally:
            writer.transport.abort()


@contextlib.asynccontextmanager
async def harness(**overrides: Any) -> AsyncIterator[Harness]:
    async with RoomServer(ServerConfig(**{**BASE_CONFIG, **overrides})) as server:
        h = Harness(server)
        try:
            yield h
        finally:
            for raw in h.raws:
                raw.abort()
    for client in h.clients:  # the server has closed them all (1001)
        try:
            async with asyncio.timeout(1):
                await client.ws.wait_closed()
        except TimeoutError:
            client.ws.transport.abort()


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with harness() as hh:
        yield hh


def signal_text(to: str | None, size: int) -> str:
    """A valid ``signal`` whose UTF-8 text is exactly ``size`` bytes."""
    head = '{"type":"signal",' + (f'"to":{json.dumps(to)},' if to else "") + '"data":{"pad":"'
    tail = '"}}'
    text = head + "x" * (size - len(head) - len(tail)) + tail
    assert len(text.encode()) == size
    return text


def join_text(size: int) -> str:
    """A valid ``join`` whose UTF-8 text is exactly ``size`` bytes (an extra field pads it)."""
    head = '{"type":"join","v":1,"name":"big","pad":"'
    tail = '"}'
    return head + "x" * (size - len(head) - len(tail)) + tail


# =================================================================== error table

BAD_FIRST_MESSAGES = {
    # not JSON
    "not-json-word": "hello",
    "not-json-empty": "",
    "not-json-truncated": '{"type":"join","v":1,"name":"a"',
    "not-json-single-quotes": "{'type':'join','v':1,'name':'a'}",
    "not-json-trailing-comma": '{"type":"join","v":1,"name":"a",}',
    "not-json-comment": '{"type":"join","v":1,"name":"a"} // hi',
    "not-json-two-values": '{"type":"leave"}{"type":"leave"}',
    "nan-token": '{"type":"join","v":1,"name":"a","x":NaN}',
    "infinity-token": '{"type":"join","v":1,"name":"a","x":Infinity}',
    "minus-infinity-token": '{"type":"join","v":1,"name":"a","x":-Infinity}',
    "nan-as-v": '{"type":"join","v":NaN,"name":"a"}',
    "undefined-token": '{"type":"join","v":1,"name":"a","x":undefined}',
    "python-true-token": '{"type":"join","v":1,"name":"a","x":True}',
    # not an object
    "array": '[{"type":"join","v":1,"name":"a"}]',
    "string": '"join"',
    "number": "1",
    "null": "null",
    "true": "true",
    # unknown / missing / ill-typed type
    "unknown-type": '{"type":"hello"}',
    "server-type-welcome": '{"type":"welcome","v":1,"id":"x","resume":"y","peers":[],"capacity":2}',
    "type-case": '{"type":"JOIN","v":1,"name":"a"}',
    "missing-type": '{"v":1,"name":"a"}',
    "type-number": '{"type":1,"v":1,"name":"a"}',
    "type-null": '{"type":null,"v":1,"name":"a"}',
    # join: missing / ill-typed fields
    "join-without-v": '{"type":"join","name":"a"}',
    "join-v-string": '{"type":"join","v":"1","name":"a"}',
    "join-v-null": '{"type":"join","v":null,"name":"a"}',
    "join-v-bool": '{"type":"join","v":true,"name":"a"}',
    "join-v-object": '{"type":"join","v":{},"name":"a"}',
    "join-without-name": '{"type":"join","v":1}',
    "join-name-number": '{"type":"join","v":1,"name":5}',
    "join-name-null": '{"type":"join","v":1,"name":null}',
    "join-name-list": '{"type":"join","v":1,"name":["a"]}',
    "join-resume-number": '{"type":"join","v":1,"name":"a","resume":5}',
    "join-resume-null": '{"type":"join","v":1,"name":"a","resume":null}',
    "join-token-number": '{"type":"join","v":1,"name":"a","token":5}',
    "join-token-null": '{"type":"join","v":1,"name":"a","token":null}',
    "join-name-65-chars": json.dumps(join_msg("n" * 65)),
    # join not first
    "signal-first": '{"type":"signal","data":{}}',
    "signal-to-first": '{"type":"signal","to":"someone","data":{}}',
    "leave-first": '{"type":"leave"}',
}


@pytest.mark.parametrize("text", BAD_FIRST_MESSAGES.values(), ids=BAD_FIRST_MESSAGES.keys())
async def test_bad_request_as_first_message(h: Harness, text: str) -> None:
    c = await h.connect()
    await c.send(text)
    await c.expect_fatal("bad-request", 4400)
    assert h.stats()["rooms"] == 0


def _after_join_cases(peer: str) -> dict[str, str]:
    return {
        "not-json": "nope",
        "not-object": "[]",
        "unknown-type": '{"type":"offer","data":{}}',
        "missing-type": '{"data":{}}',
        "signal-without-data": '{"type":"signal"}',
        "signal-without-data-with-to": f'{{"type":"signal","to":"{peer}"}}',
        "signal-data-null": '{"type":"signal","data":null}',
        "signal-data-list": '{"type":"signal","data":[1,2]}',
        "signal-data-string": '{"type":"signal","data":"{}"}',
        "signal-data-number": '{"type":"signal","data":1}',
        "signal-to-null": '{"type":"signal","to":null,"data":{}}',
        "signal-to-number": '{"type":"signal","to":1,"data":{}}',
        "signal-to-list": f'{{"type":"signal","to":["{peer}"],"data":{{}}}}',
        "signal-to-object": f'{{"type":"signal","to":{{"id":"{peer}"}},"data":{{}}}}',
        "nan-in-data": f'{{"type":"signal","to":"{peer}","data":{{"x":NaN}}}}',
        "infinity-in-data": f'{{"type":"signal","to":"{peer}","data":{{"x":Infinity}}}}',
        "second-join": json.dumps(join_msg("again")),
        "second-join-bad-version": json.dumps({"type": "join", "v": 2, "name": "again"}),
    }


@pytest.mark.parametrize("case", list(_after_join_cases("x")))
async def test_bad_request_after_join_is_fatal_and_frees_the_slot(h: Harness, case: str) -> None:
    b = await h.join(name="b")
    a = await h.join(name="a")
    assert (await b.recv())["type"] == "peer-joined"
    await a.send(_after_join_cases(b.id)[case])
    await a.expect_fatal("bad-request", 4400)
    # Nothing was relayed to b; a's slot was freed at once with reason "left".
    assert await b.recv() == {"type": "peer-left", "id": a.id, "reason": "left"}
    await b.assert_quiet()


@pytest.mark.parametrize("joined", [False, True], ids=["before-join", "after-join"])
async def test_binary_frame_is_bad_request(h: Harness, joined: bool) -> None:
    c = await h.connect()
    if joined:
        await c.join()
        await c.send(json.dumps({"type": "signal", "data": {}}).encode())  # binary frame
    else:
        await c.send(json.dumps(join_msg()).encode())  # a valid join, but binary
    await c.expect_fatal("bad-request", 4400)


async def test_fragmented_binary_message_is_bad_request(h: Harness) -> None:
    """A binary message is a bad-request whether or not it comes in fragments."""
    c = await h.connect()
    text = json.dumps(join_msg()).encode()
    await c.send([text[:10], text[10:]])  # two binary fragments
    await c.expect_fatal("bad-request", 4400)


async def test_fragmented_binary_message_after_join_is_bad_request(h: Harness) -> None:
    b = await h.join(name="b")
    a = await h.join(name="a")
    await b.recv()  # peer-joined
    text = json.dumps({"type": "signal", "to": b.id, "data": {"x": 1}}).encode()
    await a.send([text[:8], text[8:20], text[20:]])  # three binary fragments
    await a.expect_fatal("bad-request", 4400)
    assert await b.recv() == {"type": "peer-left", "id": a.id, "reason": "left"}


async def test_fragmented_text_message_is_one_message_or_bad_request(h: Harness) -> None:
    """A text message in fragments: handled as the whole message, or refused (never half)."""
    c = await h.connect()
    text = json.dumps(join_msg("frag"))
    await c.send([text[:7], text[7:15], text[15:]])
    msg = await c.recv()
    if msg.get("type") == "welcome":
        assert h.stats()["peers"] == 1
    else:
        assert error_is(msg, "bad-request"), msg
        assert await c.close_code() == 4400


async def test_invalid_utf8_text_frame(h: Harness) -> None:
    """Invalid UTF-8 in a text frame: bad-request/4400, or 1007 from the WebSocket layer."""
    b = await h.join(name="b")
    a = await h.join(name="a")
    await b.recv()
    await a.send(b'{"type":"signal","data":{"s":"\xff\xfe"}}', text=True)
    messages, code = await a.drain_to_close()
    if code == 4400:
        assert messages and error_is(messages[-1], "bad-request"), messages
    else:
        assert code == 1007, (code, messages)
    # Closed by the server for what it sent: its slot is freed at once.
    assert await b.recv() == {"type": "peer-left", "id": a.id, "reason": "left"}


async def test_invalid_utf8_as_first_message(h: Harness) -> None:
    c = await h.connect()
    await c.send(b'{"type":"join","v":1,"name":"\xc3\x28"}', text=True)
    messages, code = await c.drain_to_close()
    assert code in (4400, 1007), (code, messages)
    if code == 4400:
        assert messages and error_is(messages[-1], "bad-request"), messages
    assert h.stats()["rooms"] == 0


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type":"join","v":1,"name":"\xed\xa0\x80"}',  # an encoded surrogate (CESU-8)
        b'{"type":"join","v":1,"name":"\xc0\xaf"}',  # an overlong encoding of "/"
        b'{"type":"join","v":1,"name":"\xf4\x90\x80\x80"}',  # beyond U+10FFFF
        b'{"type":"join","v":1,"name":"ab\xe2\x82"}',  # truncated sequence
    ],
    ids=["surrogate", "overlong", "beyond-max", "truncated"],
)
async def test_invalid_utf8_sequences_are_refused(h: Harness, raw: bytes) -> None:
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    c = await h.connect()
    await c.send(raw, text=True)
    messages, code = await c.drain_to_close()
    assert code in (4400, 1007), (code, messages)
    if code == 4400:
        assert messages and error_is(messages[-1], "bad-request"), messages
    assert not any(m.get("type") == "welcome" for m in messages), messages


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
async def test_join_in_another_encoding_is_not_json(h: Harness, encoding: str) -> None:
    """Frames are UTF-8: a join encoded in UTF-16/32 is (valid UTF-8 but) not JSON."""
    raw = json.dumps(join_msg("x")).encode(encoding)
    raw.decode("utf-8")  # ASCII in UTF-16/32 is NULs and ASCII: valid UTF-8
    c = await h.connect()
    await c.send(raw, text=True)
    await c.expect_fatal("bad-request", 4400)
    assert h.stats()["rooms"] == 0


async def test_no_permessage_deflate(h: Harness) -> None:
    ws = await connect(h.url(ROOM), compression="deflate", open_timeout=T, ping_interval=None)
    h.clients.append(Client(ws))
    assert ws.response is not None
    assert ws.response.headers.get("Sec-WebSocket-Extensions") is None


# ------------------------------------------------------------------ unauthorized


@pytest.mark.parametrize(
    "fields",
    [{}, {"token": "wrong"}, {"token": ""}, {"token": "s3cret "}, {"token": "S3CRET"}],
    ids=["missing", "wrong", "empty", "trailing-space", "wrong-case"],
)
async def test_unauthorized(fields: dict[str, Any]) -> None:
    async with harness(token="s3cret") as h:
        c = await h.connect()
        await c.send(join_msg(**fields))
        await c.expect_fatal("unauthorized", 4401)
        assert h.stats()["rooms"] == 0


async def test_right_token_is_welcome() -> None:
    async with harness(token="s3cret") as h:
        a = await h.join(name="a", token="s3cret")
        b = await h.join(name="b", token="s3cret")
        assert b.welcome["peers"] == [{"id": a.id, "name": "a"}]


async def test_token_ill_typed_is_bad_request_not_unauthorized() -> None:
    async with harness(token="s3cret") as h:
        c = await h.connect()
        await c.send('{"type":"join","v":1,"name":"a","token":12345}')
        await c.expect_fatal("bad-request", 4400)


async def test_token_not_required_extra_token_ignored(h: Harness) -> None:
    c = await h.join(name="a", token="anything")
    assert c.welcome["type"] == "welcome"


# ---------------------------------------------------------------------- bad-room

BAD_ROOMS = {
    "upper-case": "ABCD-EFGH",
    "mixed-case": "abcD",
    "too-short-3": "abc",
    "too-short-1": "a",
    "empty": "",
    "too-long-65": "a" * 65,
    "underscore": "ab_cd",
    "dot": "ab.cd",
    "leading-dash": "-abc",
    "space": "ab%20cd",
    "percent": "abcd%41",
    "non-ascii": "%C3%A9abcd",
    "slash": "abcd/efgh",
    "trailing-slash": "abcd/",
    "plus": "ab+cd",
}


@pytest.mark.parametrize("room", BAD_ROOMS.values(), ids=BAD_ROOMS.keys())
async def test_bad_room(h: Harness, room: str) -> None:
    """Refused at the handshake with an HTTP 4xx, or with error bad-room and close 4404."""
    try:
        c = await h.connect(room)
    except InvalidStatus as exc:
        assert 400 <= exc.response.status_code < 500, exc.response.status_code
        return
    with contextlib.suppress(ConnectionClosed):
        await c.send(join_msg())
    await c.expect_fatal("bad-room", 4404)
    assert h.stats()["rooms"] == 0


@pytest.mark.parametrize(
    "room", ["abcd", "0abc", "a" * 64, "7k3m-q9vd-x2ha", "a---", "9999", "iluo-0000"]
)
async def test_valid_room_ids_are_accepted(h: Harness, room: str) -> None:
    c = await h.join(room, name="x")
    assert c.welcome["peers"] == []


# --------------------------------------------------------------------- room-full


async def test_room_full_default_capacity_2(h: Harness) -> None:
    a = await h.join(name="a")
    b = await h.join(name="b")
    assert a.welcome["capacity"] == 2
    c = await h.connect()
    await c.send(join_msg("c"))
    await c.expect_fatal("room-full", 4409)
    # The refused peer was never announced, and the room is intact.
    assert (await a.recv())["type"] == "peer-joined"
    await a.assert_quiet()
    await b.assert_quiet()
    # A different room is not full.
    d = await h.join(OTHER_ROOM, name="d")
    assert d.welcome["peers"] == []


async def test_room_full_capacity_3() -> None:
    async with harness(capacity=3) as h:
        a = await h.join(name="a")
        b = await h.join(name="b")
        c = await h.join(name="c")
        assert c.welcome["capacity"] == 3
        assert c.welcome["peers"] == [{"id": a.id, "name": "a"}, {"id": b.id, "name": "b"}]
        d = await h.connect()
        await d.send(join_msg("d"))
        await d.expect_fatal("room-full", 4409)
        # Once someone leaves there is room again.
        await b.send({"type": "leave"})
        assert await b.close_code() == 1000
        assert await c.recv() == {"type": "peer-left", "id": b.id, "reason": "left"}
        e = await h.join(name="e")
        assert e.welcome["peers"] == [{"id": a.id, "name": "a"}, {"id": c.id, "name": "c"}]


# --------------------------------------------------------------------- too-large


@pytest.mark.parametrize("joined", [False, True], ids=["as-join", "as-signal"])
async def test_frame_over_64k_is_too_large(h: Harness, joined: bool) -> None:
    c = await h.connect()
    if joined:
        await c.join()
        await c.send(signal_text(None, MAX_FRAME + 1))
    else:
        text = join_text(MAX_FRAME + 1)
        assert len(text.encode()) == MAX_FRAME + 1
        await c.send(text)
    await c.expect_fatal("too-large", 4413)


async def test_frame_of_exactly_64k_is_relayed(h: Harness) -> None:
    b = await h.join(name="b")
    a = await h.join(name="a")
    await b.recv()
    text = signal_text(b.id, MAX_FRAME)
    await a.send(text)
    got = await b.recv()
    assert got["type"] == "signal" and got["from"] == a.id
    assert got["data"] == json.loads(text)["data"]
    await a.assert_quiet()


async def test_frames_before_an_oversized_one_are_handled_first(h: Harness) -> None:
    """A join and an oversized frame in one TCP write: welcome first, then too-large."""
    raw = await h.raw()
    assert await raw.handshake(f"/rooms/{ROOM}") == 101
    big = signal_text(None, MAX_FRAME + 1).encode()
    raw.writer.write(
        encode_frame(OP_TEXT, json.dumps(join_msg("a")).encode()) + encode_frame(OP_TEXT, big)
    )
    messages, code = await raw.drain_to_close()
    assert [m.get("type") for m in messages] == ["welcome", "error"], messages
    assert error_is(messages[-1], "too-large") and code == 4413, (messages, code)


async def test_signal_before_an_oversized_frame_is_relayed(h: Harness) -> None:
    """A signal and an oversized frame in one TCP write: the signal still reaches b."""
    b = await h.join(name="b")
    raw = await h.raw()
    await raw.join(ROOM, "a")
    await b.recv()  # peer-joined
    signal = json.dumps({"type": "signal", "to": b.id, "data": {"n": 1}}).encode()
    big = signal_text(b.id, MAX_FRAME + 1).encode()
    raw.writer.write(encode_frame(OP_TEXT, signal) + encode_frame(OP_TEXT, big))
    messages, code = await raw.drain_to_close()
    assert code == 4413 and error_is(messages[-1], "too-large"), (messages, code)
    first = await b.recv()
    assert first == {"type": "signal", "from": raw.id, "data": {"n": 1}}, first
    assert await b.recv() == {"type": "peer-left", "id": raw.id, "reason": "left"}


async def test_join_of_exactly_64k_is_accepted(h: Harness) -> None:
    c = await h.connect()
    text = join_text(MAX_FRAME)
    assert len(text.encode()) == MAX_FRAME
    await c.send(text)
    msg = await c.recv()
    assert msg["type"] == "welcome", msg


async def test_64k_counts_utf8_bytes_not_characters(h: Harness) -> None:
    """16,385 astral characters are 65,540 bytes: too large, though few characters."""
    await h.join(name="b")
    a = await h.join(name="a")
    head, tail = '{"type":"signal","data":{"s":"', '"}}'
    room_left = MAX_FRAME - len(head) - len(tail)
    text = head + "\U0001f600" * (room_left // 4 + 1) + tail
    assert len(text) < MAX_FRAME < len(text.encode())
    await a.send(text)
    await a.expect_fatal("too-large", 4413)


# ------------------------------------------------------------------ rate-limited


async def test_rate_burst_then_limited() -> None:
    async with harness(rate=1.0, burst=10) as h:
        b = await h.join(name="b")
        a = await h.join(name="a")  # message 1 of a's burst
        await b.recv()
        for n in range(9):  # messages 2..10: the whole burst
            await a.signal({"n": n}, to=b.id)
        for n in range(9):
            assert await b.recv() == {"type": "signal", "from": a.id, "data": {"n": n}}
        await a.signal({"n": 9}, to=b.id)  # message 11, well under a second later
        await a.expect_fatal("rate-limited", 4429)
        assert await b.recv() == {"type": "peer-left", "id": a.id, "reason": "left"}


async def test_rate_sustained_below_limit_then_over() -> None:
    async with harness(rate=40.0, burst=3) as h:
        b = await h.join(name="b")
        a = await h.join(name="a")
        await b.recv()
        # 16 messages at 20/s: twice the burst in total, but under the sustained rate.
        for n in range(16):
            await asyncio.sleep(0.05)  # pacing is the behaviour under test
            await a.signal({"n": n}, to=b.id)
        for n in range(16):
            assert await b.recv() == {"type": "signal", "from": a.id, "data": {"n": n}}
        for n in range(6):  # then 6 at once: over a burst of 3
            await a.signal({"m": n}, to=b.id)
        messages, code = await a.drain_to_close()
        assert messages and error_is(messages[-1], "rate-limited"), messages
        assert code == 4429


async def test_rate_counts_join_and_is_per_connection() -> None:
    async with harness(rate=1.0, burst=3) as h:
        b = await h.join(name="b")  # b: 1 message
        a = await h.join(name="a")  # a: 1 message
        await b.recv()
        await a.signal({"n": 0}, to=b.id)
        await a.signal({"n": 1}, to=b.id)  # a: 3 messages, join included
        await b.signal({"n": 0}, to=a.id)
        await b.signal({"n": 1}, to=a.id)  # b: 3 messages (a separate budget)
        for n in range(2):
            assert await b.recv() == {"type": "signal", "from": a.id, "data": {"n": n}}
            assert await a.recv() == {"type": "signal", "from": b.id, "data": {"n": n}}
        await a.signal({"n": 2}, to=b.id)  # a's 4th message: over the burst
        await a.expect_fatal("rate-limited", 4429)
        assert await b.recv() == {"type": "peer-left", "id": a.id, "reason": "left"}


# ----------------------------------------------------------------------- version


@pytest.mark.parametrize("v", [2, 0, -1, 100, 2**70])
async def test_unknown_version(h: Harness, v: int) -> None:
    c = await h.connect()
    await c.send(json.dumps({"type": "join", "v": v, "name": "a"}))
    await c.expect_fatal("version", 4426)
    assert h.stats()["rooms"] == 0


async def test_unknown_version_with_thousands_of_digits(h: Harness) -> None:
    """A 5,000-digit ``v`` is still a well-typed integer: ``version``, not ``bad-request``."""
    c = await h.connect()
    await c.send('{"type":"join","v":' + "7" * 5000 + ',"name":"a"}')
    await c.expect_fatal("version", 4426)


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"join","v":2}',
        '{"type":"join","v":2,"name":5}',
        '{"type":"join","v":2,"name":"a","to":null,"token":7}',
        '{"type":"join","v":2,"name":"a","resume":null}',
        json.dumps({"type": "join", "v": 2, "name": "n" * 65}),
        '{"type":"join","v":2,"name":"a","x":NaN}',
    ],
    ids=["no-name", "name-number", "token-number", "resume-null", "name-65", "nan"],
)
async def test_malformed_join_with_v2_is_bad_request_first(h: Harness, text: str) -> None:
    c = await h.connect()
    await c.send(text)
    await c.expect_fatal("bad-request", 4400)


async def test_order_version_before_unauthorized() -> None:
    async with harness(token="s3cret") as h:
        c = await h.connect()
        await c.send({"type": "join", "v": 2, "name": "a"})  # no token either
        await c.expect_fatal("version", 4426)
        c = await h.connect()
        await c.send({"type": "join", "v": 2, "name": "a", "token": "wrong"})
        await c.expect_fatal("version", 4426)


async def test_order_unauthorized_and_version_before_room_full() -> None:
    async with harness(token="s3cret") as h:
        await h.join(name="a", token="s3cret")
        await h.join(name="b", token="s3cret")
        cases = [
            ({"type": "join", "v": 1, "name": "c"}, "unauthorized", 4401),
            ({"type": "join", "v": 1, "name": "c", "token": "nope"}, "unauthorized", 4401),
            ({"type": "join", "v": 2, "name": "c"}, "version", 4426),
            ({"type": "join", "v": 2, "name": "c", "token": "s3cret"}, "version", 4426),
            ({"type": "join", "v": 1, "name": "c", "token": "s3cret"}, "room-full", 4409),
            ('{"type":"join","v":2,"name":null}', "bad-request", 4400),
        ]
        for msg, code, close in cases:
            c = await h.connect()
            await c.send(msg)
            await c.expect_fatal(code, close)


# ---------------------------------------------------------------------- replaced


async def test_replaced_when_resumed_while_old_connection_open(h: Harness) -> None:
    b = await h.join(name="b")
    a = await h.join(name="a")
    assert (await b.recv())["type"] == "peer-joined"
    a2 = await h.connect()
    await a2.join("a", resume=a.resume)
    assert a2.id == a.id
    assert a2.resume != a.resume
    assert a2.welcome["peers"] == [{"id": b.id, "name": "b"}]
    await a.expect_fatal("replaced", 4000)
    # The others were never told anything, and the slot now lives on a2.
    await b.assert_quiet()
    await b.signal({"hi": 1}, to=a.id)
    assert await a2.recv() == {"type": "signal", "from": b.id, "data": {"hi": 1}}
    await a2.signal({"back": 1})
    assert await b.recv() == {"type": "signal", "from": a.id, "data": {"back": 1}}
    assert h.stats()["peers"] == 2
    # The first token stopped working: a join with it is a plain new join (room full here),
    # and does not replace a2.
    late = await h.connect()
    await late.send(join_msg("a", resume=a.resume))
    await late.expect_fatal("room-full", 4409)
    await a2.assert_quiet()
    await b.assert_quiet()


# ------------------------------------------------------------------ unknown-peer


async def test_unknown_peer_is_not_fatal(h: Harness) -> None:
    b = await h.join(name="b")
    a = await h.join(name="a")
    await b.recv()
    for to in ["nobody", "", b.id + "x", b.id.upper() if b.id.upper() != b.id else "Z"]:
        await a.signal({"x": 1}, to=to)
        msg = await a.recv()
        assert error_is(msg, "unknown-peer"), msg
        assert isinstance(msg["message"], str)
    # Still open and usable, both ways; b saw none of the misdirected signals.
    await a.signal({"ok": True}, to=b.id)
    assert await b.recv() == {"type": "signal", "from": a.id, "data": {"ok": True}}
    await b.signal({"ok": False}, to=a.id)
    assert await a.recv() == {"type": "signal", "from": b.id, "data": {"ok": False}}
    assert h.stats()["peers"] == 2


async def test_signal_to_self_is_unknown_peer(h: Harness) -> None:
    b = await h.join(name="b")
    a = await h.join(name="a")
    await b.recv()
    await a.signal({"x": 1}, to=a.id)
    assert error_is(await a.recv(), "unknown-peer")
    await b.assert_quiet()  # not delivered to anyone else either
    await a.signal({"y": 2}, to=b.id)  # still open
    assert await b.recv() == {"type": "signal", "from": a.id, "data": {"y": 2}}


async def test_signal_to_peer_of_another_room_is_unknown_peer(h: Harness) -> None:
    x = await h.join(OTHER_ROOM, name="x")
    a = await h.join(name="a")
    await h.join(name="b")
    await a.recv()
    await a.signal({"leak": 1}, to=x.id)
    assert error_is(await a.recv(), "unknown-peer")
    await x.assert_quiet()


# ======================================================= messages and relaying


async def test_welcome_fields_and_peer_joined(h: Harness) -> None:
    a = await h.join(name="Ana")
    w = a.welcome
    assert w["type"] == "welcome"
    assert w["v"] == 1 and type(w["v"]) is int
    assert isinstance(w["id"], str) and w["id"]
    assert isinstance(w["resume"], str) and w["resume"]
    assert w["peers"] == []
    assert w["capacity"] == 2 and type(w["capacity"]) is int
    b = await h.join(name="Bo")
    assert b.welcome["peers"] == [{"id": a.id, "name": "Ana"}]
    assert b.id != a.id and b.resume != a.resume
    assert await a.recv() == {"type": "peer-joined", "peer": {"id": b.id, "name": "Bo"}}
    await b.assert_quiet()  # no peer-joined about oneself


async def test_welcome_peers_oldest_first() -> None:
    async with harness(capacity=4) as h:
        a = await h.join(name="a")
        b = await h.join(name="b")
        c = await h.join(name="c")
        assert c.welcome["peers"] == [{"id": a.id, "name": "a"}, {"id": b.id, "name": "b"}]
        await a.send({"type": "leave"})
        assert await a.close_code() == 1000
        d = await h.join(name="d")
        e = await h.join(name="e")
        assert e.welcome["peers"] == [
            {"id": b.id, "name": "b"},
            {"id": c.id, "name": "c"},
            {"id": d.id, "name": "d"},
        ]
        # Everyone present heard of each newcomer, in order.
        assert [m["type"] for m in await b.probe()] == [
            "peer-joined",  # c
            "peer-left",  # a
            "peer-joined",  # d
            "peer-joined",  # e
        ]


async def test_signal_with_and_without_to_and_no_echo() -> None:
    async with harness(capacity=3) as h:
        a = await h.join(name="a")
        b = await h.join(name="b")
        c = await h.join(name="c")
        await a.probe()
        await b.probe()
        await a.signal({"direct": 1}, to=b.id)
        assert await b.recv() == {"type": "signal", "from": a.id, "data": {"direct": 1}}
        await c.assert_quiet()  # not addressed to c
        await a.signal({"all": 2})
        assert await b.recv() == {"type": "signal", "from": a.id, "data": {"all": 2}}
        assert await c.recv() == {"type": "signal", "from": a.id, "data": {"all": 2}}
        await a.assert_quiet()  # no echo to the sender
        await b.assert_quiet()
        await c.assert_quiet()


async def test_broadcast_alone_in_room_is_dropped_quietly(h: Harness) -> None:
    a = await h.join(name="a")
    await a.signal({"anyone": True})
    await a.assert_quiet()
    b = await h.join(name="b")
    await b.assert_quiet()  # nothing held back for later joiners


def _deep(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": [1, "x", None]}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


VERBATIM = {
    "big-integers": {
        "u64max+1": 2**64,
        "i64min-1": -(2**63) - 1,
        "huge": 10**40 + 7,
        "list": [2**65, -(2**100), 0, -1, 2**63 - 1],
        "nested": {"n": 123456789012345678901234567890123456789},
    },
    "unicode": {
        "astral": "\U0001f600\U0001d11e\U0001f004\U0010fffd",
        "bmp": "é中\u00a0\u2028\u2029",
        "controls": "\u0000\n\t\u001f",
        "key \U0001f600": "v",
        "quote": '"\\/',
        "noncharacters": "\uffff\ufffe\ufdd0\U0001fffe\U0010ffff",
        "bom-and-joiners": "\ufeff\u200d\u200b",
    },
    "lone-surrogates": {"hi": "\ud800", "lo": "a\udfffb", "list": ["\udbff", "\ud83d"]},
    "nested": {
        "a": {"b": [1, {"c": [None, True, False, 1.5, "x", [], {}]}]},
        "": {"": ""},
        "t": True,
        "one": 1,
        "f": 1.0,
        "neg": -0.5e-10,
    },
    "webrtc-offer": {"description": {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 0.0.0.0"}},
    "webrtc-candidate": {
        "candidate": {"candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host", "sdpMid": "0"},
    },
    "end-of-candidates": {"candidate": None},
    "empty": {},
    "deep-200": _deep(200),
    "deep-300": _deep(300),
    "key-order": {"z": 1, "a": 2, "m": {"y": 1, "b": 2}},
}


@pytest.mark.parametrize(
    ("name", "ascii_only"),
    [
        pytest.param(name, ascii_only, id=f"{name}-{'escaped' if ascii_only else 'raw-utf8'}")
        for name in VERBATIM
        for ascii_only in (True, False)
        if ascii_only or name != "lone-surrogates"  # a lone surrogate is not UTF-8
    ],
)
async def test_data_relayed_verbatim(h: Harness, name: str, ascii_only: bool) -> None:
    data = VERBATIM[name]
    b = await h.join(name="b")
    a = await h.join(name="a")
    await b.recv()
    for to in (b.id, None):
        msg: dict[str, Any] = {"type": "signal", "data": data}
        if to:
            msg["to"] = to
        await a.send(json.dumps(msg, ensure_ascii=ascii_only))
        got = await b.recv()
        assert got["type"] == "signal" and got["from"] == a.id
        assert canon(got["data"]) == canon(data)
    await a.assert_quiet()


async def test_integer_beyond_4300_digits_relayed_verbatim(h: Harness) -> None:
    """Integers keep every digit, however many (a 5,000-digit one fits in 64 KiB)."""
    b = await h.join(name="b")
    a = await h.join(name="a")
    await b.recv()
    digits = "9" * 5000
    await a.send(f'{{"type":"signal","to":"{b.id}","data":{{"n":{digits},"m":-{digits}1}}}}')
    got = json.loads(await b.recv_text(), parse_int=str)
    if got["type"] != "signal":
        messages, code = await a.drain_to_close()
        raise AssertionError(f"not relayed: b got {got}, the sender {messages} (close {code})")
    assert got["from"] == a.id
    assert got["data"] == {"n": digits, "m": f"-{digits}1"}


async def test_deeply_nested_data_is_relayed_or_refused_cleanly(h: Harness) -> None:
    """1,000 levels of nesting (6 KB of valid JSON): relayed verbatim, or at worst refused
    with an error message and a close code; never dropped without a word."""
    b = await h.join(name="b")
    a = await h.join(name="a")
    await b.recv()
    depth = 1000
    data_text = '{"a":' * (depth - 1) + '{"leaf":1}' + "}" * (depth - 1)
    await a.send(f'{{"type":"signal","to":"{b.id}","data":{data_text}}}')
    with contextlib.suppress(ConnectionClosed):
        await a.send(json.dumps({"type": "signal", "to": b.id, "data": {"after": 1}}))
    try:
        got = await b.recv_text()
    except TimeoutError:
        messages, code = await a.drain_to_close()
        raise AssertionError(
            f"b got neither the signal nor a peer-left; the sender got {messages!r} "
            f"and close code {code}"
        ) from None
    if data_text in re.sub(r"\s", "", got):  # relayed verbatim; the next one follows
        assert parse(await b.recv_text()) == {"type": "signal", "from": a.id, "data": {"after": 1}}
        return
    assert '"after"' not in got, "the deep signal vanished, and the sender carried on"
    # Not relayed: then the sender must have been refused cleanly, and freed ("left").
    messages, code = await a.drain_to_close()
    assert messages and messages[-1].get("type") == "error", (
        f"the sender was disconnected with close code {code} and no error message; "
        f"b got {got[:120]}"
    )
    assert code in (4400, 4413), code
    assert parse(got) == {"type": "peer-left", "id": a.id, "reason": "left"}


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("\U0001f600" * 64, True),  # 64 code points, 256 UTF-8 bytes, 128 UTF-16 units
        ("\U0001f600" * 65, False),
        ("é" * 64, True),
        ("e\u0301" * 32, True),  # 64 code points, 32 user-perceived characters
        ("e\u0301" * 32 + "x", False),
        ("\U0001f600" * 63 + "ab", False),
    ],
    ids=[
        "empty",
        "ascii-64",
        "ascii-65",
        "astral-64",
        "astral-65",
        "latin-64",
        "combining-64",
        "combining-65",
        "mixed-65",
    ],
)
async def test_name_length_in_code_points(h: Harness, name: str, ok: bool) -> None:
    if not ok:
        c = await h.connect()
        await c.send(json.dumps(join_msg(name), ensure_ascii=False))
        await c.expect_fatal("bad-request", 4400)
        return
    first = await h.join(name="first")
    c = await h.connect()
    await c.send(json.dumps(join_msg(name), ensure_ascii=False))
    w = await c.recv()
    assert w["type"] == "welcome", w
    assert await first.recv() == {"type": "peer-joined", "peer": {"id": w["id"], "name": name}}


async def test_isolation_between_rooms(h: Harness) -> None:
    a1 = await h.join(ROOM, name="a1")
    x1 = await h.join(OTHER_ROOM, name="x1")
    a2 = await h.join(ROOM, name="a2")
    x2 = await h.join(OTHER_ROOM, name="x2")
    assert a2.welcome["peers"] == [{"id": a1.id, "name": "a1"}]
    assert x2.welcome["peers"] == [{"id": x1.id, "name": "x1"}]
    assert (await a1.recv())["peer"]["id"] == a2.id
    assert (await x1.recv())["peer"]["id"] == x2.id
    await a1.signal({"room": ROOM})
    assert await a2.recv() == {"type": "signal", "from": a1.id, "data": {"room": ROOM}}
    await x2.signal({"room": OTHER_ROOM}, to=x1.id)
    assert await x1.recv() == {"type": "signal", "from": x2.id, "data": {"room": OTHER_ROOM}}
    await a2.send({"type": "leave"})
    assert await a1.recv() == {"type": "peer-left", "id": a2.id, "reason": "left"}
    for c in (a1, x1, x2):
        await c.assert_quiet()
    assert h.stats()["rooms"] == 2


# ================================================================ connection life


async def test_join_deadline() -> None:
    async with harness(join_timeout=0.5) as h:
        loop = asyncio.get_running_loop()
        c = await h.connect()
        start = loop.time()
        await c.expect_fatal("bad-request", 4400, within=3)
        assert loop.time() - start >= 0.4


async def test_join_deadline_does_not_hit_joined_peers() -> None:
    async with harness(join_timeout=0.3) as h:
        a = await h.join(name="a")
        idle = await h.connect()  # never joins
        await idle.expect_fatal("bad-request", 4400)
        b = await h.join(name="b")  # well after a's join deadline
        assert (await a.recv())["peer"]["id"] == b.id
        await a.signal({"still": "here"}, to=b.id)
        assert (await b.recv())["data"] == {"still": "here"}


async def test_leave_closes_1000_and_announces_left(h: Harness) -> None:
    b = await h.join(name="b")
    a = await h.join(name="a")
    await b.recv()
    await a.send({"type": "leave"})
    messages, code = await a.drain_to_close()
    assert code == 1000
    assert messages == []
    assert await b.recv() == {"type": "peer-left", "id": a.id, "reason": "left"}
    assert h.stats()["peers"] == 1 and h.stats()["peers_in_grace"] == 0


@pytest.mark.parametrize("code", [1000, 1001])
async def test_clean_close_frees_slot_at_once(h: Harness, code: int) -> None:
    b = await h.join(name="b")
    a = await h.join(name="a")
    await b.recv()
    await a.ws.close(code=code)
    # grace is 30 s here: "left" within T can only be the immediate free
    assert await b.recv() == {"type": "peer-left", "id": a.id, "reason": "left"}
    assert h.stats()["peers_in_grace"] == 0
    # Its resume token is dead: a new join gets a new id.
    c = await h.join(name="a", resume=a.resume)
    assert c.id != a.id


async def _drop(h: Harness, how: str) -> tuple[str, str]:
    """Join a peer in ROOM and drop it uncleanly in the way ``how``; return (id, resume)."""
    if how == "abort":
        a = await h.join(name="a")
        a.ws.transport.abort()  # no close frame
        return a.id, a.resume
    if how == "close-3000":
        a = await h.join(name="a")
        await a.ws.close(code=3000)
        return a.id, a.resume
    if how == "close-4000":
        a = await h.join(name="a")
        await a.ws.close(code=4000)
        return a.id, a.resume
    raw = await h.raw()
    await raw.join(ROOM, "a")
    if how == "close-no-status":  # an empty close frame: 1005
        raw.send_frame(OP_CLOSE, b"")
        await raw.drain_to_close()
        raw.abort()
    elif how == "close-1002":
        raw.send_frame(OP_CLOSE, struct.pack("!H", 1002))
        await raw.drain_to_close()
        raw.abort()
    elif how == "tcp-eof":  # half-close, no close frame
        raw.writer.write_eof()
        await raw.wait_eof()
        raw.abort()
    else:
        raise AssertionError(how)
    return raw.id, raw.resume


UNCLEAN = ["abort", "close-no-status", "close-1002", "close-3000", "close-4000", "tcp-eof"]


@pytest.mark.parametrize("how", UNCLEAN)
async def test_unclean_drop_keeps_slot_for_grace_then_timeout(how: str) -> None:
    grace = 1.0
    async with harness(grace=grace) as h:
        loop = asyncio.get_running_loop()
        b = await h.join(name="b")
        a_id, _ = await _drop(h, how)
        dropped_at = loop.time()
        assert (await b.recv())["type"] == "peer-joined"
        await h.wait_connections(1)  # the server has seen the drop
        assert h.stats()["peers_in_grace"] == 1
        await b.assert_quiet()  # no peer-left yet
        msg = await b.recv(within=grace + T)
        assert msg == {"type": "peer-left", "id": a_id, "reason": "timeout"}
        assert loop.time() - dropped_at >= grace * 0.9
        assert h.stats()["peers_in_grace"] == 0 and h.stats()["peers"] == 1


async def test_each_slot_in_grace_expires_on_its_own_deadline() -> None:
    grace = 0.6
    async with harness(capacity=3, grace=grace) as h:
        loop = asyncio.get_running_loop()
        c = await h.join(name="c")
        a = await h.join(name="a")
        b = await h.join(name="b")
        await c.probe()
        a.ws.transport.abort()
        await h.wait_connections(2)
        a_gone = loop.time()
        await asyncio.sleep(0.3)  # the gap between the two drops is the point here
        b.ws.transport.abort()
        await h.wait_connections(1)
        b_gone = loop.time()
        assert await c.recv(within=T) == {"type": "peer-left", "id": a.id, "reason": "timeout"}
        a_left = loop.time()
        assert await c.recv(within=T) == {"type": "peer-left", "id": b.id, "reason": "timeout"}
        b_left = loop.time()
        assert a_left - a_gone >= grace * 0.9
        assert b_left - b_gone >= grace * 0.9
        assert a_left < b_gone + grace  # a went on its own deadline, not with b's


async def test_pipelined_join_signal_leave_handled_in_order(h: Harness) -> None:
    """A join, a signal and a leave in one TCP write, before any answer."""
    b = await h.join(name="b")
    raw = await h.raw()
    assert await raw.handshake(f"/rooms/{ROOM}") == 101
    raw.writer.write(
        encode_frame(OP_TEXT, json.dumps(join_msg("a")).encode())
        + encode_frame(OP_TEXT, json.dumps({"type": "signal", "data": {"x": 1}}).encode())
        + encode_frame(OP_TEXT, b'{"type":"leave"}')
    )
    messages, code = await raw.drain_to_close()
    assert [m["type"] for m in messages] == ["welcome"], messages
    assert code == 1000
    a_id = messages[0]["id"]
    assert await b.recv() == {"type": "peer-joined", "peer": {"id": a_id, "name": "a"}}
    assert await b.recv() == {"type": "signal", "from": a_id, "data": {"x": 1}}
    assert await b.recv() == {"type": "peer-left", "id": a_id, "reason": "left"}


async def test_grace_quiet_window() -> None:
    """During the grace period the others hear nothing (a short bounded listen)."""
    async with harness(grace=1.0) as h:
        b = await h.join(name="b")
        a = await h.join(name="a")
        await b.recv()
        a.ws.transport.abort()
        with pytest.raises(TimeoutError):
            await b.recv(within=0.6)
        assert (await b.recv(within=T))["reason"] == "timeout"


@pytest.mark.parametrize("how", ["abort", "close-no-status", "tcp-eof"])
async def test_resume_within_grace(how: str) -> None:
    async with harness(capacity=3) as h:
        b = await h.join(name="b")
        a_id, a_resume = await _drop(h, how)
        await h.wait_connections(1)
        await b.probe()  # the peer-joined for a
        a2 = await h.connect()
        await a2.join("a", resume=a_resume)
        assert a2.id == a_id
        assert a2.resume and a2.resume != a_resume  # a fresh token
        assert a2.welcome["peers"] == [{"id": b.id, "name": "b"}]
        await a2.assert_quiet()  # nothing queued, nothing else
        await b.assert_quiet()  # a successful resume tells the others nothing
        # The old token stopped working: a join with it is a plain new join.
        c = await h.connect()
        await c.join("c", resume=a_resume)
        assert c.id not in (a_id, b.id)
        assert c.welcome["peers"] == [{"id": b.id, "name": "b"}, {"id": a_id, "name": "a"}]
        assert (await a2.recv())["peer"]["id"] == c.id  # a2 was not replaced
        assert (await b.recv())["peer"]["id"] == c.id
        await a2.signal({"still": "here"}, to=b.id)
        assert await b.recv() == {"type": "signal", "from": a_id, "data": {"still": "here"}}
        # The fresh token works in its turn.
        a2.ws.transport.abort()
        await h.wait_connections(2)
        a3 = await h.connect()
        await a3.join("a", resume=a2.resume)
        assert a3.id == a_id


async def test_slot_in_grace_is_kept_for_its_owner(h: Harness) -> None:
    """A kept slot still counts: the room stays full, and its owner can come back."""
    b = await h.join(name="b")
    a = await h.join(name="a")
    await b.recv()
    a.ws.transport.abort()
    await h.wait_connections(1)
    c = await h.connect()
    await c.send(join_msg("c"))
    await c.expect_fatal("room-full", 4409)
    a2 = await h.connect()
    await a2.join("a", resume=a.resume)
    assert a2.id == a.id
    await b.assert_quiet()


async def test_resumed_welcome_lists_who_came_meanwhile() -> None:
    async with harness(capacity=3) as h:
        b = await h.join(name="b")
        a = await h.join(name="a")
        await b.recv()
        a.ws.transport.abort()
        await h.wait_connections(1)
        c = await h.join(name="c")
        assert c.welcome["peers"] == [{"id": b.id, "name": "b"}, {"id": a.id, "name": "a"}]
        assert await b.recv() == {"type": "peer-joined", "peer": {"id": c.id, "name": "c"}}
        await c.signal({"hello": "a"}, to=a.id)  # queued for a
        await c.assert_quiet()
        a2 = await h.connect()
        await a2.join("a", resume=a.resume)
        assert a2.welcome["peers"] == [{"id": b.id, "name": "b"}, {"id": c.id, "name": "c"}]
        rest = await a2.probe()
        assert {"type": "signal", "from": c.id, "data": {"hello": "a"}} in rest, rest
        assert all(m["type"] in ("signal", "peer-joined") for m in rest), rest
        await b.assert_quiet()
        await c.assert_quiet()


async def test_resume_is_per_room(h: Harness) -> None:
    a = await h.join(name="a")
    a.ws.transport.abort()
    await h.wait_connections(0)
    other = await h.connect(OTHER_ROOM)
    await other.join("a", resume=a.resume)
    assert other.id != a.id
    assert other.welcome["peers"] == []
    back = await h.connect()
    await back.join("a", resume=a.resume)  # still good in its own room
    assert back.id == a.id


async def test_unknown_resume_token_is_a_new_join(h: Harness) -> None:
    a = await h.join(name="a")
    b = await h.connect()
    await b.join("b", resume="not-a-token")
    assert b.id != a.id
    assert (await a.recv())["peer"] == {"id": b.id, "name": "b"}


async def test_expired_resume_token_is_a_new_join() -> None:
    async with harness(grace=0.3) as h:
        b = await h.join(name="b")
        a = await h.join(name="a")
        await b.recv()
        a.ws.transport.abort()
        assert await b.recv(within=T) == {"type": "peer-left", "id": a.id, "reason": "timeout"}
        a2 = await h.connect()
        await a2.join("a", resume=a.resume)
        assert a2.id != a.id
        assert await b.recv() == {"type": "peer-joined", "peer": {"id": a2.id, "name": "a"}}


async def test_queued_signals_delivered_in_order_after_welcome() -> None:
    async with harness(capacity=3) as h:
        a = await h.join(name="a")
        b = await h.join(name="b")
        c = await h.join(name="c")
        await a.probe()
        await b.probe()
        a.ws.transport.abort()
        await h.wait_connections(2)
        await b.signal({"n": 0}, to=a.id)
        await b.signal({"n": 1})  # broadcast: c now, a's copy queued
        assert await b.probe() == []  # b's messages are in before c's
        await c.signal({"n": 2}, to=a.id)
        await c.signal({"n": 3})
        assert await c.probe() == [{"type": "signal", "from": b.id, "data": {"n": 1}}]
        await b.signal({"n": 4}, to=a.id)
        assert await b.probe() == [{"type": "signal", "from": c.id, "data": {"n": 3}}]
        a2 = await h.connect()
        await a2.join("a", resume=a.resume)
        assert a2.id == a.id
        expected = [(b.id, 0), (b.id, 1), (c.id, 2), (c.id, 3), (b.id, 4)]
        for sender, n in expected:
            assert await a2.recv() == {"type": "signal", "from": sender, "data": {"n": n}}
        await a2.assert_quiet()
        await b.assert_quiet()
        await c.assert_quiet()


async def test_only_first_64_queued_signals_kept(h: Harness) -> None:
    b = await h.join(name="b")
    a = await h.join(name="a")
    await b.recv()
    a.ws.transport.abort()
    await h.wait_connections(1)
    for n in range(70):  # even: addressed to a; odd: broadcast (a's copy counts too)
        await b.signal({"n": n}, to=a.id if n % 2 == 0 else None)
    await b.assert_quiet()  # all 70 handled
    a2 = await h.connect()
    await a2.join("a", resume=a.resume)
    assert a2.id == a.id
    for n in range(64):
        assert await a2.recv() == {"type": "signal", "from": b.id, "data": {"n": n}}
    await a2.assert_quiet()  # 64..69 were dropped


async def test_queue_is_not_replayed_twice(h: Harness) -> None:
    b = await h.join(name="b")
    a = await h.join(name="a")
    await b.recv()
    a.ws.transport.abort()
    await h.wait_connections(1)
    await b.signal({"n": 1}, to=a.id)
    await b.assert_quiet()
    a2 = await h.connect()
    await a2.join("a", resume=a.resume)
    assert await a2.recv() == {"type": "signal", "from": b.id, "data": {"n": 1}}
    a2.ws.transport.abort()
    await h.wait_connections(1)
    a3 = await h.connect()
    await a3.join("a", resume=a2.resume)
    assert a3.id == a.id
    await a3.assert_quiet()


async def test_peer_ids_unique_and_never_reused(h: Harness) -> None:
    keeper = await h.join(name="keeper")
    seen = {keeper.id}
    for n in range(30):
        c = await h.join(name=f"p{n}")
        assert c.id not in seen, f"id {c.id} reused"
        seen.add(c.id)
        assert (await keeper.recv())["peer"]["id"] == c.id
        if n % 2:
            await c.send({"type": "leave"})
        else:
            await c.ws.close()
        assert await keeper.recv() == {"type": "peer-left", "id": c.id, "reason": "left"}
    other = await h.join(OTHER_ROOM, name="o")
    assert other.id not in seen


async def test_healthz_counts(h: Harness) -> None:
    assert {k: h.stats()[k] for k in ("rooms", "peers", "peers_in_grace")} == {
        "rooms": 0,
        "peers": 0,
        "peers_in_grace": 0,
    }
    a1 = await h.join(ROOM, name="a1")
    a2 = await h.join(ROOM, name="a2")
    x1 = await h.join(OTHER_ROOM, name="x1")
    await h.connect("room-zzzz")  # connected, never joined: no room, no peer
    await h.wait_connections(4)
    s = h.stats()
    assert (s["rooms"], s["peers"], s["peers_in_grace"]) == (2, 3, 0), s
    status, _, body = await h.http_get("/healthz")
    assert status == 200
    remote = json.loads(body)
    assert (remote["rooms"], remote["peers"], remote["peers_in_grace"]) == (2, 3, 0), remote
    assert remote["connections"] >= 4
    a2.ws.transport.abort()
    await h.wait_connections(3)
    s = h.stats()
    assert (s["rooms"], s["peers_in_grace"]) == (2, 1), s
    assert s["peers"] in (2, 3), s  # present peers, or slots (a kept slot counts)
    await x1.send({"type": "leave"})
    await x1.close_code()
    await h.wait_connections(2)
    s = h.stats()
    assert (s["rooms"], s["peers_in_grace"]) == (1, 1), s
    await a1.ws.close()
    await h.wait_connections(1)
    s = h.stats()
    assert (s["rooms"], s["peers_in_grace"]) == (1, 1), s  # a room lives while a slot does
    assert h.stats()["peers"] in (0, 1)


async def test_room_ends_when_last_slot_expires() -> None:
    async with harness(grace=0.3) as h:
        a = await h.join(name="a")
        a.ws.transport.abort()
        await h.wait_until(lambda: h.stats()["peers_in_grace"] == 1, "a slot in grace")
        assert h.stats()["rooms"] == 1
        await h.wait_until(lambda: h.stats()["rooms"] == 0, "the room to end", within=3)
        assert h.stats()["peers"] == 0 and h.stats()["peers_in_grace"] == 0


async def test_http_healthz(h: Harness) -> None:
    status, headers, body = await h.http_get("/healthz")
    assert status == 200
    assert headers.get("content-type", "").split(";")[0].strip() == "application/json"
    doc = json.loads(body)
    for key in ("rooms", "peers", "peers_in_grace", "connections"):
        assert type(doc[key]) is int, (key, doc)
    assert {k: doc[k] for k in ("rooms", "peers", "peers_in_grace")} == {
        k: h.stats()[k] for k in ("rooms", "peers", "peers_in_grace")
    }


async def test_server_pings_and_answering_client_stays() -> None:
    async with harness(ping_interval=0.3, ping_timeout=0.3) as h:
        b = await h.join(name="b")  # the websockets client answers pings by itself
        raw = await h.raw()
        await raw.join(ROOM, "a")
        await b.recv()
        assert await raw.pump() is None, "dropped though answering pings"
        assert raw.pings >= 3
        await b.signal({"alive": True}, to=raw.id)
        assert await raw.recv() == {"type": "signal", "from": b.id, "data": {"alive": True}}
        assert h.stats()["peers"] == 2 and h.stats()["peers_in_grace"] == 0


async def test_late_but_timely_pongs_keep_the_connection() -> None:
    async with harness(ping_interval=0.3, ping_timeout=0.3) as h:
        raw = await h.raw()
        await raw.join(ROOM, "a")
        raw.pong_delay = 0.15  # half the ping timeout
        assert await raw.pump(pings=3) is None, "dropped though answering within the timeout"
        assert h.stats()["peers"] == 1 and h.stats()["peers_in_grace"] == 0


async def test_traffic_without_pongs_is_still_a_ping_timeout() -> None:
    """Only a pong answers a ping: a peer that sends signals but never pongs is dropped."""
    async with harness(ping_interval=0.3, ping_timeout=0.3) as h:
        b = await h.join(name="b")
        raw = await h.raw()
        await raw.join(ROOM, "a")
        raw.answer_pings = False
        await b.recv()

        async def chatter() -> None:
            n = 0
            while True:
                raw.send_json({"type": "signal", "to": b.id, "data": {"n": n}})
                n += 1
                await asyncio.sleep(0.05)  # steady traffic is the point

        task = asyncio.create_task(chatter())
        try:
            assert await raw.pump(pings=100) in ("eof", 1006)
        finally:
            task.cancel()
        await h.wait_connections(1)
        assert h.stats()["peers_in_grace"] == 1


async def test_ping_timeout_drops_uncleanly_and_starts_grace() -> None:
    async with harness(ping_interval=0.3, ping_timeout=0.3, grace=30.0) as h:
        loop = asyncio.get_running_loop()
        b = await h.join(name="b")
        raw = await h.raw()
        await raw.join(ROOM, "a")
        raw.answer_pings = False
        await b.recv()
        start = loop.time()
        ended = await raw.pump(pings=100)
        assert ended in ("eof", 1006), ended  # cut, not closed: a close frame is not needed
        assert raw.pings >= 1
        assert loop.time() - start >= 0.3
        await h.wait_connections(1)
        assert h.stats()["peers_in_grace"] == 1
        await b.assert_quiet()  # unclean: no peer-left
        a2 = await h.connect()
        await a2.join("a", resume=raw.resume)
        assert a2.id == raw.id
        await b.assert_quiet()


async def test_client_that_stops_reading_is_dropped_by_ping_timeout() -> None:
    async with harness(ping_interval=0.3, ping_timeout=0.3, grace=30.0) as h:
        b = await h.join(name="b")
        a = await h.join(name="a")
        await b.recv()
        a.ws.transport.pause_reading()  # a's client can no longer see pings, nor answer
        await h.wait_connections(1)
        assert h.stats()["peers_in_grace"] == 1
        await b.assert_quiet()
        a.ws.transport.abort()


async def test_shutdown_closes_everyone_with_1001() -> None:
    async with harness() as h:
        clients = [
            await h.join(ROOM, name="a"),
            await h.join(ROOM, name="b"),
            await h.join(OTHER_ROOM, name="x"),
        ]
        unjoined = await h.connect("room-zzzz")
        port = h.port
        loop = asyncio.get_running_loop()
        start = loop.time()
        async with asyncio.timeout(4):
            await h.server.close()
        assert loop.time() - start < 3
        for c in [*clients, unjoined]:
            messages, code = await c.drain_to_close()
            assert code == 1001, (code, messages)
            assert all(m.get("type") != "peer-left" for m in messages), messages
        with pytest.raises(OSError):
            async with asyncio.timeout(T):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()


@pytest.mark.parametrize(
    "how", ["not-json", "second-join", "binary", "too-large", "unknown-type", "signal-to-null"]
)
async def test_fatal_error_after_join_frees_slot_with_left(h: Harness, how: str) -> None:
    b = await h.join(name="b")
    a = await h.join(name="a")
    await b.recv()
    expected = ("bad-request", 4400)
    if how == "not-json":
        await a.send("{")
    elif how == "second-join":
        await a.send(join_msg("a"))
    elif how == "binary":
        await a.send(b"{}")
    elif how == "too-large":
        await a.send(signal_text(b.id, MAX_FRAME + 1))
        expected = ("too-large", 4413)
    elif how == "unknown-type":
        await a.send({"type": "ice"})
    elif how == "signal-to-null":
        await a.send({"type": "signal", "to": None, "data": {}})
    await a.expect_fatal(*expected)
    assert await b.recv() == {"type": "peer-left", "id": a.id, "reason": "left"}
    assert h.stats()["peers_in_grace"] == 0
    c = await h.join(name="c")  # the slot is free at once
    assert c.welcome["peers"] == [{"id": b.id, "name": "b"}]


async def test_rate_limited_after_join_frees_slot_with_left() -> None:
    async with harness(rate=0.5, burst=2) as h:
        b = await h.join(name="b")
        a = await h.join(name="a")
        await b.recv()
        await a.signal({"n": 1}, to=b.id)
        await a.signal({"n": 2}, to=b.id)
        await a.expect_fatal("rate-limited", 4429)
        assert await b.recv() == {"type": "signal", "from": a.id, "data": {"n": 1}}
        assert await b.recv() == {"type": "peer-left", "id": a.id, "reason": "left"}
        assert h.stats()["peers_in_grace"] == 0


# ============================================== misbehaving transports, other rooms


async def _room_still_works(h: Harness, room: str = OTHER_ROOM) -> None:
    x = await h.join(room, name="x")
    y = await h.join(room, name="y")
    assert (await x.recv())["peer"]["id"] == y.id
    await y.signal({"ping": 1}, to=x.id)
    assert await x.recv() == {"type": "signal", "from": y.id, "data": {"ping": 1}}
    await x.send({"type": "leave"})
    assert await y.recv() == {"type": "peer-left", "id": x.id, "reason": "left"}
    await y.send({"type": "leave"})
    assert await y.close_code() == 1000


async def test_slow_handshake_does_not_stall_others() -> None:
    async with harness(handshake_timeout=0.5) as h:
        raw = await h.raw()
        raw.writer.write(b"GET /rooms/abcd HTTP/1.1\r\nHost: 127.0.0.1\r\nUpg")  # ...and stall
        await _room_still_works(h)
        await raw.wait_eof(within=3)  # the server gave up on it


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)),  # a TLS hello
        b"POST /rooms/abcd HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        b"GET /rooms/abcd HTTP/1.1\r\nHost: x\r\n\r\n",  # no Upgrade
        b"GET /rooms/abcd HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        b"GET /rooms/abcd HTTP/1.1\r\n" + b"X: " + b"a" * 20000 + b"\r\n\r\n",
    ],
    ids=["garbage", "tls", "post", "no-upgrade", "http10", "wrong-path", "huge-header"],
)
async def test_bogus_handshake_refused_and_harmless(request_bytes: bytes) -> None:
    async with harness(handshake_timeout=0.5) as h:
        raw = await h.raw()
        raw.writer.write(request_bytes)
        await _room_still_works(h)  # while the bogus one is pending or refused
        async with asyncio.timeout(3):
            answer = await raw.reader.read()  # until the server closes
        if answer:
            status = int(answer.split(b" ", 2)[1])
            assert 400 <= status < 500 or status == 505, answer[:100]  # 505: HTTP version
        assert h.stats()["rooms"] == 0


async def test_unmasked_and_reserved_frames_do_not_hurt_others(h: Harness) -> None:
    for frame in (
        encode_frame(OP_TEXT, b'{"type":"join","v":1,"name":"a"}', mask=False),  # unmasked
        bytes([0x83, 0x80]) + os.urandom(4),  # reserved opcode 3
        bytes([0xC1, 0x80]) + os.urandom(4),  # RSV1 without an extension
        encode_frame(OP_CONT, b"x"),  # continuation with nothing to continue
        encode_frame(OP_PING, b"p" * 126),  # control frame over 125 bytes
    ):
        raw = await h.raw()
        assert await raw.handshake(f"/rooms/{ROOM}") == 101
        raw.writer.write(frame)
        _, code = await raw.drain_to_close()
        assert code is None or code >= 1000
        raw.abort()
    await _room_still_works(h)
    assert h.stats()["rooms"] == 0
