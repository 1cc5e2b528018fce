"""Capture through QtMultimedia: camera, screen or window, and microphone as aiortc tracks.

This module and :mod:`.qt_playback` are the only parts of :mod:`desktop_call.media` that
import Qt (QtCore, QtGui, QtMultimedia; never widgets, never qasync). Everything runs on
the Qt main thread, which under qasync is also the asyncio loop's thread; nothing here
waits on a device synchronously.

Video: a :class:`VideoSinkSource` owns a ``QVideoSink``; whatever feeds it (a ``QCamera``
in :class:`CameraSource`, a ``QScreenCapture``/``QWindowCapture`` in
:class:`ScreenSource`, or a test calling ``setVideoFrame``) hands frames to a
:class:`LatestFrameTrack`, which keeps only the newest ``QVideoFrame`` (a cheap, shared
reference) and converts it to a yuv420p ``av.VideoFrame`` only when ``recv()`` asks for
one. So a slow consumer drops frames (counted) instead of queueing them, and no frame is
converted for nothing. :func:`video_frame_to_av` maps the frame and copies its planes
with numpy into a PyAV frame of the same pixel layout, then lets swscale make yuv420p
(a plain copy for yuv420p, well under a millisecond for NV12/YUYV up to 1080p); formats
PyAV has no layout for go through ``QVideoFrame.toImage()``. Conversions that are not
cheap (RGB layouts, above 1080p, JPEG, GPU frames) run on a worker thread.

Audio: a :class:`MicrophoneSource` opens a ``QAudioSource`` at 48 kHz s16 (or whatever
the device prefers) and reads it on ``readyRead``; :class:`AudioChunker`, a pure object,
turns those bytes into 20 ms s16 48 kHz frames (resampling with ``av.AudioResampler``
when the device delivered something else) in a bounded buffer that drops the oldest
audio when the consumer falls behind.

A source that stops working (``QCamera.errorOccurred``, a capture error, the audio
device gone, or :meth:`VideoSinkSource.fail` called by the device manager when the
device left the system list) records ``failure``, emits ``failed(message)``, stops the
device and ends its track; a :class:`~.switchable.SwitchableTrack` in front of it then
sends filler until the device manager switches it to a fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.video.reformatter import VideoReformatter
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QGuiApplication, QImage, QScreen
from PySide6.QtMultimedia import (
    QAudioDevice,
    QAudioFormat,
    QAudioSource,
    QCamera,
    QCameraDevice,
    QCapturableWindow,
    QMediaCaptureSession,
    QScreenCapture,
    QtAudio,
    QVideoFrame,
    QVideoFrameFormat,
    QVideoSink,
    QWindowCapture,
)

from .sources import (
    AUDIO_SAMPLE_RATE,
    AUDIO_SAMPLES,
    AUDIO_TIME_BASE,
    VIDEO_CLOCK_RATE,
    VIDEO_TIME_BASE,
    Kind,
)

logger = logging.getLogger(__name__)

__all__ = [
    "AudioChunker",
    "CameraSource",
    "DeviceError",
    "LatestFrameTrack",
    "MicrophoneSource",
    "MicrophoneTrack",
    "PcmFormat",
    "ScreenSource",
    "VideoSinkSource",
    "choose_camera_format",
    "device_id_string",
    "is_cheap_to_convert",
    "video_frame_to_av",
]


class DeviceError(Exception):
    """A device could not be opened or started; the message is fit to show to people."""


def device_id_string(raw: bytes | bytearray | memoryview | object) -> str:
    """A device id from Qt (``QCameraDevice.id()``, ``QAudioDevice.id()``) as text.

    Readable ids (``/dev/video0``, PulseAudio names, Windows/macOS unique ids) stay as
    they are, so settings files stay legible; anything else becomes ``hex:...``. The same
    device gives the same string on every run as long as Qt gives the same id.
    """
    if hasattr(raw, "data") and callable(raw.data):  # QByteArray
        raw = raw.data()
    data = bytes(raw)  # type: ignore[arg-type]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.isprintable() and not text.startswith("hex:"):
        return text
    return "hex:" + data.hex()


# ------------------------------------------------------------------ video frames

_PF = QVideoFrameFormat.PixelFormat

# Qt pixel format -> (PyAV pixel format, which Qt plane fills each PyAV plane). The byte
# orders of the 32-bit RGB layouts were checked against QVideoFrame.toImage() (see the
# tests): Qt names them by component order in memory, like FFmpeg.
_AV_LAYOUTS: dict[QVideoFrameFormat.PixelFormat, tuple[str, tuple[int, ...]]] = {
    _PF.Format_YUV420P: ("yuv420p", (0, 1, 2)),
    _PF.Format_YV12: ("yuv420p", (0, 2, 1)),
    _PF.Format_NV12: ("nv12", (0, 1)),
    _PF.Format_NV21: ("nv21", (0, 1)),
    _PF.Format_YUV422P: ("yuv422p", (0, 1, 2)),
    _PF.Format_YUYV: ("yuyv422", (0,)),
    _PF.Format_UYVY: ("uyvy422", (0,)),
    _PF.Format_Y8: ("gray", (0,)),
    _PF.Format_P010: ("p010le", (0, 1)),
    _PF.Format_P016: ("p016le", (0, 1)),
    _PF.Format_XRGB8888: ("0rgb", (0,)),
    _PF.Format_ARGB8888: ("argb", (0,)),
    _PF.Format_ARGB8888_Premultiplied: ("argb", (0,)),
    _PF.Format_BGRX8888: ("bgr0", (0,)),
    _PF.Format_BGRA8888: ("bgra", (0,)),
    _PF.Format_BGRA8888_Premultiplied: ("bgra", (0,)),
    _PF.Format_XBGR8888: ("0bgr", (0,)),
    _PF.Format_ABGR8888: ("abgr", (0,)),
    _PF.Format_RGBX8888: ("rgb0", (0,)),
    _PF.Format_RGBA8888: ("rgba", (0,)),
}

_YUV_LAYOUTS = {"yuv420p", "nv12", "nv21", "yuv422p", "yuyv422", "uyvy422", "p010le", "p016le"}

# Formats whose conversion costs well under a millisecond up to 1080p (measured: 0.1 ms
# for NV12 and 0.2 ms for YUYV at 720p, 0.2/0.4 ms at 1080p): plane copies plus, at most,
# a chroma shuffle in swscale. RGB layouts (1.7 ms at 720p, 4.5 ms at 1080p) and the
# toImage() path (5 ms at 720p) go to a worker thread.
_CHEAP = {
    _PF.Format_YUV420P,
    _PF.Format_YV12,
    _PF.Format_NV12,
    _PF.Format_NV21,
    _PF.Format_YUYV,
    _PF.Format_UYVY,
    _PF.Format_Y8,
}
CHEAP_MAX_PIXELS = 1920 * 1080

_reformatters = threading.local()


def _reformatter() -> VideoReformatter:
    """One swscale context cache per thread (a reformatter is not thread-safe)."""
    reformatter = getattr(_reformatters, "value", None)
    if reformatter is None:
        reformatter = _reformatters.value = VideoReformatter()
    return reformatter


def is_cheap_to_convert(frame: QVideoFrame) -> bool:
    """True when :func:`video_frame_to_av` is cheap enough to run on the event loop."""
    return (
        frame.pixelFormat() in _CHEAP
        and frame.width() * frame.height() <= CHEAP_MAX_PIXELS
        and frame.handleType() == QVideoFrame.HandleType.NoHandle
    )


def _copy_plane(src: memoryview, stride: int, dst: av.video.plane.VideoPlane) -> None:
    """Copy ``dst.height`` rows of ``src`` (``stride`` bytes apart) into a PyAV plane."""
    rows = dst.height
    source = np.frombuffer(src, dtype=np.uint8)
    if rows == 0 or stride <= 0:
        return
    # Bytes worth copying per row: the real row is no wider than either stride; copying
    # up to the smaller one copies at most some padding. The last row may be short.
    width = min(stride, dst.line_size, len(source) - stride * (rows - 1))
    if width <= 0:
        raise ValueError("the mapped plane is smaller than the frame")
    view = np.lib.stride_tricks.as_strided(
        source, shape=(rows, width), strides=(stride, 1), writeable=False
    )
    target = np.frombuffer(dst, dtype=np.uint8).reshape(-1, dst.line_size)
    target[:rows, :width] = view


def video_frame_to_av(frame: QVideoFrame) -> av.VideoFrame:
    """The pixels of ``frame`` as a yuv420p ``av.VideoFrame`` (BT.601, limited range).

    ``pts`` and ``time_base`` are left unset. Raises :class:`ValueError` for a frame that
    cannot be read (invalid, or a format neither mapped here nor convertible to a QImage).
    Safe to call on a worker thread.
    """
    if not frame.isValid():
        raise ValueError("invalid video frame")
    layout = _AV_LAYOUTS.get(frame.pixelFormat())
    if layout is None:
        return _via_image(frame)
    name, order = layout
    width, height = frame.width(), frame.height()
    copy = QVideoFrame(frame)  # map() on our own handle, never on the caller's
    if not copy.map(QVideoFrame.MapMode.ReadOnly):
        return _via_image(frame)
    try:
        native = av.VideoFrame(width, height, name)
        if copy.planeCount() != len(order):
            raise ValueError(f"{frame.pixelFormat().name} frame with {copy.planeCount()} planes")
        for qt_plane, plane in zip(order, native.planes, strict=True):
            _copy_plane(copy.bits(qt_plane), copy.bytesPerLine(qt_plane), plane)
    finally:
        copy.unmap()
    full_range = (
        name in _YUV_LAYOUTS
        and frame.surfaceFormat().colorRange() == QVideoFrameFormat.ColorRange.ColorRange_Full
    )
    if name == "yuv420p" and not full_range:
        return native
    if full_range:
        return _reformatter().reformat(
            native, format="yuv420p", src_color_range="JPEG", dst_color_range="MPEG", threads=1
        )
    return _reformatter().reformat(native, format="yuv420p", threads=1)


def _via_image(frame: QVideoFrame) -> av.VideoFrame:
    """The slow path: ``QVideoFrame.toImage()`` (Qt converts or decodes), then swscale."""
    image = frame.toImage()
    if image.isNull():
        raise ValueError(f"cannot read a {frame.pixelFormat().name} video frame")
    image = image.convertToFormat(QImage.Format.Format_RGBX8888)
    width, height = image.width(), image.height()
    rgb = av.VideoFrame(width, height, "rgb0")
    _copy_plane(memoryview(image.constBits()), image.bytesPerLine(), rgb.planes[0])
    return _reformatter().reformat(rgb, format="yuv420p", threads=1)


class LatestFrameTrack(MediaStreamTrack):
    """A video track fed with ``QVideoFrame``\\ s, keeping only the newest one.

    :meth:`offer` may be called from any thread (Qt may emit ``videoFrameChanged`` on a
    capture thread); it only stores a reference. :meth:`recv` waits for a frame newer
    than the last one it returned, converts it (on a worker thread unless it is cheap,
    see :func:`is_cheap_to_convert`; ``threaded`` forces either way) and stamps it on a
    90 kHz clock from the frame's arrival time. With ``max_fps``, ``recv`` returns at
    most that many frames a second (the newest at each turn).

    Counters: ``frames_offered``, ``frames_dropped`` (replaced before anyone asked),
    ``frames_delivered``, ``conversion_errors``; ``convert_ms`` keeps the last 100
    conversion times in milliseconds.
    """

    kind = "video"

    def __init__(
        self,
        *,
        max_fps: float | None = None,
        threaded: bool | None = None,
        convert: Callable[[QVideoFrame], av.VideoFrame] = video_frame_to_av,
    ) -> None:
        super().__init__()
        if max_fps is not None and not max_fps > 0:
            raise ValueError(f"max_fps must be positive, not {max_fps!r}")
        self.max_fps = max_fps
        self.threaded = threaded
        self._convert = convert
        self._lock = threading.Lock()
        self._newest: tuple[QVideoFrame, float] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrived = asyncio.Event()
        self._wake_pending = False
        self._executor: ThreadPoolExecutor | None = None
        self._t0: float | None = None
        self._last_pts = -1
        self._last_sent: float | None = None
        self.frames_offered = 0
        self.frames_dropped = 0
        self.frames_delivered = 0
        self.conversion_errors = 0
        self.convert_ms: deque[float] = deque(maxlen=100)

    def offer(self, frame: QVideoFrame, captured_at: float | None = None) -> None:
        """Make ``frame`` the newest (any thread). ``captured_at`` defaults to now."""
        if self.readyState != "live" or not frame.isValid():
            return
        at = time.time() if captured_at is None else captured_at
        with self._lock:
            if self._newest is not None:
                self.frames_dropped += 1
            self._newest = (QVideoFrame(frame), at)
            self.frames_offered += 1
            loop = self._loop
            wake = loop is not None and not self._wake_pending
            if wake:
                self._wake_pending = True
        if wake:
            assert loop is not None
            # A closed loop raises RuntimeError: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        with self._lock:
            self._wake_pending = False
        self._arrived.set()

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        self._loop = asyncio.get_running_loop()
        if self.max_fps is not None and self._last_sent is not None:
            wait = self._last_sent + 1 / self.max_fps - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            with self._lock:
                item, self._newest = self._newest, None
            if item is None:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            qframe, at = item
            try:
                frame = await self._convert_frame(qframe)
            except Exception as exc:
                self.conversion_errors += 1
                if self.conversion_errors <= 3:
                    logger.warning("cannot convert a video frame: %s", exc)
                continue
            if self.readyState != "live":
                raise MediaStreamError
            if self._t0 is None:
                self._t0 = at
            frame.pts = max(round((at - self._t0) * VIDEO_CLOCK_RATE), self._last_pts + 1)
            frame.time_base = VIDEO_TIME_BASE
            self._last_pts = frame.pts
            self._last_sent = time.monotonic()
            self.frames_delivered += 1
            return frame

    async def _convert_frame(self, qframe: QVideoFrame) -> av.VideoFrame:
        threaded = self.threaded
        if threaded is None:
            threaded = not is_cheap_to_convert(qframe)
        if not threaded:
            return self._timed_convert(qframe)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="video-convert")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._timed_convert, qframe)

    def _timed_convert(self, qframe: QVideoFrame) -> av.VideoFrame:
        started = time.perf_counter()
        frame = self._convert(qframe)
        self.convert_ms.append((time.perf_counter() - started) * 1000)
        return frame

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            with self._lock:
                self._newest = None
            self._arrived.set()
            if self._executor is not None:
                self._executor.shutdown(wait=False)


# ------------------------------------------------------------------ video sources


class VideoSinkSource(QObject):
    """A video :class:`~.sources.MediaSource` fed through a ``QVideoSink``.

    The base class has no device: whatever calls ``video_sink.setVideoFrame()`` feeds it
    (tests, a ``QVideoFrameInput``). :class:`CameraSource` and :class:`ScreenSource` attach
    a capture device to the sink. ``failed(message)`` is emitted once when the source stops
    working; ``failure`` keeps the message. ``started`` is true once frames may flow.
    """

    failed = Signal(str)

    kind: Kind = "video"
    device_kind = "video"
    """What the device manager calls this kind of device in ``device_lost``."""

    def __init__(
        self,
        description: str,
        *,
        device_id: str | None = None,
        max_fps: float | None = None,
        threaded: bool | None = None,
        start_timeout: float = 10.0,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._description = description
        self.device_id = device_id
        self.start_timeout = start_timeout
        self.failure: str | None = None
        self.started = False
        self.stopped = False
        self._sink = QVideoSink(self)
        self._track = LatestFrameTrack(max_fps=max_fps, threaded=threaded)
        self._starting: asyncio.Future[None] | None = None
        # Direct: the capture may emit on its own thread; offer() only stores a reference.
        self._sink.videoFrameChanged.connect(self._on_frame, Qt.ConnectionType.DirectConnection)

    @property
    def track(self) -> LatestFrameTrack:
        return self._track

    @property
    def video_sink(self) -> QVideoSink:
        """The sink frames arrive in (a preview widget may listen to it too)."""
        return self._sink

    def describe(self) -> str:
        return self._description

    def _on_frame(self, frame: QVideoFrame) -> None:
        self._track.offer(frame, time.time())

    async def start(self) -> None:
        """Start the device and wait (without blocking) until it runs.

        Raises :class:`DeviceError` if it fails or does not start within
        ``start_timeout`` seconds. Starting a running source does nothing.
        """
        if self.failure is not None:
            raise DeviceError(self.failure)
        if self.stopped:
            raise DeviceError(f"{self._description} was stopped")
        if self.started:
            return
        loop = asyncio.get_running_loop()
        self._starting = loop.create_future()
        try:
            self._start_device()
            if self._device_active():
                self._mark_started()
            async with asyncio.timeout(self.start_timeout):
                await self._starting
        except TimeoutError:
            self.fail(f"{self._description} did not start")
            raise DeviceError(self.failure) from None
        finally:
            self._starting = None

    def _mark_started(self) -> None:
        self.started = True
        if self._starting is not None and not self._starting.done():
            self._starting.set_result(None)

    async def stop(self) -> None:
        """Stop the device (Qt stops it asynchronously) and end the track. Idempotent."""
        if self.stopped:
            return
        self.stopped = True
        self._stop_device()
        self._track.stop()

    def fail(self, message: str) -> None:
        """Report that the source stopped working: stop the device, end the track, emit."""
        if self.failure is not None or self.stopped:
            return
        self.failure = message
        self.stopped = True
        logger.warning("%s", message)
        with contextlib.suppress(Exception):
            self._stop_device()
        self._track.stop()
        if self._starting is not None and not self._starting.done():
            self._starting.set_exception(DeviceError(message))
        self.failed.emit(message)

    # Subclass hooks.

    def _start_device(self) -> None:
        """Ask the device to start; call ``_mark_started`` (now or later) when it runs."""
        self._mark_started()

    def _device_active(self) -> bool:
        return self.started

    def _stop_device(self) -> None:
        """Ask the device to stop. Must not wait for it."""

    def __repr__(self) -> str:
        state = "failed" if self.failure else "stopped" if self.stopped else "live"
        return f"<{type(self).__name__} {self._description!r} {state}>"


@dataclass(frozen=True, slots=True)
class CameraMode:
    """One capture mode a camera offers (from a ``QCameraFormat``)."""

    width: int
    height: int
    max_fps: float
    pixel_format: QVideoFrameFormat.PixelFormat


def choose_camera_format(
    modes: Sequence[CameraMode], max_size: tuple[int, int] = (1280, 720), fps: float = 30
) -> int | None:
    """The index of the best mode for a call, or ``None`` if there are none.

    Best: fits in ``max_size`` (else the smallest that does not); runs at ``fps`` or
    close (24 fps counts as smooth; a 720p mode at 10 fps loses to a 480p one at 30);
    then the largest; then one that converts cheaply (not JPEG); then the fastest.
    """
    if not modes:
        return None
    max_w, max_h = max_size
    smooth = min(fps, 24)

    def score(index: int) -> tuple:
        mode = modes[index]
        area = mode.width * mode.height
        fits = mode.width <= max_w and mode.height <= max_h
        return (
            fits,
            mode.max_fps >= smooth,
            area if fits else -area,
            mode.pixel_format in _CHEAP,
            min(mode.max_fps, fps),
        )

    return max(range(len(modes)), key=score)


class CameraSource(VideoSinkSource):
    """A camera through ``QCamera``: the best mode up to ``max_size`` and ``fps``."""

    device_kind = "camera"

    def __init__(
        self,
        device: QCameraDevice,
        *,
        max_size: tuple[int, int] = (1280, 720),
        fps: float = 30,
        threaded: bool | None = None,
        start_timeout: float = 10.0,
        parent: QObject | None = None,
    ) -> None:
        if device.isNull():
            raise DeviceError("No camera found")
        super().__init__(
            device.description() or "Camera",
            device_id=device_id_string(device.id()),
            threaded=threaded,
            start_timeout=start_timeout,
            parent=parent,
        )
        self.device = device
        self._session = QMediaCaptureSession(self)
        self._camera = QCamera(device, self)
        formats = list(device.videoFormats())
        modes = [
            CameraMode(
                f.resolution().width(), f.resolution().height(), f.maxFrameRate(), f.pixelFormat()
            )
            for f in formats
        ]
        best = choose_camera_format(modes, max_size, fps)
        if best is not None:
            self._camera.setCameraFormat(formats[best])
            mode = modes[best]
            self.mode: CameraMode | None = mode
        else:
            self.mode = None
        self._session.setCamera(self._camera)
        self._session.setVideoSink(self._sink)
        self._camera.errorOccurred.connect(self._on_error)
        self._camera.activeChanged.connect(self._on_active)

    def describe(self) -> str:
        return f"Camera “{self._description}”"

    def _start_device(self) -> None:
        self._camera.start()  # asynchronous: activeChanged or errorOccurred follows

    def _device_active(self) -> bool:
        return self._camera.isActive()

    def _stop_device(self) -> None:
        self._camera.stop()

    def _on_active(self, active: bool) -> None:
        if active:
            self._mark_started()
        elif self.started and not self.stopped:
            self.fail(f"Camera “{self._description}” stopped")

    def _on_error(self, error: QCamera.Error, message: str) -> None:
        if error != QCamera.Error.NoError:
            self.fail(f"Camera “{self._description}” failed: {message or error.name}")


class ScreenSource(VideoSinkSource):
    """A screen (``QScreenCapture``) or a window (``QWindowCapture``), at most ``max_fps``."""

    def __init__(
        self,
        target: QScreen | QCapturableWindow,
        *,
        description: str | None = None,
        device_id: str | None = None,
        max_fps: float = 15.0,
        threaded: bool | None = None,
        start_timeout: float = 10.0,
        parent: QObject | None = None,
    ) -> None:
        if isinstance(target, QScreen):
            name = description or f"Screen {target.name() or ''}".strip()
            kind = "screen"
        elif isinstance(target, QCapturableWindow):
            if not target.isValid():
                raise DeviceError("That window can no longer be shared")
            name = description or f"Window “{target.description()}”"
            kind = "window"
        else:
            raise TypeError(f"not a QScreen or QCapturableWindow: {target!r}")
        super().__init__(
            name,
            device_id=device_id,
            max_fps=max_fps,
            threaded=threaded,
            start_timeout=start_timeout,
            parent=parent,
        )
        self.device_kind = kind
        self._session = QMediaCaptureSession(self)
        self._capture: QScreenCapture | QWindowCapture
        if isinstance(target, QScreen):
            capture = QScreenCapture(self)
            capture.setScreen(target)
            self._session.setScreenCapture(capture)
            app = QGuiApplication.instance()
            if isinstance(app, QGuiApplication):
                app.screenRemoved.connect(self._on_screen_removed)
            self._screen: QScreen | None = target
            self._capture = capture
        else:
            wcapture = QWindowCapture(self)
            wcapture.setWindow(target)
            self._session.setWindowCapture(wcapture)
            self._screen = None
            self._capture = wcapture
        self._session.setVideoSink(self._sink)
        self._capture.errorOccurred.connect(self._on_error)
        self._capture.activeChanged.connect(self._on_active)

    def _start_device(self) -> None:
        self._capture.setActive(True)

    def _device_active(self) -> bool:
        return self._capture.isActive()

    def _stop_device(self) -> None:
        self._capture.setActive(False)
        app = QGuiApplication.instance()
        if self._screen is not None and isinstance(app, QGuiApplication):
            with contextlib.suppress(RuntimeError, TypeError):
                app.screenRemoved.disconnect(self._on_screen_removed)

    def _on_active(self, active: bool) -> None:
        if active:
            self._mark_started()
        elif self.started and not self.stopped:
            self.fail(f"{self._description}: sharing stopped")

    def _on_error(self, error: object, message: str) -> None:
        if getattr(error, "name", "") != "NoError":
            self.fail(f"{self._description} cannot be shared: {message or error}")

    def _on_screen_removed(self, screen: QScreen) -> None:
        if screen is self._screen or screen == self._screen:
            self.fail(f"{self._description} was disconnected")


# ------------------------------------------------------------------ audio


_QT_SAMPLE_FORMATS = {
    QAudioFormat.SampleFormat.UInt8: "u8",
    QAudioFormat.SampleFormat.Int16: "s16",
    QAudioFormat.SampleFormat.Int32: "s32",
    QAudioFormat.SampleFormat.Float: "flt",
}
_DTYPES = {"u8": np.uint8, "s16": np.int16, "s32": np.int32, "flt": np.float32}


def _layout_name(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")


@dataclass(frozen=True, slots=True)
class PcmFormat:
    """Interleaved PCM as a device speaks it: rate, channels, sample format (PyAV names:
    ``u8``, ``s16``, ``s32``, ``flt``)."""

    rate: int = AUDIO_SAMPLE_RATE
    channels: int = 1
    sample_format: str = "s16"

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.channels <= 0 or self.sample_format not in _DTYPES:
            raise ValueError(f"unusable PCM format: {self}")

    @property
    def layout(self) -> str:
        return _layout_name(self.channels)

    @property
    def dtype(self) -> type[np.generic]:
        return _DTYPES[self.sample_format]

    @property
    def bytes_per_frame(self) -> int:
        """Bytes per sample frame (one sample of every channel)."""
        return np.dtype(self.dtype).itemsize * self.channels

    def bytes_for(self, seconds: float) -> int:
        return round(seconds * self.rate) * self.bytes_per_frame

    @classmethod
    def from_qt(cls, fmt: QAudioFormat) -> PcmFormat | None:
        sample_format = _QT_SAMPLE_FORMATS.get(fmt.sampleFormat())
        if sample_format is None or fmt.sampleRate() <= 0 or fmt.channelCount() <= 0:
            return None
        return cls(fmt.sampleRate(), fmt.channelCount(), sample_format)

    def to_qt(self) -> QAudioFormat:
        fmt = QAudioFormat()
        fmt.setSampleRate(self.rate)
        fmt.setChannelCount(self.channels)
        fmt.setSampleFormat(
            next(q for q, name in _QT_SAMPLE_FORMATS.items() if name == self.sample_format)
        )
        return fmt


def pcm_to_frame(data: bytes, fmt: PcmFormat) -> av.AudioFrame:
    """Whole sample frames of interleaved PCM as a packed ``av.AudioFrame`` (no pts)."""
    samples = np.frombuffer(data, dtype=fmt.dtype)
    frame = av.AudioFrame.from_ndarray(
        samples.reshape(1, -1), format=fmt.sample_format, layout=fmt.layout
    )
    frame.sample_rate = fmt.rate
    return frame


def frame_to_pcm(frame: av.AudioFrame) -> bytes:
    """The samples of a packed ``av.AudioFrame`` as bytes (no padding)."""
    return frame.to_ndarray().tobytes()


class AudioChunker:
    """Device bytes in, 20 ms s16 48 kHz frames out, with bounded buffering. Pure.

    ``push(data)`` takes whatever the device delivered in ``source`` format (any amount,
    even a partial sample frame, kept for the next push), converting with
    ``av.AudioResampler`` unless it already is s16 48 kHz in the output layout. At most
    ``max_buffered`` seconds wait to be popped; beyond that the oldest audio goes
    (``samples_dropped``, ``drops``), so a late consumer hears fresh audio, never a
    growing delay. ``pop()`` returns the next 960-sample frame or ``None``; pts count
    samples on the 48 kHz clock, dropped ones included, so they follow real time.
    """

    def __init__(
        self, source: PcmFormat, layout: str = "mono", *, max_buffered: float = 0.2
    ) -> None:
        if layout not in ("mono", "stereo"):
            raise ValueError(f"layout must be mono or stereo, not {layout!r}")
        if max_buffered < AUDIO_SAMPLES / AUDIO_SAMPLE_RATE:
            raise ValueError("max_buffered must hold at least one 20 ms frame")
        self.source = source
        self.layout = layout
        self.output = PcmFormat(AUDIO_SAMPLE_RATE, 1 if layout == "mono" else 2, "s16")
        self.max_buffered = max_buffered
        self._direct = source == self.output
        self._resampler: av.AudioResampler | None = None
        self._partial = b""
        self._buffer = bytearray()
        self._frame_bytes = AUDIO_SAMPLES * self.output.bytes_per_frame
        self._max_bytes = max(
            self._frame_bytes, round(max_buffered * AUDIO_SAMPLE_RATE) * self.output.bytes_per_frame
        )
        self._position = 0  # samples (48 kHz) popped or dropped
        self.samples_in = 0
        self.samples_dropped = 0
        self.drops = 0
        self.frames_out = 0

    @property
    def buffered(self) -> float:
        """Seconds of output audio waiting."""
        return len(self._buffer) / self.output.bytes_per_frame / AUDIO_SAMPLE_RATE

    @property
    def frames_available(self) -> int:
        return len(self._buffer) // self._frame_bytes

    def push(self, data: bytes) -> None:
        if not data:
            return
        data = self._partial + bytes(data)
        whole = len(data) - len(data) % self.source.bytes_per_frame
        data, self._partial = data[:whole], data[whole:]
        if not data:
            return
        self.samples_in += whole // self.source.bytes_per_frame
        if self._direct:
            self._buffer += data
        else:
            if self._resampler is None:
                self._resampler = av.AudioResampler(
                    format="s16", layout=self.layout, rate=AUDIO_SAMPLE_RATE
                )
            for out in self._resampler.resample(pcm_to_frame(data, self.source)):
                self._buffer += frame_to_pcm(out)
        excess = len(self._buffer) - self._max_bytes
        if excess > 0:
            excess += -excess % self.output.bytes_per_frame
            del self._buffer[:excess]
            dropped = excess // self.output.bytes_per_frame
            self.samples_dropped += dropped
            self._position += dropped
            self.drops += 1

    def pop(self) -> av.AudioFrame | None:
        if len(self._buffer) < self._frame_bytes:
            return None
        chunk = bytes(self._buffer[: self._frame_bytes])
        del self._buffer[: self._frame_bytes]
        frame = pcm_to_frame(chunk, self.output)
        frame.pts = self._position
        frame.time_base = AUDIO_TIME_BASE
        self._position += AUDIO_SAMPLES
        self.frames_out += 1
        return frame


class MicrophoneTrack(MediaStreamTrack):
    """An audio track fed with device bytes through an :class:`AudioChunker`.

    :meth:`push` may be called from any thread; :meth:`recv` waits for the next 20 ms.
    """

    kind = "audio"

    def __init__(self, chunker: AudioChunker) -> None:
        super().__init__()
        self.chunker = chunker
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._available = asyncio.Event()
        self._wake_pending = False

    def push(self, data: bytes) -> None:
        if self.readyState != "live":
            return
        with self._lock:
            self.chunker.push(data)
            ready = self.chunker.frames_available > 0
            loop = self._loop
            wake = ready and loop is not None and not self._wake_pending
            if wake:
                self._wake_pending = True
        if wake:
            assert loop is not None
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        with self._lock:
            self._wake_pending = False
        self._available.set()

    async def recv(self) -> av.AudioFrame:
        self._loop = asyncio.get_running_loop()
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            with self._lock:
                frame = self.chunker.pop()
            if frame is not None:
                return frame
            self._available.clear()
            await self._available.wait()

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            self._available.set()


def negotiate_format(device: QAudioDevice, wanted: PcmFormat) -> tuple[QAudioFormat, PcmFormat]:
    """``wanted`` if the device takes it, else the device's preferred format."""
    fmt = wanted.to_qt()
    if device.isNull() or device.isFormatSupported(fmt):
        return fmt, wanted
    preferred = device.preferredFormat()
    pcm = PcmFormat.from_qt(preferred)
    if pcm is None:
        return fmt, wanted
    return preferred, pcm


