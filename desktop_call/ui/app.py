"""The windowed application: home window, calls, settings, the embedded server.

``desktop-call`` opens the home window; ``desktop-call --join ID_OR_LINK`` opens the
call window straight away (for links and tests) and, with ``--duration``, hangs up
after that many seconds and writes a report. Everything runs on one qasync loop on
the Qt main thread; nothing here blocks it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import sys
import time
from dataclasses import replace
from typing import Any

from PySide6.QtCore import QEvent, QObject, QSettings, Qt
from PySide6.QtWidgets import QApplication

from desktop_call import APP_NAME, __version__
from desktop_call.call.state import CallState
from desktop_call.media.sinks import CountingAudioSink
from desktop_call.media.sources import TestPatternTrack, ToneTrack
from desktop_call.media.switchable import SwitchableTrack
from desktop_call.report import CallRecord, call_report, write_report
from desktop_call.signaling.ids import (
    CallTarget,
    InvalidCallTarget,
    make_call_link,
    new_call_id,
    parse_call_target,
    parse_server_url,
)

from . import instances, rejoin
from .call_window import CallWindow
from .controller import CallController, CallSetup
from .home import HomeWindow
from .runtime import EmbeddedServer, install_excepthook, run_qt, setup_logging
from .settings import Settings, load_settings, save_settings
from .settings_dialog import SettingsDialog
from .theme import app_icon

__all__ = ["main"]

log = logging.getLogger("desktop_call.ui.app")

CONNECT_TIMEOUT = 60.0  # seconds a call opened with --join may take to connect


class LagMonitor:
    """How late the event loop runs a 10 ms timer: the UI's responsiveness, measured."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            planned = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, loop.time() - planned))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def summary(self) -> dict[str, float | int | None]:
        if not self.samples:
            return {"p50": None, "p99": None, "max": None, "samples": 0}
        ordered = sorted(self.samples)
        return {
            "p50": round(statistics.median(ordered) * 1000, 2),
            "p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 2),
            "max": round(ordered[-1] * 1000, 2),
            "samples": len(ordered),
        }


