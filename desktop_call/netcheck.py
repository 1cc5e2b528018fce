"""The pre-call connectivity check: ``desktop-call --check`` and Settings → Test connection.

:func:`run_check` answers "will calls work from this network, with these settings?"
in about ten seconds at most, with no Qt (the settings dialog runs it as a task on
the qasync loop). What it tries, concurrently where the steps are independent:

1. **Room server**: DNS, TCP (and TLS for ``wss://``), the WebSocket handshake, then a
   ``join`` to a throwaway random room; ``welcome`` gives the latency, then ``leave``.
   Each failure is explained in plain words (name not found, connection refused,
   timeout, certificate refused, HTTP 4xx, not a room server, token refused...).
   STUN/TURN servers the room server hands out in ``welcome`` (``ice_servers``) are
   tested too, read and merged exactly as calls do (:mod:`desktop_call.call.ice`: your
   own servers first, then the issued ones whose URL is not among them).
2. **STUN**: a Binding request to every STUN server, all from one UDP socket, gives
   the public (server-reflexive) address. Equal to a local address: not behind NAT.
   With answers from two servers, equal mapped addresses mean an endpoint-independent
   ("cone") mapping, different ones a symmetric NAT.
3. **UDP blocked**: no STUN/TURN server answers over UDP while TCP gets through.
4. **TURN**: a real Allocate with long-term credentials over the URL's transport
   (udp, tcp, or TLS for ``turns:``); the relayed address, or why not (401 wrong
   credentials, a stale nonce (438) is retried, timeouts, refused connections). The
   allocation is deleted at once.

The result (:class:`CheckResult`) holds each step's outcome and a list of plain-words
findings; ``calls_can_work`` is what the CLI's exit status reports.

Exit status of ``desktop-call --check``: 0 when calls can work from here (possibly
with warnings, which are printed), 1 when they cannot (the findings say why), 64 for
bad input (nothing was checked).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import math
import socket
import ssl as ssl_module
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import ifaddr
from aioice import stun
from aioice.turn import TurnClientTcpProtocol, TurnClientUdpProtocol
from aiortc.rtcicetransport import parse_stun_turn_uri
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    WebSocketException,
)
from websockets.protocol import State
from websockets.uri import parse_uri

from desktop_call import __version__
from desktop_call.call.ice import (
    IceConfig,
    IceServer,
    InvalidIceConfig,
    issued_ice_servers,
    merge_ice_servers,
    parse_ice_servers,
)
from desktop_call.signaling.ids import InvalidCallTarget, new_call_id, parse_server_url
from desktop_call.signaling.protocol import (
    ErrorCode,
    ErrorMessage,
    Join,
    Leave,
    ProtocolError,
    Welcome,
    decode_server,
    encode,
)

__all__ = [
    "EXIT_CANNOT_WORK",
    "EXIT_OK",
    "EXIT_USAGE",
    "CheckResult",
    "CheckTimeouts",
    "Finding",
    "NatResult",
    "ServerResult",
    "StunResult",
    "TurnResult",
    "UdpResult",
    "main",
    "run_check",
]

log = logging.getLogger("desktop_call.netcheck")

EXIT_OK, EXIT_CANNOT_WORK, EXIT_USAGE = 0, 1, 64

#: The name the check joins its throwaway room with (other peers never see it).
CHECK_NAME: Final = "connectivity check"
#: Longest a clean goodbye (``leave``, TURN deallocation) may take after a result.
CLEANUP_TIMEOUT: Final = 1.0
#: Lifetime asked for a test allocation (it is deleted at once; this bounds a leak).
TEST_ALLOCATION_LIFETIME: Final = 60
#: A step that would get less time than this is reported as not tested.
MIN_BUDGET: Final = 0.25
#: Addresses of one STUN host probed (two tell the NAT's mapping behaviour).
STUN_ADDRESSES_PER_HOST: Final = 2

OK, FAILED, RUNNING, PENDING, SKIPPED = "ok", "failed", "running", "pending", "skipped"
LEVELS: Final = ("info", "ok", "warning", "fail")  # in order of severity


# ------------------------------------------------------------------------ results


@dataclass(frozen=True, slots=True)
class CheckTimeouts:
    """Seconds each step may take; ``total`` bounds the whole check."""

    server: float = 5.0
    stun: float = 3.0
    turn: float = 5.0
    total: float = 10.0

    def __post_init__(self) -> None:
        for name in ("server", "stun", "turn", "total"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(f"the {name} timeout must be a positive number of seconds")


@dataclass(slots=True)
class ServerResult:
    url: str | None  # ws://host:port (None: not checked)
    state: str = PENDING
    #: dns | dns-timeout | refused | timeout | tls-certificate | tls | http-NNN |
    #: not-websocket | network | closed | no-welcome | refused-join | internal
    error: str | None = None
    message: str = ""
    address: str | None = None  # host:port
    connect_ms: float | None = None  # TCP (+ TLS) + WebSocket handshake
    welcome_ms: float | None = None  # join -> welcome: the latency people will feel
    #: STUN/TURN servers from ``welcome`` (URL and username, never the credential).
    ice_servers: list[dict[str, str | None]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"Room server {self.url}" if self.url else "Room server"


@dataclass(slots=True)
class StunResult:
    url: str
    source: str = "settings"  # "settings" | "room server"
    state: str = PENDING
    #: unsupported | dns | dns-timeout | no-ipv4 | timeout | error-response | bad-answer |
    #: no-time | internal
    error: str | None = None
    message: str = ""
    server_address: str | None = None
    mapped_address: str | None = None  # the public (server-reflexive) address
    local_address: str | None = None
    rtt_ms: float | None = None
    #: Every address of the host that answered: {"server", "mapped", "rtt_ms"}.
    answers: list[dict[str, Any]] = field(default_factory=list)
    udp_answered: bool = False  # anything came back over UDP (an error response too)
    #: Why sending failed, if it did; ``send_refused``: refused by this computer (a firewall).
    send_error: str | None = None
    send_refused: bool = False

    @property
    def label(self) -> str:
        return f"STUN {self.url}" + (" (from the room server)" if self.source != "settings" else "")


@dataclass(slots=True)
class TurnResult:
    url: str
    source: str = "settings"
    transport: str = "udp"  # to the TURN server: udp | tcp | tls
    username: str | None = None
    state: str = PENDING
    #: unsupported | no-credentials | unauthorized | stale-nonce | forbidden | quota |
    #: capacity | error-NNN | dns | dns-timeout | refused | timeout | tls-certificate | tls |
    #: network | bad-answer | no-time | internal
    error: str | None = None
    error_code: int | None = None  # the STUN error code, when the server sent one
    message: str = ""
    server_address: str | None = None
    relayed_address: str | None = None
    mapped_address: str | None = None  # our address as the TURN server sees it
    rtt_ms: float | None = None  # the whole allocation (with the 401 challenge)
    answered: bool = False  # the server sent anything back over this transport
    send_error: str | None = None  # see StunResult.send_error
    send_refused: bool = False

    @property
    def label(self) -> str:
        what = f"TURN {self.url}"
        if "?transport=" not in self.url:
            what += f" ({self.transport})"
        return what + (" (from the room server)" if self.source != "settings" else "")


@dataclass(slots=True)
class NatResult:
    behind_nat: bool | None = None  # None: no STUN answer to tell
    #: "endpoint-independent" (cone) | "endpoint-dependent" (symmetric) | None: unknown
    mapping: str | None = None
    public_addresses: list[str] = field(default_factory=list)
    message: str = ""


@dataclass(slots=True)
class UdpResult:
    status: str = "unknown"  # works | blocked | unknown
    #: For "blocked": True when the evidence is firm (a TURN server answers over TCP but
    #: not over UDP, or two hosts are silent), False when one silent host could be down.
    certain: bool = False
    message: str = ""


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # info | ok | warning | fail
    text: str


@dataclass(slots=True)
class CheckResult:
    status: str  # ok | warning | fail
    calls_can_work: bool
    headline: str
    findings: list[Finding]
    server: ServerResult
    stun: list[StunResult]
    turn: list[TurnResult]
    nat: NatResult
    udp: UdpResult
    relay_only: bool
    duration_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """The human summary the CLI prints (plain text, one item per line)."""
        verdict = "calls can work" if self.calls_can_work else "calls will NOT work"
        lines = [f"Connectivity check: {verdict} ({self.status}).", f"  {self.headline}", ""]
        for item in (self.server, *self.stun, *self.turn):
            lines.append(f"  [{_mark(item.state)}] {item.label}: {item.message}")
        lines.append(f"  NAT: {self.nat.message}")
        lines.append(f"  UDP: {self.udp.message}")
        lines += ["", "What this means:"]
        lines += [f"  [{_mark(f.level)}] {f.text}" for f in self.findings]
        took = self.duration_ms
        lines.append(
            f"(checked in {took:.0f} ms)" if took < 1000 else f"(checked in {took / 1000:.1f} s)"
        )
        return "\n".join(lines)


def _mark(state: str) -> str:
    return {
        OK: " ok ",
        "info": " -- ",
        SKIPPED: " -- ",
        "warning": "warn",
        FAILED: "FAIL",
        "fail": "FAIL",
    }.get(state, " .. ")


Item = ServerResult | StunResult | TurnResult
Progress = Callable[[Item], None]


# ------------------------------------------------------------------ the check


async def run_check(
    server_url: str | None,
    ice: IceConfig,
    *,
    token: str | None = None,
    timeouts: CheckTimeouts | None = None,
    progress: Progress | None = None,
    ssl: ssl_module.SSLContext | None = None,
) -> CheckResult:
    """Check the room server at ``server_url`` (None: skip it) and ``ice``'s servers.

    ``server_url``: ``ws[s]://host:port`` or anything :func:`parse_server_url` takes;
    ``ValueError`` (``InvalidCallTarget``) if it is not a server address. ``progress``
    is called with an item each time one starts or ends (items are updated in place).
    ``ssl``: the TLS context for ``wss://`` and ``turns:`` (default: the system's CAs).
    Cancelling the task closes every socket it opened.
    """
    if not isinstance(ice, IceConfig):
        raise TypeError("ice must be an IceConfig (see desktop_call.call.ice)")
    timeouts = timeouts or CheckTimeouts()
    base = parse_server_url(server_url) if server_url is not None else None
    if token is not None and not isinstance(token, str):
        raise TypeError("token must be a string")
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeouts.total
    runner = _Runner(loop, deadline, timeouts, progress, ssl)

    server = ServerResult(base)
    if base is None:
        server.state = SKIPPED
        server.message = "not checked (no room server given)."
    runner.configured = ice.servers
    for entry in ice.servers:
        runner.add(entry, "settings")

    local_ips = await _local_addresses(loop)
    async with runner.open_udp():
        try:
            async with (
                asyncio.timeout_at(deadline + 2 * CLEANUP_TIMEOUT),
                asyncio.TaskGroup() as tg,
            ):
                runner.group = tg
                for start in runner.pending():
                    tg.create_task(start())
                if base is not None:
                    tg.create_task(runner.server(server, base, token))
        except TimeoutError:  # a step overran its own bound: a bug, but say what is left
            log.warning("connectivity check: steps still running at the deadline")
        for item in (server, *runner.stuns, *runner.turns):
            if item.state in (PENDING, RUNNING):
                item.state, item.error = FAILED, "timeout"
                item.message = "did not finish within the check's time limit."
    nat = _nat(runner.stuns, local_ips)
    udp = _udp(server, runner.stuns, runner.turns)
    findings = _findings(server, runner.stuns, runner.turns, nat, udp, ice)
    worst = max((LEVELS.index(f.level) for f in findings), default=1)
    status = {0: OK, 1: OK, 2: "warning", 3: "fail"}[worst]
    headline = next(
        (f.text for f in findings if LEVELS.index(f.level) == worst),
        "Nothing was checked.",
    )
    return CheckResult(
        status=status,
        calls_can_work=status != "fail",
        headline=headline,
        findings=findings,
        server=server,
        stun=runner.stuns,
        turn=runner.turns,
        nat=nat,
        udp=udp,
        relay_only=ice.relay_only,
        duration_ms=round((loop.time() - started) * 1000, 1),
    )


class _Runner:
    """Owns the steps of one check: their results, the shared UDP socket, their budget."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        deadline: float,
        timeouts: CheckTimeouts,
        progress: Progress | None,
        ssl: ssl_module.SSLContext | None,
    ) -> None:
        self.loop = loop
        self.deadline = deadline
        self.timeouts = timeouts
        self._progress = progress
        self._ssl = ssl
        self.stuns: list[StunResult] = []
        self.turns: list[TurnResult] = []
        self.group: asyncio.TaskGroup | None = None
        self.udp: _StunSocket | None = None
        self.configured: tuple[IceServer, ...] = ()
        self._queued: list[Callable[[], Any]] = []

    # ------------------------------------------------------------------ plumbing

    def budget(self, limit: float) -> float:
        return max(0.0, min(limit, self.deadline - self.loop.time()))

    def notify(self, item: Item) -> None:
        if self._progress is None:
            return
        try:
            self._progress(item)
        except Exception:  # the caller's bug must not end the check
            log.exception("connectivity check: progress callback failed")

    @contextlib.asynccontextmanager
    async def open_udp(self) -> Any:
        transport, protocol = await self.loop.create_datagram_endpoint(
            _StunSocket, local_addr=("0.0.0.0", 0)
        )
        self.udp = protocol
        try:
            yield protocol
        finally:
            transport.close()
            await _closed(protocol.closed, transport)

    def ssl_context(self) -> ssl_module.SSLContext:
        if self._ssl is None:
            self._ssl = ssl_module.create_default_context()
        return self._ssl

    def add(self, entry: IceServer, source: str) -> Item:
        """Queue the test of one STUN/TURN server; results keep the order calls use."""
        if entry.is_turn:
            item: StunResult | TurnResult = TurnResult(
                entry.url, source=source, username=entry.username
            )
            self.turns.append(item)
            self._queued.append(lambda: self.turn(item, entry))  # type: ignore[arg-type]
        else:
            item = StunResult(entry.url, source=source)
            self.stuns.append(item)
            self._queued.append(lambda: self.stun(item))  # type: ignore[arg-type]
        return item

    def pending(self) -> list[Callable[[], Any]]:
        queued, self._queued = self._queued, []
        return queued

    async def _guard(self, item: Item, step: Callable[[], Any]) -> None:
        try:
            await step()
        except Exception as exc:  # a bug: report it in the result, keep the other steps
            log.exception("connectivity check: %s failed", item.label)
            item.state, item.error = FAILED, "internal"
            item.message = f"the check itself failed ({exc!r}); see the log."
        self.notify(item)

    # ---------------------------------------------------------------- room server

    async def server(self, item: ServerResult, base: str, token: str | None) -> None:
        item.state = RUNNING
        self.notify(item)
        await self._guard(item, lambda: _check_server(self, item, base, token))

    def add_issued(self, welcome: Welcome, item: ServerResult) -> None:
        """Test what the room server hands out, as a call would merge it with the settings."""
        issued = issued_ice_servers(welcome.extra.get("ice_servers"))  # logs what it drops
        item.ice_servers = [{"url": s.url, "username": s.username} for s in issued]
        merged = merge_ice_servers(self.configured, issued)
        for entry in merged[len(self.configured) :]:
            self.add(entry, "room server")
        assert self.group is not None
        for start in self.pending():
            self.group.create_task(start())

    # ----------------------------------------------------------------------- STUN

    async def stun(self, item: StunResult) -> None:
        item.state = RUNNING
        self.notify(item)
        await self._guard(item, lambda: _check_stun(self, item))

    # ----------------------------------------------------------------------- TURN

    async def turn(self, item: TurnResult, entry: IceServer) -> None:
        item.state = RUNNING
        self.notify(item)
        await self._guard(item, lambda: _check_turn(self, item, entry))


