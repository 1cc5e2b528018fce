"""The signaling client against a real room server (and a few fake ones) on 127.0.0.1.

Every wait is an event with a timeout; the client's backoff sleeps are injected
(recorded, and gated where a test needs the client to stay disconnected).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from desktop_call.call.signaling import (
    Backoff,
    ClientState,
    Connected,
    Disconnected,
    Fatal,
    PeerJoined,
    PeerLeft,
    ServerError,
    SignalingClient,
    SignalingClosed,
    SignalingEvent,
    SignalingFatal,
    SignalReceived,
    TokenBucket,
)
from desktop_call.server import RoomServer, ServerConfig
from desktop_call.server.rooms import Registry, RegistryConfig
from desktop_call.signaling.protocol import ErrorCode

pytestmark = pytest.mark.loopback

WAIT = 2.0  # seconds any single expected event may take
FAST = Backoff(initial=0.01, maximum=0.05, rng=lambda: 0.5)
E = TypeVar("E")


# ------------------------------------------------------------------- helpers


class Sleeps:
    """An injected ``sleep``: records each backoff delay; waits on ``gate`` if closed."""

    def __init__(self, *, open_gate: bool = True) -> None:
        self.delays: list[float] = []
        self.gate = asyncio.Event()
        if open_gate:
            self.gate.set()

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await self.gate.wait()


async def event(client: SignalingClient) -> SignalingEvent:
    async with asyncio.timeout(WAIT):
        return await client.next_event()


async def expect(client: SignalingClient, kind: type[E]) -> E:
    got = await event(client)
    assert isinstance(got, kind), f"expected {kind.__name__}, got {got!r}"
    return got


async def until(client: SignalingClient, kind: type[E]) -> tuple[E, list[SignalingEvent]]:
    """Skip events up to the next ``kind``; return it and what was skipped."""
    skipped: list[SignalingEvent] = []
    while True:
        got = await event(client)
        if isinstance(got, kind):
            return got, skipped
        skipped.append(got)


async def condition(predicate: Callable[[], bool]) -> None:
    """Wait (bounded) for server state that has no event to await (its registry, its
    connection count): polled, never a fixed sleep."""
    async with asyncio.timeout(WAIT):
        while not predicate():  # noqa: ASYNC110 - the server exposes no event for these
            await asyncio.sleep(0.005)


def room(server: RoomServer, call_id: str = "test-room") -> str:
    return f"{server.url}/rooms/{call_id}"


class FreezingProxy:
    """A TCP relay to ``port``; :meth:`freeze` makes the current connections go silent
    (nothing forwarded, nothing closed), which is what a dead network looks like."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.accepted = 0
        self._pumps: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> FreezingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst))
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
        dst.close()

    async def freeze(self) -> None:
        pumps = list(self._pumps)
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)

    async def __aexit__(self, *exc_info: object) -> None:
        await self.freeze()
        for writer in self._writers:
            writer.transport.abort()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[RoomServer]:
    async with RoomServer(ServerConfig(host="127.0.0.1", port=0, grace=5.0)) as srv:
        yield srv


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., Awaitable[SignalingClient]]]:
    """``await clients(url, name, **options)``: a started client, closed after the test."""
    made: list[SignalingClient] = []

    async def make(url: str, name: str, **options: Any) -> SignalingClient:
        options.setdefault("backoff", FAST)
        client = SignalingClient(url, name, **options)
        made.append(client)
        await client.start()
        return client

    yield make
    for client in made:
        await client.close()
        assert client._task is not None and client._task.done()
        assert client._ws is None


async def joined_pair(
    clients: Callable[..., Awaitable[SignalingClient]], url: str, **a_options: Any
) -> tuple[SignalingClient, SignalingClient]:
    a = await clients(url, "Alice", **a_options)
    await expect(a, Connected)
    b = await clients(url, "Bob")
    await expect(b, Connected)
    await expect(a, PeerJoined)
    return a, b


def drop_transport(client: SignalingClient) -> None:
    """Cut the TCP connection without a close frame (what a network failure looks like)."""
    assert client._ws is not None
    client._ws.transport.abort()


# ------------------------------------------------------------- join and relay


