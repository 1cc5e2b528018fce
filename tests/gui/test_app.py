"""The whole windowed app in-process: New call, Enter call, someone joins, hang up."""

from __future__ import annotations

import argparse
import asyncio
import sys

from PySide6.QtCore import QSettings
from PySide6.QtGui import QGuiApplication

from desktop_call.call.ice import IceConfig
from desktop_call.call.session import CallOptions, CallSession
from desktop_call.call.state import CallState
from desktop_call.media.sources import TestPatternTrack, ToneTrack
from desktop_call.signaling.ids import make_call_link, parse_call_target
from desktop_call.ui.app import DesktopCallApp
from desktop_call.ui.runtime import run_qt
from desktop_call.ui.settings import Settings, save_settings


def app_args(**overrides) -> argparse.Namespace:
    values = dict(
        join=None,
        server=None,
        token=None,
        name=None,
        source="testpattern",
        duration=None,
        report=None,
        host="127.0.0.1",
        port=0,
        settings_file=None,
        log_level="warning",
    )
    values.update(overrides)
    return argparse.Namespace(**values)


async def until(condition, timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - Qt widgets expose no awaitable state
            await asyncio.sleep(0.02)


def test_new_call_enter_someone_joins_hang_up_and_home_returns(qapp, tmp_path):
    store = QSettings(str(tmp_path / "app.ini"), QSettings.Format.IniFormat)
    save_settings(store, Settings(display_name="Ana", ice_servers="none"))

    async def scenario() -> dict:
        app = DesktopCallApp(qapp, store, app_args())
        running = asyncio.ensure_future(app.run())
        await until(lambda: app.home is not None and app.home.isVisible())
        home = app.home

        home.new_call_button.click()
        link = home.new_call_link
        assert link and link.startswith("dcall://127.0.0.1:")
        assert QGuiApplication.clipboard().text() == link
        home.enter_call_button.click()
        await until(lambda: app.window is not None and app.window.isVisible())
        window, controller = app.window, app.controller
        assert not home.isVisible()
        await controller.session.wait_for(lambda s: s is CallState.WAITING)

        # Someone joins with the link, through the app's own room server.
        target = parse_call_target(link)
        guest = CallSession(
            CallOptions(target.room_url("ws://unused:1"), "Bo", ice=IceConfig(servers=())),
            video=TestPatternTrack(320, 240, 15),
            audio=ToneTrack(),
        )
        async with guest:
            async with asyncio.timeout(15):
                await controller.session.wait_for(lambda s: s is CallState.CONNECTED)
            await until(lambda: window.remote_view.frames_painted > 3)
            status = window.status.text() if hasattr(window, "status") else ""
            window.close()  # the window's close button: hang up, then close
            await until(lambda: app.window is None)
            seen = {
                "status": status,
                "painted": window.remote_view.frames_painted,
                "home_back": home.isVisible(),
                "recent": [r.link for r in app.settings.recent_calls],
                "guest_state": guest.state,
            }
        home.close()
        assert await asyncio.wait_for(running, 10) == 0
        return seen

    seen = run_qt(qapp, scenario())
    assert seen["painted"] > 3
    assert seen["home_back"]
    assert seen["recent"] and seen["recent"][0].startswith("dcall://127.0.0.1:")
    assert seen["guest_state"] is CallState.WAITING  # the guest saw Ana leave


def test_joining_with_a_link_to_nowhere_fails_with_a_reason(qapp, tmp_path):
    store = QSettings(str(tmp_path / "app.ini"), QSettings.Format.IniFormat)
    save_settings(store, Settings(display_name="Ana", ice_servers="none"))

    async def scenario() -> str:
        app = DesktopCallApp(qapp, store, app_args())
        running = asyncio.ensure_future(app.run())
        await until(lambda: app.home is not None and app.home.isVisible())
        app.home.join_edit.setText("  NOT a call id!! ")
        app.home.join_edit.returnPressed.emit()
        await asyncio.sleep(0)
        message = app.home.error_label.text() if app.window is None else "a window opened"
        joined = app.window is not None
        app.home.close()
        await asyncio.wait_for(running, 10)
        return message if not joined else "a call window opened for a bad ID"

    message = run_qt(qapp, scenario())
    assert "a call window opened" not in message


def test_a_call_without_devices_falls_back_and_devices_can_change_mid_call(qapp, tmp_path):
    """No camera, microphone or speaker here: the call still starts (test pattern,
    silence) with notices, and choosing other devices mid-call swaps the sources under
    the same tracks."""
    from dataclasses import replace

    store = QSettings(str(tmp_path / "app.ini"), QSettings.Format.IniFormat)
    save_settings(store, Settings(display_name="Ana", ice_servers="none"))

    async def scenario() -> dict:
        app = DesktopCallApp(qapp, store, app_args(source=None))
        notices: list[str] = []
        running = asyncio.ensure_future(app.run())
        await until(lambda: app.home is not None and app.home.isVisible())
        app.home.new_call_button.click()
        app.home.enter_call_button.click()
        await until(lambda: app.controller is not None)
        controller = app.controller
        controller.notice.connect(notices.append)
        await until(lambda: app.window is not None and app.window.isVisible())
        video = app._live["video"]
        first_source = video.source
        old = app.settings
        await app._switch_devices(old, replace(old, camera_id="camera-that-is-not-here"))
        swapped = video.source is not first_source and controller.video is video
        app.window.close()
        await until(lambda: app.window is None)
        app.home.close()
        await asyncio.wait_for(running, 10)
        return {"setup_notices": controller.setup.notices, "swapped": swapped, "notices": notices}

    seen = run_qt(qapp, scenario())
    assert any("camera" in n.lower() for n in seen["setup_notices"])
    assert any("microphone" in n.lower() for n in seen["setup_notices"])
    assert seen["swapped"]
    assert any("not here" in n or "test pattern" in n for n in seen["notices"])


def test_retry_after_a_refusal_starts_the_same_call_again(qapp, tmp_path):
    store = QSettings(str(tmp_path / "app.ini"), QSettings.Format.IniFormat)
    save_settings(store, Settings(display_name="Ana", ice_servers="none"))

    async def scenario() -> list[str]:
        app = DesktopCallApp(qapp, store, app_args())
        running = asyncio.ensure_future(app.run())
        await until(lambda: app.home is not None and app.home.isVisible())
        link_server = app.embedded.url
        # Two people already fill the call: ours is refused (room-full), then one leaves.
        occupants = [
            CallSession(
                CallOptions(f"{link_server}/rooms/full-call", name, ice=IceConfig(servers=())),
                video=TestPatternTrack(160, 120, 5),
                audio=ToneTrack(),
            )
            for name in ("Bo", "Cy")
        ]
        for occupant in occupants:
            await occupant.start()
        await occupants[1].wait_for(lambda s: s is CallState.CONNECTED)
        app.home.join_edit.setText("full-call")
        app.home.join_edit.returnPressed.emit()
        await until(lambda: app.controller is not None)
        first = app.controller
        async with asyncio.timeout(10):
            await first.session.wait_for(lambda s: s.final)
        states = [str(first.state)]
        await occupants[1].hang_up()
        first.retry()  # what the status indicator's Retry button calls
        await until(lambda: app.controller is not None and app.controller is not first)
        async with asyncio.timeout(15):
            await app.controller.session.wait_for(lambda s: s is CallState.CONNECTED)
        states.append(str(app.controller.state))
        app.window.close()
        await until(lambda: app.window is None)
        await occupants[0].hang_up()
        app.home.close()
        await asyncio.wait_for(running, 10)
        return states

    assert run_qt(qapp, scenario()) == ["failed", "connected"]


def test_an_opened_link_joins_from_home_and_a_bad_one_says_why(qapp, tmp_path):
    """What a clicked dcall:// link does: macOS sends the running app a FileOpen event;
    elsewhere the link is the app's argument (the same path: ``args.link``)."""
    from PySide6.QtCore import QCoreApplication, QUrl
    from PySide6.QtGui import QFileOpenEvent

    store = QSettings(str(tmp_path / "app.ini"), QSettings.Format.IniFormat)
    save_settings(store, Settings(display_name="Ana", ice_servers="none"))

    async def scenario() -> dict:
        app = DesktopCallApp(qapp, store, app_args(link="dcall://no-such-place"))
        running = asyncio.ensure_future(app.run())
        await until(lambda: app.home is not None and app.home.isVisible())
        bad = app.home.error_label.text()
        assert app.window is None
        link = make_call_link(app.embedded.link_url, "7k3m-q9vd-x2ha")
        QCoreApplication.sendEvent(qapp, QFileOpenEvent(QUrl(link)))
        await until(lambda: app.window is not None and app.window.isVisible())
        room = app.controller.session.options.room_url
        # A second link during the call does not hang it up.
        other = make_call_link(app.embedded.link_url, "aaaa-bbbb-cccc")
        QCoreApplication.sendEvent(qapp, QFileOpenEvent(QUrl(other)))
        still = app.controller.session.options.room_url
        app.window.close()
        await until(lambda: app.window is None)
        app.home.close()
        assert await asyncio.wait_for(running, 10) == 0
        return {"bad": bad, "room": room, "still": still}

    seen = run_qt(qapp, scenario())
    assert "not a call" in seen["bad"]
    assert seen["room"].endswith("/rooms/7k3m-q9vd-x2ha")
    assert seen["still"] == seen["room"]


def test_a_link_opened_while_the_app_runs_is_handed_to_it(qapp, tmp_path):
    """``desktop-call LINK`` with this person's app already open: the new process hands
    the link over (ui/instances.py) and the open app joins; nobody listening: False."""
    from desktop_call.ui import instances

    store = QSettings(str(tmp_path / "app.ini"), QSettings.Format.IniFormat)
    save_settings(store, Settings(display_name="Ana", ice_servers="none"))
    args = app_args(settings_file=str(tmp_path / "app.ini"))
    channel = instances.channel_name(args.settings_file)

    async def second_process(link: str) -> bool:
        """What ``desktop-call LINK`` does first, in a process of its own."""
        code = (
            "import sys; from PySide6.QtCore import QCoreApplication; "
            "app = QCoreApplication([]); from desktop_call.ui.instances import hand_over; "
            "sys.exit(0 if hand_over(sys.argv[1], sys.argv[2], 500) else 3)"
        )
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, channel, link)
        async with asyncio.timeout(30):
            return await proc.wait() == 0

    async def scenario() -> dict:
        alone = await second_process("dcall://127.0.0.1:1/aaaa-bbbb-cccc")
        app = DesktopCallApp(qapp, store, args)
        running = asyncio.ensure_future(app.run())
        await until(lambda: app.home is not None and app.home.isVisible())
        link = make_call_link(app.embedded.link_url, "7k3m-q9vd-x2ha")
        taken = await second_process(link)
        await until(lambda: app.window is not None and app.window.isVisible())
        room = app.controller.session.options.room_url
        app.window.close()
        await until(lambda: app.window is None)
        app.home.close()
        assert await asyncio.wait_for(running, 10) == 0
        after = await second_process(link)
        return {"alone": alone, "taken": taken, "room": room, "after": after}

    seen = run_qt(qapp, scenario())
    assert seen["alone"] is False  # no app yet: that process would open its own
    assert seen["taken"] is True
    assert seen["room"].endswith("/rooms/7k3m-q9vd-x2ha")
    assert seen["after"] is False  # the app closed its channel when it quit
