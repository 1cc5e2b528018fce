"""Sinks for received media: video drained to the newest frame, and audio sinks.

aiortc hands each decoded frame of a remote track to an unbounded ``asyncio.Queue``; a
consumer slower than the sender (a busy paint, a stalled loop) would fall further behind
forever. :class:`LatestFrameReceiver` reads the track in a task of its own and, after each
``recv()``, takes whatever else the queue already holds without waiting: only the newest
frame is handed on, the rest are counted as dropped. Audio is not dropped: every frame goes
to an :class:`AudioSink`, whose job it is to play, count or record it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar, runtime_checkable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .stamp import read_stamp

logger = logging.getLogger(__name__)

FrameCallback = Callable[[av.VideoFrame], Awaitable[None] | None]
"""Called with each newest frame; may be a coroutine function, which is awaited (and
meanwhile frames pile up in aiortc's queue, to be drained at the next read)."""

C = TypeVar("C", bound="_TrackConsumer")


class _TrackConsumer:
    """Reads a track in a task until it ends or ``close()``; lets callers wait on conditions."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self._task: asyncio.Task[None] | None = None
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._done = False
        self.frames_received = 0
        self.first_frame_at: float | None = None
        """Wall-clock time (``time.time()``) the first frame was taken from the track."""
        self.last_frame_at: float | None = None

    def start(self) -> None:
        """Start reading the track (idempotent; needs a running loop)."""
        if self._task is None and not self._done:
            self._task = asyncio.get_running_loop().create_task(
                self._run_and_finish(), name=f"{type(self).__name__}({self.track.id})"
            )

    async def __aenter__(self: C) -> C:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def ended(self) -> bool:
        """True once the track ended or the consumer was closed."""
        return self._done

    async def close(self) -> None:
        """Stop reading (the track itself belongs to its peer connection and keeps running)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._finish()

    async def wait_ended(self) -> None:
        """Wait until the track ends (or ``close()``)."""
        await self.wait_for(_never)

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds, checked after every frame (and every callback).

        Raises :class:`MediaStreamError` if the track ends first (returns normally from
        :meth:`wait_ended`). Put a timeout around it: ``async with asyncio.timeout(5)``.
        """
        if condition():
            return
        if self._done:
            if condition is _never:
                return
            raise MediaStreamError("the track ended")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((condition, future))
        try:
            await future
        finally:
            self._waiters = [(c, f) for c, f in self._waiters if f is not future]

    def _check_waiters(self) -> None:
        for condition, future in self._waiters:
            if not future.done():
                try:
                    if condition():
                        future.set_result(None)
                except Exception as exc:  # a broken condition fails its waiter, not the task
                    future.set_exception(exc)

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        self._check_waiters()
        for condition, future in self._waiters:
            if not future.done():
                if condition is _never:
                    future.set_result(None)
                else:
                    future.set_exception(MediaStreamError("the track ended"))
        self._on_finish()

    def _on_finish(self) -> None:
        """Subclass hook, called once when reading stops."""

    async def _run_and_finish(self) -> None:
        try:
            await self._run()
        except MediaStreamError:
            pass  # the track ended
        except Exception:
            logger.exception("reading %s failed", self.track.id)
        finally:
            self._finish()

    async def _run(self) -> None:
        raise NotImplementedError


def _never() -> bool:
    return False


class LatestFrameReceiver(_TrackConsumer):
    """Consumes a remote video track, keeping only the newest frame.

    Give it ``on_frame`` (called in the reading task with each newest frame; if it is a
    coroutine function it is awaited, and frames arriving meanwhile are drained and dropped),
    or pull with :meth:`next_frame`, or both. Counters, all since ``start()``:

    - ``frames_received``: frames taken from the track;
    - ``frames_dropped``: frames never handed on (drained behind a newer one, or, when
      pulling with no ``on_frame``, replaced before :meth:`next_frame` took them);
    - ``frames_delivered``: frames handed to ``on_frame`` or returned by ``next_frame``;
    - ``frames_missing``: gaps in the stamped frame numbers (lost before reaching us);
    - ``stamps_unreadable``: frames whose stamp did not read (with ``read_stamps``);
    - ``latencies``: the last ``latency_samples`` end-to-end latencies in seconds,
      ``now - capture time`` of each newest frame, from the test pattern's stamp;
    - ``max_frame_gap``: the longest wait in seconds between two reads that brought
      frames, after the first (how long the picture stood still at worst);
    - ``arrival_log``: with ``keep_arrivals``, the monotonic arrival time of each of
      the last ``keep_arrivals`` frames (for timelines: fps per second, stalls).
    """

    def __init__(
        self,
        track: MediaStreamTrack,
        on_frame: FrameCallback | None = None,
        *,
        read_stamps: bool = True,
        latency_samples: int = 300,
        fps_window: float = 1.0,
        keep_arrivals: int = 0,
    ) -> None:
        super().__init__(track)
        if track.kind != "video":
            raise ValueError(f"not a video track: {track.kind!r}")
        self.on_frame = on_frame
        self.read_stamps = read_stamps
        self.fps_window = fps_window
        self.frames_dropped = 0
        self.frames_delivered = 0
        self.frames_missing = 0
        self.stamps_unreadable = 0
        self.latencies: deque[float] = deque(maxlen=latency_samples)
        self.max_frame_gap = 0.0
        self.arrival_log: deque[float] = deque(maxlen=keep_arrivals)
        self._last_arrival: float | None = None
        self.latest: av.VideoFrame | None = None
        """The newest frame received so far."""
        self._unread: av.VideoFrame | None = None  # newest frame next_frame() has not returned
        self._arrived = asyncio.Event()
        self._arrivals: deque[float] = deque()  # monotonic times of recent frames
        self._last_number: int | None = None

    @property
    def fps(self) -> float:
        """Frames received per second over the last ``fps_window`` seconds."""
        now = time.monotonic()
        self._prune(now)
        if len(self._arrivals) < 2:
            return 0.0
        span = min(self.fps_window, now - self._arrivals[0])
        return (len(self._arrivals) - 1) / span if span > 0 else 0.0

    def stats(self) -> dict[str, float | int | None]:
        """A JSON-ready snapshot of the counters, fps and latency percentiles (ms)."""
        lat = sorted(self.latencies)
        return {
            "frames_received": self.frames_received,
            "frames_delivered": self.frames_delivered,
            "frames_dropped": self.frames_dropped,
            "frames_missing": self.frames_missing,
            "stamps_unreadable": self.stamps_unreadable,
            "first_frame_at": self.first_frame_at,
            "fps": round(self.fps, 2),
            "latency_ms_p50": _percentile_ms(lat, 0.5),
            "latency_ms_p95": _percentile_ms(lat, 0.95),
            "latency_ms_max": _percentile_ms(lat, 1.0),
            "max_frame_gap_ms": round(self.max_frame_gap * 1000, 1),
        }

    async def next_frame(self) -> av.VideoFrame:
        """The newest frame not returned before, waiting for one if needed.

        Raises :class:`MediaStreamError` once the track has ended and nothing is left.
        """
        while self._unread is None:
            if self._done:
                raise MediaStreamError("the track ended")
            self._arrived.clear()
            await self._arrived.wait()
        frame, self._unread = self._unread, None
        self.frames_delivered += 1
        return frame

    def _on_finish(self) -> None:
        self._arrived.set()

    def _prune(self, now: float) -> None:
        horizon = now - self.fps_window
        while self._arrivals and self._arrivals[0] < horizon:
            self._arrivals.popleft()

    async def _run(self) -> None:
        track = self.track
        queue = getattr(track, "_queue", None)
        if not isinstance(queue, asyncio.Queue):
            queue = None  # not an aiortc remote/relay track: nothing to drain
        while True:
            batch = [await track.recv()]
            ended = False
            # aiortc's RemoteStreamTrack (and MediaRelay's proxies) queue decoded frames
            # and end with None; take everything already there without awaiting.
            while queue is not None and not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    ended = True
                    break
                batch.append(item)
            self._take(batch)
            newest = batch[-1]
            if self.on_frame is not None:
                self.frames_delivered += 1
                try:
                    result = self.on_frame(newest)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    logger.exception("on_frame failed for %s", track.id)
                self._check_waiters()
            if ended:
                track.stop()  # what recv() does when it meets the end marker
                return

    def _take(self, batch: list[av.VideoFrame]) -> None:
        now = time.time()
        mono = time.monotonic()
        if self.first_frame_at is None:
            self.first_frame_at = now
        self.last_frame_at = now
        self.frames_received += len(batch)
        self.frames_dropped += len(batch) - 1
        if self._last_arrival is not None:
            self.max_frame_gap = max(self.max_frame_gap, mono - self._last_arrival)
        self._last_arrival = mono
        self._arrivals.extend([mono] * len(batch))
        if self.arrival_log.maxlen:
            self.arrival_log.extend([mono] * len(batch))
        self._prune(mono)
        if self.read_stamps:
            for frame in batch:
                stamp = read_stamp(frame)
                if stamp is None:
                    self.stamps_unreadable += 1
                    continue
                number = stamp.frame_number
                last = self._last_number
                if last is not None and 0 < (number - last) % 2**32 < 2**31:
                    self.frames_missing += (number - last) % 2**32 - 1
                self._last_number = number
                if frame is batch[-1]:
                    self.latencies.append(now - stamp.capture_time)
        newest = batch[-1]
        if self.on_frame is None and self._unread is not None:
            self.frames_dropped += 1
        self._unread = newest
        self.latest = newest
        self._arrived.set()
        self._check_waiters()


def _percentile_ms(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return round(ordered[index] * 1000, 2)


@runtime_checkable
class AudioSink(Protocol):
    """Where received audio goes: a speaker, a recorder, a meter, a counter.

    ``write()`` is called on the event loop with every frame, in order, and must not
    block: a device sink buffers and plays on its own thread. ``close()`` releases it.
    """

    def write(self, frame: av.AudioFrame) -> None: ...

    def close(self) -> None: ...


class CountingAudioSink:
    """Counts audio, measures its level, and keeps the last ``keep`` samples (mono, float).

    Used by the headless mode and the tests: ``rms``/``peak`` are fractions of full scale
    over everything written; :meth:`recent` and :meth:`dominant_frequency` look at the
    samples kept.
    """

    def __init__(self, keep: int = 48_000) -> None:
        self.keep = keep
        self.frames = 0
        self.samples = 0
        """Samples per channel written."""
        self.sample_rate: int | None = None
        self.channels: int | None = None
        self.peak = 0.0
        self.closed = False
        self._sum_squares = 0.0
        self._recent: deque[np.ndarray] = deque()
        self._recent_count = 0

    @property
    def rms(self) -> float:
        """Root mean square of everything written, as a fraction of full scale."""
        return math.sqrt(self._sum_squares / self.samples) if self.samples else 0.0

    def write(self, frame: av.AudioFrame) -> None:
        mono = audio_to_mono(frame)
        self.frames += 1
        self.samples += len(mono)
        self.sample_rate = frame.sample_rate
        self.channels = len(frame.layout.channels)
        if len(mono):
            self.peak = max(self.peak, float(np.abs(mono).max()))
            self._sum_squares += float(np.dot(mono, mono))
        if self.keep:
            self._recent.append(mono)
            self._recent_count += len(mono)
            while self._recent_count - len(self._recent[0]) >= self.keep:
                self._recent_count -= len(self._recent.popleft())

    def recent(self) -> np.ndarray:
        """The last ``keep`` samples written (fewer at first), mono, ``float32`` in [-1, 1]."""
        if not self._recent:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(list(self._recent))[-self.keep :]

    def dominant_frequency(self) -> float | None:
        """The strongest frequency in the samples kept, in Hz (``None`` with too little)."""
        if self.sample_rate is None:
            return None
        return dominant_frequency(self.recent(), self.sample_rate)

    def close(self) -> None:
        self.closed = True


class AudioReceiver(_TrackConsumer):
    """Reads an audio track in a task and writes every frame to an :class:`AudioSink`.

    The sink belongs to the caller, who closes it.
    """

    def __init__(self, track: MediaStreamTrack, sink: AudioSink) -> None:
        super().__init__(track)
        if track.kind != "audio":
            raise ValueError(f"not an audio track: {track.kind!r}")
        self.sink = sink

    async def _run(self) -> None:
        while True:
            frame = await self.track.recv()
            now = time.time()
            if self.first_frame_at is None:
                self.first_frame_at = now
            self.last_frame_at = now
            self.frames_received += 1
            self.sink.write(frame)
            self._check_waiters()


def audio_to_mono(frame: av.AudioFrame) -> np.ndarray:
    """A frame's samples averaged over its channels, ``float32`` in [-1, 1]."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    data = data.reshape(channels, -1).T if frame.format.is_planar else data.reshape(-1, channels)
    if data.dtype.kind in "iu":
        scale = float(np.iinfo(data.dtype).max) + 1
        mono = data.mean(axis=1, dtype=np.float32) / scale
    else:
        mono = data.mean(axis=1, dtype=np.float32)
    return mono.astype(np.float32, copy=False)


def dominant_frequency(samples: np.ndarray, sample_rate: int) -> float | None:
    """The strongest frequency in ``samples`` (Hz), refined between FFT bins."""
    if len(samples) < 64:
        return None
    windowed = np.asarray(samples, dtype=np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(windowed))
    spectrum[0] = 0.0
    peak = int(np.argmax(spectrum))
    if spectrum[peak] == 0:
        return None
    offset = 0.0
    if 0 < peak < len(spectrum) - 1:
        left, centre, right = np.log(spectrum[peak - 1 : peak + 2] + 1e-12)
        denominator = left - 2 * centre + right
        if denominator:
            offset = 0.5 * (left - right) / denominator
    return (peak + offset) * sample_rate / len(samples)


__all__ = [
    "AudioReceiver",
    "AudioSink",
    "CountingAudioSink",
    "FrameCallback",
    "LatestFrameReceiver",
    "audio_to_mono",
    "dominant_frequency",
]
