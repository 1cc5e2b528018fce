"""Playback through QtMultimedia: remote audio to the chosen speaker.

:class:`SpeakerSink` is an :class:`~.sinks.AudioSink` over a ``QAudioSink`` in push mode
(we write to the ``QIODevice`` that ``start()`` returns). Frames are converted by
:class:`PlaybackBuffer`, a pure object, into the device's format (48 kHz s16 stereo
unless the device refuses it) and held in a bounded buffer: what does not fit in the
device's own buffer waits there, and beyond ``max_buffered`` the oldest audio is dropped
(counted), so the delay between the network and the ear never grows. A
:class:`DriftController` keeps the queue (our buffer plus the device's) at its target
level: the far end's clock and the speaker's are never exactly the same, so without it
the queue would creep up to the bound (then cut audio) or down to an underrun (then a
gap); it plays 0.5 % faster or slower, resampling the incoming audio, until the level is
back. A 10 ms Qt timer tops the device up between frames. :class:`SwitchableAudioSink`
lets the speaker change during a call without touching the receivers that write to it.

Like :mod:`.qt_capture`, this imports QtCore and QtMultimedia only, and everything runs
on the Qt main thread (the qasync loop's thread).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Callable

import av
import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtMultimedia import QAudioDevice, QAudioSink, QtAudio

from .qt_capture import PcmFormat, device_id_string, frame_to_pcm, negotiate_format
from .sinks import AudioSink
from .sources import AUDIO_SAMPLE_RATE

logger = logging.getLogger(__name__)

__all__ = ["DriftController", "PlaybackBuffer", "SpeakerSink", "SwitchableAudioSink"]

SPEAKER_FORMAT = PcmFormat(AUDIO_SAMPLE_RATE, 2, "s16")


class DriftController:
    """Holds a playback queue at a target level by playing slightly faster or slower. Pure.

    Feed it the whole queue ahead of the ear (ours plus the device's) with
    :meth:`observe`, as often as the queue is topped up. Each ``window`` the lowest
    level seen is compared with :attr:`target`: the lowest, because the level rises by a
    packet on each arrival and drains in between, and the trough is what stands between
    the ear and an underrun. Above ``target + tolerance``, :attr:`ratio` becomes
    ``1 - step`` (fewer samples out than in: the queue shrinks by ``step`` seconds per
    second); below ``target - tolerance``, ``1 + step``; back at ``target``, 1 again.
    A step of 0.5 % is a pitch change of 9 cents, and corrects 50 times the drift of two
    ordinary clocks (100 ppm).

    The target follows the network, as a WebRTC jitter buffer's does: tell it when audio
    arrives (:meth:`arrived`), and the 99th percentile of the packets' lateness over the
    last ``history`` seconds (arrival time minus media time, less the drift's straight
    line, against the earliest) plus ``tolerance`` becomes the target, between
    ``min_target`` and ``max_target``. A steady network keeps the smallest delay; a
    jittery one buys the margin it needs and gives it back once it has calmed down.
    """

    def __init__(
        self,
        min_target: float = 0.02,
        *,
        tolerance: float = 0.01,
        max_target: float = 0.1,
        window: float = 1.0,
        history: float = 20.0,
        step: float = 0.005,
    ) -> None:
        if not (0 < tolerance < min_target <= max_target and window > 0 and 0 < step < 0.1):
            raise ValueError(
                "DriftController needs 0 < tolerance < min_target <= max_target, window > 0, "
                "0 < step < 0.1"
            )
        self.min_target = self.target = min_target
        self.max_target = max_target
        self.tolerance = tolerance
        self.window = window
        self.history = history
        self.step = step
        self.ratio = 1.0
        self.adjustments = 0  # windows that started a correction
        self._window_start: float | None = None
        self._low = float("inf")
        self._media = 0.0  # seconds of audio arrived
        self._lateness: collections.deque[tuple[float, float]] = collections.deque()

    def arrived(self, seconds: float, now: float) -> None:
        """``seconds`` of audio arrived at ``now`` (from the network, in order)."""
        self._lateness.append((now, now - self._media))
        self._media += seconds
        while self._lateness and self._lateness[0][0] < now - self.history:
            self._lateness.popleft()

    def observe(self, queued: float, now: float) -> None:
        if self._window_start is None:
            self._window_start = now
        self._low = min(self._low, queued)
        if now - self._window_start < self.window:
            return
        low, self._low, self._window_start = self._low, float("inf"), now
        self._retarget()
        previous = self.ratio
        if low > self.target + self.tolerance:
            self.ratio = 1.0 - self.step
        elif low < self.target - self.tolerance:
            self.ratio = 1.0 + self.step
        elif (self.ratio < 1.0 and low <= self.target) or (self.ratio > 1.0 and low >= self.target):
            self.ratio = 1.0
        if self.ratio != previous and self.ratio != 1.0:
            self.adjustments += 1

    def _retarget(self) -> None:
        if len(self._lateness) < 10:
            return
        times = np.fromiter((t for t, _ in self._lateness), float)
        lateness = np.fromiter((late for _, late in self._lateness), float)
        # The two clocks' drift is a slope, not jitter: it is the rate controller's job.
        slope, intercept = np.polyfit(times - times[0], lateness, 1)
        residual = lateness - (slope * (times - times[0]) + intercept)
        jitter = float(np.percentile(residual, 99) - residual.min())
        self.target = min(self.max_target, max(self.min_target, jitter + self.tolerance))

    def reset(self) -> None:
        """Forget the level (an underrun, a refill): no correction until it is seen again.
        The network's history stays: it is the same network."""
        self.ratio = 1.0
        self._window_start = None
        self._low = float("inf")


class PlaybackBuffer:
    """``av.AudioFrame`` in, device bytes out, never more than ``max_buffered`` seconds. Pure.

    ``push(frame)`` converts the frame to ``output`` (no work when it already matches;
    otherwise ``av.AudioResampler``, rebuilt if the incoming format changes) and appends
    it; if more than ``max_buffered`` seconds are then waiting, the oldest go
    (``samples_dropped``, ``drops``). ``take(n)`` hands out at most ``n`` bytes, whole
    sample frames only. With a ``drift`` controller, each pushed frame is first
    stretched or squeezed by its :attr:`~DriftController.ratio` (linear interpolation,
    the fractional sample carried over to the next frame).
    """

    def __init__(
        self,
        output: PcmFormat = SPEAKER_FORMAT,
        *,
        max_buffered: float = 0.12,
        drift: DriftController | None = None,
    ) -> None:
        if max_buffered <= 0:
            raise ValueError(f"max_buffered must be positive, not {max_buffered!r}")
        self.output = output
        self.max_buffered = max_buffered
        self.drift = drift
        self._carry = 0.0  # fraction of an output sample owed by the last stretched frame
        self._max_bytes = max(output.bytes_per_frame, output.bytes_for(max_buffered))
        self._buffer = bytearray()
        self._resampler: av.AudioResampler | None = None
        self._resampler_input: tuple[str, str, int] | None = None
        self.frames_pushed = 0
        self.samples_dropped = 0
        self.drops = 0

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    @property
    def buffered(self) -> float:
        """Seconds of audio waiting."""
        return len(self._buffer) / self.output.bytes_per_frame / self.output.rate

    def push(self, frame: av.AudioFrame) -> None:
        self.frames_pushed += 1
        data = self._convert(frame)
        if self.drift is not None and self.drift.ratio != 1.0:
            data = self._stretch(data, self.drift.ratio)
        self._buffer += data
        excess = len(self._buffer) - self._max_bytes
        if excess > 0:
            excess += -excess % self.output.bytes_per_frame
            del self._buffer[:excess]
            self.samples_dropped += excess // self.output.bytes_per_frame
            self.drops += 1

    def take(self, max_bytes: int) -> bytes:
        count = min(max_bytes, len(self._buffer))
        count -= count % self.output.bytes_per_frame
        if count <= 0:
            return b""
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def clear(self) -> None:
        self._buffer.clear()
        if self.drift is not None:
            self.drift.reset()

    def _stretch(self, data: bytes, ratio: float) -> bytes:
        out = self.output
        samples = np.frombuffer(data, out.dtype).reshape(-1, out.channels)
        count = len(samples)
        if count < 2:
            return data
        exact = count * ratio + self._carry
        wanted = max(1, int(exact))
        self._carry = exact - wanted
        positions = np.linspace(0.0, count - 1.0, wanted)
        stretched = np.empty((wanted, out.channels), np.float64)
        for channel in range(out.channels):
            stretched[:, channel] = np.interp(positions, np.arange(count), samples[:, channel])
        if np.issubdtype(out.dtype, np.integer):
            stretched = np.rint(stretched)
        return stretched.astype(out.dtype).tobytes()

    def _convert(self, frame: av.AudioFrame) -> bytes:
        out = self.output
        signature = (frame.format.name, frame.layout.name, frame.sample_rate)
        if signature == (out.sample_format, out.layout, out.rate):
            return frame_to_pcm(frame)
        if self._resampler is None or self._resampler_input != signature:
            self._resampler = av.AudioResampler(
                format=out.sample_format, layout=out.layout, rate=out.rate
            )
            self._resampler_input = signature
        return b"".join(frame_to_pcm(f) for f in self._resampler.resample(frame))


class SwitchableAudioSink:
    """An :class:`~.sinks.AudioSink` that forwards to another one, replaceable at any time.

    Give receivers this, and change the speaker with :meth:`set_sink` (say, after the
    device manager's fallback): they never notice. ``close()`` closes the current sink.
    """

    def __init__(self, sink: AudioSink) -> None:
        self._sink = sink
        self.closed = False

    @property
    def sink(self) -> AudioSink:
        return self._sink

    def set_sink(self, sink: AudioSink) -> AudioSink:
        """Forward to ``sink`` from now on; return the previous one (not closed)."""
        previous, self._sink = self._sink, sink
        return previous

    def write(self, frame: av.AudioFrame) -> None:
        if not self.closed:
            self._sink.write(frame)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._sink.close()


class SpeakerSink(QObject):
    """Plays audio frames on a ``QAudioDevice`` (an :class:`~.sinks.AudioSink`).

    The device opens on the first ``write()`` (or :meth:`open`). Playback starts once
    ``prebuffer`` seconds are waiting, and again after each underrun, so a late packet
    costs one short gap instead of a crackle per frame. The delay is bounded by the
    device's buffer (``device_buffer``, a hint to Qt) plus ``max_buffered``.
    ``failed(message)`` when the device cannot open or stops with an error; writes after
    that are counted in ``frames_discarded`` and go nowhere.
    """

    failed = Signal(str)

    device_kind = "speaker"

    def __init__(
        self,
        device: QAudioDevice,
        *,
        max_buffered: float = 0.12,
        device_buffer: float = 0.06,
        prebuffer: float = 0.04,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.device = device
        self.device_id = device_id_string(device.id())
        self._description = device.description() or "Speaker"
        self._qt_format, fmt = negotiate_format(device, SPEAKER_FORMAT)
        self.drift = DriftController()
        self.buffer = PlaybackBuffer(fmt, max_buffered=max_buffered, drift=self.drift)
        self.device_buffer = device_buffer
        self.prebuffer = prebuffer
        self._sink: QAudioSink | None = None
        self._io = None
        self._priming = True
        self._timer = QTimer(self)
        self._timer.setInterval(10)
        self._timer.timeout.connect(self.flush)
        self.failure: str | None = None
        self.started = False
        self.closed = False
        self.frames_written = 0
        self.frames_discarded = 0
        self.underruns = 0
        self.bytes_played = 0
        #: Called with the bytes actually handed to the device (the echo canceller's
        #: far-end reference), after the playback buffer's own drops.
        self.on_played: Callable[[bytes, PcmFormat], None] | None = None

    def describe(self) -> str:
        return f"Speaker “{self._description}”"

    @property
    def format(self) -> PcmFormat:
        return self.buffer.output

    @property
    def device_delay(self) -> float:
        """Seconds of audio the device holds and has not played yet."""
        if self._sink is None:
            return 0.0
        queued = self._sink.bufferSize() - self._sink.bytesFree()
        return max(0, queued) / self.format.bytes_per_frame / self.format.rate

    def open(self) -> bool:
        """Open the device now (else the first write does); False if it failed."""
        if self._io is not None:
            return True
        if self.failure is not None or self.closed:
            return False
        sink = QAudioSink(self.device, self._qt_format, self)
        sink.setBufferSize(self.format.bytes_for(self.device_buffer))
        # The state is read, not taken from the signal: PySide6 6.11 cannot convert the
        # signal's QAudio::State argument for any Python slot (a TypeError per change).
        sink.stateChanged.connect(lambda: self._on_state(sink.state()))
        self._sink = sink
        io = sink.start()
        if io is None or sink.error() != QtAudio.Error.NoError:
            self.fail(f"{self.describe()} cannot be opened ({sink.error().name})")
            return False
        self._io = io
        self._priming = True
        self.started = True
        return True

    def write(self, frame: av.AudioFrame) -> None:
        if self.closed or self.failure is not None or not self.open():
            self.frames_discarded += 1
            return
        self.frames_written += 1
        self.drift.arrived(frame.samples / frame.sample_rate, time.monotonic())
        self.buffer.push(frame)
        self.flush()

    def flush(self) -> None:
        """Move what fits from the buffer into the device (the timer calls this too)."""
        if self._io is None or self._sink is None:
            self._timer.stop()
            return
        if self._priming:
            if self.buffer.buffered < self.prebuffer:
                return
            self._priming = False
        data = self.buffer.take(self._sink.bytesFree())
        if data:
            written = self._io.write(data)
            self.bytes_played += max(0, written)
            if self.on_played is not None and written > 0:
                self.on_played(data[:written], self.format)
        self.drift.observe(self.buffer.buffered + self.device_delay, time.monotonic())
        if self.buffer.buffered_bytes:
            if not self._timer.isActive():
                self._timer.start()
        else:
            self._timer.stop()

    def _on_state(self, state: QtAudio.State) -> None:
        if self._sink is None or self.closed:
            return
        error = self._sink.error()
        if state == QtAudio.State.IdleState:
            self.underruns += 1
            self._priming = True
            self.drift.reset()
        elif state == QtAudio.State.StoppedState and error not in (
            QtAudio.Error.NoError,
            QtAudio.Error.UnderrunError,
        ):
            self.fail(f"{self.describe()} stopped working ({error.name})")

    def fail(self, message: str) -> None:
        if self.failure is not None or self.closed:
            return
        self.failure = message
        logger.warning("%s", message)
        self._release()
        self.failed.emit(message)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._release()

    def _release(self) -> None:
        self._timer.stop()
        self._io = None
        self.buffer.clear()
        if self._sink is not None:
            with contextlib.suppress(RuntimeError):
                self._sink.stop()

    def __repr__(self) -> str:
        state = "failed" if self.failure else "closed" if self.closed else "open"
        return f"<SpeakerSink {self._description!r} {state}>"