async def test_two_clients_join_and_see_each_other(server, clients):
    a = await clients(room(server), "Alice")
    first = await expect(a, Connected)
    assert first.resumed is False
    assert first.welcome.peers == ()
    assert a.state is ClientState.JOINED and a.peer_id == first.peer_id

    b = await clients(room(server), "Bob")
    second = await expect(b, Connected)
    assert [(p.id, p.name) for p in second.welcome.peers] == [(a.peer_id, "Alice")]
    assert dict(b.peers).keys() == {a.peer_id}

    joined = await expect(a, PeerJoined)
    assert (joined.peer.id, joined.peer.name) == (b.peer_id, "Bob")
    assert a.peers[b.peer_id].name == "Bob"
    assert a.attempts == b.attempts == 1


async def test_signals_both_ways_with_and_without_to(server, clients):
    a, b = await joined_pair(clients, room(server))
    offer = {"description": {"type": "offer", "sdp": "v=0\r\n"}, "n": 2**70, "s": "ü😀"}
    await a.send_signal(offer)  # broadcast
    got = await expect(b, SignalReceived)
    assert (got.sender, got.data) == (a.peer_id, offer)

    answer = {"description": {"type": "answer", "sdp": "v=0\r\n"}}
    await b.send_signal(answer, to=a.peer_id)
    got = await expect(a, SignalReceived)
    assert (got.sender, got.data) == (b.peer_id, answer)

    for i in range(20):  # order is kept
        await a.send_signal({"candidate": {"candidate": f"c{i}"}}, to=b.peer_id)
    received = [(await expect(b, SignalReceived)).data["candidate"]["candidate"] for _ in range(20)]
    assert received == [f"c{i}" for i in range(20)]


async def test_sends_are_paced_below_the_server_rate_limit(clients):
    # Without pacing, 40 signals at once would pass this server's burst of 20 (fatal).
    config = ServerConfig(host="127.0.0.1", port=0, rate=50.0, burst=20)
    async with RoomServer(config) as srv:
        a, b = await joined_pair(clients, room(srv), send_rate=40.0, send_burst=10)
        for i in range(40):
            await a.send_signal({"i": i})
        assert [(await expect(b, SignalReceived)).data["i"] for _ in range(40)] == list(range(40))
        assert a.state is ClientState.JOINED and a.attempts == 1


async def test_unknown_peer_is_an_event_and_the_connection_stays(server, clients):
    a, b = await joined_pair(clients, room(server))
    await a.send_signal({"x": 1}, to="nobody-here")
    error = await expect(a, ServerError)
    assert error.code is ErrorCode.UNKNOWN_PEER
    await a.send_signal({"x": 2}, to=b.peer_id)
    assert (await expect(b, SignalReceived)).data == {"x": 2}
    assert a.state is ClientState.JOINED and a.attempts == 1


