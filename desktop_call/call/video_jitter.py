"""The receive side of video: a hole the sender cannot fill is skipped, not waited out.

aiortc's ``RTCRtpReceiver`` reassembles video frames in ``JitterBuffer(capacity=512)``
and hands frames on strictly in sequence order. When packets are lost for good (a
network outage longer than the sender's 128-packet retransmission history, or a
retransmission lost as well), the head of the buffer waits for them until 512 packets
have piled up behind the hole, and then only slides forward one packet per packet
received. Measured on the network test bed (``tests/system``): after a 3 s outage the
picture stayed frozen about 4 s longer than the outage, then the buffered frames came
out at ~90 fps with up to 4.5 s of latency.

:class:`VideoJitterBuffer` is aiortc's buffer with one rule added: when the head has
waited ``max_wait`` for a missing packet while later packets are already here, it
gives up on the hole (drops the incomplete frame after it, whose start may be lost
too) and asks for a key frame (the PLI flag aiortc's receiver already acts on), so
the picture resumes one round trip after the outage, from fresh frames. Packets
arriving behind the head afterwards (late retransmissions) are dropped, rather than
taken by aiortc's stream-restart rule (100 behind) for a new stream.

:func:`use_video_jitter_buffer` swaps it into a receiver (the attribute is
name-mangled; a receiver whose buffer is not aiortc's own is left alone).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame

__all__ = ["VideoJitterBuffer", "use_video_jitter_buffer"]

log = logging.getLogger(__name__)

_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"

#: How long the head may wait for a missing packet. A retransmission takes one round
#: trip; a lost one is asked for again at the next loss (aiortc re-sends every missing
#: number with each NACK), so under steady loss a hole is usually filled well within
#: this. Longer than this and the picture has visibly stopped.
MAX_WAIT = 0.5


class VideoJitterBuffer(JitterBuffer):
    """aiortc's video ``JitterBuffer`` that skips an unfillable hole after ``max_wait``.

    Counters: ``holes_skipped``, ``packets_skipped`` (packets that were here, dropped
    with a hole), ``late`` (packets behind the head, dropped).
    """

    def __init__(
        self,
        capacity: int = 512,
        *,
        max_wait: float = MAX_WAIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(capacity, is_video=True)
        self.max_wait = max_wait
        self._clock = clock
        self._newest: int | None = None
        self._stuck_since: float | None = None
        self.holes_skipped = 0
        self.packets_skipped = 0
        self.late = 0

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        sequence = packet.sequence_number
        if self._origin is not None:
            behind = (self._origin - sequence) & 0xFFFF
            if 0 < behind < self.capacity:  # behind the head: a late or skipped packet
                self.late += 1
                return False, None
        if self._newest is None or 0 < (sequence - self._newest) & 0xFFFF < 0x8000:
            self._newest = sequence
        pli, frame = super().add(packet)
        hole = self._first_hole()
        if hole is None:
            self._stuck_since = None
            return pli, frame
        now = self._clock()
        if self._stuck_since is None:
            self._stuck_since = now
        elif now - self._stuck_since >= self.max_wait:
            self._skip_hole(hole)
            self._stuck_since = None
            pli = True
            if frame is None:
                frame = self._remove_frame(sequence)
        return pli, frame

    def _first_hole(self) -> int | None:
        """Where (counted from the head) the first packet is missing that stands
        before the newest one: what keeps every later frame from coming out."""
        if self._origin is None or self._newest is None:
            return None
        span = (self._newest - self._origin) & 0xFFFF
        if span >= self.capacity:
            return None
        for offset in range(span):
            if self._packets[(self._origin + offset) % self.capacity] is None:
                return offset
        return None

    def _skip_hole(self, hole: int) -> None:
        """Drop everything before the first packet after the hole, and that packet's
        frame too (its first packets may be in the hole): the head moves to the first
        packet of the next frame, or past the partial frame if the next is not here."""
        assert self._origin is not None
        slots = [self._packets[(self._origin + i) % self.capacity] for i in range(self.capacity)]
        first = next((i for i in range(hole, self.capacity) if slots[i] is not None), None)
        if first is None:
            return
        timestamp = slots[first].timestamp  # type: ignore[union-attr]
        count, last = None, first
        for i in range(first, self.capacity):
            packet = slots[i]
            if packet is None:
                continue
            if packet.timestamp != timestamp:
                count = i  # the next frame's first packet: the new head
                break
            last = i
        if count is None:  # the next frame has not begun: wait for it after this one
            count = last + 1
        self.holes_skipped += 1
        self.packets_skipped += sum(p is not None for p in slots[:count])
        log.debug("video: gave up on a hole, %d packets dropped", count)
        self.remove(count)


def use_video_jitter_buffer(
    receiver: RTCRtpReceiver, *, max_wait: float = MAX_WAIT
) -> VideoJitterBuffer | None:
    """Give a video receiver a :class:`VideoJitterBuffer`; None if it is not one we know.

    Call it before media flows (when the track appears).
    """
    current = getattr(receiver, _ATTRIBUTE, None)
    if isinstance(current, VideoJitterBuffer):
        return current
    if type(current) is not JitterBuffer or not getattr(current, "_is_video", False):
        log.info("left the video receiver's jitter buffer alone: %r", type(current).__name__)
        return None
    buffer = VideoJitterBuffer(current.capacity, max_wait=max_wait)
    setattr(receiver, _ATTRIBUTE, buffer)
    return buffer
