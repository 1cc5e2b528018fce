"""The room registry: a pure state machine for rooms, slots, relay and resume.

Input in (a connection joined, sent a signal, left, dropped; time passed),
"who gets what" out (a list of actions for the I/O driver to carry out). It never
touches a socket or a clock: the driver passes ``now`` in, so every rule of the
contract (capacity, resume, grace, the 64-message queue) has a table test with
no event loop.

Connections are opaque hashable keys chosen by the driver.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from desktop_call.signaling.protocol import (
    PROTOCOL_VERSION,
    ErrorCode,
    ErrorMessage,
    Join,
    Peer,
    PeerJoined,
    PeerLeft,
    ProtocolError,
    Relayed,
    ServerMessage,
    Signal,
    Welcome,
)

__all__ = ["Close", "Event", "Registry", "RegistryConfig", "Send"]

Conn = Hashable

LEFT = "left"
TIMEOUT = "timeout"


# ------------------------------------------------------------------------ actions


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver ``message`` on connection ``conn``."""

    conn: Conn
    message: ServerMessage


@dataclass(frozen=True, slots=True)
class Close:
    """Send ``error`` on ``conn``, then close it with the error's close code."""

    conn: Conn
    error: ErrorMessage


@dataclass(frozen=True, slots=True)
class Event:
    """Something worth one log line (never message contents)."""

    name: str  # "join" | "resume" | "leave" | "drop" | "timeout"
    room: str
    peer: str
    peers: int  # slots in the room after the event


Action = Send | Close | Event


# -------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    capacity: int = 2
    grace: float = 30.0  # seconds a dropped peer's slot is kept
    queue_limit: int = 64  # signals kept for a peer in grace
    token: str | None = None  # shared secret required in join.token, if set
    versions: frozenset[int] = frozenset({PROTOCOL_VERSION})


@dataclass(slots=True, eq=False)
class _Slot:
    peer: Peer
    room: _Room
    resume: str
    conn: Conn | None  # None while in grace
    deadline: float = 0.0  # when the grace period ends (only while conn is None)
    queue: list[Relayed] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class _Room:
    id: str
    slots: dict[str, _Slot] = field(default_factory=dict)  # peer id -> slot, oldest first
    by_resume: dict[str, _Slot] = field(default_factory=dict)


def _new_peer_id() -> str:
    return secrets.token_urlsafe(12)  # 96 random bits


def _new_resume_token() -> str:
    return secrets.token_urlsafe(24)


