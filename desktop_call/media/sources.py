"""Media sources as aiortc tracks: test pattern, tone, silence, media file.

Every source here is an :class:`aiortc.MediaStreamTrack` that paces itself in real time the
way aiortc's own ``VideoStreamTrack``/``AudioStreamTrack`` do (frame *n* is due at
``start + n / rate``), with ``realtime=False`` to produce frames as fast as they are asked
for (tests, benchmarks). Video comes out as ``yuv420p`` with a 90 kHz time base, audio as
``s16`` at 48 kHz in 20 ms frames (960 samples), which is what aiortc's VP8/H.264 and Opus
encoders take without a conversion.

Devices (camera, microphone, screen) plug in later through :class:`MediaSource`: an object
that owns one track and knows how to start, stop and describe itself.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from os import PathLike
from typing import Literal, Protocol, runtime_checkable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .stamp import Stamp, draw_stamp, stamp_layout

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
AUDIO_SAMPLE_RATE = 48_000
AUDIO_PTIME = 0.020
AUDIO_SAMPLES = int(AUDIO_SAMPLE_RATE * AUDIO_PTIME)  # 960, one Opus frame
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_SAMPLE_RATE)

Kind = Literal["audio", "video"]


@runtime_checkable
class MediaSource(Protocol):
    """One source of one track: test pattern, file, and later camera, microphone, screen.

    The source owns its track. ``start()`` opens whatever is behind it (a device, a file) and
    may be called again after ``stop()`` only if the source says so; ``stop()`` releases it
    and ends the track, and is safe to call twice. ``describe()`` is a short human-readable
    name for menus and logs ("Test pattern 640x480@30", "Built-in microphone").
    """

    @property
    def kind(self) -> Kind: ...

    @property
    def track(self) -> MediaStreamTrack: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def describe(self) -> str: ...


VideoSource = MediaSource
AudioSource = MediaSource


class TrackSource:
    """A :class:`MediaSource` around a track that needs no device (synthetic, file)."""

    def __init__(self, track: MediaStreamTrack, description: str) -> None:
        if track.kind not in ("audio", "video"):
            raise ValueError(f"not an audio or video track: {track.kind!r}")
        self._track = track
        self._description = description

    @property
    def kind(self) -> Kind:
        return self._track.kind  # type: ignore[return-value]

    @property
    def track(self) -> MediaStreamTrack:
        return self._track

    async def start(self) -> None:
        """Nothing to open: a synthetic track produces frames when asked."""

    async def stop(self) -> None:
        self._track.stop()

    def describe(self) -> str:
        return self._description

    def __repr__(self) -> str:
        return f"<TrackSource {self._description!r} {self._track.readyState}>"


def pattern_source(width: int = 640, height: int = 480, fps: float = 30) -> TrackSource:
    """The test pattern as a video source."""
    track = TestPatternTrack(width, height, fps)
    return TrackSource(track, f"Test pattern {width}x{height}@{fps:g}")


def tone_source(frequency: float = 440.0) -> TrackSource:
    """A sine tone as an audio source."""
    return TrackSource(ToneTrack(frequency), f"Tone {frequency:g} Hz")


def file_source(
    path: str | PathLike[str], kind: Kind = "video", *, loop: bool = True
) -> TrackSource:
    """One stream of a media file as a source (looping by default, like a fake device)."""
    track = FileTrack(path, kind, loop=loop)
    return TrackSource(track, f"File {os.path.basename(os.fspath(path))} ({kind})")


class Pacer:
    """Real-time pacing: the n-th frame is due at ``start + n / rate`` (aiortc's rule).

    ``next()`` sleeps until the next frame is due and returns its index on the media
    clock. A consumer that falls more than ``max_lag`` seconds behind skips ahead instead of
    getting a burst of late frames, like a camera that drops frames.
    """

    def __init__(self, rate: float, *, realtime: bool = True, max_lag: float = 0.25) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be positive, not {rate!r}")
        self.rate = rate
        self.realtime = realtime
        self.max_lag = max_lag
        self._start: float | None = None
        self._index = 0

    async def next(self) -> int:
        """Wait for the next frame's turn; return its index (0 for the first, then on)."""
        if self._start is None:
            self._start = time.time()
            self._index = 0
            return 0
        self._index += 1
        if self.realtime:
            wait = self._start + self._index / self.rate - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            elif -wait > self.max_lag:
                self._index = math.floor((time.time() - self._start) * self.rate)
        return self._index


# BT.601 limited-range colour bars: white, yellow, cyan, green, magenta, red, blue, black.
_BARS_YUV = np.array(
    [
        (235, 128, 128),
        (210, 16, 146),
        (170, 166, 16),
        (145, 54, 34),
        (106, 202, 222),
        (81, 90, 240),
        (41, 240, 110),
        (16, 128, 128),
    ],
    dtype=np.uint8,
)


def yuv420p_planes(frame: av.VideoFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Writable ``(h, w)``, ``(h/2, w/2)``, ``(h/2, w/2)`` views of a yuv420p frame's planes."""
    views = []
    for plane in frame.planes:
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
        views.append(rows[: plane.height, : plane.width])
    y, u, v = views
    return y, u, v


class TestPattern:
    """Draws the moving test pattern straight into yuv420p planes.

    Colour bars scroll right, a grey ramp along the bottom scrolls left, a black square with
    a white centre bounces around, and the stamp strip across the top (see
    :mod:`desktop_call.media.stamp`) carries the frame number and capture time. Everything
    that does not depend on the frame number is computed once; a frame is a few broadcast
    copies into a freshly allocated frame.
    """

    __test__ = False  # not a pytest class

    def __init__(self, width: int = 640, height: int = 480) -> None:
        if width < 16 or height < 16 or width % 2 or height % 2:
            raise ValueError(f"test pattern size must be even and at least 16x16: {width}x{height}")
        self.width = width
        self.height = height
        self.layout = stamp_layout(width, height)
        top = self.layout.height if self.layout else 0
        self._top = top
        self._ramp_top = height - max(2, (height // 8) & ~1)
        self._speed = max(2, (width // 160) & ~1)
        self._block = max(4, (height // 6) & ~1)
        # One period of bars, twice over, so any offset is a plain slice.
        bar = np.arange(width) * len(_BARS_YUV) // width
        bars = _BARS_YUV[bar]
        self._bars_y = np.concatenate([bars[:, 0]] * 2)
        self._bars_u = np.concatenate([bars[::2, 1]] * 2)
        self._bars_v = np.concatenate([bars[::2, 2]] * 2)
        ramp = (16 + np.arange(width) * 219 // max(1, width - 1)).astype(np.uint8)
        self._ramp_y = np.concatenate([ramp] * 2)

    def render(self, frame_number: int, capture_time_us: int) -> av.VideoFrame:
        """Frame ``frame_number`` of the pattern, stamped with ``capture_time_us``.

        ``pts``/``time_base`` are left for the caller to set.
        """
        w, h = self.width, self.height
        frame = av.VideoFrame(w, h, "yuv420p")
        y, u, v = yuv420p_planes(frame)
        top, ramp_top = self._top, self._ramp_top
        off = (frame_number * self._speed) % w
        start = w - off  # bars move right
        y[top:ramp_top] = self._bars_y[start : start + w]
        u[top // 2 : ramp_top // 2] = self._bars_u[start // 2 : start // 2 + w // 2]
        v[top // 2 : ramp_top // 2] = self._bars_v[start // 2 : start // 2 + w // 2]
        y[ramp_top:] = self._ramp_y[off : off + w]  # ramp moves left
        u[ramp_top // 2 :] = 128
        v[ramp_top // 2 :] = 128
        # A square bouncing between the stamp strip and the ramp.
        s = self._block
        span_x, span_y = w - s, max(0, ramp_top - top - s)
        bx = _bounce(frame_number * self._speed, span_x) & ~1
        by = (top + _bounce(frame_number * self._speed // 2, span_y)) & ~1
        q = s // 4 & ~1
        y[by : by + s, bx : bx + s] = 16
        y[by + q : by + s - q, bx + q : bx + s - q] = 235
        u[by // 2 : (by + s) // 2, bx // 2 : (bx + s) // 2] = 128
        v[by // 2 : (by + s) // 2, bx // 2 : (bx + s) // 2] = 128
        if self.layout is not None:
            draw_stamp(y, Stamp(frame_number & 0xFFFF_FFFF, capture_time_us), self.layout)
            u[: top // 2] = 128
            v[: top // 2] = 128
        return frame


def _bounce(position: int, span: int) -> int:
    """A triangle wave between 0 and ``span``."""
    if span <= 0:
        return 0
    phase = position % (2 * span)
    return phase if phase <= span else 2 * span - phase


class TestPatternTrack(MediaStreamTrack):
    """A moving, stamped test pattern: yuv420p frames, 90 kHz pts, paced at ``fps``.

    Each frame carries its frame number and wall-clock capture time in a stamp that
    :func:`~desktop_call.media.stamp.read_stamp` reads back after encoding, so the receiver
    can count lost frames and measure end-to-end latency.
    """

    __test__ = False  # not a pytest class
    kind = "video"

    def __init__(
        self, width: int = 640, height: int = 480, fps: float = 30, *, realtime: bool = True
    ) -> None:
        super().__init__()
        self.pattern = TestPattern(width, height)
        self.fps = fps
        self._pacer = Pacer(fps, realtime=realtime)
        self.frames_sent = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = await self._pacer.next()
        frame = self.pattern.render(self.frames_sent, time.time_ns() // 1000)
        frame.pts = round(index * VIDEO_CLOCK_RATE / self.fps)
        frame.time_base = VIDEO_TIME_BASE
        self.frames_sent += 1
        return frame


class _PacedAudioTrack(MediaStreamTrack):
    """s16 audio at 48 kHz in 20 ms frames, paced in real time; subclasses fill samples."""

    kind = "audio"

    def __init__(self, layout: str = "stereo", *, realtime: bool = True) -> None:
        super().__init__()
        if layout not in ("mono", "stereo"):
            raise ValueError(f"layout must be mono or stereo, not {layout!r}")
        self.layout = layout
        self.channels = 1 if layout == "mono" else 2
        self._pacer = Pacer(AUDIO_SAMPLE_RATE / AUDIO_SAMPLES, realtime=realtime)
        self._position = 0  # samples produced

    def _samples(self, start: int, count: int) -> np.ndarray:
        """``count`` mono int16 samples from sample ``start`` on."""
        raise NotImplementedError

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        index = await self._pacer.next()
        pts = index * AUDIO_SAMPLES
        mono = self._samples(self._position, AUDIO_SAMPLES)
        self._position += AUDIO_SAMPLES
        data = np.repeat(mono, self.channels) if self.channels > 1 else mono
        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout=self.layout)
        frame.sample_rate = AUDIO_SAMPLE_RATE
        frame.pts = pts
        frame.time_base = AUDIO_TIME_BASE
        return frame


class ToneTrack(_PacedAudioTrack):
    """A continuous sine tone (default 440 Hz at a quarter of full scale)."""

    def __init__(
        self,
        frequency: float = 440.0,
        amplitude: float = 0.25,
        layout: str = "stereo",
        *,
        realtime: bool = True,
    ) -> None:
        super().__init__(layout, realtime=realtime)
        if not 0 < frequency < AUDIO_SAMPLE_RATE / 2:
            raise ValueError(f"frequency must be between 0 and 24 kHz, not {frequency!r}")
        if not 0 <= amplitude <= 1:
            raise ValueError(f"amplitude must be between 0 and 1, not {amplitude!r}")
        self.frequency = frequency
        self.amplitude = amplitude

    def _samples(self, start: int, count: int) -> np.ndarray:
        n = np.arange(start, start + count, dtype=np.float64)
        cycles = np.mod(n * (self.frequency / AUDIO_SAMPLE_RATE), 1.0)
        wave = np.sin(2 * np.pi * cycles)
        return np.round(wave * (self.amplitude * 32767)).astype(np.int16)


class SilenceTrack(_PacedAudioTrack):
    """Digital silence, paced like a microphone."""

    def _samples(self, start: int, count: int) -> np.ndarray:
        return np.zeros(count, dtype=np.int16)


class FileTrack(MediaStreamTrack):
    """One stream (the first video or audio stream) of a media file, decoded with PyAV.

    Decoding runs on a worker thread of its own, one frame per ``recv()``; frames are paced
    by their timestamps (``realtime=False`` to read as fast as asked). Video leaves as
    yuv420p with 90 kHz pts, audio as s16 stereo 48 kHz in 20 ms frames. With ``loop=True``
    the file starts over at its end and the timestamps keep rising; otherwise the track ends.

    aiortc's ``MediaPlayer`` does the same for both streams at once, but it decodes every
    stream it found into unbounded queues whether or not its track is read, and stopping
    one of its tracks closes the file under the other, so each FileTrack opens the file on
    its own and decodes only its stream.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        kind: Kind = "video",
        *,
        loop: bool = False,
        realtime: bool = True,
    ) -> None:
        super().__init__()
        if kind not in ("audio", "video"):
            raise ValueError(f"kind must be audio or video, not {kind!r}")
        self.kind = kind
        self.path = path
        self.loop = loop
        self.realtime = realtime
        self._container = av.open(path)
        streams = (
            self._container.streams.video if kind == "video" else self._container.streams.audio
        )
        if not streams:
            self._container.close()
            raise ValueError(f"{path} has no {kind} stream")
        self._stream = streams[0]
        if kind == "video":
            self._stream.thread_type = "AUTO"
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="media-file")
        self._decoded = self._container.decode(self._stream)
        self._offset = 0.0  # seconds added to timestamps on each pass through the file
        self._end = 0.0  # end of the last frame seen, in seconds
        self._produced_this_pass = False
        self._resampler = (
            av.AudioResampler(
                format="s16", layout="stereo", rate=AUDIO_SAMPLE_RATE, frame_size=AUDIO_SAMPLES
            )
            if kind == "audio"
            else None
        )
        self._flushed = False
        self._resampled: deque[av.AudioFrame] = deque()
        self._samples = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame | av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        item = await loop.run_in_executor(self._executor, self._next)
        if item is None:
            self.stop()
            raise MediaStreamError
        frame, at = item
        if self.realtime:
            if self._start is None:
                self._start = time.time() - at
            else:
                wait = self._start + at - time.time()
                if wait > 0:
                    await asyncio.sleep(wait)
        return frame

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            self._executor.submit(self._container.close)
            self._executor.shutdown(wait=False)

    # The rest runs on the worker thread.

    def _next(self) -> tuple[av.VideoFrame | av.AudioFrame, float] | None:
        if self.readyState != "live":
            return None
        if self.kind == "video":
            return self._next_video()
        return self._next_audio()

    def _decode_one(self) -> av.VideoFrame | av.AudioFrame | None:
        """The next decoded frame, starting over at the end when looping."""
        while True:
            try:
                frame = next(self._decoded)
            except StopIteration:
                if not (self.loop and self._produced_this_pass):
                    return None
                self._container.seek(0)
                self._decoded = self._container.decode(self._stream)
                self._offset = self._end
                self._produced_this_pass = False
                continue
            if frame.time is None:
                continue
            self._produced_this_pass = True
            return frame

    def _next_video(self) -> tuple[av.VideoFrame, float] | None:
        frame = self._decode_one()
        if frame is None:
            return None
        at = self._offset + float(frame.time)
        rate = self._stream.average_rate or self._stream.guessed_rate or 30
        self._end = max(self._end, at + 1 / float(rate))
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        frame.pts = round(at * VIDEO_CLOCK_RATE)
        frame.time_base = VIDEO_TIME_BASE
        return frame, at

    def _next_audio(self) -> tuple[av.AudioFrame, float] | None:
        while not self._resampled:
            decoded = self._decode_one()
            if decoded is None:
                if not self._flushed:
                    self._flushed = True
                    self._resampled.extend(self._resampler.resample(None))
                if not self._resampled:
                    return None
                break
            self._resampled.extend(self._resampler.resample(decoded))
        frame = self._resampled.popleft()
        at = self._samples / AUDIO_SAMPLE_RATE
        frame.pts = self._samples
        frame.time_base = AUDIO_TIME_BASE
        frame.sample_rate = AUDIO_SAMPLE_RATE
        self._samples += frame.samples
        self._end = self._samples / AUDIO_SAMPLE_RATE
        return frame, at