def _out_of_time(item: StunResult | TurnResult) -> None:
    item.state, item.error = FAILED, "no-time"
    item.message = "not tested: the check's time limit was reached first."


def _secs(seconds: float) -> str:
    return f"{round(seconds, 1):g} s"


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _fmt(address: tuple[Any, ...] | None) -> str | None:
    if address is None:
        return None
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _cancelling() -> bool:
    task = asyncio.current_task()
    return bool(task is not None and task.cancelling())


# ---------------------------------------------------------------- room server


class _Refused(Exception):
    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


_JOIN_ERRORS: Final = {
    ErrorCode.UNAUTHORIZED: "the server wants a token",
    ErrorCode.BAD_ROOM: "the server refused the room name",
    ErrorCode.VERSION: "the server speaks another protocol version; update the app or the server",
    ErrorCode.RATE_LIMITED: "the server is limiting how often this address connects",
    ErrorCode.ROOM_FULL: "the test room was full",
}


async def _check_server(runner: _Runner, item: ServerResult, base: str, token: str | None) -> None:
    loop = runner.loop
    uri = parse_uri(base)
    where = _fmt((uri.host, uri.port))
    assert where is not None
    item.address = where
    room_url = f"{base}/rooms/{new_call_id()}"
    budget = runner.budget(runner.timeouts.server)
    stage = "dns"
    ws: ClientConnection | None = None
    try:
        async with asyncio.timeout(budget):
            await loop.getaddrinfo(uri.host, uri.port, type=socket.SOCK_STREAM)
            stage = "connect"
            t1 = loop.time()
            ws = await connect(
                room_url,
                open_timeout=None,  # bounded by the step's budget
                compression=None,
                max_size=1 << 20,
                ping_interval=None,
                close_timeout=CLEANUP_TIMEOUT,
                user_agent_header=f"desktop-call/{__version__} (connectivity check)",
                **({"ssl": runner._ssl} if uri.secure and runner._ssl is not None else {}),
            )
            item.connect_ms = _ms(loop.time() - t1)
            stage = "join"
            t2 = loop.time()
            with contextlib.suppress(ConnectionClosed):  # a refusal may already be on its way
                await ws.send(encode(Join(CHECK_NAME, token=token)), text=True)
            welcome = await _wait_welcome(ws, token)
            item.welcome_ms = _ms(loop.time() - t2)
            with contextlib.suppress(ConnectionClosed):
                await ws.send(encode(Leave()), text=True)
    except _Refused as exc:
        item.state, item.error = FAILED, exc.error
        item.message = exc.message
        return
    except TimeoutError:
        item.state = FAILED
        seconds = _secs(budget)
        if stage == "dns":
            item.error = "dns-timeout"
            item.message = (
                f"The room server could not be reached: looking up {uri.host} (DNS) took "
                f"more than {seconds}. Check your internet connection."
            )
        elif stage == "connect":
            item.error = "timeout"
            item.message = (
                f"The room server could not be reached: no answer from {where} within "
                f"{seconds} (the address may be wrong, or a firewall drops the connection)."
            )
        else:
            item.error = "no-welcome"
            item.message = (
                f"The room server at {where} accepted the connection but did not answer the "
                f"join within {seconds}: it may be overloaded, or it is not a desktop-call server."
            )
        return
    except Exception as exc:
        item.state = FAILED
        item.error, item.message = _explain_server_error(exc, stage, uri.host, where, base)
        if item.error == "internal":
            raise
        return
    finally:
        if ws is not None:
            await _close_ws(ws)
    item.state = OK
    item.message = (
        f"joined a test room (connected in {item.connect_ms:g} ms, "
        f"join answered in {item.welcome_ms:g} ms)."
    )
    runner.add_issued(welcome, item)


