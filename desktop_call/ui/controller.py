"""The call's view-model: one object between the call window and the engine.

It owns the :class:`~desktop_call.call.session.CallSession`, the local media
(switchable tracks fed by devices or the test pattern) and the receivers, and
speaks Qt: engine events become signals, window intents become method calls.
Runs on the qasync loop (the Qt main thread); the only work done elsewhere is
turning decoded frames into QImages, on a worker thread, newest frame only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaRelay
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QGuiApplication, QImage

from desktop_call.call.ice import IceConfig
from desktop_call.call.session import (
    CallOptions,
    CallSession,
    ChatMessage,
    RemoteControl,
    RemoteTrack,
    SasReady,
    SessionEvent,
)
from desktop_call.call.state import CallInput, CallState, StateChange
from desktop_call.call.stats import StatsSummary
from desktop_call.media.sinks import (
    AudioReceiver,
    AudioSink,
    CountingAudioSink,
    LatestFrameReceiver,
)
from desktop_call.media.switchable import SwitchableTrack

__all__ = ["CallController", "CallSetup", "frame_to_qimage"]

log = logging.getLogger("desktop_call.ui.controller")

LOCAL_PREVIEW_FPS = 15  # the self view is small: half the frames are plenty


def fitted_size(width: int, height: int, box_width: int, box_height: int) -> tuple[int, int]:
    """The largest even size with the frame's aspect that fits in the box."""
    scale = min(box_width / width, box_height / height)
    return max(2, int(width * scale) & ~1), max(2, int(height * scale) & ~1)


def frame_to_qimage(frame: av.VideoFrame, box: tuple[int, int, float] | None = None) -> QImage:
    """A decoded frame as a QImage that owns its pixels (safe on any thread).

    With a ``box`` (device pixels and ratio of the view that shows it), the frame is
    scaled by swscale to exactly the size it will be painted at, as 32-bit BGRX, the
    raster engine's own format: painting is then a plain copy, with no conversion and
    no smooth scaling on the main thread.
    """
    if box is None:
        width, height, ratio = frame.width, frame.height, 1.0
    else:
        width, height = fitted_size(frame.width, frame.height, box[0], box[1])
        ratio = box[2]
    plane = frame.reformat(width=width, height=height, format="bgra").planes[0]
    image = QImage(memoryview(plane), width, height, plane.line_size, QImage.Format.Format_RGB32)
    image = image.copy()  # own the pixels: the plane goes away with this function
    image.setDevicePixelRatio(ratio)
    return image


@dataclass
class CallSetup:
    """Everything a call needs that the app decides before it starts."""

    room_url: str
    call_link: str
    call_id: str
    name: str
    token: str | None = None
    ice: IceConfig | None = None
    video_codec: str | None = None
    #: Local media: the engine sends these; sources behind them can change mid-call.
    video: SwitchableTrack | None = None
    audio: MediaStreamTrack | None = None  # a SwitchableTrack, maybe behind processing
    speaker: AudioSink | None = None
    #: Plain-language notices about devices (no camera, no microphone…).
    notices: tuple[str, ...] = ()
    #: Switch the video source to the screen (True) or back to the camera (False).
    screen_share: Callable[[bool], str | None] | None = None
    #: Called when the call has fully ended (devices released by their owner).
    on_closed: Callable[[], None] | None = None
    #: A resume token an earlier, crashed run saved for this room (ui/rejoin.py), and
    #: where each new one goes.
    resume: str | None = None
    on_resume_token: Callable[[str], None] | None = None


