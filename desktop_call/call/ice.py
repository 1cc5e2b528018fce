"""ICE servers (STUN/TURN): what people configure, validated, and bounded gathering.

``--ice-servers default|none|URL[,URL…]``; TURN URLs take ``--turn-username`` and
``--turn-credential`` (or credentials the room server hands out in ``welcome``).
aiortc uses one STUN and one TURN server per connection: the first of each kind.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.rtcicetransport import parse_stun_turn_uri

__all__ = [
    "DEFAULT_STUN",
    "IceConfig",
    "InvalidIceConfig",
    "bound_gathering",
    "parse_ice_servers",
]

DEFAULT_STUN = "stun:stun.l.google.com:19302"


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

    def __post_init__(self) -> None:
        if self.relay_only and not any(s.is_turn for s in self.servers):
            raise InvalidIceConfig("Relay-only needs a TURN server (turn: or turns: URL).")

    def rtc_configuration(self) -> RTCConfiguration:
        return RTCConfiguration(
            iceServers=[
                RTCIceServer(urls=s.url, username=s.username, credential=s.credential)
                for s in self.servers
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