async def _wait_welcome(ws: ClientConnection, token: str | None) -> Welcome:
    while True:
        try:
            raw = await ws.recv(decode=False)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            fatal = {c.close_code: c for c in ErrorCode if c.close_code is not None}.get(code)
            if fatal is not None:
                raise _refusal(fatal, exc.rcvd.reason if exc.rcvd else "", token) from None
            raise _Refused(
                "closed",
                "The room server closed the connection before answering the join"
                + (f" (close code {code})." if code is not None else "."),
            ) from None
        try:
            message = decode_server(raw)
        except ProtocolError as exc:
            raise _Refused(
                "not-websocket",
                f"The server answered the join with something that is not the desktop-call "
                f"protocol ({exc.message[:80]}): is this the right address?",
            ) from None
        if isinstance(message, Welcome):
            return message
        if isinstance(message, ErrorMessage) and message.code.fatal:
            raise _refusal(message.code, message.message, token)


def _refusal(code: ErrorCode, detail: str, token: str | None) -> _Refused:
    if code is ErrorCode.UNAUTHORIZED:
        why = (
            "the server refused the token"
            if token
            else "the server wants a token: enter it in Settings (or --token)"
        )
    else:
        why = _JOIN_ERRORS.get(code, f"the server said {code}")
    suffix = f" ({detail})" if detail and detail != str(code) else ""
    return _Refused("refused-join", f"The room server refused the test join: {why}{suffix}.")


