"""ICE servers (STUN/TURN): what people configure, validated, and bounded gathering.

``--ice-servers default|none|URL[,URL…]``; TURN URLs take ``--turn-username`` and
``--turn-credential`` (or credentials the room server hands out in ``welcome``).
aiortc uses one STUN and one TURN server per connection: the first of each kind.

Servers the room server issues (``welcome.ice_servers``, see docs/protocol.md) are
parsed by :func:`issued_ice_servers` and merged by :meth:`IceConfig.rtc_configuration`:
the person's own list first, then the issued servers not already in it. Order is
precedence, so a TURN server someone configured wins over the issued one (aiortc
takes the first TURN URL), and the issued one is used when they configured none.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.rtcicetransport import parse_stun_turn_uri

__all__ = [
    "DEFAULT_STUN",
    "IceConfig",
    "IceServer",
    "InvalidIceConfig",
    "bound_gathering",
    "issued_ice_servers",
    "merge_ice_servers",
    "parse_ice_servers",
]

log = logging.getLogger("desktop_call.call.ice")

DEFAULT_STUN = "stun:stun.l.google.com:19302"
#: Bounds on what a room server may hand out (more is ignored, with a log line).
MAX_ISSUED_URLS = 16
MAX_ISSUED_TEXT = 1024


class InvalidIceConfig(ValueError):
    """A STUN/TURN setting that cannot work. ``str()`` is user-facing."""


@dataclass(frozen=True, slots=True)
class IceServer:
    url: str
    username: str | None = None
    credential: str | None = None

    @property
    def is_turn(self) -> bool:
        return self.url.startswith("turn")


@dataclass(frozen=True, slots=True)
class IceConfig:
    servers: tuple[IceServer, ...] = (IceServer(DEFAULT_STUN),)
    relay_only: bool = False
    #: Longest wait for STUN/TURN answers while gathering (aiortc's own is 5 s).
    gather_timeout: float = 2.0
    extra: dict[str, Any] = field(default_factory=dict)

    def relay_problem(self, issued: Iterable[IceServer] = ()) -> str | None:
        """Why relay-only cannot work with these servers and the ``issued`` ones (the
        room server's), or None. Relay-only needs no TURN server of the user's own when
        the room server hands one out, so this is asked when its ``welcome`` is in."""
        if self.relay_only and not any(s.is_turn for s in merge_ice_servers(self.servers, issued)):
            return (
                "Relay-only needs a TURN server: add one in Settings (a turn: or turns: URL "
                "with its username and credential), or use a room server that hands one out."
            )
        return None

    def rtc_configuration(self, issued: Iterable[IceServer] = ()) -> RTCConfiguration:
        """aiortc's configuration: these servers, then the ``issued`` ones not already here."""
        return RTCConfiguration(
            iceServers=[
                RTCIceServer(urls=s.url, username=s.username, credential=s.credential)
                for s in merge_ice_servers(self.servers, issued)
            ],
            iceTransportPolicy=(
                RTCIceTransportPolicy.RELAY if self.relay_only else RTCIceTransportPolicy.ALL
            ),
        )


def parse_ice_servers(
    spec: str, *, username: str | None = None, credential: str | None = None
) -> tuple[IceServer, ...]:
    """``default`` (Google's public STUN), ``none``, or comma-separated stun:/turn:/turns: URLs."""
    text = spec.strip()
    if text.lower() == "default":
        return (IceServer(DEFAULT_STUN),)
    if text.lower() in ("none", ""):
        return ()
    servers = []
    for url in (part.strip() for part in text.split(",")):
        if not url:
            continue
        try:
            parsed = parse_stun_turn_uri(url)
        except ValueError as exc:
            raise InvalidIceConfig(
                f"“{url}” is not a STUN/TURN URL ({exc}); use e.g. stun:host:3478, "
                "turn:host:3478?transport=udp or turns:host:5349."
            ) from None
        if parsed["scheme"] in ("turn", "turns"):
            if not username or not credential:
                raise InvalidIceConfig(f"The TURN server {url} needs a username and a credential.")
            servers.append(IceServer(url, username, credential))
        else:
            servers.append(IceServer(url))
    return tuple(servers)


def merge_ice_servers(
    configured: Iterable[IceServer], issued: Iterable[IceServer]
) -> tuple[IceServer, ...]:
    """The configured servers, then the issued ones whose URL is not configured already.

    Order is precedence (aiortc uses the first STUN and the first TURN URL): what a
    person set up wins; the room server's TURN fills in when they have none. A URL
    someone configured keeps their credentials even if the server issues it too.
    """
    merged = list(configured)
    urls = {server.url for server in merged}
    for server in issued:
        if server.url not in urls:
            merged.append(server)
            urls.add(server.url)
    return tuple(merged)


def issued_ice_servers(value: object) -> tuple[IceServer, ...]:
    """The servers a room server offers in ``welcome.ice_servers`` (W3C RTCIceServer shape).

    ``[{"urls": str | [str], "username"?: str, "credential"?: str}, ...]``. Anything
    malformed is logged and left out (an entry, or a URL of an entry); it never fails:
    a call without the server's TURN is still a call. ``None`` (no field) gives ``()``.
    """
    if value is None:
        return ()
    if not isinstance(value, list):
        log.warning("ignored welcome.ice_servers: not a list (%s)", type(value).__name__)
        return ()
    servers: list[IceServer] = []
    for entry in value:
        if not isinstance(entry, dict):
            log.warning("ignored an ice_servers entry: not an object")
            continue
        urls = entry.get("urls")
        urls = [urls] if isinstance(urls, str) else urls
        username, credential = entry.get("username"), entry.get("credential")
        if (
            not isinstance(urls, list)
            or not all(isinstance(url, str) for url in urls)
            or not all(v is None or isinstance(v, str) for v in (username, credential))
            or any(
                len(text) > MAX_ISSUED_TEXT for text in (*urls, username or "", credential or "")
            )
        ):
            log.warning(
                "ignored an ice_servers entry: 'urls', 'username' or 'credential' ill-typed"
            )
            continue
        for url in urls:
            if len(servers) >= MAX_ISSUED_URLS:
                log.warning("ignored ice_servers beyond the first %d URLs", MAX_ISSUED_URLS)
                return tuple(servers)
            try:
                scheme = parse_stun_turn_uri(url)["scheme"]
            except ValueError as exc:
                log.warning("ignored the issued ICE server %r: %s", url[:100], exc)
                continue
            if scheme in ("turn", "turns"):
                if not username or not credential:
                    log.warning("ignored the issued TURN server %r: no credentials", url[:100])
                    continue
                servers.append(IceServer(url, username, credential))
            else:
                servers.append(IceServer(url))
    return tuple(servers)


def bound_gathering(pc: RTCPeerConnection, timeout: float) -> None:
    """Cap how long this connection's ICE gathering waits for STUN/TURN servers.

    aioice waits up to 5 s for server-reflexive and relay candidates; an unreachable
    server would stall every call setup that long. Host candidates are unaffected.
    Applied per connection (no global patch); call after the transceivers exist and
    before ``setLocalDescription``. Relies on aiortc internals, pinned by a test.
    """
    for gatherer in _gatherers(pc):
        connection = gatherer._connection
        method = type(connection).get_component_candidates
        connection.get_component_candidates = functools.partial(method, connection, timeout=timeout)


def _gatherers(pc: RTCPeerConnection) -> list[Any]:
    found: dict[int, Any] = {}
    transports = [t.sender.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    for dtls in transports:
        if dtls is not None:
            gatherer = dtls.transport.iceGatherer
            found[id(gatherer)] = gatherer
    return list(found.values())
