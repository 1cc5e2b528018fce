"""TURN REST credentials: short-lived TURN passwords the room server hands out in ``welcome``.

coturn's ``use-auth-secret`` scheme (the "TURN REST API" draft): the room server and the
TURN server share a secret; a credential is

    username   = "<unix time when it expires>:<label>"
    credential = base64(HMAC-SHA1(secret, username))

so the TURN server checks it with no call to the room server, and refuses it once the
time in the username has passed. The label is the peer id the credential was issued to
(it shows in coturn's log, so TURN usage can be matched to the room server's log).

Pure: no sockets, no clock (the caller passes the time), no aiortc. The URLs are checked
against RFC 7064 (``stun:``/``stuns:``) and RFC 7065 (``turn:``/``turns:``) here, because
the server does not depend on aiortc.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "DEFAULT_TTL",
    "ICE_SERVERS_FIELD",
    "TurnRest",
    "check_ice_url",
    "turn_credential",
]

#: The field of ``welcome`` that carries the servers (shaped like W3C ``RTCIceServer``s).
ICE_SERVERS_FIELD: Final = "ice_servers"
#: Default lifetime of a credential: 12 h (see docs/reliability.md, "TURN credentials").
DEFAULT_TTL: Final = 12 * 3600.0
#: More URLs than any deployment needs; bounds the size of every ``welcome``.
MAX_URLS: Final = 16

_URL = re.compile(
    r"(?P<scheme>stuns?|turns?):"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?:\?transport=(?P<transport>[A-Za-z]+))?"
)


def check_ice_url(url: str) -> str:
    """Return ``url`` if it is a usable STUN/TURN URL; raise ``ValueError`` saying why not."""
    match = _URL.fullmatch(url)
    if match is None:
        raise ValueError(
            f"{url!r} is not a STUN/TURN URL (expected e.g. turn:turn.example.org:3478"
            "?transport=udp, turns:turn.example.org:5349 or stun:turn.example.org:3478)"
        )
    scheme, host, port, transport = match.group("scheme", "host", "port", "transport")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{url!r}: {host} is not an IPv6 address") from None
    if port is not None and not 1 <= int(port) <= 65535:
        raise ValueError(f"{url!r}: {port} is not a port number")
    if transport is not None:
        if scheme.startswith("stun"):
            raise ValueError(f"{url!r}: a {scheme}: URL takes no ?transport (RFC 7064)")
        if transport not in ("udp", "tcp"):
            raise ValueError(f"{url!r}: transport must be udp or tcp")
    return url


def turn_credential(secret: str, username: str) -> str:
    """coturn's REST password for ``username``: base64(HMAC-SHA1(secret, username))."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True, slots=True)
class TurnRest:
    """What the server needs to issue credentials: the shared secret, the URLs, the lifetime."""

    secret: str
    urls: tuple[str, ...]
    ttl: float = DEFAULT_TTL

    def __post_init__(self) -> None:
        if not self.secret.strip():
            raise ValueError("the TURN secret is empty")
        if self.secret != self.secret.strip():
            raise ValueError("the TURN secret has leading or trailing whitespace")
        if not self.urls:
            raise ValueError("a TURN secret needs at least one --turn-url")
        if len(self.urls) > MAX_URLS:
            raise ValueError(f"at most {MAX_URLS} TURN/STUN URLs")
        for url in self.urls:
            check_ice_url(url)
        if not any(url.startswith("turn") for url in self.urls):
            raise ValueError("the TURN URLs hold no turn: or turns: URL (only stun:)")
        if not self.ttl > 0:
            raise ValueError(f"the TURN credential lifetime must be positive (got {self.ttl})")
        if not self.ttl < 366 * 86400:
            raise ValueError("the TURN credential lifetime must be under a year")

    def ice_servers(self, label: str, now: float) -> list[dict[str, Any]]:
        """The ``welcome`` field: STUN URLs alone, TURN URLs with a credential for ``label``.

        ``now`` is the Unix time (wall clock: the TURN server compares it to its own).
        """
        username = f"{int(now + self.ttl)}:{label}"
        stun = [url for url in self.urls if url.startswith("stun")]
        turn = [url for url in self.urls if url.startswith("turn")]
        servers: list[dict[str, Any]] = []
        if stun:
            servers.append({"urls": stun})
        servers.append(
            {
                "urls": turn,
                "username": username,
                "credential": turn_credential(self.secret, username),
            }
        )
        return servers