def _explain_server_error(
    exc: BaseException, stage: str, host: str, where: str, base: str
) -> tuple[str, str]:
    unreachable = "The room server could not be reached"
    if isinstance(exc, socket.gaierror):
        return "dns", (
            f"{unreachable}: the name {host} was not found (DNS: {exc.strerror}). "
            "Check the address and your internet connection."
        )
    if isinstance(exc, ssl_module.SSLCertVerificationError):
        return "tls-certificate", (
            f"{unreachable}: its TLS certificate was refused ({exc.verify_message or exc}). "
            "The address must match the certificate, and the certificate must be "
            "signed by an authority this computer trusts."
        )
    if isinstance(exc, ssl_module.SSLError):
        return "tls", (
            f"{unreachable}: the TLS handshake with {where} failed ({exc.reason or exc}). "
            "If that server does not use TLS, use ws:// instead of wss://."
        )
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        reason = {
            401: "it wants credentials this app does not send (a proxy in front of it?)",
            403: "access is forbidden (an Origin or address rule, or a proxy)",
            404: "there is no room server at that address (wrong path, or another service)",
            426: "it wants another protocol version; update the app or the server",
            429: "too many connections from this address; try again later",
        }.get(status, "it is not answering as a room server")
        return f"http-{status}", (f"{unreachable}: {where} answered HTTP {status}: {reason}.")
    if isinstance(exc, ConnectionRefusedError):
        return "refused", (
            f"{unreachable}: connection refused at {where} (nothing listens there: is the "
            "server running, and is the port right?)."
        )
    if isinstance(exc, ConnectionResetError | EOFError | ConnectionClosed):
        return "closed", (
            f"{unreachable}: {where} closed the connection during the handshake"
            + (" (is it really a TLS server? try ws://)." if base.startswith("wss") else ".")
        )
    if isinstance(exc, InvalidHandshake | WebSocketException):
        hint = "" if base.startswith("wss") else " If that server uses TLS, use wss://."
        return "not-websocket", (
            f"{unreachable}: something answers at {where}, but not as a WebSocket room "
            f"server ({exc}).{hint}"
        )
    if isinstance(exc, OSError):
        return "network", (f"{unreachable}: network error reaching {where}: {exc.strerror or exc}.")
    return "internal", f"the check failed at the {stage} step: {exc!r}"


async def _close_ws(ws: ClientConnection) -> None:
    """Close politely (bounded) unless cancelled; in every case the socket is gone after."""
    if not _cancelling():
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLEANUP_TIMEOUT):
                await ws.close()
    if ws.state is not State.CLOSED:
        ws.transport.abort()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLEANUP_TIMEOUT):
            await ws.wait_closed()


# ------------------------------------------------------------------------ STUN


#: errno of a send this computer refused (a local firewall rule, e.g. iptables DROP/REJECT).
_REFUSED_LOCALLY: Final = frozenset({errno.EPERM, errno.EACCES})


