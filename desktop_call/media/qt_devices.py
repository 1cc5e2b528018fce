"""Devices through QtMultimedia: listing, choosing, hot-plug and fallback.

- ``list_cameras()``, ``list_microphones()``, ``list_speakers()``, ``list_screens()``,
  ``list_windows()``: :class:`Device` records (``id``, ``description``, ``is_default``)
  for settings menus. Ids are Qt's device ids as text (see
  :func:`~.qt_capture.device_id_string`), the same across runs wherever Qt's are.
- :class:`DeviceManager`: opens the chosen device, or the default, or a stand-in that
  needs no device (the test pattern, silence, a counting sink), always with a notice to
  show when it did not get what was asked. It watches ``QMediaDevices`` and the sources
  it opened: a device that disappears or stops working emits ``device_lost(kind,
  description)``, and :meth:`DeviceManager.switch_to_fallback` moves a
  :class:`~.switchable.SwitchableTrack` to the next best source without renegotiating.

The capture and playback classes live in :mod:`.qt_capture` and :mod:`.qt_playback`;
this module re-exports them. Nothing here blocks the Qt event loop; starting a device is
awaited, never waited on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QGuiApplication, QScreen
from PySide6.QtMultimedia import (
    QAudioDevice,
    QCameraDevice,
    QCapturableWindow,
    QMediaDevices,
    QWindowCapture,
)

from .qt_capture import (
    AudioChunker,
    CameraSource,
    DeviceError,
    LatestFrameTrack,
    MicrophoneSource,
    MicrophoneTrack,
    PcmFormat,
    ScreenSource,
    VideoSinkSource,
    choose_camera_format,
    device_id_string,
    video_frame_to_av,
)
from .qt_playback import PlaybackBuffer, SpeakerSink, SwitchableAudioSink
from .sinks import AudioSink, CountingAudioSink
from .sources import MediaSource, SilenceTrack, TrackSource, pattern_source
from .switchable import SwitchableTrack

logger = logging.getLogger(__name__)

__all__ = [
    "AudioChunker",
    "CameraSource",
    "Device",
    "DeviceError",
    "DeviceManager",
    "LatestFrameTrack",
    "MicrophoneSource",
    "MicrophoneTrack",
    "PcmFormat",
    "PlaybackBuffer",
    "ScreenSource",
    "SpeakerSink",
    "SwitchableAudioSink",
    "VideoSinkSource",
    "choose_camera_format",
    "device_id_string",
    "list_cameras",
    "list_microphones",
    "list_screens",
    "list_speakers",
    "list_windows",
    "null_sink",
    "silence_source",
    "video_frame_to_av",
]

NO_CAMERA = "No camera found: sending a test pattern"
NO_MICROPHONE = "No microphone found: the other person will not hear you"
NO_SPEAKER = "No speaker found: you will not hear the other person"

_LABELS = {"camera": "Camera", "microphone": "Microphone", "speaker": "Speaker"}
_CONSEQUENCES = {
    "camera": "sending a test pattern",
    "microphone": "the other person will not hear you",
    "speaker": "you will not hear the other person",
}


@dataclass(frozen=True, slots=True)
class Device:
    """A device as settings show it: a stable ``id``, a name, whether it is the default."""

    id: str
    description: str
    is_default: bool = False


# ------------------------------------------------------------------ listing


def _safely(what: str, produce: Callable[[], list[Device]]) -> list[Device]:
    try:
        return produce()
    except Exception:  # a broken backend must not take the settings dialog down
        logger.exception("listing %s failed", what)
        return []


def _qt_devices(devices: list[Any], default: Any, *, fallback_name: str) -> list[Device]:
    default_id = None if default.isNull() else device_id_string(default.id())
    result = []
    for device in devices:
        if device.isNull():
            continue
        ident = device_id_string(device.id())
        result.append(
            Device(
                ident,
                device.description() or fallback_name,
                device.isDefault() or ident == default_id,
            )
        )
    return result


def list_cameras() -> list[Device]:
    return _safely(
        "cameras",
        lambda: _qt_devices(
            QMediaDevices.videoInputs(), QMediaDevices.defaultVideoInput(), fallback_name="Camera"
        ),
    )


def list_microphones() -> list[Device]:
    return _safely(
        "microphones",
        lambda: _qt_devices(
            QMediaDevices.audioInputs(),
            QMediaDevices.defaultAudioInput(),
            fallback_name="Microphone",
        ),
    )


def list_speakers() -> list[Device]:
    return _safely(
        "speakers",
        lambda: _qt_devices(
            QMediaDevices.audioOutputs(),
            QMediaDevices.defaultAudioOutput(),
            fallback_name="Speaker",
        ),
    )


def _unique_ids(names: list[str]) -> list[str]:
    """``names`` with ``#2``, ``#3``… appended to repeats, in order (stable for a layout)."""
    seen: dict[str, int] = {}
    ids = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        ids.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return ids


