"""The state of a call as people see it: a pure state machine.

``idle → joining → waiting → connecting → connected ⇄ reconnecting → ended | failed``

``waiting`` is also where a call goes back to when the other person stops answering:
the media path is silent and they do not answer over the room server either (their
app died, their laptop slept, their network is gone; see ``liveness.py``). The room
server keeps their place for its grace period and says nothing meanwhile, so without
this the call would show "reconnecting" towards nobody for 30 s. When they answer
again (they resumed) the call goes to ``connecting``; a new join does too.

Inputs are what happened (the server welcomed us, a peer joined, the media path
connected or broke, the user hung up); the output is the new state, with the
reason for ``failed`` and ``ended``. The session (``session.py``) feeds it and
tells observers; the GUI's status indicator shows it. No I/O, no clock: table
tests drive it directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["CallInput", "CallState", "CallStateMachine", "StateChange"]

log = logging.getLogger(__name__)


class CallState(StrEnum):
    IDLE = "idle"
    JOINING = "joining"  # talking to the room server
    WAITING = "waiting"  # in the room, alone
    CONNECTING = "connecting"  # someone is here; media path being set up
    CONNECTED = "connected"  # media flowing
    RECONNECTING = "reconnecting"  # the media path broke; rebuilding it
    ENDED = "ended"  # we hung up (final)
    FAILED = "failed"  # could not continue (final; reason says why)

    @property
    def final(self) -> bool:
        return self in (CallState.ENDED, CallState.FAILED)


class CallInput(StrEnum):
    JOIN = "join"  # the user starts the call
    WELCOMED_ALONE = "welcomed-alone"  # the server's welcome listed nobody
    WELCOMED_WITH_PEERS = "welcomed-with-peers"  # … listed somebody: we offer
    PEER_JOINED = "peer-joined"
    PEER_LEFT = "peer-left"  # the last remote peer left (or timed out)
    MEDIA_CONNECTED = "media-connected"
    MEDIA_BROKEN = "media-broken"  # ICE failed, or disconnected for too long
    PEER_UNREACHABLE = "peer-unreachable"  # media silent, and no answer over signaling
    PEER_REACHABLE = "peer-reachable"  # … and now it answers again
    REBUILDING = "rebuilding"  # a new peer connection is being negotiated
    FATAL = "fatal"  # refused by the server, or an unrecoverable error
    HANG_UP = "hang-up"  # the user hung up


@dataclass(frozen=True, slots=True)
class StateChange:
    old: CallState
    new: CallState
    cause: CallInput
    reason: str = ""


S, I = CallState, CallInput  # noqa: E741 - short names keep the table readable

#: (state, input) -> new state. Pairs not listed leave the state unchanged.
TRANSITIONS: dict[tuple[CallState, CallInput], CallState] = {
    (S.IDLE, I.JOIN): S.JOINING,
    (S.JOINING, I.WELCOMED_ALONE): S.WAITING,
    (S.JOINING, I.WELCOMED_WITH_PEERS): S.CONNECTING,
    # A signaling reconnect re-welcomes us mid-call: media state decides, not the welcome.
    (S.RECONNECTING, I.WELCOMED_ALONE): S.WAITING,
    (S.WAITING, I.PEER_JOINED): S.CONNECTING,
    (S.WAITING, I.WELCOMED_WITH_PEERS): S.CONNECTING,
    (S.CONNECTING, I.MEDIA_CONNECTED): S.CONNECTED,
    (S.RECONNECTING, I.MEDIA_CONNECTED): S.CONNECTED,
    (S.CONNECTING, I.MEDIA_BROKEN): S.RECONNECTING,
    (S.CONNECTED, I.MEDIA_BROKEN): S.RECONNECTING,
    (S.CONNECTED, I.REBUILDING): S.RECONNECTING,
    (S.CONNECTING, I.PEER_LEFT): S.WAITING,
    (S.CONNECTED, I.PEER_LEFT): S.WAITING,
    (S.RECONNECTING, I.PEER_LEFT): S.WAITING,
    (S.RECONNECTING, I.PEER_JOINED): S.CONNECTING,
    # The other person stopped answering (process killed, network gone): alone again,
    # until they answer (they resumed) or someone joins.
    (S.RECONNECTING, I.PEER_UNREACHABLE): S.WAITING,
    (S.CONNECTING, I.PEER_UNREACHABLE): S.WAITING,
    (S.WAITING, I.PEER_REACHABLE): S.CONNECTING,
    # A path that comes up while we thought we were alone: someone is clearly here.
    (S.WAITING, I.MEDIA_CONNECTED): S.CONNECTED,
}


class CallStateMachine:
    """Holds the state; :meth:`feed` applies an input and tells observers on change only."""

    def __init__(self) -> None:
        self.state = CallState.IDLE
        self.reason = ""
        self._observers: list[Callable[[StateChange], None]] = []

    def subscribe(self, observer: Callable[[StateChange], None]) -> Callable[[], None]:
        """Call ``observer`` on every change; returns a function that unsubscribes."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    def feed(self, cause: CallInput, reason: str = "") -> StateChange | None:
        old = self.state
        if old.final:
            return None
        if cause is CallInput.HANG_UP:
            new = CallState.ENDED
        elif cause is CallInput.FATAL:
            new = CallState.FAILED
        else:
            new = TRANSITIONS.get((old, cause), old)
        if new is old:
            return None
        self.state, self.reason = new, reason
        change = StateChange(old, new, cause, reason)
        log.info("call state %s -> %s (%s%s)", old, new, cause, f": {reason}" if reason else "")
        for observer in list(self._observers):
            observer(change)
        return change