class _StunSocket(asyncio.DatagramProtocol):
    """One UDP socket for every Binding request, so mapped addresses can be compared."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.transactions: dict[bytes, stun.Transaction] = {}
        self.last_error: OSError | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            message = stun.parse_message(data)
        except ValueError:
            return
        if message.message_class in (stun.Class.RESPONSE, stun.Class.ERROR):
            transaction = self.transactions.get(message.transaction_id)
            if transaction is not None:
                transaction.response_received(message, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self.last_error = exc

    def send_stun(self, message: stun.Message, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(bytes(message), addr)

    @property
    def local_port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    async def binding(self, addr: tuple[str, int]) -> stun.Message:
        """One Binding transaction (RFC 5389 retransmissions); the caller bounds it."""
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        transaction = stun.Transaction(request, addr, self)
        self.transactions[request.transaction_id] = transaction
        try:
            response, _ = await transaction.run()
            return response
        finally:
            del self.transactions[request.transaction_id]


async def _resolve(
    loop: asyncio.AbstractEventLoop, host: str, port: int, kind: socket.SocketKind
) -> list[tuple[int, str]]:
    """Distinct (family, address) for host, IPv4 first (calls use IPv4 for STUN)."""
    infos = await loop.getaddrinfo(host, port, type=kind)
    found: list[tuple[int, str]] = []
    for family, _, _, _, sockaddr in infos:
        entry = (int(family), str(sockaddr[0]))
        if entry not in found and family in (socket.AF_INET, socket.AF_INET6):
            found.append(entry)
    return sorted(found, key=lambda e: e[0] != socket.AF_INET)


async def _check_stun(runner: _Runner, item: StunResult) -> None:
    loop = runner.loop
    parsed = parse_stun_turn_uri(item.url)
    if parsed["scheme"] != "stun":
        item.state, item.error = SKIPPED, "unsupported"
        item.message = f"{parsed['scheme']}: is not used by calls (only stun: URLs are)."
        return
    host, port = parsed["host"], parsed["port"]
    budget = runner.budget(runner.timeouts.stun)
    if budget < MIN_BUDGET:
        _out_of_time(item)
        return
    t0 = loop.time()
    try:
        async with asyncio.timeout(budget):
            addresses = await _resolve(loop, host, port, socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        item.state, item.error = FAILED, "dns"
        item.message = f"the name {host} was not found (DNS: {exc.strerror})."
        return
    except TimeoutError:
        item.state, item.error = FAILED, "dns-timeout"
        item.message = f"looking up {host} (DNS) took more than {_secs(budget)}."
        return
    ipv4 = [address for family, address in addresses if family == socket.AF_INET]
    if not ipv4:
        item.state, item.error = FAILED, "no-ipv4"
        item.message = f"{host} has no IPv4 address (calls ask STUN servers over IPv4)."
        return
    udp = runner.udp
    assert udp is not None
    targets = [(address, port) for address in ipv4[:STUN_ADDRESSES_PER_HOST]]
    item.server_address = _fmt(targets[0])
    item.local_address = f"0.0.0.0:{udp.local_port}"
    remaining = max(0.0, budget - (loop.time() - t0))

    async def probe(target: tuple[str, int]) -> tuple[stun.Message, float]:
        started = loop.time()
        async with asyncio.timeout(remaining):
            response = await udp.binding(target)
        return response, loop.time() - started

    outcomes = await asyncio.gather(*(probe(t) for t in targets), return_exceptions=True)
    refusal: stun.TransactionFailed | None = None
    for target, outcome in zip(targets, outcomes, strict=True):
        if isinstance(outcome, stun.TransactionFailed):
            item.udp_answered = True
            refusal = outcome
        elif isinstance(outcome, tuple):
            item.udp_answered = True
            response, rtt = outcome
            mapped = response.attributes.get("XOR-MAPPED-ADDRESS") or response.attributes.get(
                "MAPPED-ADDRESS"
            )
            if mapped is not None:
                item.answers.append(
                    {"server": _fmt(target), "mapped": _fmt(mapped), "rtt_ms": _ms(rtt)}
                )
        elif not isinstance(outcome, TimeoutError | stun.TransactionTimeout):
            raise outcome
    if item.answers:
        first = item.answers[0]
        item.state = OK
        item.server_address = first["server"]
        item.mapped_address = first["mapped"]
        item.rtt_ms = first["rtt_ms"]
        item.message = f"public address {item.mapped_address} (answered in {item.rtt_ms:g} ms)."
    elif refusal is not None:
        code, reason = refusal.response.attributes.get("ERROR-CODE", (None, ""))
        item.state, item.error = FAILED, "error-response"
        item.message = f"the server answered with an error ({code} {reason}): not a STUN server?"
    elif item.udp_answered:
        item.state, item.error = FAILED, "bad-answer"
        item.message = "the server answered without a mapped address."
    else:
        item.state, item.error = FAILED, "timeout"
        if udp.last_error is not None:
            item.send_error = udp.last_error.strerror or str(udp.last_error)
            item.send_refused = udp.last_error.errno in _REFUSED_LOCALLY
        detail = f" (sending failed: {item.send_error})" if item.send_error else ""
        item.message = (
            f"no answer within {_secs(budget)}{detail}: the server is down, the address or "
            "port is wrong, or your network blocks UDP."
        )


# ------------------------------------------------------------------------ TURN


class _Closing:
    """A future that tells when aioice's TURN client socket is really closed."""

    closed: asyncio.Future[None]

    def _init_closing(self) -> None:
        self.closed = asyncio.get_running_loop().create_future()

    def _lost(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _TurnUdp(TurnClientUdpProtocol, _Closing):
    """aioice's TURN client over UDP, remembering an ICMP error (port unreachable)."""

    icmp_error: OSError | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_closing()

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self.icmp_error = exc

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._lost()


class _TurnTcp(TurnClientTcpProtocol, _Closing):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_closing()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._lost()


async def _closed(closed: asyncio.Future[None], transport: asyncio.BaseTransport) -> None:
    """Wait (bounded) until a closed transport has let go of its socket; else abort it."""
    try:
        async with asyncio.timeout(CLEANUP_TIMEOUT):
            await asyncio.shield(closed)
    except TimeoutError:
        abort = getattr(transport, "abort", None)
        if abort is not None:
            abort()


_TURN_ERRORS: Final = {
    403: ("forbidden", "the server forbids this allocation (your address or user is not allowed)"),
    437: ("error-437", "allocation mismatch (437): the server still holds an old allocation"),
    440: ("error-440", "the server does not support this address family (440)"),
    442: ("error-442", "the server does not relay this transport (442)"),
    486: ("quota", "this user's allocation quota is used up (486)"),
    508: ("capacity", "the server is out of capacity (508)"),
}


async def _check_turn(runner: _Runner, item: TurnResult, entry: IceServer) -> None:
    loop = runner.loop
    parsed = parse_stun_turn_uri(entry.url)
    tls = parsed["scheme"] == "turns"
    transport = parsed.get("transport", "udp")
    item.transport = "tls" if tls else transport
    if transport not in ("udp", "tcp") or (tls and transport != "tcp"):
        item.state, item.error = SKIPPED, "unsupported"
        item.message = f"transport {transport} is not used by calls (udp, tcp or turns: are)."
        return
    if not entry.username or not entry.credential:
        item.state, item.error = FAILED, "no-credentials"
        item.message = "a TURN server needs a username and a credential."
        return
    host, port = parsed["host"], parsed["port"]
    budget = runner.budget(runner.timeouts.turn)
    if budget < MIN_BUDGET:
        _out_of_time(item)
        return
    stage = "dns"
    protocol: _TurnUdp | _TurnTcp | None = None
    allocated = False
    t0 = loop.time()
    try:
        async with asyncio.timeout(budget):
            kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
            family, address = (await _resolve(loop, host, port, kind))[0]
            server = (address, port)
            item.server_address = _fmt(server)
            stage = "connect"
            kwargs: dict[str, Any] = {
                "username": entry.username,
                "password": entry.credential,
                "lifetime": TEST_ALLOCATION_LIFETIME,
                "channel_refresh_time": 500,
            }
            if transport == "udp":
                _, protocol = await loop.create_datagram_endpoint(
                    lambda: _TurnUdp(server, **kwargs), remote_addr=server, family=family
                )
            else:
                _, protocol = await loop.create_connection(
                    lambda: _TurnTcp(server, **kwargs),
                    host=address,
                    port=port,
                    ssl=runner.ssl_context() if tls else None,
                    server_hostname=host if tls else None,
                )
            stage = "allocate"
            try:
                relayed = await _allocate(protocol, item)
            except stun.TransactionFailed:
                item.answered = True
                raise
            item.answered = allocated = True
    except stun.TransactionFailed as exc:
        code, reason = exc.response.attributes.get("ERROR-CODE", (0, ""))
        item.state, item.error_code = FAILED, code
        item.error, item.message = _explain_turn_refusal(code, reason, item)
        return
    except TimeoutError:
        icmp = getattr(protocol, "icmp_error", None)
        item.state = FAILED
        if stage == "dns":
            item.error = "dns-timeout"
        elif isinstance(icmp, ConnectionRefusedError):
            item.error = "refused"  # UDP got there: neither a sign of blocking nor of UDP working
        else:
            item.error = "timeout"
            if isinstance(icmp, PermissionError):
                item.send_error = icmp.strerror or str(icmp)
                item.send_refused = True
        item.message = _turn_timeout(stage, budget, host, transport, tls, icmp)
        return
    except Exception as exc:
        item.state = FAILED
        item.error, item.message = _explain_turn_error(exc, host, item.server_address)
        if item.error == "internal":
            raise
        return
    finally:
        if protocol is not None:
            await _release(protocol, allocated)
    item.state = OK
    item.rtt_ms = _ms(loop.time() - t0)
    item.relayed_address = _fmt(relayed)
    item.mapped_address = _fmt(protocol.mapped_address)
    via = {"udp": "UDP", "tcp": "TCP", "tls": "TLS"}[item.transport]
    item.message = f"relayed address {item.relayed_address} over {via} (in {item.rtt_ms:g} ms)."


async def _allocate(
    protocol: TurnClientUdpProtocol | TurnClientTcpProtocol, item: TurnResult
) -> tuple[str, int]:
    """Allocate; a stale nonce (438) after the 401 challenge is retried with the new one."""
    for attempt in range(3):
        try:
            return await protocol.connect()
        except stun.TransactionFailed as exc:
            response = exc.response
            if response.error_code != 438 or "NONCE" not in response.attributes or attempt == 2:
                raise
            item.answered = True
            protocol.nonce = response.attributes["NONCE"]
            log.info("connectivity check: %s: stale nonce, retrying", item.url)
    raise AssertionError("unreachable")


async def _release(protocol: _TurnUdp | _TurnTcp, allocated: bool) -> None:
    """Delete the allocation (bounded) and close the socket, even when cancelled."""
    transport = getattr(protocol, "transport", None)
    try:
        if allocated and not _cancelling():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLEANUP_TIMEOUT):
                    await protocol.delete()
    finally:
        if protocol.refresh_task is not None:
            protocol.refresh_task.cancel()
            protocol.refresh_task = None
        if transport is not None:
            transport.close()
            await _closed(protocol.closed, transport)