class DesktopCallApp(QObject):
    """Owns the settings, the embedded server, the windows and the call in progress."""

    def __init__(self, qapp: QApplication, store: QSettings, args: argparse.Namespace) -> None:
        super().__init__()
        self.qapp = qapp
        # The app decides when to quit: hiding the home window for a call, or a call
        # window closing, must not end the loop (Qt quits on the last window by default).
        qapp.setQuitOnLastWindowClosed(False)
        self.store = store
        self.args = args
        self.settings: Settings = load_settings(store)
        self.embedded: EmbeddedServer | None = None
        self.devices: Any = None  # DeviceManager, when QtMultimedia is usable
        self.devices_problem: str | None = None
        self.home: HomeWindow | None = None
        self.window: CallWindow | None = None
        self.controller: CallController | None = None
        self.record: CallRecord | None = None
        self.lag = LagMonitor()
        self._sources: list[Any] = []  # device sources of the call in progress
        self._live: dict[str, Any] = {}  # the call's switchable tracks and speaker
        self._done = asyncio.Event()
        self._call_closed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.links: instances.LinkListener | None = None
        #: A dcall:// link handed to us before the home window was up (macOS sends the
        #: clicked link as an event, maybe before the loop runs; elsewhere, argv).
        self._pending_link: str | None = getattr(args, "link", None)
        qapp.installEventFilter(self)

    # -------------------------------------------------------------------- running

    async def run(self) -> int:
        self._open_devices()
        await self._host_if_embedded()
        self.lag.start()
        try:
            if self.args.join:
                return await self._run_direct(self.args.join)
            self._show_home()
            self._listen_for_links()
            if self._pending_link is not None:
                link, self._pending_link = self._pending_link, None
                self.open_link(link)
            self.qapp.lastWindowClosed.connect(self._done.set)
            await self._done.wait()
            if self.controller is not None:
                await self.controller.wait_closed()
            return 0
        finally:
            if self.links is not None:
                self.links.close()
            await self.lag.stop()
            if self.embedded is not None:
                await self.embedded.close()

    def _open_devices(self) -> None:
        if self.args.source == "testpattern":
            return
        try:  # QtMultimedia needs system libraries (libpulse…); calls work without it
            from desktop_call.media.qt_devices import DeviceManager
        except ImportError as exc:
            self.devices_problem = f"Cameras and microphones are unavailable ({exc})."
            log.warning("%s", self.devices_problem)
            return
        self.devices = DeviceManager(self)
        self.devices.device_lost.connect(self._on_device_lost)

    def _on_device_lost(self, kind: str, _description: str) -> None:
        """Cameras and microphones are re-fed by keep_fed; the speaker is switched here."""
        if kind == "speaker" and "speaker" in self._live:
            _, notice = self.devices.switch_output_to_fallback(self._live["speaker"])
            self._notify_call(notice)

    async def _host_if_embedded(self) -> None:
        if self.settings.server_mode != "embedded":
            return
        port = self.args.port if self.args.port is not None else self.settings.embedded_port
        host = self.args.host or self.settings.embedded_host
        self.embedded = EmbeddedServer(host, port)
        await self.embedded.start()
        if self.embedded.error:
            log.warning("%s", self.embedded.error)

    def _default_server_url(self) -> str | None:
        if self.args.server:
            return parse_server_url(self.args.server)
        if self.settings.server_mode == "remote":
            return parse_server_url(self.settings.remote_server_url)
        return self.embedded.url if self.embedded else None

    def _link_server_url(self) -> str | None:
        if self.args.server or self.settings.server_mode == "remote":
            return self._default_server_url()
        return self.embedded.link_url if self.embedded else None

    # ----------------------------------------------------------------- home window

    def _show_home(self) -> None:
        home = self.home = HomeWindow()
        home.setWindowIcon(app_icon())
        home.set_settings(self.settings)
        if self.embedded is not None:
            home.set_hosting(self.embedded.link_url, self.embedded.error)
        problems = [*self.settings.problems]
        if self.devices_problem:
            problems.append(self.devices_problem)
        if problems:
            home.show_error(" ".join(problems))
        home.new_call_requested.connect(self._new_call)
        home.join_requested.connect(self._join_from_home)
        home.settings_requested.connect(self._open_settings)
        home.display_name_changed.connect(self._rename)
        home.show()

    def _new_call(self) -> None:
        assert self.home is not None
        server = self._link_server_url()
        if server is None:
            self.home.show_error(
                "There is no room server: this computer could not host one "
                "(see Settings to choose another port or a server)."
            )
            return
        call_id = new_call_id()
        self.home.show_new_call(make_call_link(server, call_id), call_id)

    def _listen_for_links(self) -> None:
        """Links clicked while this app runs come here (ui/instances.py)."""
        listener = instances.LinkListener(
            instances.channel_name(getattr(self.args, "settings_file", None)), self
        )
        if listener.listen():
            listener.link_received.connect(self._link_from_elsewhere)
            self.links = listener

    def _link_from_elsewhere(self, link: str) -> None:
        front = self.window if self.window is not None else self.home
        if front is not None:
            front.show()
            front.raise_()
            front.activateWindow()
        self.open_link(link)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """macOS hands a clicked dcall:// link to the running app as a FileOpen event."""
        if event.type() == QEvent.Type.FileOpen and watched is self.qapp:
            url = event.url().toString()  # type: ignore[attr-defined]
            if url:
                if self.home is None or self.args.join:
                    self._pending_link = url
                else:
                    self.open_link(url)
                return True
        return super().eventFilter(watched, event)

    def open_link(self, text: str) -> None:
        """Join the call a clicked link names, from the home window; a bad link says why
        there, and a call in progress is left alone (the call window says so)."""
        if self.window is not None:
            self._notify_call("Hang up first to join the call of the link you opened.")
            return
        try:
            target = parse_call_target(text)
        except InvalidCallTarget as exc:
            if self.home is not None:
                self.home.show()
                self.home.show_error(f"The link you opened is not a call: {exc}")
            return
        self._join_from_home(target)

    def _join_from_home(self, target: CallTarget) -> None:
        self._spawn(self._start_call(target))  # errors reach the home window (_task_done)

    def _rename(self, name: str) -> None:
        self._update_settings(replace(self.settings, display_name=name))

    def _update_settings(self, settings: Settings) -> None:
        self.settings = replace(settings.validated(), problems=())
        save_settings(self.store, self.settings)
        if self.home is not None:
            self.home.set_settings(self.settings)

    def _open_settings(self) -> None:
        devices = self.devices
        dialog = SettingsDialog(
            self.settings,
            cameras=[(d.id, d.description) for d in devices.cameras()] if devices else (),
            microphones=[(d.id, d.description) for d in devices.microphones()] if devices else (),
            speakers=[(d.id, d.description) for d in devices.speakers()] if devices else (),
            embedded_url=self.embedded.url if self.embedded else None,
            parent=self.home,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def finished(result: int) -> None:
            if result == SettingsDialog.DialogCode.Accepted:
                self._update_settings(dialog.result_settings())
                if self.home is not None:
                    self.home.show_error(
                        "Saved. A new server setting takes effect the next time the app starts."
                    )

        dialog.finished.connect(finished)
        dialog.open()  # not exec(): no nested event loop under qasync

    # ------------------------------------------------------------------------ calls

    async def _start_call(self, target: CallTarget) -> CallController:
        if self.controller is not None:
            raise ValueError("A call is already in progress.")
        server = target.server_url or self._default_server_url()
        if server is None:
            raise ValueError("There is no room server to join the call on.")
        link = make_call_link(
            target.server_url or self._link_server_url() or server, target.call_id
        )
        self._update_settings(self.settings.with_recent(link))
        room_url = target.room_url(server)
        store = self.store
        setup = await self._media_setup(
            CallSetup(
                room_url=room_url,
                call_link=link,
                call_id=target.call_id,
                name=self.args.name or self.settings.display_name,
                token=self.args.token or self.settings.server_token or None,
                ice=self.settings.ice_config(),
                video_codec=None
                if self.settings.video_codec == "auto"
                else self.settings.video_codec,
                resume=rejoin.recall(store, room_url),
                on_resume_token=lambda token: rejoin.remember(store, room_url, token),
            )
        )
        controller = self.controller = CallController(setup)
        record = self.record = CallRecord()
        controller.state_changed.connect(lambda state, reason: self._on_state(record, state))
        controller.stats_changed.connect(lambda _stats: self._on_stats(record, controller))
        window = self.window = CallWindow(controller)
        window.setWindowIcon(app_icon())
        window.closed.connect(lambda: rejoin.forget(store, room_url))  # hung up: no ghost
        window.closed.connect(self._on_call_window_closed)
        window.devices_requested.connect(self._choose_devices)
        controller.retry_requested.connect(lambda: self._retry(target))
        if self.home is not None:
            self.home.hide()
        window.show()
        self._call_closed.clear()
        await controller.start()
        return controller

    def _on_state(self, record: CallRecord, state: str) -> None:
        record.states.append(state)
        if state == "connected" and record.connected is None:
            record.connected = time.monotonic()

    def _on_stats(self, record: CallRecord, controller: CallController) -> None:
        record.last_stats = controller.last_stats
        if record.first_frame is None and controller.first_remote_frame_at is not None:
            record.first_frame = controller.first_remote_frame_at

    async def _media_setup(self, setup: CallSetup) -> CallSetup:
        width, height = (int(x) for x in self.settings.resolution.split("x"))
        notices: list[str] = []
        if self.devices is None:
            if self.args.source != "testpattern":
                notices.append(self.devices_problem or "No camera: sending a test pattern.")
            video = SwitchableTrack("video", TestPatternTrack(width, height, 30))
            audio = SwitchableTrack("audio", ToneTrack(440.0))
            return replace(
                setup, video=video, audio=audio, speaker=CountingAudioSink(), notices=tuple(notices)
            )
        devices = self.devices
        camera, notice = await devices.start_video(self.settings.camera_id, (width, height))
        notices += [notice] if notice else []
        microphone, notice = await devices.start_audio_input(self.settings.microphone_id)
        notices += [notice] if notice else []
        speaker, notice = devices.open_audio_output(self.settings.speaker_id)
        notices += [notice] if notice else []
        self._sources = [camera, microphone]
        video = SwitchableTrack("video", camera.track, off_size=(width, height))
        audio = SwitchableTrack("audio", microphone.track)
        on_notice = self._notify_call
        devices.keep_fed(video, camera, on_notice)
        devices.keep_fed(audio, microphone, on_notice)
        from desktop_call.media.audio_processing import (
            AudioProcessor,
            EchoReferenceSink,
            ProcessedAudioTrack,
        )
        from desktop_call.media.qt_playback import SwitchableAudioSink

        speaker = SwitchableAudioSink(speaker)  # the speaker can change mid-call
        # Echo cancellation, noise suppression, high-pass and gain between the devices
        # and the call: the speaker side feeds the canceller what it plays.
        processor = AudioProcessor(enabled=self.settings.echo_cancellation)
        if processor.problem:
            notices.append("Echo cancellation is unavailable: use headphones.")
        self._live = {
            "video": video,
            "audio": audio,
            "speaker": speaker,
            "processor": processor,
            "size": (width, height),
        }
        return replace(
            setup,
            video=video,
            audio=ProcessedAudioTrack(audio, processor),  # keep_fed still feeds `audio`
            speaker=EchoReferenceSink(speaker, processor),
            notices=tuple(notices),
            screen_share=lambda on: self._screen_share(video, camera, on),
            on_closed=self._release_sources,
        )

    def _retry(self, target: CallTarget) -> None:
        """The failed call's Retry: close it, then start the same call afresh."""

        async def again() -> None:
            window = self.window
            if window is not None:
                self._call_closed.clear()
                window.close()
                await self._call_closed.wait()
            await self._start_call(target)

        self._spawn(again())

    def _choose_devices(self) -> None:
        """The Devices button: pick camera, microphone and speaker; switch without
        renegotiating (the call's tracks stay, their sources change)."""
        if self.devices is None or self.window is None:
            self._notify_call(self.devices_problem or "No devices to choose from here.")
            return
        devices = self.devices
        dialog = SettingsDialog(
            self.settings,
            cameras=[(d.id, d.description) for d in devices.cameras()],
            microphones=[(d.id, d.description) for d in devices.microphones()],
            speakers=[(d.id, d.description) for d in devices.speakers()],
            parent=self.window,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def finished(result: int) -> None:
            if result != SettingsDialog.DialogCode.Accepted:
                return
            old, new = self.settings, dialog.result_settings()
            self._update_settings(new)
            self._spawn(self._switch_devices(old, new))

        dialog.finished.connect(finished)
        dialog.open()

    async def _switch_devices(self, old: Settings, new: Settings) -> None:
        live = self._live
        if not live or self.devices is None:
            return
        devices = self.devices
        if new.camera_id != old.camera_id:
            camera, notice = await devices.start_video(new.camera_id, live["size"])
            live["video"].set_source(camera.track)
            devices.keep_fed(live["video"], camera, self._notify_call)
            self._replace_source(0, camera)
            self._notify_call(notice or f"Camera: {camera.describe()}")
        if new.microphone_id != old.microphone_id:
            microphone, notice = await devices.start_audio_input(new.microphone_id)
            live["audio"].set_source(microphone.track)
            devices.keep_fed(live["audio"], microphone, self._notify_call)
            self._replace_source(1, microphone)
            self._notify_call(notice or f"Microphone: {microphone.describe()}")
        if new.speaker_id != old.speaker_id:
            speaker, notice = devices.open_audio_output(new.speaker_id)
            previous = live["speaker"].set_sink(speaker)
            previous.close()
            self._notify_call(notice or "Speaker changed.")
        if new.echo_cancellation != old.echo_cancellation and "processor" in live:
            live["processor"].enabled = new.echo_cancellation

    def _replace_source(self, index: int, source: Any) -> None:
        previous, self._sources[index] = self._sources[index], source
        self._spawn(previous.stop())

    def _notify_call(self, text: str) -> None:
        if self.controller is not None:
            self.controller.notice.emit(text)

    def _screen_share(self, video: SwitchableTrack, camera: Any, sharing: bool) -> str | None:
        if not sharing:
            video.set_source(camera.track)
            for source in self._sources[2:]:
                self._spawn(source.stop())
            del self._sources[2:]
            return None
        screen, notice = self.devices.open_screen(None)

        async def share() -> None:
            await screen.start()
            video.set_source(screen.track)

        self._sources.append(screen)
        self._spawn(share())
        return notice

    def _release_sources(self) -> None:
        processor = self._live.get("processor")
        if processor is not None:
            processor.close()
        self._live = {}
        sources, self._sources = self._sources, []
        for source in sources:
            self._spawn(source.stop())

    def _on_call_window_closed(self) -> None:
        self.window = None
        self.controller = None
        self._call_closed.set()
        if self.home is not None:
            self.home.show()

    # ---------------------------------------------------------- straight into a call

    async def _run_direct(self, text: str) -> int:
        try:
            target = parse_call_target(text)
            controller = await self._start_call(target)
        except (InvalidCallTarget, ValueError) as exc:
            print(f"{APP_NAME}: {exc}", file=sys.stderr)
            return 64
        window = self.window
        assert window is not None
        # Like the headless mode: --duration counts from the moment the call connected.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await controller.session.wait_for(lambda s: s is CallState.CONNECTED)
        connected_at = time.monotonic()
        if controller.state is CallState.CONNECTED:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.args.duration):
                    await self._call_closed.wait()
        painted = window.remote_view.frames_painted
        painted_fps = painted / max(1e-3, time.monotonic() - connected_at)
        if not self._call_closed.is_set():
            window.close()  # hangs up; closes once the call has ended
            await self._call_closed.wait()
        record = self.record or CallRecord()
        speaker = controller.speaker
        report = call_report(
            controller.session,
            record,
            controller.video_receivers,
            controller.audio_receivers,
            speaker if isinstance(speaker, CountingAudioSink) else None,
            name=controller.local_name,
            source=self.args.source or "devices",
            frames_painted=painted,
            painted_fps=round(painted_fps, 2),
            event_loop_lag_ms=self.lag.summary(),
            app_version=__version__,
        )
        write_report(report, self.args.report)
        if not report["connected"]:
            print(
                f"{APP_NAME}: the call did not connect ({report['final_state']})", file=sys.stderr
            )
            return 2
        if painted == 0:
            print(f"{APP_NAME}: no remote video frame was painted", file=sys.stderr)
            return 1
        return 0

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        log.error("task failed", exc_info=error)
        message = (
            str(error)
            if isinstance(error, ValueError | InvalidCallTarget)
            else (f"Something went wrong: {error}")
        )
        if self.home is not None and self.controller is None:
            self.home.show()
            self.home.show_error(message)
        elif self.controller is not None:
            self.controller.notice.emit(message)


def main(args: argparse.Namespace) -> int:
    """Run the windowed app with parsed arguments; returns the exit status."""
    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(qapp, QApplication)
    qapp.setApplicationName(APP_NAME)
    qapp.setOrganizationName(APP_NAME)
    qapp.setApplicationVersion(__version__)
    qapp.setWindowIcon(app_icon())
    log_path = setup_logging(args.log_level)
    install_excepthook()
    log.info("%s %s starting; log file %s", APP_NAME, __version__, log_path)
    store = (
        QSettings(args.settings_file, QSettings.Format.IniFormat)
        if args.settings_file
        else (QSettings())
    )
    channel = instances.channel_name(args.settings_file)
    if getattr(args, "link", None) and instances.hand_over(channel, args.link):
        log.info("handed the link to the app that is already running")
        return 0
    app = DesktopCallApp(qapp, store, args)
    return run_qt(qapp, app.run())