async def test_bad_input_from_the_caller_is_refused_and_changes_nothing(server, clients):
    a, b = await joined_pair(clients, room(server))
    with pytest.raises(TypeError):
        await a.send_signal(["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await a.send_signal({"sdp": "x" * 70_000})  # over 64 KiB: would be fatal
    with pytest.raises(ValueError):
        SignalingClient("http://example.com/rooms/abcd", "x")
    with pytest.raises(ValueError):
        SignalingClient(room(server), "n" * 65)
    for resume in ("", "t" * 257, 42):
        with pytest.raises(ValueError, match="resume must be"):
            SignalingClient(room(server), "n", resume=resume)  # type: ignore[arg-type]
    await a.send_signal({"still": "fine"})
    assert (await expect(b, SignalReceived)).data == {"still": "fine"}


async def test_signals_sent_before_the_first_welcome_are_flushed(server, clients):
    b = await clients(room(server), "Bob")
    await expect(b, Connected)
    a = SignalingClient(room(server), "Alice", backoff=FAST)
    await a.send_signal({"early": 1})  # not even started: queued
    async with a:
        await a.send_signal({"early": 2})
        await expect(a, Connected)
        await expect(b, PeerJoined)
        assert [(await expect(b, SignalReceived)).data for _ in range(2)] == [
            {"early": 1},
            {"early": 2},
        ]
    assert a.state is ClientState.CLOSED


# ------------------------------------------------------------ resume, reconnect


async def test_resume_after_a_dropped_transport_keeps_the_id(server, clients):
    sleeps = Sleeps(open_gate=False)
    a, b = await joined_pair(clients, room(server), sleep=sleeps)
    old_id = a.peer_id

    drop_transport(a)
    gone = await expect(a, Disconnected)
    assert gone.will_retry and "no close frame" in gone.reason
    assert a.state is ClientState.RECONNECTING
    await condition(lambda: server.registry.peers_in_grace == 1)
    await b.send_signal({"while": "away"})  # the server queues it for A's slot

    sleeps.gate.set()
    back = await expect(a, Connected)
    assert back.resumed is True and a.peer_id == old_id == back.peer_id
    assert [p.id for p in back.welcome.peers] == [b.peer_id]
    assert (await expect(a, SignalReceived)).data == {"while": "away"}
    assert sleeps.delays == [FAST.delay(0)]

    await a.send_signal({"after": "resume"})
    # B's very next event is this signal: no peer-left, no peer-joined in between.
    got = await expect(b, SignalReceived)
    assert (got.sender, got.data) == (old_id, {"after": "resume"})
    assert b.peers.keys() == {old_id}


async def test_a_silent_network_is_noticed_by_pings_and_resumed(server, clients):
    async with FreezingProxy(server.port) as proxy:
        url = f"ws://127.0.0.1:{proxy.port}/rooms/test-room"
        b = await clients(room(server), "Bob")
        await expect(b, Connected)
        quick = {"ping_interval": 0.05, "ping_timeout": 0.1, "close_timeout": 0.1}
        a = await clients(url, "Alice", **quick)
        await expect(a, Connected)
        await expect(b, PeerJoined)
        old_id = a.peer_id
        await proxy.freeze()  # the server still thinks A is there

        gone = await expect(a, Disconnected)
        assert gone.will_retry and "ping timeout" in gone.reason
        back = await expect(a, Connected)  # through the proxy again: a new connection
        assert back.resumed is True and a.peer_id == old_id
        assert proxy.accepted == 2 and a.attempts == 2
        await a.send_signal({"after": "freeze"})
        got = await expect(b, SignalReceived)  # B saw nothing else in between
        assert (got.sender, got.data) == (old_id, {"after": "freeze"})


async def test_a_connection_in_doubt_is_checked_at_once_and_dropped_if_silent(server, clients):
    async with FreezingProxy(server.port) as proxy:
        url = f"ws://127.0.0.1:{proxy.port}/rooms/test-room"
        b = await clients(room(server), "Bob")
        await expect(b, Connected)
        a = await clients(url, "Alice")  # the default keepalive: 20 s + 20 s
        await expect(a, Connected)
        assert await a.check_connection(1.0) is True  # answers: nothing happens
        await proxy.freeze()
        assert await a.check_connection(0.3) is False
        gone = await expect(a, Disconnected)  # at once, not after the keepalive's 40 s
        assert gone.will_retry
        back = await expect(a, Connected)
        assert back.resumed is True and proxy.accepted == 2


async def test_resume_reports_who_came_and_went_meanwhile(server, clients):
    sleeps = Sleeps(open_gate=False)
    a, b = await joined_pair(clients, room(server), sleep=sleeps)
    b_id = b.peer_id
    drop_transport(a)
    await expect(a, Disconnected)
    await condition(lambda: server.registry.peers_in_grace == 1)
    await b.leave()  # A is away: the server cannot tell it
    c = await clients(room(server), "Carol")
    await expect(c, Connected)

    sleeps.gate.set()
    back = await expect(a, Connected)
    assert back.resumed is True
    gone = await expect(a, PeerLeft)
    assert (gone.id, gone.reason) == (b_id, "gone")
    came = await expect(a, PeerJoined)
    assert (came.peer.id, came.peer.name) == (c.peer_id, "Carol")
    assert a.peers.keys() == {c.peer_id}


async def test_signals_queued_while_disconnected_are_delivered_in_order(server, clients):
    sleeps = Sleeps(open_gate=False)
    a, b = await joined_pair(clients, room(server), sleep=sleeps, queue_limit=3)

    drop_transport(a)
    await expect(a, Disconnected)
    for i in range(5):  # the queue holds 3: the two oldest are dropped
        await a.send_signal({"i": i})
    assert (a.queued_signals, a.dropped_signals) == (3, 2)

    sleeps.gate.set()
    assert (await expect(a, Connected)).resumed is True
    await a.send_signal({"i": 5})
    assert [(await expect(b, SignalReceived)).data["i"] for _ in range(4)] == [2, 3, 4, 5]
    assert a.queued_signals == 0


async def test_server_restart_reconnects_with_a_new_id(clients):
    config = ServerConfig(host="127.0.0.1", port=0, grace=5.0)
    first = await RoomServer(config).start()
    port = first.port
    url = room(first)
    try:
        a, b = await joined_pair(clients, url)
        old_a, old_b = a.peer_id, b.peer_id
        await first.close()  # every client gets 1001
        for client in (a, b):
            gone = await expect(client, Disconnected)
            assert gone.will_retry and gone.code == 1001
        # Down: attempts are refused and retried.
        refused = await expect(a, Disconnected)
        assert refused.reason == "connection refused" and refused.will_retry
        assert a.state is ClientState.RECONNECTING
        await a.send_signal({"stale": "offer"})  # belongs to the old session
    finally:
        await first.close()

    async with RoomServer(ServerConfig(host="127.0.0.1", port=port, grace=5.0)):
        back_a, _ = await until(a, Connected)
        back_b, _ = await until(b, Connected)
        assert back_a.resumed is False and back_b.resumed is False
        assert a.peer_id not in (None, old_a) and b.peer_id not in (None, old_b)
        assert a.dropped_signals == 1 and a.queued_signals == 0  # failed resume: discarded
        # Whoever joined first hears of the other one.
        for me, other, back in ((a, b, back_a), (b, a, back_b)):
            if other.peer_id not in {peer.id for peer in back.welcome.peers}:
                assert (await expect(me, PeerJoined)).peer.id == other.peer_id
        await a.send_signal({"fresh": "offer"}, to=b.peer_id)
        got = await expect(b, SignalReceived)  # the stale signal never came
        assert (got.sender, got.data) == (a.peer_id, {"fresh": "offer"})
        for client in (a, b):
            await client.close()


async def test_no_welcome_in_time_is_retried(clients):
    joins: list[dict[str, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        joins.append(json.loads(await ws.recv()))
        if len(joins) == 1:
            await ws.wait_closed()  # say nothing: the client gives up on this one
            return
        await ws.send(json.dumps(_welcome("p1")))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as fake:
        port = fake.sockets[0].getsockname()[1]
        a = await clients(f"ws://127.0.0.1:{port}/rooms/abcd", "Alice", open_timeout=0.2)
        gone = await expect(a, Disconnected)
        assert gone.will_retry and "welcome" in gone.reason
        assert (await expect(a, Connected)).peer_id == "p1"
    assert [j["type"] for j in joins] == ["join", "join"]
    assert "resume" not in joins[1]  # never welcomed: nothing to resume


# ----------------------------------------------------------------- fatal errors


def _refusing_server(kind: str) -> tuple[ServerConfig, Registry | None, str]:
    base = ServerConfig(host="127.0.0.1", port=0)
    if kind == "unauthorized":
        return ServerConfig(host="127.0.0.1", port=0, token="s"), None, "test-room"
    if kind == "bad-room":
        return base, None, "NOT_A_VALID_ID"
    if kind == "version":
        return base, Registry(RegistryConfig(versions=frozenset({2}))), "test-room"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["unauthorized", "bad-room", "version"])
async def test_refusals_are_fatal_and_never_retried(clients, kind):
    config, registry, call_id = _refusing_server(kind)
    async with RoomServer(config, registry) as srv:
        sleeps = Sleeps()
        a = await clients(room(srv, call_id), "Alice", sleep=sleeps)
        await _assert_fatal(a, ErrorCode(kind), sleeps)


async def test_room_full_is_fatal_and_the_first_peer_is_unharmed(clients):
    async with RoomServer(ServerConfig(host="127.0.0.1", port=0, capacity=1)) as srv:
        a = await clients(room(srv), "Alice")
        await expect(a, Connected)
        sleeps = Sleeps()
        b = await clients(room(srv), "Bob", sleep=sleeps)
        await _assert_fatal(b, ErrorCode.ROOM_FULL, sleeps)
        assert a.state is ClientState.JOINED and a.peers == {}


async def test_right_token_joins(clients):
    async with RoomServer(ServerConfig(host="127.0.0.1", port=0, token="s")) as srv:
        a = await clients(room(srv), "Alice", token="s")
        await expect(a, Connected)


async def test_http_refusal_of_the_handshake_is_fatal(server, clients):
    sleeps = Sleeps()
    a = await clients(f"{server.url}/not-rooms/abcd", "Alice", sleep=sleeps)  # HTTP 404
    await _assert_fatal(a, ErrorCode.BAD_ROOM, sleeps)


async def test_replaced_is_fatal(server, clients):
    a = await clients(room(server), "Alice")
    welcome = await expect(a, Connected)
    sleeps = Sleeps()
    a._sleep = sleeps
    # Someone else (here: a raw connection) resumes A's slot with its token.
    async with connect(room(server), compression=None) as thief:
        await thief.send(json.dumps({"type": "join", "v": 1, "name": "x", "resume": a._resume}))
        assert json.loads(await thief.recv())["id"] == welcome.peer_id
        await _assert_fatal(a, ErrorCode.REPLACED, sleeps)


async def _assert_fatal(client: SignalingClient, code: ErrorCode, sleeps: Sleeps) -> None:
    gone = await expect(client, Disconnected)
    assert gone.will_retry is False
    fatal = await expect(client, Fatal)
    assert fatal.code is code and fatal.message
    assert client.state is ClientState.FAILED and client.failure == fatal
    # The end of the stream, as an exception; no further event, send or attempt.
    with pytest.raises(SignalingFatal) as raised:
        await client.next_event()
    assert raised.value.code is code
    assert [e async for e in client.events()] == []
    with pytest.raises(SignalingFatal):
        await client.send_signal({"x": 1})
    assert client._task is not None and client._task.done()
    assert client.attempts == 1 and sleeps.delays == []


async def test_fatal_close_code_without_an_error_message(clients):
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.close(4409, "room-full")

    async with serve(handler, "127.0.0.1", 0, compression=None) as fake:
        port = fake.sockets[0].getsockname()[1]
        sleeps = Sleeps()
        a = await clients(f"ws://127.0.0.1:{port}/rooms/abcd", "Alice", sleep=sleeps)
        await _assert_fatal(a, ErrorCode.ROOM_FULL, sleeps)


# ------------------------------------------------------------------ bad network data


def _welcome(peer_id: str) -> dict[str, Any]:
    return {"type": "welcome", "v": 1, "id": peer_id, "resume": "r", "peers": [], "capacity": 2}


async def test_malformed_frames_from_the_server_are_ignored(clients):
    garbage: list[str | bytes] = [
        "not json",
        "[1, 2]",
        '{"type": "nope"}',
        '{"type": "welcome"}',
        '{"type": "signal", "from": 3, "data": {}}',
        '{"type": "peer-left"}',
        '{"v": NaN}',
        "[" * 100_000,
        b"\x00\x01binary",
    ]

    async def handler(ws: ServerConnection) -> None:
        assert json.loads(await ws.recv())["type"] == "join"
        for frame in garbage:
            await ws.send(frame)
        await ws.send(b'{"type": "x", "bad": "\xff\xfe"}', text=True)  # invalid UTF-8
        await ws.send(json.dumps(_welcome("p1")))
        await ws.send("{}")
        await ws.send(json.dumps({"type": "signal", "from": "p2", "data": {"ok": True}}))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as fake:
        port = fake.sockets[0].getsockname()[1]
        a = await clients(f"ws://127.0.0.1:{port}/rooms/abcd", "Alice")
        assert (await expect(a, Connected)).peer_id == "p1"
        got = await expect(a, SignalReceived)
        assert (got.sender, got.data) == ("p2", {"ok": True})
        assert a.bad_frames == len(garbage) + 2
        assert a.state is ClientState.JOINED and a.attempts == 1


# ------------------------------------------------------------- leaving, cleanup


async def test_leave_tells_the_other_peer(server, clients):
    a, b = await joined_pair(clients, room(server))
    a_id = a.peer_id
    await a.send_signal({"bye": 1})  # queued signals go out before the leave
    await a.leave()
    assert (await expect(b, SignalReceived)).data == {"bye": 1}
    left = await expect(b, PeerLeft)
    assert (left.id, left.reason) == (a_id, "left")
    assert b.peers == {}
    assert a.state is ClientState.CLOSED
    assert [e async for e in a.events()] == []
    with pytest.raises(SignalingClosed):
        await a.send_signal({"x": 1})
    await condition(lambda: server.stats()["connections"] == 1)


async def test_cancelling_the_caller_closes_everything(server, clients):
    b = await clients(room(server), "Bob")
    await expect(b, Connected)
    a = SignalingClient(room(server), "Alice", backoff=FAST)
    joined = asyncio.Event()

    async def caller() -> None:
        async with a:
            async for ev in a.events():
                if isinstance(ev, Connected):
                    joined.set()

    task = asyncio.create_task(caller())
    async with asyncio.timeout(WAIT):
        await joined.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert a.state is ClientState.CLOSED and a._ws is None
    assert a._task is not None and a._task.done()
    await expect(b, PeerJoined)
    left = await expect(b, PeerLeft)
    assert left.reason == "left"  # closed cleanly (1000), not dropped
    await condition(lambda: server.stats()["connections"] == 1)


async def test_close_while_reconnecting_stops_the_retries(clients):
    sleeps = Sleeps(open_gate=False)
    a = await clients("ws://127.0.0.1:9/rooms/abcd", "Alice", sleep=sleeps)  # nothing listens
    gone = await expect(a, Disconnected)
    assert gone.will_retry and gone.retry_in == FAST.delay(0)
    assert a.state is ClientState.CONNECTING
    await a.close()
    assert a.state is ClientState.CLOSED and a.attempts == 1
    with pytest.raises(SignalingClosed):
        await a.next_event()


async def test_a_client_closed_before_it_starts_has_ended():
    a = SignalingClient("ws://127.0.0.1:9/rooms/abcd", "Alice")
    with pytest.raises(RuntimeError):
        await a.next_event()  # not started: nothing will ever come
    await a.close()
    assert a.state is ClientState.CLOSED and a.attempts == 0
    with pytest.raises(SignalingClosed):
        await a.next_event()
    with pytest.raises(SignalingClosed):
        await a.send_signal({"x": 1})
    with pytest.raises(RuntimeError):
        await a.start()


async def test_wss_with_the_ssl_option(tmp_path, clients):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(cert_path)
    cert.private_key_pem.write_to_path(key_path)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    config = ServerConfig(host="127.0.0.1", port=0, certfile=str(cert_path), keyfile=str(key_path))
    async with RoomServer(config) as srv:
        a = await clients(room(srv), "Alice", ssl=context)
        await expect(a, Connected)


# -------------------------------------------------------------- pure: backoff


def test_backoff_grows_and_is_capped():
    no_jitter = Backoff(initial=0.25, maximum=10.0, factor=2, jitter=0.5, rng=lambda: 0.0)
    assert [no_jitter.delay(n) for n in range(8)] == [0.25, 0.5, 1, 2, 4, 8, 10, 10]
    most_jitter = Backoff(initial=0.25, maximum=10.0, factor=2, jitter=0.5, rng=lambda: 1.0)
    assert [most_jitter.delay(n) for n in range(8)] == [0.125, 0.25, 0.5, 1, 2, 4, 5, 5]
    assert no_jitter.delay(100_000) == 10.0  # no OverflowError
    assert Backoff(initial=1, maximum=1, factor=1e300).delay(5) <= 1


def test_backoff_is_jittered():
    backoff = Backoff(initial=0.25, maximum=10.0, factor=2, jitter=0.5)
    delays = {backoff.delay(3) for _ in range(50)}
    assert len(delays) > 1 and all(1.0 <= d <= 2.0 for d in delays)


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    r=st.floats(min_value=0.0, max_value=1.0),
    jitter=st.floats(min_value=0.0, max_value=1.0),
)
def test_backoff_stays_within_its_bounds(attempt, r, jitter):
    backoff = Backoff(initial=0.25, maximum=10.0, factor=2, jitter=jitter, rng=lambda: r)
    base = min(10.0, 0.25 * 2.0 ** min(attempt, 64))
    assert base * (1 - jitter) - 1e-9 <= backoff.delay(attempt) <= base <= 10.0


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": 0}, {"initial": 2, "maximum": 1}, {"factor": 0.5}, {"jitter": 1.5}],
)
def test_backoff_refuses_nonsense(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_token_bucket_paces_after_the_burst():
    now = [0.0]
    bucket = TokenBucket(rate=10.0, burst=3, clock=lambda: now[0])
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)  # queued behind the previous one
    now[0] = 10.0  # refilled, but never beyond the burst
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() > 0