def _explain_turn_refusal(code: int, reason: str, item: TurnResult) -> tuple[str, str]:
    if code == 401:
        hint = (
            "the room server issued them: its TURN secret or clock may not match the TURN server's"
            if item.source != "settings"
            else "check the TURN username and credential"
        )
        return "unauthorized", f"credentials refused (401 Unauthorized): {hint}."
    if code == 438:
        return "stale-nonce", "the server kept saying the nonce is stale (438), even after a retry."
    if code in _TURN_ERRORS:
        return _TURN_ERRORS[code]
    return f"error-{code}", f"the server refused the allocation ({code} {reason})."


def _turn_timeout(
    stage: str,
    budget: float,
    host: str,
    transport: str,
    tls: bool,
    icmp: OSError | None,
) -> str:
    seconds = _secs(budget)
    if stage == "dns":
        return f"looking up {host} (DNS) took more than {seconds}."
    if stage == "connect":
        return f"no {'TLS' if tls else 'TCP'} connection within {seconds}."
    if transport == "udp":
        if isinstance(icmp, ConnectionRefusedError):
            return "no TURN server on that UDP port (the host said: port unreachable)."
        detail = f" (sending failed: {icmp.strerror})" if isinstance(icmp, PermissionError) else ""
        return (
            f"no answer within {seconds}{detail}: the server is down, the address or port is "
            "wrong, or your network blocks UDP."
        )
    return f"connected, but no answer to the allocation within {seconds}."


