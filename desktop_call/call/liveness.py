"""Is the other person still there? A pure tracker of one remote peer's signs of life.

The media path says whether media flows; it cannot say why it stopped. When the
peer's process died, its laptop slept or its network went away, the room server
still holds its place for the grace period (30 s) and sends no ``peer-left``, so a
call would sit in "reconnecting" that long, rebuilding towards nobody. People
expect what Zoom or Jitsi show: "waiting for Bo to reconnect" within seconds.

So when the media has been silent for ``probe_after`` seconds, we ask the peer over
signaling (a ``ping`` signal; it answers ``pong``, and any signal from it counts as
an answer). No answer within ``answer_timeout`` while the media is still down, and
our own signaling is up (otherwise we are the one who is offline): the peer is
**unreachable**, and the call shows ``waiting``. Any later sign of life (a signal,
a heartbeat over the media path) makes it reachable again. While the media stays
silent the question is asked again every ``answer_timeout``.

No clock and no I/O: the session passes the time and acts on :meth:`PeerLiveness.tick`'s
verdict (table tests drive it directly, ``tests/pure/test_liveness.py``).
"""

from __future__ import annotations

import math
from enum import StrEnum

__all__ = ["PeerLiveness", "Verdict"]


class Verdict(StrEnum):
    NOTHING = "nothing"
    PROBE = "probe"  # send the peer a ping over signaling now
    UNREACHABLE = "unreachable"  # the peer just became unreachable


class PeerLiveness:
    def __init__(self, now: float, *, probe_after: float = 2.5, answer_timeout: float = 3.0):
        if probe_after <= 0 or answer_timeout <= 0:
            raise ValueError("probe_after and answer_timeout must be positive")
        self.probe_after = probe_after
        self.answer_timeout = answer_timeout
        self.last_media = now  # last heartbeat (or any control message) over the media path
        self.last_signal = -math.inf  # last signal of any kind over the room server
        self.probe_sent: float | None = None  # the outstanding question, if any
        self.last_probe = -math.inf
        self.unreachable = False

    def media(self, now: float) -> bool:
        """A heartbeat arrived. True if this ends "unreachable"."""
        self.last_media = max(self.last_media, now)
        return self._back()

    def signal(self, now: float) -> bool:
        """A signal arrived (a pong, or anything else). True if this ends "unreachable"."""
        self.last_signal = max(self.last_signal, now)
        return self._back()

    def signaling_restarted(self) -> None:
        """Our signaling connection was replaced: a question sent on the old one may
        never have left, so it proves nothing; ask again on the new one."""
        self.probe_sent = None
        self.last_probe = -math.inf

    def tick(self, now: float, *, media_up: bool, signaling_up: bool) -> Verdict:
        """Called every second or so. ``media_up``: the session still counts the media
        path as working; ``signaling_up``: we are joined to the room server."""
        if self.probe_sent is not None:
            if self.last_signal >= self.probe_sent:  # answered
                self.probe_sent = None
            elif not signaling_up:  # nobody could have answered: ask again when back
                self.probe_sent = None
                self.last_probe = -math.inf
            elif now - self.probe_sent >= self.answer_timeout and not media_up:
                self.probe_sent = None
                if not self.unreachable:
                    self.unreachable = True
                    return Verdict.UNREACHABLE
        if (
            self.probe_sent is None
            and signaling_up
            and now - self.last_media >= self.probe_after
            and now - self.last_probe >= self.answer_timeout
        ):
            self.probe_sent = self.last_probe = now
            return Verdict.PROBE
        return Verdict.NOTHING

    def _back(self) -> bool:
        if self.unreachable:
            self.unreachable = False
            return True
        return False