class CallController(QObject):
    state_changed = Signal(str, str)
    remote_frame = Signal(QImage)
    local_frame = Signal(QImage)
    stats_changed = Signal(dict)
    sas_changed = Signal(str)
    chat_received = Signal(str, str, float)
    remote_media_changed = Signal(bool, bool)
    peer_name_changed = Signal(str)
    notice = Signal(str)
    ended = Signal()
    retry_requested = Signal()

    def __init__(self, setup: CallSetup, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setup = setup
        self.video = setup.video or SwitchableTrack("video", None)
        self.audio = setup.audio or SwitchableTrack("audio", None)
        self.speaker: AudioSink = setup.speaker or CountingAudioSink()
        self._relay = MediaRelay()
        self._preview_track = self._relay.subscribe(self.video, buffered=False)
        session_video = self._relay.subscribe(self.video, buffered=False)
        self.session = CallSession(
            CallOptions(
                setup.room_url,
                setup.name,
                setup.token,
                ice=setup.ice or IceConfig(),
                video_codec=setup.video_codec,
                resume=setup.resume,
                on_resume_token=setup.on_resume_token,
            ),
            video=session_video,
            audio=self.audio,
        )
        self.session.subscribe(self._on_event)
        self._video_receivers: list[LatestFrameReceiver] = []
        self._audio_receivers: list[AudioReceiver] = []
        self._preview: LatestFrameReceiver | None = None
        self._hang_up_task: asyncio.Task[None] | None = None
        self._boxes: dict[str, tuple[int, int, float] | None] = {"remote": None, "local": None}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.remote_name = ""
        self.screen_sharing = False
        self.started_at = time.monotonic()
        self.connected_at: float | None = None
        self.first_remote_frame_at: float | None = None
        self.last_stats: StatsSummary | None = None

    # ----------------------------------------------------------------- properties

    @property
    def call_link(self) -> str:
        return self.setup.call_link

    @property
    def call_id(self) -> str:
        return self.setup.call_id

    @property
    def local_name(self) -> str:
        return self.setup.name

    @property
    def state(self) -> CallState:
        return self.session.state

    @property
    def video_receivers(self) -> list[LatestFrameReceiver]:
        return list(self._video_receivers)

    @property
    def audio_receivers(self) -> list[AudioReceiver]:
        return list(self._audio_receivers)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        for text in self.setup.notices:
            self.notice.emit(text)
        self._preview = LatestFrameReceiver(
            self._preview_track, on_frame=self._convert_and_emit(self.local_frame)
        )
        self._preview.start()
        await self.session.start()

    def hang_up(self) -> None:
        """Start hanging up; ``ended`` follows once everything is closed."""
        if self._hang_up_task is None:
            self._hang_up_task = asyncio.ensure_future(self._hang_up())

    async def wait_closed(self) -> None:
        self.hang_up()
        assert self._hang_up_task is not None
        await asyncio.shield(self._hang_up_task)

    async def _hang_up(self) -> None:
        try:
            await self.session.hang_up()
        finally:
            await self._close_media()
            self.ended.emit()

    async def _close_media(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        receivers: list[Any] = [*self._video_receivers, *self._audio_receivers]
        if self._preview is not None:
            receivers.append(self._preview)
        for receiver in receivers:
            with contextlib.suppress(Exception):
                await receiver.close()
        self._preview_track.stop()
        for track in (self.video, self.audio):
            track.stop()
        with contextlib.suppress(Exception):
            self.speaker.close()
        if self.setup.on_closed is not None:
            self.setup.on_closed()

    def retry(self) -> None:
        """After a failure: ask the app to start the same call again (``retry_requested``)."""
        self.notice.emit("Starting the call again…")
        self.retry_requested.emit()

    # ---------------------------------------------------------------- user intents

    def set_microphone_muted(self, muted: bool) -> None:
        self.session.set_microphone_muted(muted)

    def set_camera_enabled(self, enabled: bool) -> None:
        self.session.set_camera_enabled(enabled)

    def set_screen_share(self, sharing: bool) -> None:
        if self.setup.screen_share is None:
            self.notice.emit("Screen sharing is not available here.")
            return
        problem = self.setup.screen_share(sharing)
        if problem:
            self.notice.emit(problem)
            return
        self.screen_sharing = sharing

    def send_chat(self, text: str) -> None:
        try:
            self.session.send_chat(text)
        except ValueError as exc:
            self.notice.emit(str(exc))

    def copy_link(self) -> str:
        clipboard = QGuiApplication.clipboard()
        if clipboard is not None:
            clipboard.setText(self.call_link)
        return self.call_link

    # -------------------------------------------------------------- engine events

    def _on_event(self, event: SessionEvent) -> None:
        if isinstance(event, StateChange):
            if event.new is CallState.CONNECTED and self.connected_at is None:
                self.connected_at = time.monotonic()
            reason = event.reason
            if event.cause is CallInput.PEER_JOINED and event.reason:
                self._set_remote_name(event.reason)
                reason = ""
            self.state_changed.emit(str(event.new), reason)
        elif isinstance(event, RemoteTrack):
            self._set_remote_name(self.session.peer_name(event.peer_id))
            self._attach(event.track)
        elif isinstance(event, SasReady):
            self.sas_changed.emit(event.code)
        elif isinstance(event, ChatMessage):
            sender = self.session.peer_name(event.peer_id) or "Them"
            self.chat_received.emit(sender, event.text, float(event.sent_at))
        elif isinstance(event, RemoteControl):
            if event.hung_up:
                self.notice.emit(f"{self.remote_name or 'The other person'} hung up.")
            elif event.muted is not None or event.camera is not None:
                self.remote_media_changed.emit(bool(event.muted), event.camera is not False)
        elif isinstance(event, StatsSummary):
            self.last_stats = event
            self.stats_changed.emit(self._stats_dict(event))

    def _set_remote_name(self, name: str) -> None:
        if name and name != self.remote_name:
            self.remote_name = name
            self.peer_name_changed.emit(name)

    def _attach(self, track: MediaStreamTrack) -> None:
        if self._closed:
            return
        if track.kind == "video":
            receiver = LatestFrameReceiver(
                track, on_frame=self._convert_and_emit(self.remote_frame, remote=True)
            )
            self._video_receivers.append(receiver)
            receiver.start()
        else:
            audio = AudioReceiver(track, self.speaker)
            self._audio_receivers.append(audio)
            audio.start()

    def set_view_box(self, view: str, width: int, height: int, ratio: float) -> None:
        """The window's video views report their size (device pixels) on resize."""
        self._boxes[view] = (width, height, ratio) if width > 1 and height > 1 else None

    def _convert_and_emit(
        self, signal: Any, *, remote: bool = False
    ) -> Callable[[av.VideoFrame], Any]:
        loop = asyncio.get_running_loop()
        view = "remote" if remote else "local"
        min_interval = 0.0 if remote else 1 / LOCAL_PREVIEW_FPS
        last = 0.0

        async def deliver(frame: av.VideoFrame) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last < min_interval:
                return  # the small self view needs no more than LOCAL_PREVIEW_FPS
            last = now
            # Conversion takes milliseconds at 720p: a worker thread does it, and
            # frames arriving meanwhile are dropped by the receiver (newest only).
            box = self._boxes.get(view)
            image = await loop.run_in_executor(None, frame_to_qimage, frame, box)
            if self._closed:
                return
            if remote and self.first_remote_frame_at is None:
                self.first_remote_frame_at = time.monotonic()
            signal.emit(image)

        return deliver

    def _stats_dict(self, stats: StatsSummary) -> dict[str, Any]:
        newest = next(
            (r.latest for r in reversed(self._video_receivers) if r.latest is not None), None
        )
        return {
            "rtt_ms": stats.rtt_ms,
            "loss": stats.loss,
            "bitrate_in_kbps": stats.bitrate_in_kbps,
            "bitrate_out_kbps": stats.bitrate_out_kbps,
            "resolution": f"{newest.width}x{newest.height}" if newest is not None else None,
            "candidate_type": stats.candidate_type,
            "codec": stats.video_codec,
            "quality": stats.quality,
        }