def _explain_turn_error(exc: BaseException, host: str, where: str | None) -> tuple[str, str]:
    if isinstance(exc, socket.gaierror):
        return "dns", f"the name {host} was not found (DNS: {exc.strerror})."
    if isinstance(exc, ssl_module.SSLCertVerificationError):
        return "tls-certificate", f"its TLS certificate was refused ({exc.verify_message or exc})."
    if isinstance(exc, ssl_module.SSLError):
        return "tls", f"the TLS handshake failed ({exc.reason or exc})."
    if isinstance(exc, ConnectionRefusedError):
        return "refused", f"connection refused at {where} (no TURN server listens there)."
    if isinstance(exc, ConnectionError) and "missing" in str(exc):
        return "bad-answer", f"the server's answer was incomplete ({exc})."
    if isinstance(exc, OSError):
        return "network", f"network error reaching {where}: {exc.strerror or exc}."
    return "internal", repr(exc)


# --------------------------------------------------------------------- verdicts


async def _local_addresses(loop: asyncio.AbstractEventLoop) -> set[str]:
    def read() -> set[str]:
        found = set()
        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                found.add(ip.ip if isinstance(ip.ip, str) else ip.ip[0])
        return found

    try:
        return await loop.run_in_executor(None, read)
    except Exception:  # no interface list on this system: "behind NAT" stays unknown
        log.exception("connectivity check: cannot list this computer's addresses")
        return set()


def _host(address: str) -> str:
    return address.rsplit(":", 1)[0].strip("[]")


def _nat(stuns: list[StunResult], local_ips: set[str]) -> NatResult:
    answers = [(answer, s) for s in stuns for answer in s.answers]
    if not answers:
        return NatResult(message="unknown (no STUN server answered).")
    public = sorted({_host(a["mapped"]) for a, _ in answers})
    local_port = {s.local_address.rsplit(":", 1)[1] for _, s in answers if s.local_address}
    behind = any(
        _host(a["mapped"]) not in local_ips or a["mapped"].rsplit(":", 1)[1] not in local_port
        for a, _ in answers
    )
    servers = {a["server"] for a, _ in answers}
    mapped = {a["mapped"] for a, _ in answers}
    mapping = None
    if len(servers) >= 2:
        mapping = "endpoint-independent" if len(mapped) == 1 else "endpoint-dependent"
    first = answers[0][0]["mapped"]
    if not behind:
        text = f"not behind NAT (STUN servers see this computer's own address, {first})."
    elif mapping == "endpoint-independent":
        text = (
            f"behind NAT; the public address {first} is the same for every server "
            "(endpoint-independent mapping, a 'cone' NAT)."
        )
    elif mapping == "endpoint-dependent":
        text = (
            f"behind a symmetric NAT: each server sees another public address "
            f"({', '.join(sorted(mapped))})."
        )
    else:
        text = (
            f"behind NAT (public address {first}); a second STUN server would tell "
            "whether the NAT is symmetric."
        )
    return NatResult(behind, mapping, public, text)


def _udp(server: ServerResult, stuns: list[StunResult], turns: list[TurnResult]) -> UdpResult:
    tried: list[tuple[str, str, bool]] = [  # (url, host, answered)
        (s.url, _host(s.server_address), s.udp_answered) for s in stuns if s.server_address
    ]
    tried += [
        (t.url, _host(t.server_address), t.answered)
        for t in turns
        if t.transport == "udp" and t.server_address and t.error != "refused"
    ]
    answered = [url for url, _, ok in tried if ok]
    if answered:
        return UdpResult("works", True, f"works ({answered[0]} answered over UDP).")
    if not tried:
        return UdpResult("unknown", False, "not tested (no STUN or TURN server over UDP to ask).")
    silent = {host for _, host, _ in tried}
    refused = [i.send_error for i in (*stuns, *turns) if i.send_refused]
    if refused:
        return UdpResult(
            "blocked",
            True,
            f"blocked by a firewall on this computer (sending UDP failed: {refused[0]}).",
        )
    tcp_turn = [t for t in turns if t.transport in ("tcp", "tls") and t.answered]
    tcp_ok = server.state == OK or bool(tcp_turn)
    names = ", ".join(url for url, _, _ in tried)
    if not tcp_ok:
        return UdpResult(
            "unknown",
            False,
            f"no answer over UDP ({names}), and nothing answered over TCP either: the "
            "network may be down, or those servers are.",
        )
    if any(_host(t.server_address or "") in silent for t in tcp_turn) or len(silent) >= 2:
        return UdpResult(
            "blocked",
            True,
            f"blocked: no server answered over UDP ({names}) while TCP gets through.",
        )
    return UdpResult(
        "blocked",
        False,
        f"probably blocked: no answer over UDP ({names}) while TCP gets through "
        "(unless that server is down).",
    )


def _used(items: list[Any]) -> Any:
    """The server calls will use: aiortc takes the first STUN and the first TURN URL it
    supports (the settings' own first, then the room server's; see merge_ice_servers)."""
    return next((item for item in items if item.state != SKIPPED), None)


