"""The room server's I/O driver: asyncio transports around two pure cores.

Each TCP connection is an :class:`asyncio.Protocol` that feeds bytes to the
Sans-I/O WebSocket protocol of ``websockets`` (framing, masking, handshake, close
handshake) and hands whole messages to the pure :class:`~.rooms.Registry`
(who gets what). There is no task per connection: timers (handshake and join
deadlines, pings, close timeouts) are loop callbacks. This keeps a connection at
a few KiB and a relayed message at a few tens of microseconds.

Limits of the contract enforced here: 64 KiB frames (``too-large``), the message
rate (token bucket), the join deadline, pings, binary frames; plus what the
contract leaves to the server: the handshake deadline, and a peer that stops
reading (its send buffer passes ``max_write_buffer``) is dropped as unclean.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

try:  # the C version websockets uses itself; the pure one where it is not built
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask

from desktop_call import __version__
from desktop_call.signaling.ids import is_valid_call_id
from desktop_call.signaling.protocol import (
    MAX_FRAME_BYTES,
    ErrorCode,
    Join,
    Leave,
    ProtocolError,
    ServerMessage,
    Signal,
    decode_client,
    encode,
)

from .limits import Admission, ConnectionLimiter, Outcome, parse_networks
from .rooms import Close, Event, Registry, RegistryConfig, Send
from .turn import DEFAULT_TTL, ICE_SERVERS_FIELD, TurnRest

__all__ = ["RoomServer", "ServerConfig"]

log = logging.getLogger("desktop_call.server")
_ws_log = logging.getLogger("desktop_call.server.websocket")  # quiet unless asked
_ws_log.setLevel(logging.WARNING)

ROOMS_PREFIX = "/rooms/"
#: Handshakes answered per turn of the event loop (~100 us each; see _answer_handshakes).
HANDSHAKES_PER_TURN = 32
CLEAN_CLOSE_CODES = frozenset({CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY})


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    capacity: int = 2
    grace: float = 30.0  # resume grace period, seconds
    queue_limit: int = 64
    token: str | None = None
    rate: float = 50.0  # messages per second, sustained
    burst: int = 200
    join_timeout: float = 10.0
    handshake_timeout: float = 10.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    close_timeout: float = 5.0
    max_frame: int = MAX_FRAME_BYTES
    read_limit: int = 1 << 20  # larger frames are refused unread (see _WebSocket)
    max_write_buffer: int = 1 << 20  # a peer this far behind on reading is dropped
    origins: tuple[str, ...] | None = None  # Origin allow-list (None: any)
    certfile: str | None = None
    keyfile: str | None = None
    # TURN REST credentials in every welcome (coturn's use-auth-secret); see turn.py.
    turn_secret: str | None = field(default=None, repr=False)  # never in a log line
    turn_urls: tuple[str, ...] = ()
    turn_ttl: float = DEFAULT_TTL
    # Per-address limits (IPv4 address or IPv6 /64; 0: no limit); see limits.py.
    max_connections_per_ip: int = 100
    connection_rate_per_ip: float = 20.0  # new connections per second, sustained
    connection_burst_per_ip: int = 100
    limit_exempt: tuple[str, ...] = ()  # CIDR networks the limits do not apply to

    def __post_init__(self) -> None:
        """Refuse settings that cannot work, with a message naming the setting."""
        if self.turn_secret is not None or self.turn_urls:
            if self.turn_secret is None:
                raise ValueError(
                    "--turn-url needs a TURN secret (--turn-secret or --turn-secret-file)"
                )
            self.turn_rest  # noqa: B018  (validates)
        if self.max_connections_per_ip < 0:
            raise ValueError("the connection limit per IP cannot be negative (0: no limit)")
        if self.connection_rate_per_ip < 0 or not math.isfinite(self.connection_rate_per_ip):
            raise ValueError("the connection rate per IP must be a number >= 0 (0: no limit)")
        if self.connection_burst_per_ip < 1 and self.connection_rate_per_ip > 0:
            raise ValueError("the connection burst per IP must be at least 1")
        parse_networks(self.limit_exempt)

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    @property
    def turn_rest(self) -> TurnRest | None:
        if self.turn_secret is None:
            return None
        return TurnRest(self.turn_secret, tuple(self.turn_urls), self.turn_ttl)

    def limiter(self) -> ConnectionLimiter:
        return ConnectionLimiter(
            self.max_connections_per_ip,
            self.connection_rate_per_ip,
            self.connection_burst_per_ip,
            parse_networks(self.limit_exempt),
        )


class _WebSocket(ServerProtocol):
    """``websockets``' Sans-I/O server protocol, answering oversized frames per the contract.

    Messages up to ``read_limit`` are read whole and checked against the contract's
    64 KiB by the driver, in order with the messages before them (a ``join`` and an
    oversized frame in one TCP segment get ``welcome`` then ``too-large``). Beyond
    ``read_limit`` the parser refuses the frame from its header, without reading it.
    """

    def fail(self, code: int, reason: str = "") -> None:
        if code == CloseCode.MESSAGE_TOO_BIG and self.state is State.OPEN:
            error = ProtocolError(ErrorCode.TOO_LARGE, "a frame is over 64 KiB")
            self.send_text(encode(error.to_message()))
            code, reason = ErrorCode.TOO_LARGE.close_code or code, str(ErrorCode.TOO_LARGE)
        super().fail(code, reason)


class _Connection(asyncio.Protocol):
    __slots__ = (
        "_admission",
        "_early",
        "_fragments",
        "_fragments_binary",
        "_joined",
        "_pong_due",
        "_released",
        "_timer",
        "_tokens",
        "_tokens_at",
        "_unparsed",
        "peer_ip",
        "room_id",
        "server",
        "transport",
        "ws",
    )

    def __init__(self, server: RoomServer) -> None:
        self.server = server
        config = server.config
        origins: Any = list(config.origins) if config.origins is not None else None
        self.ws = _WebSocket(origins=origins, max_size=config.read_limit, logger=_ws_log)
        self.transport: asyncio.Transport | None = None
        self.room_id = ""
        self.peer_ip = ""
        self._joined = False
        self._released = False  # the registry has been told this connection is gone
        # Bytes given to the protocol's parser that have not come out as frames: at 0 it
        # holds no partial frame, so a whole frame may bypass it (see data_received).
        # None before the handshake, or when unknown.
        self._unparsed: int | None = None
        self._fragments: list[bytes] | None = None  # a fragmented message being received
        self._fragments_binary = False
        self._tokens = float(config.burst)
        self._tokens_at = 0.0
        self._pong_due = False
        self._timer: asyncio.TimerHandle | None = None
        self._admission: Admission | None = None  # by the per-address limits
        #: Bytes received before the handshake was answered, waiting for their turn in
        #: the server's handshake queue (None when not queued).
        self._early: bytearray | None = None

    # ------------------------------------------------------------ transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: cast, do not assert.
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer_ip = str(peer[0]) if peer else ""
        transport.set_write_buffer_limits(high=self.server.config.max_write_buffer)
        server = self.server
        server._connections.add(self)
        if server._limiter.enabled:
            self._admission = admission = server._limiter.admit(self.peer_ip, server._now())
            if admission.report:
                log.warning(
                    _line(
                        "refused",
                        reason=admission.outcome.value,
                        ip=self.peer_ip,
                        count=admission.report,
                    )
                )
            if admission.outcome is Outcome.CUT:
                transport.abort()
                return
        self._set_timer(server.config.handshake_timeout, self._abort)

    def data_received(self, data: bytes) -> None:
        if self.ws.state is State.CONNECTING:
            # A handshake waits its turn: a burst of thousands must not hold up the
            # rooms already talking (RoomServer._answer_handshakes).
            if self._early is None:
                self._early = bytearray(data)
                self.server._queue_handshake(self)
                if self.transport is not None and not self.transport.is_closing():
                    self.transport.pause_reading()  # until its turn: nothing piles up
            else:
                self._early += data
            return
        self._receive(data)

    def _receive_early(self) -> None:
        """The handshake's turn: feed what arrived meanwhile."""
        early, self._early = self._early, None
        transport = self.transport
        if early is None or transport is None or transport.is_closing():
            return
        self._receive(bytes(early))
        if not transport.is_closing():
            transport.resume_reading()

    def _receive(self, data: bytes) -> None:
        if self._unparsed == 0 and self._fragments is None and self.ws.state is State.OPEN:
            # The common case without the protocol's parser: whole, final text frames.
            offset, end = 0, len(data)
            while offset < end:
                frame = _text_frame_at(data, offset)
                if frame is None:
                    break  # anything else, from here on, is the parser's
                payload, offset = frame
                if not self._tokens_take_or_fail():
                    break  # rate-limited: the connection is closing
                self._message(payload, False)
                if self.ws.state is not State.OPEN or self._released:
                    break  # that message closed the connection
            # After a close, the rest still goes to the parser: it may hold the client's
            # own close frame (a leave then a close, in one read), which completes the
            # closing handshake now rather than at the close timeout.
            if offset == end:
                return
            data = data[offset:]  # the parser starts at a frame boundary
        ws = self.ws
        ws.receive_data(data)
        unparsed = None if self._unparsed is None else self._unparsed + len(data)
        for event in ws.events_received():
            if isinstance(event, Frame):
                if unparsed is not None:
                    unparsed -= _client_frame_size(event)
                self._frame(event)
            else:
                self._handshake(event)
                # A client sends nothing before our answer; one that does never gets
                # the fast path (what the parser already holds is then unknown).
                unparsed = None if ws.reader.buffer else 0
        self._unparsed = unparsed if unparsed is None or unparsed >= 0 else None
        self._flush()
        self._after_close_check()

    def eof_received(self) -> bool | None:
        self._receive_early()  # in order: what came before the end of the stream
        self.ws.receive_eof()
        for event in self.ws.events_received():
            if isinstance(event, Frame):
                self._frame(event)
        self._flush()
        return None  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.server._connections.discard(self)
        if self._admission is not None:
            self.server._limiter.release(self._admission, self.server._now())
            self._admission = None
        if not self._released:
            self._released = True
            if self._joined:
                self.server._dispatch(self.server.registry.drop(self, self.server._now()))
                self.server._arm_expiry()
        self.server._connection_gone()

    def pause_writing(self) -> None:
        # The peer stopped reading and its send buffer passed max_write_buffer.
        log.warning(_line("slow-reader", room=self.room_id, ip=self.peer_ip))
        self._abort()

    # ----------------------------------------------------------------- handshake

    def _handshake(self, request: Request) -> None:
        if self._admission is not None and self._admission.outcome.refused:
            self._refuse(self._admission.outcome)
            return
        path = urlsplit(request.path).path
        if path == "/healthz":
            self._respond_json(200, "OK", self.server.stats())
            return
        if not path.startswith(ROOMS_PREFIX):
            self.ws.send_response(
                self.ws.reject(404, "Not found: rooms live at /rooms/<call-id>\n")
            )
            return
        response = self.ws.accept(request)
        self.ws.send_response(response)
        if response.status_code != 101:
            return
        self.room_id = path[len(ROOMS_PREFIX) :]
        if not is_valid_call_id(self.room_id):
            self._fatal(
                ProtocolError(ErrorCode.BAD_ROOM, f"{self.room_id[:70]!r} is not a valid call ID")
            )
            return
        self._set_timer(self.server.config.join_timeout, self._join_timeout)

    def _refuse(self, outcome: Outcome) -> None:
        """HTTP 429 for an address over its limits; clients retry later (Retry-After)."""
        config = self.server.config
        if outcome is Outcome.TOO_MANY:
            text = (
                f"Too many connections from your address (at most "
                f"{config.max_connections_per_ip} at once); close some and try again.\n"
            )
            retry = 5
        else:
            text = (
                f"Too many new connections from your address (at most "
                f"{config.connection_rate_per_ip:g} per second); try again shortly.\n"
            )
            retry = max(1, math.ceil(1 / config.connection_rate_per_ip))
        response = self.ws.reject(429, text)
        response.headers["Retry-After"] = str(retry)
        self.ws.send_response(response)

    def _respond_json(self, status: int, reason: str, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        headers = Headers(
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(payload))),
                ("Cache-Control", "no-store"),
                ("Connection", "close"),
            ]
        )
        self.ws.send_response(Response(status, reason, headers, payload))

    # -------------------------------------------------------------------- frames

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if not frame.fin:
                self._fragments = [frame.data]
                self._fragments_binary = opcode is Opcode.BINARY
                self._tokens_take_or_fail()  # counted when it starts
                return
            if self._tokens_take_or_fail():
                self._message(frame.data, opcode is Opcode.BINARY)
        elif opcode is Opcode.CONT:
            if self._fragments is not None:
                self._fragments.append(frame.data)
                if frame.fin:
                    data, self._fragments = b"".join(self._fragments), None
                    self._message(data, self._fragments_binary)
        elif opcode is Opcode.PONG:
            self._pong_due = False
        elif opcode is Opcode.CLOSE:
            self._closed_by_peer()

    def _tokens_take_or_fail(self) -> bool:
        config = self.server.config
        now = self.server._now()
        tokens = min(config.burst, self._tokens + (now - self._tokens_at) * config.rate)
        self._tokens_at = now
        if tokens < 1.0:
            self._fatal(
                ProtocolError(
                    ErrorCode.RATE_LIMITED,
                    f"more than {config.rate:g} messages per second (bursts of {config.burst})",
                )
            )
            return False
        self._tokens = tokens - 1.0
        return True

    def _message(self, data: bytes, binary: bool) -> None:
        if self.ws.state is not State.OPEN or self._released:
            return
        server = self.server
        try:
            if len(data) > server.config.max_frame:
                raise ProtocolError(ErrorCode.TOO_LARGE, "a frame is over 64 KiB")
            if binary:
                raise ProtocolError(ErrorCode.BAD_REQUEST, "binary frames are not allowed")
            msg = decode_client(data)
            if type(msg) is Signal:
                if not self._joined:
                    raise ProtocolError(ErrorCode.BAD_REQUEST, "'join' must be the first message")
                server._dispatch(server.registry.signal(self, msg))
            elif type(msg) is Join:
                if self._joined:
                    raise ProtocolError(ErrorCode.BAD_REQUEST, "second 'join'")
                actions = server.registry.join(self, self.room_id, msg, server._now())
                self._joined = True
                self._ping_loop_start()
                server._dispatch(actions)
            elif type(msg) is Leave:
                if not self._joined:
                    raise ProtocolError(ErrorCode.BAD_REQUEST, "'join' must be the first message")
                self._release(clean=True)
                self._close(CloseCode.NORMAL_CLOSURE, "left")
        except ProtocolError as error:
            if error.code.fatal:
                self._fatal(error)
            else:
                self.send(error.to_message())
                self._log_error(error)

    # ------------------------------------------------------------ closing paths

    def _closed_by_peer(self) -> None:
        close = self.ws.close_rcvd
        clean = close is not None and close.code in CLEAN_CLOSE_CODES
        self._release(clean=clean)
        self._set_timer(self.server.config.close_timeout, self._abort)

    def _after_close_check(self) -> None:
        # The protocol failed the connection by itself (bad framing, invalid UTF-8,
        # a frame over the limit): that is a fatal error, so the slot is freed.
        if self.ws.close_sent is not None and not self._released:
            self._release(clean=True)
            close = self.ws.close_sent
            log.info(_line("error", code=close.code, reason=close.reason, room=self.room_id))
            self._set_timer(self.server.config.close_timeout, self._abort)

    def _release(self, clean: bool) -> None:
        if self._released:
            return
        self._released = True
        if not self._joined:
            return
        server = self.server
        if clean:
            server._dispatch(server.registry.leave(self))
        else:
            server._dispatch(server.registry.drop(self, server._now()))
            server._arm_expiry()

    def _fatal(self, error: ProtocolError) -> None:
        """Send a fatal error, free the slot (reason "left"), and close with its code."""
        self._log_error(error)
        if self.ws.state is not State.OPEN:
            self._abort()
            return
        self.send(error.to_message())
        self._release(clean=True)
        self._close(error.code.close_code or CloseCode.POLICY_VIOLATION, str(error.code))

    def _close(self, code: int, reason: str) -> None:
        if self.ws.state is State.OPEN:
            self.ws.send_close(code, reason)
            self._flush()
        self._set_timer(self.server.config.close_timeout, self._abort)

    def _abort(self) -> None:
        self._cancel_timer()
        if self.transport is not None:
            self.transport.abort()

    def _join_timeout(self) -> None:
        self._fatal(ProtocolError(ErrorCode.BAD_REQUEST, "no 'join' within the join deadline"))

    def _log_error(self, error: ProtocolError) -> None:
        peer = self.server.registry.peer_of(self)
        log.info(
            _line(
                "error",
                code=str(error.code),
                room=self.room_id,
                peer=peer[1] if peer else None,
                ip=self.peer_ip,
            )
        )

    # --------------------------------------------------------------------- pings

    def _ping_loop_start(self) -> None:
        self._set_timer(self.server.config.ping_interval, self._ping_tick)

    def _ping_tick(self) -> None:
        config = self.server.config
        if self._pong_due:  # no answer to the last ping: the peer is gone, uncleanly
            log.info(_line("ping-timeout", room=self.room_id, ip=self.peer_ip))
            self._abort()
            return
        if self.ws.state is not State.OPEN:
            return
        self._pong_due = True
        self.ws.send_ping(b"")
        self._flush()
        # Next tick checks the pong ping_timeout from now, then pings again.
        self._set_timer(config.ping_timeout, self._ping_check)

    def _ping_check(self) -> None:
        if self._pong_due:
            self._ping_tick()
        else:
            self._set_timer(
                max(0.0, self.server.config.ping_interval - self.server.config.ping_timeout),
                self._ping_tick,
            )

    # ------------------------------------------------------------------- writing

    def send(self, message: ServerMessage) -> None:
        """Write one text message. Server frames are unmasked and unfragmented, so the
        frame is built here rather than through the protocol object: this is the relay's
        hot path. What the protocol queued (a handshake answer, a pong) goes first."""
        if self.ws.state is State.OPEN and self.transport is not None:
            payload = encode(message)
            self._flush()
            self.transport.write(_text_frame_header(len(payload)) + payload)

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for data in self.ws.data_to_send():
            if data:
                transport.write(data)
            else:  # end of stream: the server closes the TCP connection
                transport.close()

    def _set_timer(self, delay: float, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.server._loop.call_later(delay, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _text_frame_header(length: int) -> bytes:
    """RFC 6455 header of an unmasked, final text frame of ``length`` bytes."""
    if length < 126:
        return bytes((0x81, length))
    if length < 1 << 16:
        return b"\x81\x7e" + length.to_bytes(2, "big")
    return b"\x81\x7f" + length.to_bytes(8, "big")


def _text_frame_at(data: bytes, offset: int) -> tuple[bytes, int] | None:
    """The unmasked payload of the frame at ``offset`` and where it ends, if that frame is
    whole, final, masked, text, under 64 KiB, with no reserved bits; else None."""
    available = len(data) - offset
    if available < 6 or data[offset] != 0x81:  # FIN + text, no RSV bits
        return None
    length = data[offset + 1] ^ 0x80  # the mask bit must be set
    if length < 126:
        header = 2
    elif length == 126 and available >= 8:
        length = int.from_bytes(data[offset + 2 : offset + 4], "big")
        header = 4
    else:
        return None  # unmasked (length >= 128 after the xor) or a 64-bit length
    start = offset + header + 4
    end = start + length
    if end > len(data):
        return None
    return apply_mask(data[start:end], data[start - 4 : start]), end


def _single_text_frame(data: bytes) -> bytes | None:
    """The payload if ``data`` is exactly one such frame (see :func:`_text_frame_at`)."""
    frame = _text_frame_at(data, 0)
    return frame[0] if frame is not None and frame[1] == len(data) else None


def _client_frame_size(frame: Frame) -> int:
    """Bytes a masked client frame took on the wire (no extensions are negotiated)."""
    length = len(frame.data)
    return 6 + length + (0 if length < 126 else 2 if length < 1 << 16 else 8)


def _line(event: str, **fields: Any) -> str:
    """One structured log line (JSON). Never pass message contents here."""
    return json.dumps({"event": event, **{k: v for k, v in fields.items() if v is not None}})


class RoomServer:
    """The room server on one listening socket. Use as ``async with RoomServer(cfg) as srv``."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        registry: Registry | None = None,
        *,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.config = config or ServerConfig()
        self._wall_clock = wall_clock  # Unix time, for TURN credentials' expiry
        self._turn = self.config.turn_rest
        self.registry = registry or Registry(
            RegistryConfig(
                capacity=self.config.capacity,
                grace=self.config.grace,
                queue_limit=self.config.queue_limit,
                token=self.config.token,
            ),
            welcome_extra=self._welcome_extra if self._turn is not None else None,
        )
        self._limiter = self.config.limiter()
        self._loop = asyncio.get_running_loop()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._handshakes: collections.deque[_Connection] = collections.deque()
        self._expiry: asyncio.TimerHandle | None = None
        self._all_gone: asyncio.Event | None = None

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> RoomServer:
        ssl_context = None
        if self.config.certfile:
            ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ssl_context.load_cert_chain(self.config.certfile, self.config.keyfile)
        self._server = await self._loop.create_server(
            lambda: _Connection(self),
            self.config.host,
            self.config.port,
            ssl=ssl_context,
            ssl_handshake_timeout=self.config.handshake_timeout if ssl_context else None,
            backlog=4096,
            reuse_address=True,
        )
        log.info(_line("listening", url=self.url, version=__version__))
        return self

    async def close(self) -> None:
        """Stop listening, tell every client (close 1001), wait for them briefly, then cut."""
        if self._server is None:
            return
        self._server.close()
        if self._expiry is not None:
            self._expiry.cancel()
        self._all_gone = asyncio.Event()
        for conn in list(self._connections):
            if conn.ws.state is State.OPEN:
                conn._released = True  # the whole registry goes away: tell no peers
                conn._close(CloseCode.GOING_AWAY, "server shutting down")
            else:
                conn._abort()
        self._connection_gone()
        try:
            await asyncio.wait_for(self._all_gone.wait(), self.config.close_timeout + 1)
        except TimeoutError:
            for conn in list(self._connections):
                conn._abort()
        await self._server.wait_closed()
        self._server = None
        log.info(_line("stopped"))

    async def __aenter__(self) -> RoomServer:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    # ------------------------------------------------------------------- queries

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"{'wss' if self.config.tls else 'ws'}://{host}:{self.port}"

    def stats(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "rooms": self.registry.rooms,
            "peers": self.registry.peers,
            "peers_in_grace": self.registry.peers_in_grace,
            "connections": len(self._connections),
            "refused": self._limiter.refused,
        }

    # ---------------------------------------------------------------- internals

    def _now(self) -> float:
        return self._loop.time()

    def _welcome_extra(self, room_id: str, peer_id: str) -> dict[str, Any]:
        """Fields added to every welcome (join and resume): fresh TURN credentials."""
        assert self._turn is not None
        return {ICE_SERVERS_FIELD: self._turn.ice_servers(peer_id, self._wall_clock())}

    def _queue_handshake(self, conn: _Connection) -> None:
        self._handshakes.append(conn)
        if len(self._handshakes) == 1:
            self._loop.call_soon(self._answer_handshakes)

    def _answer_handshakes(self) -> None:
        """At most HANDSHAKES_PER_TURN handshakes, then the loop polls again: relayed
        messages of open rooms run between the batches (about 3 ms of work each), so a
        burst of connections delays them by a batch, not by the whole burst."""
        queue = self._handshakes
        for _ in range(min(HANDSHAKES_PER_TURN, len(queue))):
            queue.popleft()._receive_early()
        if queue:
            self._loop.call_soon(self._answer_handshakes)

    def _dispatch(self, actions: list[Send | Close | Event]) -> None:
        for action in actions:
            if type(action) is Send:
                action.conn.send(action.message)  # type: ignore[attr-defined]
            elif type(action) is Close:
                conn: _Connection = action.conn  # type: ignore[assignment]
                conn._released = True  # its slot now belongs to another connection
                conn._fatal(ProtocolError(action.error.code, action.error.message))
            elif type(action) is Event:
                log.info(_line(action.name, room=action.room, peer=action.peer, peers=action.peers))

    def _arm_expiry(self) -> None:
        deadline = self.registry.next_deadline()
        if deadline is None or (self._expiry is not None and not self._expiry.cancelled()):
            return
        self._expiry = self._loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        self._dispatch(self.registry.expire(self._now()))
        self._arm_expiry()

    def _connection_gone(self) -> None:
        if self._all_gone is not None and not self._connections:
            self._all_gone.set()