class MicrophoneSource(QObject):
    """A microphone through ``QAudioSource``: 20 ms s16 48 kHz frames (mono by default).

    ``start()`` opens the device (Qt's call returns at once; it does not wait for audio);
    bytes are read on ``readyRead``. ``failed(message)`` when the device stops with an
    error (unplugged, taken away).
    """

    failed = Signal(str)

    kind: Kind = "audio"
    device_kind = "microphone"

    def __init__(
        self,
        device: QAudioDevice,
        *,
        layout: str = "mono",
        max_buffered: float = 0.2,
        device_buffer: float = 0.04,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.device = device
        self.device_id = device_id_string(device.id())
        self._description = device.description() or "Microphone"
        channels = 1 if layout == "mono" else 2
        self._qt_format, self.format = negotiate_format(
            device, PcmFormat(AUDIO_SAMPLE_RATE, channels, "s16")
        )
        self._track = MicrophoneTrack(AudioChunker(self.format, layout, max_buffered=max_buffered))
        self.device_buffer = device_buffer
        self._audio: QAudioSource | None = None
        self._io = None
        self.failure: str | None = None
        self.started = False
        self.stopped = False

    @property
    def track(self) -> MicrophoneTrack:
        return self._track

    @property
    def chunker(self) -> AudioChunker:
        return self._track.chunker

    def describe(self) -> str:
        return f"Microphone “{self._description}”"

    async def start(self) -> None:
        if self.failure is not None:
            raise DeviceError(self.failure)
        if self.stopped:
            raise DeviceError(f"{self.describe()} was stopped")
        if self.started:
            return
        audio = QAudioSource(self.device, self._qt_format, self)
        audio.setBufferSize(self.format.bytes_for(self.device_buffer))
        # The state is read, not taken from the signal: PySide6 6.11 cannot convert the
        # signal's QAudio::State argument for any Python slot (a TypeError per change).
        audio.stateChanged.connect(lambda: self._on_state(audio.state()))
        self._audio = audio
        io = audio.start()
        if io is None or audio.error() != QtAudio.Error.NoError:
            self.fail(f"{self.describe()} cannot be opened ({audio.error().name})")
            raise DeviceError(self.failure)
        self._io = io
        io.readyRead.connect(self._on_ready_read)
        self.started = True

    def _on_ready_read(self) -> None:
        if self._io is None:
            return
        data = self._io.readAll()
        if data.size():
            self._track.push(data.data())

    def _on_state(self, state: QtAudio.State) -> None:
        if self._audio is None or self.stopped:
            return
        error = self._audio.error()
        if state == QtAudio.State.StoppedState and error not in (
            QtAudio.Error.NoError,
            QtAudio.Error.UnderrunError,
        ):
            self.fail(f"{self.describe()} stopped working ({error.name})")

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._close_device()
        self._track.stop()

    def fail(self, message: str) -> None:
        if self.failure is not None or self.stopped:
            return
        self.failure = message
        self.stopped = True
        logger.warning("%s", message)
        self._close_device()
        self._track.stop()
        self.failed.emit(message)

    def _close_device(self) -> None:
        io, self._io = self._io, None
        if io is not None:
            with contextlib.suppress(RuntimeError, TypeError):
                io.readyRead.disconnect(self._on_ready_read)
        if self._audio is not None:
            with contextlib.suppress(RuntimeError):
                self._audio.stop()

    def __repr__(self) -> str:
        state = "failed" if self.failure else "stopped" if self.stopped else "live"
        return f"<MicrophoneSource {self._description!r} {self.format} {state}>"