def _findings(
    server: ServerResult,
    stuns: list[StunResult],
    turns: list[TurnResult],
    nat: NatResult,
    udp: UdpResult,
    ice: IceConfig,
) -> list[Finding]:
    out: list[Finding] = []
    if server.state == FAILED:
        out.append(Finding("fail", server.message))  # the headline when it fails

    used_turn: TurnResult | None = _used(turns)
    relay = used_turn.url if used_turn is not None and used_turn.state == OK else None
    instead = _instead(used_turn, turns)
    if ice.relay_only:
        if relay:
            out.append(
                Finding(
                    "ok",
                    f"Relay-only is on: calls will go through the TURN server {relay} "
                    "(the other side never sees your IP address).",
                )
            )
        else:
            out.append(
                Finding(
                    "fail",
                    "Relay-only is on, but the TURN server calls use does not work: calls "
                    f"cannot connect.{instead}",
                )
            )
    elif udp.status == "works":
        out.append(_nat_finding(nat, relay, stuns))
    elif udp.status == "blocked":
        lead = (
            "Your network blocks UDP"
            if udp.certain
            else "Your network probably blocks UDP (nothing answered over UDP, unless that "
            "server is down)"
        )
        over_tcp = [t for t in turns if t.transport in ("tcp", "tls")]
        if relay and used_turn is not None and used_turn.transport in ("tcp", "tls"):
            text = (
                f"{lead}: calls will be relayed through the TURN server over TCP ({relay}), "
                "with a little more delay."
            )
            out.append(Finding("warning", text))
        elif over_tcp:
            failed = next((t for t in over_tcp if t.state != OK), over_tcp[0])
            why = f"{failed.url} failed: {failed.message}" if failed.state != OK else ""
            text = f"{lead}: calls need a TURN server over TCP/TLS. " + (why or instead.strip())
            out.append(Finding("fail", text))
        else:
            text = (
                f"{lead}: calls need a TURN server over TCP/TLS "
                "(turn:HOST:3478?transport=tcp or turns:HOST:5349); none is configured."
            )
            out.append(Finding("fail", text))
    elif not stuns and not turns:
        text = (
            "No STUN or TURN server is configured: calls connect only between computers "
            "on the same network."
        )
        out.append(Finding("warning", text))
    else:
        out.append(Finding("warning", f"UDP could not be tested: {udp.message}"))

    if server.state == SKIPPED:
        out.append(Finding("info", "The room server was not checked."))
    elif server.state == OK:
        text = f"The room server works (join answered in {server.welcome_ms:g} ms)."
        out.append(Finding("ok", text))

    for t in turns:
        where = "" if t.source == "settings" else " (issued by the room server)"
        if t.state == FAILED:
            level = "fail" if ice.relay_only and t is used_turn else "warning"
            if t.error == "unauthorized":
                hint = t.message.split(": ", 1)[1]
                text = f"Your TURN credentials were refused (401) by {t.url}{where}: {hint}"
            else:
                text = f"TURN server {t.url}{where}: {t.message}"
            out.append(Finding(level, text))
        elif t.state == SKIPPED:
            out.append(Finding("info", f"TURN {t.url}{where}: {t.message}"))
    for s in stuns:
        if s.state == FAILED and udp.status == "works":  # else the UDP finding says why
            out.append(Finding("warning", f"STUN server {s.url}: {s.message}"))
        elif s.state == SKIPPED:
            out.append(Finding("info", f"STUN {s.url}: {s.message}"))
    for kind, items in (("TURN", turns), ("STUN", stuns)):
        used = _used(items)
        hint = _instead(used, items)
        if hint and not (kind == "TURN" and (ice.relay_only or udp.status == "blocked")):
            out.append(Finding("warning", f"Calls use only the first {kind} server.{hint}"))
    return out


def _instead(used: Any, items: list[Any]) -> str:
    """When the server calls use failed but another works: what to change."""
    if used is None or used.state == OK:
        return ""
    better = next((item for item in items if item.state == OK), None)
    if better is None:
        return ""
    if used.source == "settings" and better.source == "settings":
        return f" {used.url} failed and {better.url} works: put it first in your list."
    if used.source == "settings":
        return (
            f" {used.url} from your settings failed, while the room server's {better.url} "
            "works: remove yours to use it."
        )
    return f" {used.url} failed and {better.url} works."


def _nat_finding(nat: NatResult, relay: str | None, stuns: list[StunResult]) -> Finding:
    fallback = f" Calls that cannot go directly will use the TURN server {relay}." if relay else ""
    if nat.behind_nat is False:
        return Finding(
            "ok",
            f"Not behind NAT: STUN servers see this computer's own address "
            f"({nat.public_addresses[0]}). Calls on this network will connect directly "
            "in most cases.",
        )
    if nat.mapping == "endpoint-dependent":
        if relay:
            return Finding(
                "ok",
                "Behind a symmetric NAT: calls to people behind another such NAT cannot go "
                f"directly, and will use the TURN server {relay}.",
            )
        return Finding(
            "warning",
            "Behind a symmetric NAT (a new public port for every destination): calls to "
            "people behind another such NAT will not connect without a TURN server.",
        )
    if nat.behind_nat:
        return Finding(
            "ok",
            f"Behind NAT (public address {nat.public_addresses[0]}): calls on this network "
            f"will connect directly in most cases.{fallback}",
        )
    if not stuns:
        return Finding(
            "ok" if relay else "warning",
            "UDP works, but no STUN server is configured: only people on your network "
            "can reach you directly." + fallback,
        )
    return Finding("ok", f"UDP works.{fallback}")


# --------------------------------------------------------------------------- CLI


def main(args: argparse.Namespace) -> int:
    """``desktop-call --check``: print the summary (JSON with ``--report``); exit status."""
    try:
        servers = parse_ice_servers(
            args.ice_servers, username=args.turn_username, credential=args.turn_credential
        )
        ice = IceConfig(servers=servers, relay_only=args.relay_only)
        server = parse_server_url(args.server) if args.server else None
    except (InvalidIceConfig, InvalidCallTarget) as exc:
        print(f"desktop-call --check: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = asyncio.run(run_check(server, ice, token=args.token))
    except KeyboardInterrupt:
        return 130
    text = result.summary()
    report = json.dumps(result.to_dict(), indent=2)
    if args.report == "-":
        print(text, file=sys.stderr, flush=True)
        print(report, flush=True)
    else:
        print(text, flush=True)
        if args.report:
            try:
                Path(args.report).write_text(report + "\n", encoding="utf-8")
            except OSError as exc:
                print(f"desktop-call --check: cannot write {args.report}: {exc}", file=sys.stderr)
                return EXIT_USAGE
    return EXIT_OK if result.calls_can_work else EXIT_CANNOT_WORK