class Registry:
    """All rooms of one server. Not thread-safe: one event loop drives it."""

    def __init__(
        self,
        config: RegistryConfig | None = None,
        *,
        new_peer_id: Callable[[], str] = _new_peer_id,
        new_resume_token: Callable[[], str] = _new_resume_token,
        welcome_extra: Callable[[str, str], dict[str, Any]] | None = None,
    ) -> None:
        self.config = config or RegistryConfig()
        self._new_peer_id = new_peer_id
        self._new_resume_token = new_resume_token
        self._welcome_extra = welcome_extra
        self._rooms: dict[str, _Room] = {}
        self._by_conn: dict[Conn, _Slot] = {}
        self._absent: dict[_Slot, None] = {}  # slots in grace, in order of their deadline

    # ------------------------------------------------------------------ queries

    @property
    def rooms(self) -> int:
        return len(self._rooms)

    @property
    def peers(self) -> int:
        return sum(len(room.slots) for room in self._rooms.values())

    @property
    def peers_in_grace(self) -> int:
        return len(self._absent)

    def peer_of(self, conn: Conn) -> tuple[str, str] | None:
        """(room id, peer id) of a joined connection."""
        slot = self._by_conn.get(conn)
        return (slot.room.id, slot.peer.id) if slot else None

    def next_deadline(self) -> float | None:
        """When the earliest grace period ends, if any slot is in grace."""
        return next(iter(self._absent)).deadline if self._absent else None

    # ----------------------------------------------------------------- commands

    def join(self, conn: Conn, room_id: str, msg: Join, now: float) -> list[Action]:
        """A connection's first message. Raises :class:`ProtocolError` (fatal) on refusal.

        Checks in the contract's order: version, then token, then capacity (the
        message itself was validated when it was decoded).
        """
        if conn in self._by_conn:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "second 'join'")
        if msg.v not in self.config.versions:
            raise ProtocolError(
                ErrorCode.VERSION,
                f"protocol version {str(msg.v)[:20]} is not spoken here (speaks "
                f"{', '.join(map(str, sorted(self.config.versions)))})",
            )
        if self.config.token is not None and not hmac.compare_digest(
            (msg.token or "").encode(), self.config.token.encode()
        ):
            raise ProtocolError(ErrorCode.UNAUTHORIZED, "missing or wrong token")

        actions: list[Action] = self.expire(now)  # a slot past its grace no longer counts
        room = self._rooms.get(room_id)
        slot = room.by_resume.get(msg.resume) if room and msg.resume else None
        if slot is not None:
            return actions + self._resume(conn, slot)
        if room is not None and len(room.slots) >= self.config.capacity:
            raise ProtocolError(
                ErrorCode.ROOM_FULL, f"this call already has {self.config.capacity} people"
            )

        if room is None:
            room = self._rooms[room_id] = _Room(room_id)
        peer = Peer(self._new_peer_id(), msg.name)
        others = [s.peer for s in room.slots.values()]
        slot = _Slot(peer, room, self._new_resume_token(), conn)
        room.slots[peer.id] = slot
        room.by_resume[slot.resume] = slot
        self._by_conn[conn] = slot

        actions.append(Send(conn, self._welcome(slot, others)))
        # A peer in grace is not told: its welcome on resuming lists who is here.
        joined = PeerJoined(peer)
        actions.extend(Send(s.conn, joined) for s in self._present(room) if s is not slot)
        actions.append(Event("join", room.id, peer.id, len(room.slots)))
        return actions

    def signal(self, conn: Conn, msg: Signal) -> list[Action]:
        """Relay ``msg.data``. Raises ``unknown-peer`` (not fatal) for a bad ``to``."""
        slot = self._by_conn.get(conn)
        if slot is None:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "'join' must be the first message")
        relayed = Relayed(slot.peer.id, msg.data)
        if msg.to is None:
            targets = [s for s in slot.room.slots.values() if s is not slot]
        else:
            target = slot.room.slots.get(msg.to)
            if target is None or target is slot:
                raise ProtocolError(ErrorCode.UNKNOWN_PEER, f"no peer {msg.to[:40]!r} in this call")
            targets = [target]
        actions: list[Action] = []
        for target in targets:
            if target.conn is not None:
                actions.append(Send(target.conn, relayed))
            else:
                self._enqueue(target, relayed)
        return actions

    def leave(self, conn: Conn) -> list[Action]:
        """``leave``, a clean close, or a fatal error: the slot is freed at once."""
        slot = self._by_conn.pop(conn, None)
        if slot is None:
            return []
        return self._free(slot, LEFT, "leave")

    def drop(self, conn: Conn, now: float) -> list[Action]:
        """An unclean close: keep the slot for the grace period, tell nobody yet."""
        slot = self._by_conn.pop(conn, None)
        if slot is None:
            return []
        if self.config.grace <= 0:
            return self._free(slot, TIMEOUT, "timeout")
        slot.conn = None
        slot.deadline = now + self.config.grace
        slot.queue = []
        self._absent[slot] = None
        return [Event("drop", slot.room.id, slot.peer.id, len(slot.room.slots))]

    def expire(self, now: float) -> list[Action]:
        """Free every slot whose grace period has ended (``peer-left``, ``timeout``)."""
        actions: list[Action] = []
        while self._absent:
            slot = next(iter(self._absent))
            if slot.deadline > now:
                break
            actions.extend(self._free(slot, TIMEOUT, "timeout"))
        return actions

    # ---------------------------------------------------------------- internals

    def _welcome(self, slot: _Slot, others: list[Peer]) -> Welcome:
        extra = self._welcome_extra(slot.room.id, slot.peer.id) if self._welcome_extra else {}
        return Welcome(slot.peer.id, slot.resume, tuple(others), self.config.capacity, extra=extra)

    def _resume(self, conn: Conn, slot: _Slot) -> list[Action]:
        actions: list[Action] = []
        if slot.conn is not None:  # the old connection has not noticed it is dead
            del self._by_conn[slot.conn]
            actions.append(
                Close(slot.conn, ErrorMessage(ErrorCode.REPLACED, "resumed by a newer connection"))
            )
        self._absent.pop(slot, None)
        room = slot.room
        del room.by_resume[slot.resume]
        slot.resume = self._new_resume_token()  # older tokens stop working
        room.by_resume[slot.resume] = slot
        slot.conn = conn
        self._by_conn[conn] = slot
        queued, slot.queue = slot.queue, []
        others = [s.peer for s in room.slots.values() if s is not slot]
        actions.append(Send(conn, self._welcome(slot, others)))
        actions.extend(Send(conn, message) for message in queued)
        actions.append(Event("resume", room.id, slot.peer.id, len(room.slots)))
        return actions

    @staticmethod
    def _present(room: _Room) -> list[_Slot]:
        return [s for s in room.slots.values() if s.conn is not None]

    def _enqueue(self, slot: _Slot, message: Relayed) -> None:
        if len(slot.queue) < self.config.queue_limit:  # the first ones are kept
            slot.queue.append(message)

    def _free(self, slot: _Slot, reason: str, event: str) -> list[Action]:
        room = slot.room
        self._absent.pop(slot, None)
        del room.slots[slot.peer.id]
        del room.by_resume[slot.resume]
        if slot.conn is not None:
            self._by_conn.pop(slot.conn, None)
        if not room.slots:
            del self._rooms[room.id]
        left = PeerLeft(slot.peer.id, reason)
        actions: list[Action] = [Send(s.conn, left) for s in self._present(room)]
        actions.append(Event(event, room.id, slot.peer.id, len(room.slots)))
        return actions
