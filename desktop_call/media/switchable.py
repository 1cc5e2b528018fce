"""A sender-side track whose source can be swapped, muted or switched off without renegotiating.

The call engine hands one :class:`SwitchableTrack` per kind to ``addTrack`` and never touches
the ``RTCRtpSender`` again: changing camera, muting the microphone or turning the camera off
all happen here, and the peer keeps receiving a well-formed stream (silence, black frames)
with timestamps that only go forward. Telling the peer *why* (muted, camera off) is the data
channel's business; this class only exposes the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from fractions import Fraction
from typing import Literal

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .sources import (
    AUDIO_SAMPLE_RATE,
    AUDIO_SAMPLES,
    AUDIO_TIME_BASE,
    VIDEO_CLOCK_RATE,
    VIDEO_TIME_BASE,
    yuv420p_planes,
)

logger = logging.getLogger(__name__)

AUDIO_CATCH_UP = 0.1
"""Seconds audio timestamps may fall behind the wall clock (a gap upstream) before jumping."""


class SwitchableTrack(MediaStreamTrack):
    """Forwards frames from a replaceable upstream track, or filler when there is none.

    - ``enabled = False`` on audio (``muted = True``): the upstream is still read (a
      microphone keeps running and never builds a backlog) but silence is sent in its place.
    - ``enabled = False`` on video (camera off): black frames at ``off_fps``, the size of
      the last real frame; the upstream is not read, so the owner should stop or pause the
      device (that is what turns a camera's light off).
    - ``set_source(track)`` swaps the upstream at once; a pending read on the old one is
      abandoned. Without an upstream, or once it ends, filler flows: black video at
      ``off_fps`` or 20 ms frames of silence, so the track itself never ends until stopped.

    Frames are re-timestamped on a clock of this track (wall clock for video, a running
    sample count for audio that catches up with the wall clock after a gap), so switching
    sources never makes the sender's RTP timestamps jump backwards. Upstream tracks stay
    owned by whoever created them: this track never stops them.
    """

    def __init__(
        self,
        kind: Literal["audio", "video"],
        source: MediaStreamTrack | None = None,
        *,
        enabled: bool = True,
        off_fps: float = 5.0,
        off_size: tuple[int, int] = (640, 480),
    ) -> None:
        super().__init__()
        if kind not in ("audio", "video"):
            raise ValueError(f"kind must be audio or video, not {kind!r}")
        if not off_fps > 0:
            raise ValueError(f"off_fps must be positive, not {off_fps!r}")
        self.kind = kind
        self.off_fps = off_fps
        self._size = off_size
        self._source: MediaStreamTrack | None = None
        self._enabled = enabled
        self._changed = asyncio.Event()
        self._pending: asyncio.Future | None = None
        self._pending_source: MediaStreamTrack | None = None
        self._failed: MediaStreamTrack | None = None  # an upstream whose recv() failed
        self._t0: float | None = None
        self._last_video_pts = -1
        self._audio_position = 0.0  # seconds of audio sent
        self._filler_due: float | None = None
        self._filler_active = False
        self.frames_forwarded = 0
        self.frames_filled = 0
        if source is not None:
            self.set_source(source)

    # State.

    @property
    def source(self) -> MediaStreamTrack | None:
        """The current upstream track, if any."""
        return self._source

    def set_source(self, source: MediaStreamTrack | None) -> MediaStreamTrack | None:
        """Forward ``source`` from now on; return the previous upstream (still running)."""
        if source is not None and source.kind != self.kind:
            raise ValueError(f"a {self.kind} track cannot forward a {source.kind} track")
        previous, self._source = self._source, source
        self._failed = None
        if previous is not source:
            self._changed.set()
        return previous

    @property
    def enabled(self) -> bool:
        """False while muted (audio) or off (video)."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        value = bool(value)
        if value != self._enabled:
            self._enabled = value
            self._changed.set()

    @property
    def muted(self) -> bool:
        """The same as ``not enabled``: silence (audio) or black (video) is being sent."""
        return not self._enabled

    @muted.setter
    def muted(self, value: bool) -> None:
        self.enabled = not value

    @property
    def sending_filler(self) -> bool:
        """True while the last frame sent was filler rather than the upstream's."""
        return self._filler_active

    # Frames.

    async def recv(self) -> av.VideoFrame | av.AudioFrame:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            self._changed.clear()
            source = self._source
            live = source is not None and source.readyState == "live" and source is not self._failed
            if live and (self._enabled or self.kind == "audio"):
                frame = await self._from_source(source)
                if frame is None or self._source is not source:
                    continue
                if self.kind == "video" and not self._enabled:
                    continue  # switched off while this frame was on its way: never send it
                self._filler_active = False
                if not self._enabled:
                    frame = _silence_like(frame)
                self.frames_forwarded += 1
                return self._restamp(frame)
            if self.kind == "video":
                self._abandon_pending()  # a frame read now would be stale when the camera is back
            frame = await self._filler()
            if frame is not None:
                self.frames_filled += 1
                return self._restamp(frame)

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            self._abandon_pending()
            self._changed.set()

    async def _from_source(self, source: MediaStreamTrack) -> av.Frame | None:
        """The upstream's next frame, or ``None`` if the state changed or it ended first."""
        if self._pending is None or self._pending_source is not source:
            self._abandon_pending()
            self._pending = asyncio.ensure_future(source.recv())
            self._pending_source = source
        pending = self._pending
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({pending, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
        if not pending.done():
            return None  # keep the read going: the next frame may still be wanted
        self._pending = self._pending_source = None
        try:
            frame = pending.result()
        except MediaStreamError:
            self._failed = source
            return None
        except asyncio.CancelledError:
            return None
        except Exception:
            logger.exception("upstream %s failed; sending filler", source.id)
            self._failed = source
            return None
        if isinstance(frame, av.VideoFrame):
            self._size = (frame.width, frame.height)
        return frame

    def _abandon_pending(self) -> None:
        pending, self._pending, self._pending_source = self._pending, None, None
        if pending is not None and not pending.done():
            pending.cancel()
        elif pending is not None and not pending.cancelled():
            pending.exception()  # a finished read nobody will take: mark it retrieved

    async def _filler(self) -> av.Frame | None:
        """The next filler frame, paced on its own; ``None`` if the state changed meanwhile."""
        period = 1 / self.off_fps if self.kind == "video" else AUDIO_SAMPLES / AUDIO_SAMPLE_RATE
        now = time.time()
        if not self._filler_active or self._filler_due is None:
            self._filler_due = now  # first filler frame goes out at once
        wait = self._filler_due - now
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._changed.wait()
                return None
        self._filler_due = max(self._filler_due + period, time.time() - period)
        self._filler_active = True
        if self.kind == "video":
            return black_frame(*self._size)
        return silence_frame(AUDIO_SAMPLES)

    def _restamp(self, frame: av.Frame) -> av.Frame:
        now = time.time()
        if self._t0 is None:
            self._t0 = now
        elapsed = now - self._t0
        if isinstance(frame, av.AudioFrame):
            rate = frame.sample_rate or AUDIO_SAMPLE_RATE
            # A running count keeps audio continuous; after a gap, it catches up with the clock.
            position = self._audio_position
            if elapsed - position > AUDIO_CATCH_UP:
                position = elapsed
            frame.pts = round(position * rate)
            frame.time_base = AUDIO_TIME_BASE if rate == AUDIO_SAMPLE_RATE else Fraction(1, rate)
            frame.sample_rate = rate
            self._audio_position = position + frame.samples / rate
        else:
            frame.pts = max(round(elapsed * VIDEO_CLOCK_RATE), self._last_video_pts + 1)
            frame.time_base = VIDEO_TIME_BASE
            self._last_video_pts = frame.pts
        return frame


def black_frame(width: int, height: int) -> av.VideoFrame:
    """A black yuv420p frame (luma 16, neutral chroma)."""
    frame = av.VideoFrame(width, height, "yuv420p")
    y, u, v = yuv420p_planes(frame)
    y[...] = 16
    u[...] = 128
    v[...] = 128
    return frame


def silence_frame(
    samples: int, layout: str = "stereo", rate: int = AUDIO_SAMPLE_RATE
) -> av.AudioFrame:
    """``samples`` of s16 silence."""
    channels = 1 if layout == "mono" else 2
    frame = av.AudioFrame.from_ndarray(
        np.zeros((1, samples * channels), dtype=np.int16), format="s16", layout=layout
    )
    frame.sample_rate = rate
    return frame


def _silence_like(frame: av.AudioFrame) -> av.AudioFrame:
    """Silence with the shape, format and rate of ``frame``."""
    silent = av.AudioFrame(
        format=frame.format.name, layout=frame.layout.name, samples=frame.samples
    )
    for plane in silent.planes:
        plane.update(bytes(plane.buffer_size))
    silent.sample_rate = frame.sample_rate
    return silent
