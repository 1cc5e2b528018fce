"""Per-address connection limits: how many sockets one address holds, how fast it opens them.

A pure state machine like the registry: the driver says "a connection from this IP
arrived at time t" and "it is gone", and hears back whether to accept it, refuse it
with HTTP 429 once its request arrives, or cut it at once.

* An **address** is an IPv4 address, or the /64 prefix of an IPv6 address (one
  subscriber usually holds a whole /64, so per-address IPv6 limits would limit
  nothing). IPv4-mapped IPv6 addresses count as their IPv4 address.
* **Open connections**: at most ``max_open`` accepted sockets per address
  (0: no limit). The next one is refused.
* **New connections**: a token bucket per address, ``rate`` per second with bursts
  of ``burst`` (0: no limit). Every TCP connection takes a token, accepted or not:
  the cost to the server is the accept and the HTTP parse, whatever the outcome.
* **Refusals** answer HTTP 429 with a readable body, which means waiting for the
  request, so they hold a socket for up to the handshake deadline. At most
  ``MAX_PENDING_REFUSALS`` per address wait like that; beyond that a connection is
  cut at once (no answer). One address thus holds at most ``max_open`` +
  ``MAX_PENDING_REFUSALS`` sockets.
* Addresses in ``exempt`` networks are not limited (a reverse proxy in front of the
  server, or loopback where that is wanted).

Memory: one small record per address with open sockets or an unfilled bucket; idle
records are swept every ``SWEEP_EVERY`` admissions.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum
from typing import Final

__all__ = ["Admission", "ConnectionLimiter", "Outcome", "address_key", "parse_networks"]

MAX_PENDING_REFUSALS: Final = 8
SWEEP_EVERY: Final = 1024
#: At most one log line per address this often, however many refusals.
LOG_EVERY_S: Final = 10.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Outcome(Enum):
    ACCEPT = "accept"
    TOO_MANY = "too-many-connections"  # refuse with 429: max_open reached
    TOO_FAST = "too-many-new-connections"  # refuse with 429: bucket empty
    CUT = "cut"  # too many refusals pending: close without an answer

    @property
    def refused(self) -> bool:
        return self is Outcome.TOO_MANY or self is Outcome.TOO_FAST


@dataclass(frozen=True, slots=True)
class Admission:
    key: str | None  # None: not limited (exempt, or limits off); nothing to release
    outcome: Outcome
    #: Refusals from this address not logged yet, when it is time for a log line (else 0).
    report: int = 0


@dataclass(slots=True)
class _Address:
    tokens: float
    at: float
    open: int = 0
    refusing: int = 0
    unlogged: int = 0
    logged_at: float = float("-inf")


def address_key(ip: str) -> str | None:
    """The unit limits apply to: the IPv4 address or the IPv6 /64 (None if not an IP)."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def parse_networks(specs: tuple[str, ...]) -> tuple[Network, ...]:
    """CIDR networks (a bare address is a /32 or /128); ``ValueError`` naming the bad one."""
    networks = []
    for spec in specs:
        try:
            networks.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{spec!r} is not an IP network (e.g. 127.0.0.0/8, ::1/128, 10.0.0.5)"
            ) from None
    return tuple(networks)


class ConnectionLimiter:
    """Per-address limits of one server. Not thread-safe: one event loop drives it."""

    def __init__(
        self,
        max_open: int,
        rate: float,
        burst: int,
        exempt: tuple[Network, ...] = (),
    ) -> None:
        if max_open < 0 or rate < 0 or burst < 0:
            raise ValueError("connection limits cannot be negative")
        if rate > 0 and burst < 1:
            raise ValueError("a connection rate needs a burst of at least 1")
        self.max_open = max_open
        self.rate = rate
        self.burst = burst
        self.exempt = exempt
        self._addresses: dict[str, _Address] = {}
        self._admitted_since_sweep = 0
        #: Connections refused (429) or cut since the start.
        self.refused = 0

    @property
    def enabled(self) -> bool:
        return self.max_open > 0 or self.rate > 0

    @property
    def tracked(self) -> int:
        """Addresses with a record (for tests and /healthz)."""
        return len(self._addresses)

    def admit(self, ip: str, now: float) -> Admission:
        """A TCP connection from ``ip`` arrived: accept it, refuse it, or cut it."""
        key = self._key(ip)
        if key is None:
            return Admission(None, Outcome.ACCEPT)
        self._admitted_since_sweep += 1
        if self._admitted_since_sweep >= SWEEP_EVERY:
            self.sweep(now)
        address = self._addresses.get(key)
        if address is None:
            address = self._addresses[key] = _Address(tokens=float(self.burst), at=now)

        outcome = Outcome.ACCEPT
        if self.rate > 0:
            tokens = min(float(self.burst), address.tokens + (now - address.at) * self.rate)
            address.at = now
            if tokens < 1.0:
                outcome = Outcome.TOO_FAST
            address.tokens = tokens - 1.0 if tokens >= 1.0 else tokens
        if outcome is Outcome.ACCEPT and self.max_open > 0 and address.open >= self.max_open:
            outcome = Outcome.TOO_MANY

        if outcome is Outcome.ACCEPT:
            address.open += 1
            return Admission(key, outcome)
        self.refused += 1
        if address.refusing >= MAX_PENDING_REFUSALS:
            outcome = Outcome.CUT
        else:
            address.refusing += 1
        address.unlogged += 1
        report = 0
        if now - address.logged_at >= LOG_EVERY_S:
            report, address.unlogged, address.logged_at = address.unlogged, 0, now
        return Admission(key, outcome, report)

    def release(self, admission: Admission, now: float) -> None:
        """A connection admitted with ``admission`` is gone."""
        if admission.key is None or admission.outcome is Outcome.CUT:
            return
        address = self._addresses.get(admission.key)
        if address is None:
            return
        if admission.outcome is Outcome.ACCEPT:
            address.open -= 1
        else:
            address.refusing -= 1
        if self._idle(address, now):
            del self._addresses[admission.key]

    def sweep(self, now: float) -> None:
        """Forget addresses with no sockets and a full bucket (nothing left to remember)."""
        self._admitted_since_sweep = 0
        for key in [k for k, a in self._addresses.items() if self._idle(a, now)]:
            del self._addresses[key]

    def _idle(self, address: _Address, now: float) -> bool:
        if address.open or address.refusing:
            return False
        return self.rate <= 0 or address.tokens + (now - address.at) * self.rate >= self.burst

    def _key(self, ip: str) -> str | None:
        if not self.enabled:
            return None
        key = address_key(ip)
        if key is None or not self.exempt:
            return key
        address = ipaddress.ip_address(ip.split("%", 1)[0])
        if address.version == 6 and address.ipv4_mapped is not None:  # type: ignore[union-attr]
            address = address.ipv4_mapped  # type: ignore[union-attr]
        if any(address in network for network in self.exempt):
            return None
        return key