def _screens() -> list[tuple[Device, QScreen]]:
    app = QGuiApplication.instance()
    if not isinstance(app, QGuiApplication):
        return []
    screens = QGuiApplication.screens()
    primary = QGuiApplication.primaryScreen()
    keys = []
    for index, screen in enumerate(screens):
        parts = [screen.name(), screen.manufacturer(), screen.model(), screen.serialNumber()]
        key = ":".join(p for p in parts if p)
        keys.append(f"screen:{key}" if key else f"screen:{index + 1}")
    devices = []
    for index, (ident, screen) in enumerate(zip(_unique_ids(keys), screens, strict=True)):
        size = screen.size()
        name = screen.name() or f"Screen {index + 1}"
        description = f"{name} ({size.width()}x{size.height()})"
        devices.append((Device(ident, description, screen == primary), screen))
    return devices


def _windows() -> list[tuple[Device, QCapturableWindow]]:
    windows = [w for w in QWindowCapture.capturableWindows() if w.isValid()]
    names = [w.description() or "Window" for w in windows]
    ids = _unique_ids([f"window:{name}" for name in names])
    return [
        (Device(ident, name), window)
        for ident, name, window in zip(ids, names, windows, strict=True)
    ]


def list_screens() -> list[Device]:
    return _safely("screens", lambda: [device for device, _ in _screens()])


def list_windows() -> list[Device]:
    """Windows that can be shared. Their ids last as long as the window (and its title)."""
    return _safely("windows", lambda: [device for device, _ in _windows()])


# ------------------------------------------------------------------ stand-ins


def silence_source() -> TrackSource:
    """What the microphone track carries when there is no microphone."""
    return TrackSource(SilenceTrack(), "Silence (no microphone)")


def null_sink() -> CountingAudioSink:
    """Where remote audio goes when there is no speaker (counted, never stored)."""
    return CountingAudioSink(keep=0)


# ------------------------------------------------------------------ the manager


def _find(devices: list[Any], device_id: str) -> Any | None:
    for device in devices:
        if not device.isNull() and device_id_string(device.id()) == device_id:
            return device
    return None


