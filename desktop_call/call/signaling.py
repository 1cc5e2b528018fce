"""The signaling client: one participant's WebSocket to a room, kept alive.

An asyncio client of the wire protocol v1 (``docs/protocol.md``), no Qt::

    async with SignalingClient(room_url, "Alice") as client:
        async for event in client.events():
            match event:
                case Connected(welcome=w, resumed=False): ...  # peers are fresh
                case SignalReceived(sender=s, data=d): ...
                case Fatal(): ...  # the last event: refused, never retried

What it does for its caller:

* **Join.** Connects, sends ``join`` (name, optional token), waits for ``welcome``
  and reports :class:`Connected`. ``client.peer_id`` and ``client.peers`` follow
  ``welcome``, ``peer-joined`` and ``peer-left``.
* **Reconnect and resume.** When the connection drops for any reason that is not
  a fatal error (no close frame, 1006, a ping timeout, the server restarting with
  1001, connection refused while it is down, no ``welcome`` in time), it emits
  :class:`Disconnected` and tries again after a capped, jittered exponential
  :class:`Backoff`, joining with the last ``welcome.resume`` token. If the server
  gives back the same id, :class:`Connected` has ``resumed=True`` and the peer
  list is diffed against the new ``welcome`` (a peer that went away meanwhile is
  reported as ``PeerLeft(id, "gone")``, one that arrived as ``PeerJoined``).
  Otherwise ``resumed=False``: the caller must treat every peer as new.
* **Send queue.** :meth:`SignalingClient.send_signal` never fails because the
  network did: while the client is not joined, signals wait in a bounded queue
  (``queue_limit``). When the queue is full the *oldest* queued signal is dropped
  and counted in ``client.dropped_signals``. While joined, a full queue makes the
  caller wait instead (backpressure, nothing is dropped). After a successful
  resume the queue is flushed in order. After a *failed* resume (a new id) the
  queue is discarded and counted as dropped: those signals belong to a
  negotiation that the other peers no longer know about.
* **Pacing.** Everything the client sends goes through a token bucket
  (``send_rate``/``send_burst``, below the contract's default of 50/s with bursts
  of 200), so flushing a full queue cannot trip the server's ``rate-limited``.
* **Fatal errors.** ``error`` messages with a fatal code (and the matching close
  codes, and an HTTP 4xx refusal of the handshake) end the client: one
  :class:`Fatal` event, the last one, and no further connection attempt.
  ``unknown-peer`` is not fatal: a :class:`ServerError` event, the connection stays.
* **ICE servers.** ``client.ice_servers`` holds the STUN/TURN servers (with fresh TURN
  credentials) of the last ``welcome``'s optional ``ice_servers`` field, an extension of
  our server (docs/protocol.md); a malformed field is logged and ignored.
* **Bad data.** A server frame that is not JSON or not a known message is logged,
  counted in ``client.bad_frames`` and ignored.
* **Ownership.** :meth:`SignalingClient.close` (also on ``async with`` exit, also when
  the caller is cancelled) cancels and awaits the client's task and closes the
  socket; :meth:`SignalingClient.leave` first tells the room (others see
  ``peer-left`` with reason ``left``).

Not guaranteed: a signal written into a connection that then dies without
notice may be lost (the protocol has no acknowledgements; the server only queues
signals *for* a peer that is away, not *from* it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl as ssl_module
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException
from websockets.frames import CloseCode
from websockets.protocol import State
from websockets.uri import parse_uri

from desktop_call import __version__
from desktop_call.signaling.protocol import (
    MAX_FRAME_BYTES,
    MAX_NAME_CHARS,
    ErrorCode,
    ErrorMessage,
    Join,
    Leave,
    Peer,
    PeerJoined,
    PeerLeft,
    ProtocolError,
    Relayed,
    ServerMessage,
    Signal,
    Welcome,
    decode_server,
    encode,
)

from .ice import IceServer, issued_ice_servers

__all__ = [
    "GONE",
    "Backoff",
    "ClientState",
    "Connected",
    "Disconnected",
    "Fatal",
    "Peer",
    "PeerJoined",
    "PeerLeft",
    "ServerError",
    "SignalReceived",
    "SignalingClient",
    "SignalingClosed",
    "SignalingEvent",
    "SignalingFatal",
    "TokenBucket",
]

log = logging.getLogger("desktop_call.call.signaling")

#: Largest server frame accepted (a relayed 64 KiB signal plus its envelope fits).
MAX_SERVER_FRAME: Final = 1 << 20
#: Events waiting for the caller; when full, the client stops reading the socket.
EVENT_QUEUE_LIMIT: Final = 1024
#: ``PeerLeft.reason`` for a peer that went away while this client was reconnecting.
GONE: Final = "gone"

_FATAL_CLOSE_CODES: Final = {
    code.close_code: code for code in ErrorCode if code.fatal and code.close_code is not None
}
_LEAVE: Final = encode(Leave())


# ------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Connected:
    """Joined (again). ``resumed``: the server gave back the previous id."""

    welcome: Welcome
    resumed: bool

    @property
    def peer_id(self) -> str:
        return self.welcome.id


@dataclass(frozen=True, slots=True)
class SignalReceived:
    """A ``signal`` from peer ``sender``; ``data`` is exactly what it sent."""

    sender: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ServerError:
    """A non-fatal ``error`` (``unknown-peer``): the connection stays open."""

    code: ErrorCode
    message: str


@dataclass(frozen=True, slots=True)
class Disconnected:
    """A connection attempt or a joined session ended.

    ``will_retry``: another attempt follows after ``retry_in`` seconds. When False,
    a :class:`Fatal` event follows and ends the stream.
    """

    reason: str
    will_retry: bool
    code: int | None = None  # the close code received, if any
    retry_in: float | None = None


@dataclass(frozen=True, slots=True)
class Fatal:
    """The server refused this client for good; always the last event.

    ``code`` is ``None`` only if the client itself failed (a bug: see the log).
    """

    code: ErrorCode | None
    message: str


SignalingEvent = (
    Connected | PeerJoined | PeerLeft | SignalReceived | ServerError | Disconnected | Fatal
)


class SignalingClosed(Exception):
    """The client is closed: no more events, no more sends."""


class SignalingFatal(SignalingClosed):
    """The client ended on a fatal error (the :class:`Fatal` event, as an exception)."""

    def __init__(self, code: ErrorCode | None, message: str) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.code = code
        self.message = message


class ClientState(StrEnum):
    IDLE = "idle"  # created, not started
    CONNECTING = "connecting"  # first connection, no welcome yet
    JOINED = "joined"
    RECONNECTING = "reconnecting"  # was joined (or tried), waiting or trying again
    CLOSED = "closed"  # closed by the caller
    FAILED = "failed"  # ended by a fatal error


# ------------------------------------------------------------------ pure helpers


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with jitter.

    Attempt ``n`` (0-based, counting failures since the last ``welcome``) waits
    ``min(maximum, initial * factor**n)`` scaled down by a random fraction of
    ``jitter``: with ``jitter=0.5`` the wait is uniform in ``[base/2, base]``, so
    it never exceeds ``maximum`` and clients that lost the same server spread out.
    """

    initial: float = 0.25
    maximum: float = 10.0
    factor: float = 2.0
    jitter: float = 0.5
    rng: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError("Backoff needs 0 < initial <= maximum")
        if self.factor < 1:
            raise ValueError("Backoff needs factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("Backoff needs 0 <= jitter <= 1")

    def base(self, attempt: int) -> float:
        try:
            return min(self.maximum, self.initial * self.factor ** max(0, attempt))
        except OverflowError:
            return self.maximum

    def delay(self, attempt: int) -> float:
        return self.base(attempt) * (1.0 - self.jitter * self.rng())


class TokenBucket:
    """Send pacing: ``rate`` per second sustained, bursts of ``burst``.

    :meth:`reserve` takes one token now and returns how long to wait before using
    it (tokens may go negative, so concurrent callers queue up in order).
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("TokenBucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def reserve(self) -> float:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate) - 1.0
        self._at = now
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


def _status_error(status: int) -> ErrorCode | None:
    """The fatal error an HTTP refusal of the handshake stands for (None: retry)."""
    if status in (408, 429) or not 400 <= status < 500:
        return None
    return {
        401: ErrorCode.UNAUTHORIZED,
        403: ErrorCode.UNAUTHORIZED,
        404: ErrorCode.BAD_ROOM,
        426: ErrorCode.VERSION,
    }.get(status, ErrorCode.BAD_REQUEST)


def _describe_connect_error(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out connecting"
    if isinstance(exc, OSError):
        return f"network error: {exc.strerror or exc}"
    return f"handshake failed: {exc}"


def _describe_close(exc: ConnectionClosed) -> tuple[str, int | None]:
    if exc.rcvd is not None:
        code, reason = exc.rcvd.code, exc.rcvd.reason
        what = "server going away" if code == CloseCode.GOING_AWAY else "closed by the server"
        return f"{what} ({code}{' ' + reason if reason else ''})", code
    if exc.sent is not None and exc.sent.code == CloseCode.INTERNAL_ERROR:
        return f"connection failed ({exc.sent.reason or 'internal error'})", None
    return "connection lost (no close frame)", None


class _Stop(Exception):
    """Internal: the session ended on a fatal error."""

    def __init__(self, code: ErrorCode | None, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_END: Final = object()  # end of the event stream


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())


# ------------------------------------------------------------------------ client


class SignalingClient:
    """One participant's signaling connection to a room; see the module docstring.

    ``room_url``: ``ws[s]://host:port/rooms/<call-id>`` (see
    :meth:`desktop_call.signaling.ids.CallTarget.room_url`).
    ``ping_interval``/``ping_timeout``: the client's own keepalive, which notices a
    dead network sooner than the server's. ``close_timeout``: how long a close
    handshake (and :meth:`leave`) may take before the socket is cut.
    ``sleep``: how the client waits between attempts (tests pass their own).
    ``resume``: a token an earlier run of the app got in this room (:attr:`resume_token`,
    saved): its first join takes that run's place back if the server still holds it
    (the run crashed or was killed, so the place waits out the grace period). The others
    see no one leave or join; the caller still gets ``resumed=False`` (it has nothing of
    that run) and must treat every peer as new.
    """

    def __init__(
        self,
        room_url: str,
        name: str,
        token: str | None = None,
        *,
        backoff: Backoff | None = None,
        queue_limit: int = 256,
        open_timeout: float = 5.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 2.0,
        send_rate: float = 40.0,
        send_burst: int = 100,
        ssl: ssl_module.SSLContext | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        resume: str | None = None,
    ) -> None:
        try:
            uri = parse_uri(room_url)
        except InvalidURI as exc:
            raise ValueError(f"not a WebSocket URL: {room_url!r}") from exc
        if ssl is not None and not uri.secure:
            raise ValueError("ssl is only for wss:// URLs")
        if len(name) > MAX_NAME_CHARS:
            raise ValueError(f"name is longer than {MAX_NAME_CHARS} characters")
        if queue_limit < 1:
            raise ValueError("queue_limit must be at least 1")
        if open_timeout <= 0:
            raise ValueError("open_timeout must be positive")
        if resume is not None and not (isinstance(resume, str) and 0 < len(resume) <= 256):
            raise ValueError("resume must be a token from an earlier welcome")
        self.room_url = room_url
        self.name = name
        self._token = token
        self._backoff = backoff or Backoff()
        self._queue_limit = queue_limit
        self._open_timeout = open_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._close_timeout = close_timeout
        self._send_rate = send_rate
        self._send_burst = send_burst
        self._ssl = ssl
        self._sleep = sleep

        self._state = ClientState.IDLE
        self._peer_id: str | None = None
        # A token from an earlier run of the app (it crashed, or was killed): the first
        # join takes back that run's place in the room, if the server still holds it.
        self._resume: str | None = resume
        self._peers: dict[str, Peer] = {}
        self._failure: Fatal | None = None
        self._closing = False
        self._finished = False
        self._task: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self._bucket: TokenBucket | None = None
        self._events: asyncio.Queue[object] = asyncio.Queue(EVENT_QUEUE_LIMIT)
        self._outbox: deque[bytes] = deque()
        self._outbox_ready = asyncio.Event()  # the writer has something to send
        self._space = asyncio.Event()  # the outbox shrank, or the state changed

        #: Signals dropped from the send queue (oldest first when full; all on a failed resume).
        self.dropped_signals = 0
        #: Server frames ignored because they were not JSON or not a known message.
        self.bad_frames = 0
        #: Connection attempts made so far (the first one included).
        self.attempts = 0
        #: STUN/TURN servers the room server issued in the last ``welcome`` (often none).
        self.ice_servers: tuple[IceServer, ...] = ()

    # ---------------------------------------------------------------- queries

    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def peer_id(self) -> str | None:
        """This client's id in the room (from the last ``welcome``)."""
        return self._peer_id

    @property
    def resume_token(self) -> str | None:
        """The token that takes this client's place back (from the last ``welcome``)."""
        return self._resume

    @property
    def peers(self) -> Mapping[str, Peer]:
        """The other peers in the room, by id (a live read-only view).

        It follows the messages as they arrive, so it can be ahead of events the
        caller has not consumed yet.
        """
        return MappingProxyType(self._peers)

    @property
    def failure(self) -> Fatal | None:
        return self._failure

    @property
    def queued_signals(self) -> int:
        return len(self._outbox)

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start connecting in the background; events tell what happens."""
        if self._task is not None or self._finished:
            raise RuntimeError("a SignalingClient can be started once")
        loop = asyncio.get_running_loop()
        self._bucket = TokenBucket(self._send_rate, self._send_burst, loop.time)
        self._set_state(ClientState.CONNECTING)
        self._task = asyncio.create_task(self._run(), name=f"signaling {self.room_url}")

    async def close(self) -> None:
        """Stop: cancel the client's task, close the socket (1000). Idempotent.

        A clean close frees this peer's slot at once (others see ``peer-left``
        with reason ``left``). Safe to call from a task that is being cancelled.
        """
        self._closing = True
        task = self._task
        if task is None:
            if self._state is not ClientState.FAILED:
                self._set_state(ClientState.CLOSED)
            self._finish()
            return
        if not task.done():
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the caller is being cancelled: the task was, too

    async def check_connection(self, within: float = 2.0) -> bool:
        """Is the room server still answering, now? A WebSocket ping that gets no pong
        ``within`` seconds drops the connection (then the client reconnects and resumes,
        as after any drop). True if it answered.

        The keepalive finds a dead network within ``ping_interval + ping_timeout``; a
        caller that has a reason to doubt the connection sooner (the media went silent)
        asks here, so it does not blame the other side for its own network.
        """
        ws = self._ws
        if ws is None or self._state is not ClientState.JOINED:
            return False
        try:
            pong = await ws.ping()
            async with asyncio.timeout(within):
                await pong
        except TimeoutError:
            log.info("signaling: no pong within %g s; reconnecting", within)
            ws.transport.abort()  # the reader sees the connection closed: a drop
            return False
        except ConnectionClosed:
            return False
        return True

    async def leave(self) -> None:
        """Send ``leave`` after the signals already queued, then close.

        If the client is not joined right now (reconnecting), it just closes: the
        server frees the slot when its grace period ends.
        """
        ws = self._ws
        task = self._task
        if self._state is ClientState.JOINED and ws is not None and task is not None:
            self._closing = True
            self._outbox.append(_LEAVE)  # after what is queued, never dropped
            self._outbox_ready.set()
            try:
                async with asyncio.timeout(self._close_timeout):
                    await asyncio.shield(task)  # ends when the server closes (1000)
            except TimeoutError:
                pass
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # we are being cancelled
                # The client's own task was cancelled meanwhile (closed by someone
                # else, say a failing session's shutdown): nothing left to wait for.
        await self.close()

    async def __aenter__(self) -> SignalingClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- events

    async def next_event(self) -> SignalingEvent:
        """The next event; :class:`SignalingClosed` (or :class:`SignalingFatal`) at the end."""
        if self._finished and self._events.empty():
            raise self._end_error()
        if self._task is None and not self._finished:
            raise RuntimeError("start() the client first")
        item = await self._events.get()
        if item is _END:
            self._events.put_nowait(_END)  # for any other reader
            raise self._end_error()
        return item  # type: ignore[return-value]

    async def events(self) -> AsyncIterator[SignalingEvent]:
        """Every event until the client closes or fails (:class:`Fatal` is yielded last)."""
        while True:
            try:
                event = await self.next_event()
            except SignalingClosed:
                return
            yield event

    # ---------------------------------------------------------------- sending

    async def send_signal(self, data: dict[str, Any], to: str | None = None) -> None:
        """Relay ``data`` to peer ``to`` (or to every other peer).

        Sent at once while joined, else queued (see the module docstring). Raises
        :class:`SignalingClosed`/:class:`SignalingFatal` once the client has ended,
        ``TypeError`` for data that is not a JSON object and ``ValueError`` for a
        message over 64 KiB (which the server would answer with a fatal error).
        """
        self._check_usable()
        if not isinstance(data, dict):
            raise TypeError("signal data must be a dict (a JSON object)")
        if to is not None and not isinstance(to, str):
            raise TypeError("'to' must be a peer id (str) or None")
        payload = encode(Signal(data, to))
        if len(payload) > MAX_FRAME_BYTES:
            raise ValueError(f"signal is {len(payload)} bytes; the limit is {MAX_FRAME_BYTES}")
        while len(self._outbox) >= self._queue_limit:
            if self._state is not ClientState.JOINED:
                self._outbox.popleft()
                self.dropped_signals += 1
                log.warning("send queue full: dropped the oldest signal")
                break
            self._space.clear()
            await self._space.wait()
            self._check_usable()
        self._outbox.append(payload)
        self._outbox_ready.set()

    # --------------------------------------------------------------- internals

    def _check_usable(self) -> None:
        if (
            self._finished
            or self._closing
            or self._state in (ClientState.CLOSED, ClientState.FAILED)
        ):
            raise self._end_error()

    def _end_error(self) -> SignalingClosed:
        if self._failure is not None:
            return SignalingFatal(self._failure.code, self._failure.message)
        return SignalingClosed("the signaling client is closed")

    def _set_state(self, state: ClientState) -> None:
        if state is self._state:
            return
        log.info("signaling %s -> %s", self._state, state)
        self._state = state
        self._space.set()  # waiting senders re-check (drop instead of wait, or raise)

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._space.set()
        with contextlib.suppress(asyncio.QueueFull):
            self._events.put_nowait(_END)  # if full, no reader is waiting

    async def _emit(self, event: SignalingEvent) -> None:
        await self._events.put(event)  # blocks (and stops reading) while the caller lags

    async def _run(self) -> None:
        failures = 0  # consecutive attempts without a welcome
        try:
            while True:
                try:
                    reason, code, joined = await self._attempt()
                except _Stop as stop:
                    await self._fail(stop.code, stop.message)
                    return
                if self._closing:
                    return
                if joined:
                    failures = 0
                delay = self._backoff.delay(failures)
                failures += 1
                self._set_state(
                    ClientState.CONNECTING if self._peer_id is None else ClientState.RECONNECTING
                )
                log.info("signaling: %s; retrying in %.2f s", reason, delay)
                await self._emit(Disconnected(reason, True, code, delay))
                await self._sleep(delay)
        except Exception as exc:  # a bug: report it rather than die silently
            log.exception("signaling client failed")
            await self._fail(None, f"internal error: {exc!r}")
        finally:
            if self._state is not ClientState.FAILED:
                self._set_state(ClientState.CLOSED)
            self._finish()

    async def _fail(self, code: ErrorCode | None, message: str) -> None:
        log.warning("signaling: fatal %s: %s", code, message)
        self._failure = Fatal(code, message)
        self._set_state(ClientState.FAILED)
        self._outbox.clear()
        await self._emit(Disconnected(message, False))
        await self._emit(self._failure)

    async def _attempt(self) -> tuple[str, int | None, bool]:
        """One connection, from TCP to its end.

        Returns (reason, close code, whether it reached ``welcome``) when it ended
        in a way worth retrying; raises :class:`_Stop` on a fatal error.
        """
        self.attempts += 1
        try:
            ws = await connect(
                self.room_url,
                compression=None,
                max_size=MAX_SERVER_FRAME,
                open_timeout=self._open_timeout,
                ping_interval=self._ping_interval,
                ping_timeout=self._ping_timeout,
                close_timeout=self._close_timeout,
                user_agent_header=f"desktop-call/{__version__}",
                **({"ssl": self._ssl} if self._ssl is not None else {}),
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            fatal = _status_error(status)
            if fatal is not None:
                raise _Stop(fatal, f"the server refused the connection (HTTP {status})") from None
            return f"the server answered HTTP {status}", None, False
        except (OSError, TimeoutError, WebSocketException) as exc:
            return _describe_connect_error(exc), None, False
        self._ws = ws
        try:
            result = await self._session(ws)
            if not self._closing:  # before the close handshake: senders queue now
                self._set_state(ClientState.RECONNECTING)
            return result
        finally:
            self._ws = None
            await self._close_socket(ws)

    async def _close_socket(self, ws: ClientConnection) -> None:
        try:
            await ws.close()  # bounded by close_timeout; no-op if already closed
        finally:
            if ws.state is not State.CLOSED:  # cancelled mid-close: cut it
                ws.transport.abort()

    async def _send_paced(self, ws: ClientConnection, payload: bytes) -> None:
        assert self._bucket is not None
        wait = self._bucket.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        await ws.send(payload, text=True)

    async def _session(self, ws: ClientConnection) -> tuple[str, int | None, bool]:
        old_id = self._peer_id
        join = Join(self.name, resume=self._resume, token=self._token)
        # The server may have refused us already (bad-room comes right after the
        # handshake): a failed send is not the end, what it said is still readable.
        with contextlib.suppress(ConnectionClosed):
            await self._send_paced(ws, encode(join))
        try:
            async with asyncio.timeout(self._open_timeout):
                welcome = await self._wait_welcome(ws)
        except TimeoutError:
            return "no welcome from the server in time", None, False
        except ConnectionClosed as exc:
            return self._closed(exc, joined=False)

        resumed = old_id is not None and welcome.id == old_id
        self._peer_id = welcome.id
        self._resume = welcome.resume
        self.ice_servers = issued_ice_servers(welcome.extra.get("ice_servers"))
        before = self._peers
        self._peers = {peer.id: peer for peer in welcome.peers}
        if old_id is not None and not resumed and self._outbox:
            log.info("signaling: resume failed; dropped %d queued signals", len(self._outbox))
            self.dropped_signals += len(self._outbox)
            self._outbox.clear()
        self._set_state(ClientState.JOINED)
        log.info("signaling: joined as %s (resumed=%s)", welcome.id, resumed)
        await self._emit(Connected(welcome, resumed))
        if resumed:
            for peer_id in [pid for pid in before if pid not in self._peers]:
                await self._emit(PeerLeft(peer_id, GONE))
            for peer in welcome.peers:
                if peer.id not in before:
                    await self._emit(PeerJoined(peer))

        writer = asyncio.create_task(self._write(ws), name="signaling writer")
        writer.add_done_callback(_log_failure)
        try:
            while True:
                try:
                    raw = await ws.recv(decode=False)
                except ConnectionClosed as exc:
                    return self._closed(exc, joined=True)
                message = self._decode(raw)
                if message is not None:
                    await self._dispatch(message)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _wait_welcome(self, ws: ClientConnection) -> Welcome:
        while True:
            message = self._decode(await ws.recv(decode=False))
            if isinstance(message, Welcome):
                return message
            if isinstance(message, ErrorMessage):
                if message.code.fatal:
                    raise _Stop(message.code, message.message)
                await self._emit(ServerError(message.code, message.message))
            elif message is not None:
                log.warning("signaling: ignored %s before welcome", type(message).__name__)

    def _decode(self, raw: bytes | str) -> ServerMessage | None:
        try:
            return decode_server(raw)
        except ProtocolError as exc:
            reason = exc.message
        except Exception as exc:  # the decoder's own limits (depth, ...): still bad input
            reason = repr(exc)
        self.bad_frames += 1
        log.warning("signaling: ignored a bad frame from the server: %s", reason[:200])
        return None

    async def _dispatch(self, message: ServerMessage) -> None:
        if isinstance(message, Relayed):
            await self._emit(SignalReceived(message.sender, message.data))
        elif isinstance(message, PeerJoined):
            self._peers[message.peer.id] = message.peer
            await self._emit(message)
        elif isinstance(message, PeerLeft):
            self._peers.pop(message.id, None)
            await self._emit(message)
        elif isinstance(message, ErrorMessage):
            if message.code.fatal:
                raise _Stop(message.code, message.message)
            await self._emit(ServerError(message.code, message.message))
        else:
            log.warning("signaling: ignored a second welcome")

    async def _write(self, ws: ClientConnection) -> None:
        """Drain the outbox in order while this connection lasts."""
        while True:
            while self._outbox:
                assert self._bucket is not None
                wait = self._bucket.reserve()
                if wait > 0:
                    await asyncio.sleep(wait)
                if ws.state is not State.OPEN:
                    return  # keep the message queued for the next connection
                payload = self._outbox.popleft()
                self._space.set()
                try:
                    await ws.send(payload, text=True)
                except ConnectionClosed:
                    return
            self._outbox_ready.clear()
            await self._outbox_ready.wait()

    def _closed(self, exc: ConnectionClosed, *, joined: bool) -> tuple[str, int | None, bool]:
        """Classify the end of a connection: fatal close codes raise :class:`_Stop`."""
        if exc.rcvd is not None:
            fatal = _FATAL_CLOSE_CODES.get(exc.rcvd.code)
            if fatal is not None:
                raise _Stop(fatal, exc.rcvd.reason or str(fatal))
        reason, code = _describe_close(exc)
        return reason, code, joined
