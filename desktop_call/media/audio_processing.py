"""Clear audio: WebRTC's audio processing between the microphone, the speaker and the tracks.

aiortc sends what the microphone hears. Without headphones that includes the speaker, so
the other person hears themselves a fraction of a second later. This module puts WebRTC's
audio processing module (APM: acoustic echo cancellation AEC3, noise suppression, a
high-pass filter and automatic gain control; from the ``livekit`` package's bundled
native library) between the devices and the call:

- :class:`AudioProcessor` owns one APM. The speaker side gives it every frame it plays
  (:meth:`~AudioProcessor.analyze_render`, the *reverse stream*: the far-end reference the
  echo canceller subtracts); the microphone side runs every captured frame through it
  (:meth:`~AudioProcessor.process_capture`). Both directions are cut into 10 ms blocks of
  48 kHz mono s16, the APM's native unit; each capture block is given the current delay
  estimate (render side: audio waiting between the reference tap and the loudspeaker;
  capture side: audio waiting between the microphone and the APM).
- :class:`ProcessedAudioTrack` is the microphone side: a ``MediaStreamTrack`` that reads an
  upstream audio track (the call's :class:`~.switchable.SwitchableTrack`, so fallbacks and
  device changes stay processed) and hands out processed frames with the same timestamps.
  It forwards ``enabled``/``muted``/``source``/``set_source`` so the engine's mute keeps
  working through it.
- :class:`EchoReferenceSink` is the speaker side: an :class:`~.sinks.AudioSink` that
  forwards every frame to the real sink and reports it to the processor. If the sink
  underneath offers an ``on_played`` hook (called with the bytes actually written to the
  device), the reference is taken there instead, which is exactly what the loudspeaker
  plays after the playback buffer's drops.

Everything runs on the event loop's thread (the Qt main thread under qasync); the
processor has a lock anyway, so a device tap on another thread is safe. When the native
library is missing, :class:`AudioProcessor` passes audio through unchanged and says why in
:attr:`~AudioProcessor.problem`. Nothing here imports Qt.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .sources import AUDIO_SAMPLE_RATE, AUDIO_TIME_BASE

logger = logging.getLogger(__name__)

__all__ = [
    "APM_BLOCK",
    "APM_RATE",
    "AudioProcessingConfig",
    "AudioProcessor",
    "EchoReferenceSink",
    "ProcessedAudioTrack",
    "apm_problem",
    "frame_to_mono_s16",
    "mono_s16_frame",
]

APM_RATE = AUDIO_SAMPLE_RATE
"""The APM runs at 48 kHz, the rate of the whole audio path (no resampling on the way)."""
APM_BLOCK = APM_RATE // 100
"""480 samples: the APM processes 10 ms at a time."""
MAX_STREAM_DELAY_MS = 500
"""The largest delay the APM is told (its own estimator searches around what it is told)."""


@dataclass(frozen=True, slots=True)
class AudioProcessingConfig:
    """Which parts of the APM run. All on by default: what a call without headphones needs."""

    echo_cancellation: bool = True
    noise_suppression: bool = True
    high_pass_filter: bool = True
    auto_gain_control: bool = True

    @property
    def any(self) -> bool:
        return (
            self.echo_cancellation
            or self.noise_suppression
            or self.high_pass_filter
            or self.auto_gain_control
        )


# ------------------------------------------------------------------ the native backend

_backend: Any = None
_backend_problem: str | None = None
_backend_lock = threading.Lock()


def _load_backend() -> Any:
    """``livekit.rtc`` (imported once, lazily), or ``None`` with :func:`apm_problem` set."""
    global _backend, _backend_problem
    with _backend_lock:
        if _backend is None and _backend_problem is None:
            try:
                from livekit import rtc

                rtc.AudioProcessingModule  # noqa: B018 - present in livekit >= 0.18
                _backend = rtc
            except Exception as exc:  # ImportError, or the native library refusing to load
                _backend_problem = f"audio processing is unavailable ({exc})"
                logger.warning("%s: sending the microphone unprocessed", _backend_problem)
        return _backend


def apm_problem() -> str | None:
    """Why audio processing cannot run here, or ``None`` if it can."""
    _load_backend()
    return _backend_problem


# ------------------------------------------------------------------ frames <-> samples


def frame_to_mono_s16(frame: av.AudioFrame) -> np.ndarray:
    """A 48 kHz frame's samples as mono ``int16`` (channels averaged).

    s16/s16p/flt/fltp at 48 kHz are converted with numpy; anything else (another rate)
    raises ``ValueError``: resample first (see :class:`_Converter`).
    """
    if frame.sample_rate != APM_RATE:
        raise ValueError(f"expected {APM_RATE} Hz, got {frame.sample_rate}")
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        data = data.reshape(channels, -1)
        axis = 0
    else:
        data = data.reshape(-1, channels)
        axis = 1
    if data.dtype == np.int16:
        if channels == 1:
            return data.reshape(-1)
        return (data.sum(axis=axis, dtype=np.int32) // channels).astype(np.int16)
    if data.dtype.kind == "f":
        mono = data.mean(axis=axis) if channels > 1 else data.reshape(-1)
        return np.clip(np.round(mono * 32768.0), -32768, 32767).astype(np.int16)
    raise ValueError(f"unsupported sample format {frame.format.name}")


def mono_s16_frame(samples: np.ndarray, pts: int | None = None) -> av.AudioFrame:
    """A packed mono s16 48 kHz frame of ``samples`` (pts on the 1/48000 clock)."""
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(samples, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = APM_RATE
    frame.time_base = AUDIO_TIME_BASE
    frame.pts = pts
    return frame


class _Converter:
    """Any audio frame to 48 kHz mono int16: numpy when the rate already is 48 kHz,
    else ``av.AudioResampler`` (rebuilt when the input changes)."""

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None
        self._signature: tuple[str, str, int] | None = None

    def __call__(self, frame: av.AudioFrame) -> np.ndarray:
        if frame.sample_rate == APM_RATE and frame.format.name in ("s16", "s16p", "flt", "fltp"):
            return frame_to_mono_s16(frame)
        signature = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self._resampler is None or signature != self._signature:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=APM_RATE)
            self._signature = signature
        parts = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)


class _Fifo:
    """int16 samples in, whole 10 ms blocks out."""

    def __init__(self) -> None:
        self._data = np.zeros(0, np.int16)

    def __len__(self) -> int:
        return len(self._data)

    def push(self, samples: np.ndarray) -> None:
        self._data = np.concatenate((self._data, samples)) if len(self._data) else samples

    def blocks(self) -> int:
        return len(self._data) // APM_BLOCK

    def pop_blocks(self, count: int) -> np.ndarray:
        taken, self._data = self._data[: count * APM_BLOCK], self._data[count * APM_BLOCK :]
        return taken

    def clear(self) -> None:
        self._data = np.zeros(0, np.int16)


# ------------------------------------------------------------------ the processor


class AudioProcessor:
    """One WebRTC APM shared by the speaker (reverse stream) and the microphone.

    - ``enabled``: process (True, the default) or pass audio through untouched. Switching
      is immediate; switching on again starts a fresh APM (the echo canceller re-learns
      the room within a second or two of far-end speech).
    - ``config``: which parts run (:class:`AudioProcessingConfig`); :meth:`configure`
      changes it (a fresh APM too).
    - ``render_delay``: a callable giving the seconds between the reference tap and the
      loudspeaker (set by :class:`EchoReferenceSink`); plus the ``capture_delay`` passed
      to :meth:`process_capture`, it becomes the APM's stream delay.
    - ``problem``: why processing is not running although enabled (no native library),
      else ``None``.

    Counters (``stats()``): blocks processed each way, reference blocks, time spent in the
    APM (``cpu_seconds``, thread time), the last stream delay told to the APM.
    """

    def __init__(
        self,
        config: AudioProcessingConfig | None = None,
        *,
        enabled: bool = True,
        render_delay: Callable[[], float] | None = None,
    ) -> None:
        self._config = config or AudioProcessingConfig()
        self._enabled = bool(enabled)
        self.render_delay = render_delay
        self._lock = threading.RLock()
        self._apm: Any = None
        self._rtc: Any = None
        self.problem: str | None = None
        # One 10 ms block buffer per direction, wrapped once in the backend's frame type:
        # the APM works in place on it through a pointer.
        self._capture_bytes = bytearray(APM_BLOCK * 2)
        self._capture_block = np.frombuffer(self._capture_bytes, dtype=np.int16)
        self._render_bytes = bytearray(APM_BLOCK * 2)
        self._render_block = np.frombuffer(self._render_bytes, dtype=np.int16)
        self._capture_frame: Any = None
        self._render_frame: Any = None
        self._capture_in = _Fifo()
        self._render_in = _Fifo()
        self._capture_convert = _Converter()
        self._render_convert = _Converter()
        self.capture_blocks = 0
        self.render_blocks = 0
        self.cpu_seconds = 0.0
        self.stream_delay_ms: int | None = None
        self.restarts = 0
        if self._enabled:
            self._start()

    # State.

    @property
    def config(self) -> AudioProcessingConfig:
        return self._config

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        value = bool(value)
        with self._lock:
            if value == self._enabled:
                return
            self._enabled = value
            if value:
                self._start()
            else:
                self._stop()

    @property
    def active(self) -> bool:
        """True while audio really goes through the APM (enabled, and the library loaded)."""
        return self._apm is not None

    def configure(self, config: AudioProcessingConfig) -> None:
        """Run these parts from now on (a fresh APM)."""
        with self._lock:
            self._config = config
            if self._enabled:
                self._stop()
                self._start()

    def _start(self) -> None:
        self._stop()
        if not self._config.any:
            return
        rtc = _load_backend()
        if rtc is None:
            self.problem = _backend_problem
            return
        try:
            self._apm = rtc.AudioProcessingModule(
                echo_cancellation=self._config.echo_cancellation,
                noise_suppression=self._config.noise_suppression,
                high_pass_filter=self._config.high_pass_filter,
                auto_gain_control=self._config.auto_gain_control,
            )
        except Exception as exc:
            self.problem = f"audio processing could not start ({exc})"
            logger.warning("%s: sending the microphone unprocessed", self.problem)
            return
        self._rtc = rtc
        self.problem = None
        self._capture_frame = rtc.AudioFrame(self._capture_bytes, APM_RATE, 1, APM_BLOCK)
        self._render_frame = rtc.AudioFrame(self._render_bytes, APM_RATE, 1, APM_BLOCK)
        self.restarts += 1

    def _stop(self) -> None:
        self._apm = None
        self._capture_frame = self._render_frame = None
        self._capture_in.clear()
        self._render_in.clear()

    def close(self) -> None:
        """Release the APM (the processor passes audio through afterwards)."""
        with self._lock:
            self._enabled = False
            self._stop()

    # The speaker side.

    def analyze_render(self, frame: av.AudioFrame) -> None:
        """The far-end reference: a frame as it goes to the loudspeaker (any format)."""
        if self._apm is None:
            return
        self.analyze_render_samples(self._render_convert(frame))

    def analyze_render_samples(self, samples: np.ndarray) -> None:
        """The far-end reference as 48 kHz mono ``int16`` samples (any count)."""
        with self._lock:
            apm = self._apm
            if apm is None:
                return
            started = time.thread_time()
            fifo = self._render_in
            fifo.push(np.asarray(samples, dtype=np.int16))
            count = fifo.blocks()
            if count:
                data = fifo.pop_blocks(count)
                block = self._render_block
                frame = self._render_frame
                for i in range(count):
                    block[:] = data[i * APM_BLOCK : (i + 1) * APM_BLOCK]
                    apm.process_reverse_stream(frame)
                self.render_blocks += count
            self.cpu_seconds += time.thread_time() - started

    # The microphone side.

    def process_capture(
        self, frame: av.AudioFrame, capture_delay: float = 0.0
    ) -> av.AudioFrame | None:
        """The processed version of a captured frame, or ``None`` while less than 10 ms
        has come in (the remainder waits for the next frame).

        Disabled (or without the native library), ``frame`` itself comes back. Processed
        frames are 48 kHz mono s16; their pts is that of their first sample (the input's
        pts minus what was waiting from before, on the 1/48000 clock).
        """
        if self._apm is None:
            return frame
        samples = self._capture_convert(frame)
        with self._lock:
            apm = self._apm
            if apm is None:
                return frame
            started = time.thread_time()
            fifo = self._capture_in
            waiting = len(fifo)
            fifo.push(samples)
            count = fifo.blocks()
            if not count:
                self.cpu_seconds += time.thread_time() - started
                return None
            data = fifo.pop_blocks(count).copy()
            if self._config.echo_cancellation:
                render = self.render_delay() if self.render_delay is not None else 0.0
                delay = round((render + capture_delay) * 1000)
                delay = max(0, min(MAX_STREAM_DELAY_MS, delay))
                self.stream_delay_ms = delay
            block = self._capture_block
            frame_in = self._capture_frame
            for i in range(count):
                block[:] = data[i * APM_BLOCK : (i + 1) * APM_BLOCK]
                if self._config.echo_cancellation:
                    apm.set_stream_delay_ms(self.stream_delay_ms)
                apm.process_stream(frame_in)
                data[i * APM_BLOCK : (i + 1) * APM_BLOCK] = block
            self.capture_blocks += count
            self.cpu_seconds += time.thread_time() - started
        return mono_s16_frame(data, _output_pts(frame, waiting))

    def stats(self) -> dict[str, Any]:
        return {
            "enabled": self._enabled,
            "active": self.active,
            "problem": self.problem,
            "config": asdict(self._config),
            "capture_blocks": self.capture_blocks,
            "render_blocks": self.render_blocks,
            "cpu_seconds": round(self.cpu_seconds, 4),
            "stream_delay_ms": self.stream_delay_ms,
        }

    def __repr__(self) -> str:
        state = "active" if self.active else "bypassed"
        return f"<AudioProcessor {state} {self._config}>"


def _output_pts(frame: av.AudioFrame, waiting: int) -> int | None:
    if frame.pts is None:
        return None
    time_base = frame.time_base or Fraction(1, frame.sample_rate or APM_RATE)
    return round(frame.pts * time_base * APM_RATE) - waiting


# ------------------------------------------------------------------ the two wrappers


def _leaf(obj: Any, attribute: str) -> Any:
    """Follow ``obj.<attribute>`` down through wrappers (at most a few levels)."""
    for _ in range(8):
        inner = getattr(obj, attribute, None)
        if inner is None or inner is obj:
            return obj
        obj = inner
    return obj


def _waiting_seconds(obj: Any) -> float:
    """Seconds of audio ``obj`` (a device sink or source) holds, as far as it tells."""
    delay = getattr(obj, "output_delay", None)
    if isinstance(delay, int | float):
        return float(delay)
    total = 0.0
    for name in ("buffer", "chunker"):
        buffered = getattr(getattr(obj, name, None), "buffered", None)
        if isinstance(buffered, int | float):
            total += float(buffered)
    device = getattr(obj, "device_buffer", None)
    if isinstance(device, int | float):
        total += float(device)
    return total


class ProcessedAudioTrack(MediaStreamTrack):
    """An audio track that reads ``source`` and hands out its frames after the APM.

    Put it in front of the call's audio :class:`~.switchable.SwitchableTrack` (which keeps
    doing device changes, fallbacks and mute): every source behind it is processed.
    ``enabled``, ``muted``, ``source``, ``set_source`` and ``sending_filler`` are those of
    ``source``; while it is muted its silence goes out unprocessed. ``stop()`` stops
    ``source`` too (``stop_source=False`` to keep it running).
    """

    kind = "audio"

    def __init__(
        self,
        source: MediaStreamTrack,
        processor: AudioProcessor,
        *,
        stop_source: bool = True,
    ) -> None:
        super().__init__()
        if source.kind != "audio":
            raise ValueError(f"not an audio track: {source.kind!r}")
        self._upstream = source
        self.processor = processor
        self._stop_source = stop_source
        self.frames_in = 0
        self.frames_out = 0

    # What the engine and the app use on the call's audio track.

    @property
    def upstream(self) -> MediaStreamTrack:
        return self._upstream

    @property
    def enabled(self) -> bool:
        return bool(getattr(self._upstream, "enabled", True))

    @enabled.setter
    def enabled(self, value: bool) -> None:
        if hasattr(self._upstream, "enabled"):
            self._upstream.enabled = value

    @property
    def muted(self) -> bool:
        return not self.enabled

    @muted.setter
    def muted(self, value: bool) -> None:
        self.enabled = not value

    @property
    def source(self) -> MediaStreamTrack | None:
        return getattr(self._upstream, "source", None)

    def set_source(self, source: MediaStreamTrack | None) -> MediaStreamTrack | None:
        return self._upstream.set_source(source)  # type: ignore[attr-defined]

    @property
    def sending_filler(self) -> bool:
        return bool(getattr(self._upstream, "sending_filler", False))

    def capture_delay(self) -> float:
        """Seconds between the microphone and the APM: what the device source holds."""
        source = _leaf(self._upstream, "source")
        # A MicrophoneTrack holds a chunker; its MicrophoneSource (not reachable from the
        # track) adds the device buffer, roughly one period of it on average.
        return _waiting_seconds(source)

    async def recv(self) -> av.AudioFrame:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            frame = await self._upstream.recv()
            self.frames_in += 1
            if not self.enabled:
                self.frames_out += 1
                return frame
            out = self.processor.process_capture(frame, self.capture_delay())
            if out is not None:
                self.frames_out += 1
                return out

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            if self._stop_source:
                self._upstream.stop()


class EchoReferenceSink:
    """An :class:`~.sinks.AudioSink` that plays through ``sink`` and tells ``processor``
    what the loudspeaker plays (the echo canceller's far-end reference).

    ``sink`` may be a :class:`~.qt_playback.SwitchableAudioSink`: ``sink``/``set_sink``
    are forwarded, and whatever device is current underneath is the one looked at. The
    reference is taken:

    - at the device, when the current device sink has an ``on_played`` attribute (called
      with ``(pcm_bytes, PcmFormat)`` each time bytes go to the device): exactly what is
      played, after the playback buffer's drops; the render delay is then only what the
      device holds (``device_delay`` if it says, else its ``device_buffer``);
    - else at :meth:`write`: every frame written; the render delay is then what the
      device sink holds (``output_delay`` if it says, else its playback buffer plus its
      device buffer).

    Nothing is reported while the device sink has failed or is closed (nothing plays).
    ``close()`` closes ``sink``.
    """

    def __init__(self, sink: Any, processor: AudioProcessor) -> None:
        self._sink = sink
        self.processor = processor
        self.closed = False
        self._tapped: Any = None  # the device sink whose on_played feeds us
        self.frames_written = 0
        processor.render_delay = self.render_delay

    @property
    def sink(self) -> Any:
        return self._sink

    def set_sink(self, sink: Any) -> Any:
        """Forwarded to a switchable sink underneath; else replaces it. Returns the previous."""
        set_sink = getattr(self._sink, "set_sink", None)
        if callable(set_sink):
            return set_sink(sink)
        previous, self._sink = self._sink, sink
        return previous

    def device(self) -> Any:
        """The sink that really plays (through any switchable wrappers)."""
        return _leaf(self._sink, "sink")

    def _playing(self, device: Any) -> bool:
        return not getattr(device, "failure", None) and not getattr(device, "closed", False)

    def _tap(self, device: Any) -> bool:
        """Take the reference at ``device`` if it can; True if it is taken there."""
        if self._tapped is device:
            return True
        if not hasattr(device, "on_played"):
            return False
        if self._tapped is not None:
            with contextlib.suppress(Exception):
                if self._tapped.on_played == self._on_played:
                    self._tapped.on_played = None
        device.on_played = self._on_played
        self._tapped = device
        return True

    def _on_played(self, data: bytes, fmt: Any) -> None:
        if self.closed or not data:
            return
        samples = np.frombuffer(data, dtype=fmt.dtype)
        channels = fmt.channels
        if fmt.rate != APM_RATE or fmt.sample_format not in ("s16", "flt"):
            frame = av.AudioFrame.from_ndarray(
                samples.reshape(1, -1), format=fmt.sample_format, layout=fmt.layout
            )
            frame.sample_rate = fmt.rate
            self.processor.analyze_render(frame)
            return
        if fmt.sample_format == "flt":
            samples = np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)
        if channels > 1:
            samples = (
                samples.reshape(-1, channels).sum(axis=1, dtype=np.int32) // channels
            ).astype(np.int16)
        self.processor.analyze_render_samples(samples)

    def render_delay(self) -> float:
        device = self.device()
        if self._tapped is device:
            delay = getattr(device, "device_delay", None)
            if isinstance(delay, int | float):
                return float(delay)
            buffer = getattr(device, "device_buffer", None)
            return float(buffer) if isinstance(buffer, int | float) else 0.0
        return _waiting_seconds(device)

    def write(self, frame: av.AudioFrame) -> None:
        if self.closed:
            return
        self.frames_written += 1
        self._sink.write(frame)
        device = self.device()
        if self.processor.active and not self._tap(device) and self._playing(device):
            self.processor.analyze_render(frame)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._tapped is not None:
                with contextlib.suppress(Exception):
                    self._tapped.on_played = None
            self._sink.close()

    def __getattr__(self, name: str) -> Any:
        # Whatever else the app asks of its speaker (describe(), counters) is the sink's.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._sink, name)