class DeviceManager(QObject):
    """Opens devices with fallbacks and notices, and reports devices that go away.

    Signals:

    - ``devices_changed()``: a camera, microphone or speaker appeared or disappeared.
    - ``device_lost(kind, description)``: a device in use (opened here, or passed to
      :meth:`watch`) disappeared or stopped working; ``kind`` is ``"camera"``,
      ``"microphone"``, ``"speaker"``, ``"screen"`` or ``"window"``. The source has
      already ended its track; :meth:`switch_to_fallback` (or
      :meth:`switch_output_to_fallback`) replaces it, or :meth:`keep_fed` does so by
      itself.

    ``open_*`` return ``(source or sink, notice)``: ``notice`` is ``None`` when the
    device asked for (or the default, when none was asked for) was found, else a
    sentence to show. Sources come back unstarted; ``start_*`` also start them, falling
    back further if starting fails. An empty device id means the default, like ``None``.
    """

    devices_changed = Signal()
    device_lost = Signal(str, str)

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        video_max_size: tuple[int, int] = (1280, 720),
        start_timeout: float = 10.0,
    ) -> None:
        super().__init__(parent)
        self.video_max_size = video_max_size
        self.start_timeout = start_timeout
        self._media_devices = QMediaDevices(self)
        self._media_devices.videoInputsChanged.connect(self.refresh)
        self._media_devices.audioInputsChanged.connect(self.refresh)
        self._media_devices.audioOutputsChanged.connect(self.refresh)
        self._watched: list[Any] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._names: dict[tuple[str, str], str] = {}
        self._lists: dict[str, list[Device]] = {}
        self._snapshot()

    # Lists.

    def cameras(self) -> list[Device]:
        return self._remember("camera", list_cameras())

    def microphones(self) -> list[Device]:
        return self._remember("microphone", list_microphones())

    def speakers(self) -> list[Device]:
        return self._remember("speaker", list_speakers())

    def screens(self) -> list[Device]:
        return list_screens()

    def windows(self) -> list[Device]:
        return list_windows()

    def _remember(self, kind: str, devices: list[Device]) -> list[Device]:
        for device in devices:
            self._names[(kind, device.id)] = device.description
        return devices

    def _snapshot(self) -> dict[str, list[Device]]:
        previous = self._lists
        self._lists = {
            "camera": self.cameras(),
            "microphone": self.microphones(),
            "speaker": self.speakers(),
        }
        return previous

    def _name(self, kind: str, device_id: str) -> str:
        return self._names.get((kind, device_id), device_id)

    # Hot-plug.

    def refresh(self) -> None:
        """Re-read the device lists; fail watched sources whose device is gone.

        Connected to ``QMediaDevices``' change signals; call it to check by hand.
        """
        self._prune()
        previous = self._snapshot()
        present = {kind: {d.id for d in devices} for kind, devices in self._lists.items()}
        for source in list(self._watched):
            kind = getattr(source, "device_kind", "")
            ident = getattr(source, "device_id", None)
            if kind in present and ident and ident not in present[kind]:
                source.fail(f"{source.describe()} was disconnected")
        if previous != self._lists:
            self.devices_changed.emit()

    def watch(self, source: Any) -> None:
        """Report ``source`` (a device source or sink from here) in ``device_lost``.

        It needs ``failed`` (a signal), ``device_kind`` and ``device_id``. Watching ends
        when it fails; a source that stops normally is forgotten on the next refresh.
        """
        if source in self._watched:
            return
        self._prune()
        self._watched.append(source)
        ref = weakref.ref(source)  # the connection lives in the source: no cycle through Qt
        source.failed.connect(lambda message: self._on_failed(ref(), message))

    def _prune(self) -> None:
        self._watched = [
            s
            for s in self._watched
            if not getattr(s, "stopped", False) and not getattr(s, "closed", False)
        ]

    def _on_failed(self, source: Any, message: str) -> None:
        if source is None or source not in self._watched:
            return
        self._watched.remove(source)
        if getattr(source, "started", True):  # a failed start is reported by start()
            kind = getattr(source, "device_kind", "video")
            self.device_lost.emit(kind, source.describe())

    # Opening.

    def open_video(
        self, device_id: str | None = None, fallback_size: tuple[int, int] = (640, 480)
    ) -> tuple[MediaSource, str | None]:
        """The chosen camera, else the default one, else the test pattern (unstarted)."""
        return self._open_video(device_id, fallback_size, exclude=())

    def _open_video(
        self,
        device_id: str | None,
        fallback_size: tuple[int, int],
        exclude: Collection[str],
    ) -> tuple[MediaSource, str | None]:
        cameras = [
            c
            for c in QMediaDevices.videoInputs()
            if not c.isNull() and device_id_string(c.id()) not in exclude
        ]
        notice = None
        camera: QCameraDevice | None = None
        if device_id:
            camera = _find(cameras, device_id)
            if camera is None:
                notice = f"Camera “{self._name('camera', device_id)}” not found"
        if camera is None:
            default = QMediaDevices.defaultVideoInput()
            default_ok = not default.isNull() and device_id_string(default.id()) not in exclude
            camera = default if default_ok else (cameras[0] if cameras else None)
        if camera is None:
            return (
                pattern_source(*fallback_size),
                f"{notice}: sending a test pattern" if notice else NO_CAMERA,
            )
        source = CameraSource(
            camera, max_size=self.video_max_size, start_timeout=self.start_timeout
        )
        self.watch(source)
        if notice:
            notice = f"{notice}: using “{camera.description()}”"
        return source, notice

    def open_audio_input(self, device_id: str | None = None) -> tuple[MediaSource, str | None]:
        """The chosen microphone, else the default one, else silence (unstarted)."""
        return self._open_audio_input(device_id, exclude=())

    def _open_audio_input(
        self, device_id: str | None, exclude: Collection[str]
    ) -> tuple[MediaSource, str | None]:
        device, notice = self._pick_audio(
            "microphone",
            QMediaDevices.audioInputs(),
            QMediaDevices.defaultAudioInput(),
            device_id,
            exclude,
        )
        if device is None:
            return silence_source(), notice or NO_MICROPHONE
        source = MicrophoneSource(device)
        self.watch(source)
        return source, notice

    def open_audio_output(self, device_id: str | None = None) -> tuple[AudioSink, str | None]:
        """The chosen speaker, else the default one, else a sink that only counts."""
        return self._open_audio_output(device_id, exclude=())

    def _open_audio_output(
        self, device_id: str | None, exclude: Collection[str]
    ) -> tuple[AudioSink, str | None]:
        device, notice = self._pick_audio(
            "speaker",
            QMediaDevices.audioOutputs(),
            QMediaDevices.defaultAudioOutput(),
            device_id,
            exclude,
        )
        if device is None:
            return null_sink(), notice or NO_SPEAKER
        sink = SpeakerSink(device)
        self.watch(sink)
        if not sink.open():
            message = sink.failure or f"Speaker “{device.description()}” cannot be opened"
            return null_sink(), f"{message}: you will not hear the other person"
        return sink, notice

    def _pick_audio(
        self,
        kind: str,
        devices: list[QAudioDevice],
        default: QAudioDevice,
        device_id: str | None,
        exclude: Collection[str],
    ) -> tuple[QAudioDevice | None, str | None]:
        devices = [d for d in devices if not d.isNull() and device_id_string(d.id()) not in exclude]
        notice = None
        if device_id:
            found = _find(devices, device_id)
            if found is not None:
                return found, None
            notice = f"{_LABELS[kind]} “{self._name(kind, device_id)}” not found"
        default_ok = not default.isNull() and device_id_string(default.id()) not in exclude
        device = default if default_ok else (devices[0] if devices else None)
        if device is None:
            return None, f"{notice}: {_CONSEQUENCES[kind]}" if notice else None
        if notice:
            notice = f"{notice}: using “{device.description()}”"
        return device, notice

    def open_screen(self, screen_id: str | None = None) -> tuple[MediaSource, str | None]:
        """The chosen screen (else the primary one) for sharing, unstarted.

        Raises :class:`DeviceError` when there is no screen at all.
        """
        screens = _screens()
        if not screens:
            raise DeviceError("No screen to share")
        notice = None
        chosen = next((s for d, s in screens if d.id == screen_id), None) if screen_id else None
        device = next((d for d, s in screens if s is chosen), None)
        if chosen is None:
            if screen_id:
                notice = f"Screen “{screen_id}” not found: sharing the main screen"
            device, chosen = next(((d, s) for d, s in screens if d.is_default), screens[0])
        assert device is not None
        source = ScreenSource(
            chosen,
            description=f"Screen “{device.description}”",
            device_id=device.id,
            start_timeout=self.start_timeout,
        )
        self.watch(source)
        return source, notice

    def open_window(self, window_id: str) -> MediaSource:
        """The window with this id (from :meth:`windows`), unstarted.

        Raises :class:`DeviceError` if it is gone.
        """
        for device, window in _windows():
            if device.id == window_id:
                source = ScreenSource(
                    window,
                    device_id=device.id,
                    start_timeout=self.start_timeout,
                )
                self.watch(source)
                return source
        raise DeviceError("That window is no longer there")

    # Opening and starting.

    async def start_video(
        self, device_id: str | None = None, fallback_size: tuple[int, int] = (640, 480)
    ) -> tuple[MediaSource, str | None]:
        """:meth:`open_video`, started; a camera that cannot start falls back further."""
        source, notice = self.open_video(device_id, fallback_size)
        return await self._start_or_fall_back(
            source, notice, lambda exclude: self._open_video(None, fallback_size, exclude)
        )

    async def start_audio_input(
        self, device_id: str | None = None
    ) -> tuple[MediaSource, str | None]:
        """:meth:`open_audio_input`, started; a microphone that cannot start gives silence."""
        source, notice = self.open_audio_input(device_id)
        return await self._start_or_fall_back(
            source, notice, lambda exclude: self._open_audio_input(None, exclude)
        )

    async def _start_or_fall_back(
        self,
        source: MediaSource,
        notice: str | None,
        reopen: Callable[[Collection[str]], tuple[MediaSource, str | None]],
    ) -> tuple[MediaSource, str | None]:
        tried: set[str] = set()
        while True:
            try:
                await source.start()
                return source, notice
            except DeviceError as exc:
                with contextlib.suppress(Exception):
                    await source.stop()
                ident = getattr(source, "device_id", None)
                if not ident or ident in tried:
                    raise
                tried.add(ident)
                # The next candidate: the default or another device not tried yet.
                source, _ = reopen(tried)
                notice = f"{exc}: {self._consequence(source)}"

    @staticmethod
    def _consequence(source: MediaSource) -> str:
        if isinstance(source, TrackSource):
            return _CONSEQUENCES["camera" if source.kind == "video" else "microphone"]
        return f"using {source.describe()}"

    # Fallback during a call.

    async def switch_to_fallback(
        self,
        track: SwitchableTrack,
        lost: MediaSource | None = None,
        *,
        fallback_size: tuple[int, int] | None = None,
    ) -> tuple[MediaSource, str]:
        """Feed ``track`` from the next best source after ``lost``; stop ``lost``.

        Video: the default camera (or another one) if it is not the lost device, else
        the test pattern at ``fallback_size`` (default 640x480). Audio: the
        default (or another) microphone, else silence. The new source is started before
        the switch; the peer sees no renegotiation. Returns ``(source, notice)``.
        """
        lost_id = getattr(lost, "device_id", None) if lost is not None else None
        exclude = {lost_id} if lost_id else set()
        size = fallback_size or (640, 480)
        if track.kind == "video":
            source, _ = self._open_video(None, size, exclude)
        else:
            source, _ = self._open_audio_input(None, exclude)
        try:
            await source.start()
        except DeviceError:
            with contextlib.suppress(Exception):
                await source.stop()
            source = pattern_source(*size) if track.kind == "video" else silence_source()
            await source.start()
        consequence = self._consequence(source)
        reason = getattr(lost, "failure", None) if lost is not None else None
        if not reason:
            reason = f"{lost.describe()} is gone" if lost is not None else None
        if reason:
            notice = f"{reason}: {consequence}"
        elif isinstance(source, TrackSource):
            notice = NO_CAMERA if track.kind == "video" else NO_MICROPHONE
        else:
            notice = f"Using {source.describe()}"
        track.set_source(source.track)
        if lost is not None:
            with contextlib.suppress(Exception):
                await lost.stop()
        logger.info("%s", notice)
        return source, notice

    def keep_fed(
        self,
        track: SwitchableTrack,
        source: MediaSource,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        """Switch ``track`` to a fallback by itself whenever ``source`` fails.

        The same holds for each fallback after it (a test pattern never fails). Each
        switch's notice goes to ``on_notice``. Nothing happens if ``track`` was given
        another source meanwhile. Needs the qasync loop running (the switch is a task).
        """
        failed = getattr(source, "failed", None)
        if failed is None:
            return
        track_ref, source_ref = weakref.ref(track), weakref.ref(source)

        def on_failed(_message: str) -> None:
            lost, fed = source_ref(), track_ref()
            if lost is None or fed is None or fed.readyState != "live":
                return
            if fed.source is not lost.track:
                return
            task = asyncio.ensure_future(self._refeed(fed, lost, on_notice))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        failed.connect(on_failed)

    async def _refeed(
        self,
        track: SwitchableTrack,
        lost: MediaSource,
        on_notice: Callable[[str], None] | None,
    ) -> None:
        try:
            source, notice = await self.switch_to_fallback(track, lost)
        except Exception:
            logger.exception("switching %s to a fallback failed", track.kind)
            return
        self.keep_fed(track, source, on_notice)
        if on_notice is not None:
            on_notice(notice)

    def switch_output_to_fallback(
        self, sink: SwitchableAudioSink, lost: AudioSink | None = None
    ) -> tuple[AudioSink, str]:
        """Play through the default (or another) speaker after ``lost``, else nowhere."""
        lost_id = getattr(lost, "device_id", None) if lost is not None else None
        new, _ = self._open_audio_output(None, {lost_id} if lost_id else set())
        previous = sink.set_sink(new)
        lost = lost or previous
        for old in {id(lost): lost, id(previous): previous}.values():
            with contextlib.suppress(Exception):
                old.close()
        reason = getattr(lost, "failure", None)
        describe = getattr(lost, "describe", None)
        if not reason and callable(describe):
            reason = f"{describe()} is gone"
        consequence = (
            _CONSEQUENCES["speaker"]
            if isinstance(new, CountingAudioSink)
            else f"using {new.describe()}"  # type: ignore[attr-defined]
        )
        notice = f"{reason}: {consequence}" if reason else NO_SPEAKER
        logger.info("%s", notice)
        return new, notice
