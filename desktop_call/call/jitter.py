"""The receive side of audio: packets to the decoder as they arrive, not 80 ms later.

aiortc's ``RTCRtpReceiver`` puts audio through ``JitterBuffer(capacity=16, prefetch=4)``:
a packet is decoded only once four more complete packets stand behind it, so every
Opus frame (20 ms) waits 80 ms before decoding, and a single lost packet stops the
buffer until 16 packets have piled up behind the hole (320 ms of silence, then a burst).
That alone broke the mouth-to-ear target (120 ms) and would make every lossy network
sound broken.

An Opus packet is a whole frame: nothing needs reassembling. :class:`AudioJitterBuffer`
therefore hands each packet on the moment it arrives, in sequence order: a gap (loss)
is skipped at once, and a packet older than one already handed on (late or duplicated)
is dropped. Smoothing network jitter is the playback side's job, where the device clock
is known: ``PlaybackBuffer`` holds a target level and its drift controller keeps it
there (see :mod:`desktop_call.media.qt_playback`), so the two buffers no longer add up.

:func:`use_audio_jitter_buffer` swaps it into a receiver (aiortc has no option for it;
the attribute is name-mangled, so the swap checks what it replaces and leaves a receiver
it does not recognise alone).
"""

from __future__ import annotations

import logging
from typing import Any

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame

__all__ = ["AudioJitterBuffer", "use_audio_jitter_buffer"]

log = logging.getLogger(__name__)

#: A sequence number this far behind the last one means the sender restarted its
#: numbering (a new SSRC or a rebuilt sender), not a late packet.
MAX_MISORDER = 100

_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"


class AudioJitterBuffer:
    """Drop-in for aiortc's ``JitterBuffer`` on audio receivers: no prefetch, no stalls.

    ``add(packet)`` returns ``(False, frame)`` for a packet newer than every packet seen
    (``frame`` carries its payload and RTP timestamp), ``(False, None)`` for a late or
    duplicated one. Counters: ``packets`` handed on, ``late`` dropped, ``lost`` (sequence
    numbers skipped, some of which may still arrive late).
    """

    capacity = 16  # aiortc's value; nothing is held, but callers may read it

    def __init__(self) -> None:
        self._next: int | None = None
        self.packets = 0
        self.late = 0
        self.lost = 0

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        sequence = packet.sequence_number
        if self._next is not None:
            ahead = (sequence - self._next) & 0xFFFF
            behind = (self._next - 1 - sequence) & 0xFFFF
            if behind < MAX_MISORDER:  # at or before the last packet handed on
                self.late += 1
                return False, None
            if ahead < 0x8000:
                self.lost += ahead
        self._next = (sequence + 1) & 0xFFFF
        self.packets += 1
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)


def use_audio_jitter_buffer(receiver: RTCRtpReceiver) -> AudioJitterBuffer | None:
    """Give an audio receiver an :class:`AudioJitterBuffer`; None if it is not one we know.

    Call it before media flows (when the track appears). A receiver whose jitter buffer is
    not aiortc's own (a newer aiortc, a video receiver) is left as it is.
    """
    current = getattr(receiver, _ATTRIBUTE, None)
    if isinstance(current, AudioJitterBuffer):
        return current
    if type(current) is not JitterBuffer or getattr(current, "_is_video", True):
        log.info("left the audio receiver's jitter buffer alone: %r", type(current).__name__)
        return None
    buffer = AudioJitterBuffer()
    setattr(receiver, _ATTRIBUTE, buffer)
    return buffer
