"""Settings → Test connection: the check runs on the qasync loop with the dialog's
unsaved values, shows progress and plain-words results, can be cancelled, and never
blocks the dialog. A real room server and a small STUN responder on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import shiboken6
from aioice import stun
from PySide6.QtCore import Qt, QTimer
from PySide6.QtTest import QTest

from desktop_call.netcheck import CheckResult, CheckTimeouts
from desktop_call.server import RoomServer, ServerConfig
from desktop_call.ui.runtime import run_qt
from desktop_call.ui.settings import Settings
from desktop_call.ui.settings_dialog import SettingsDialog

pytestmark = pytest.mark.loopback

WAIT = 10.0


class Stun(asyncio.DatagramProtocol):
    """Answers Binding requests (or stays silent); ``asked`` is set by the first one."""

    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.asked = asyncio.Event()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.asked.set()
        if not self.answer:
            return
        request = stun.parse_message(data)
        response = stun.Message(
            request.message_method, stun.Class.RESPONSE, transaction_id=request.transaction_id
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = addr
        self.transport.sendto(bytes(response), addr)


async def stun_server(answer: bool = True) -> tuple[Any, Stun, str]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: Stun(answer), local_addr=("127.0.0.1", 0)
    )
    return transport, protocol, f"stun:127.0.0.1:{transport.get_extra_info('sockname')[1]}"


def finished(dialog: SettingsDialog) -> asyncio.Future[CheckResult | None]:
    """A future for the next ``finished`` signal of the dialog's connection test."""
    future: asyncio.Future[CheckResult | None] = asyncio.get_running_loop().create_future()

    def done(result: object) -> None:
        if not future.done():
            future.set_result(result)  # type: ignore[arg-type]

    dialog.connection_test.finished.connect(done)
    return future


@pytest.fixture
def dialog(qtbot):
    widget = SettingsDialog(Settings(display_name="Ana", ice_servers="default"))
    qtbot.addWidget(widget)
    return widget


def use_remote(dialog: SettingsDialog, server_url: str, stun_url: str) -> None:
    dialog.remote_radio.setChecked(True)
    dialog.server_url_edit.setText(server_url)
    dialog.ice_edit.setText(stun_url)


def test_the_check_uses_the_unsaved_values_and_shows_plain_words(qapp, dialog, caplog):
    async def scenario() -> tuple[CheckResult | None, str, bool]:
        transport, responder, url = await stun_server()
        try:
            async with RoomServer(ServerConfig(port=0)) as srv:
                use_remote(dialog, srv.url, url)  # typed in, not saved
                done = finished(dialog)
                QTest.mouseClick(dialog.connection_test.button, Qt.MouseButton.LeftButton)
                running = dialog.connection_test.button.text() == "Cancel test"
                assert dialog.connection_test.progress.isVisible()
                async with asyncio.timeout(WAIT):
                    result = await done
                return (
                    result,
                    dialog.connection_test.status.text(),
                    running and responder.asked.is_set(),
                )
        finally:
            transport.close()

    dialog.show()
    with caplog.at_level(logging.ERROR):
        result, text, asked = run_qt(qapp, scenario())
    assert asked  # the STUN server typed into the dialog was the one asked
    assert result is not None and result.calls_can_work
    assert result.server.state == "ok" and result.stun[0].state == "ok"
    assert text.startswith("Calls can work from here.")
    assert "Not behind NAT" in text
    assert "Calls on this network will connect directly in most cases." in text
    assert dialog.connection_test.button.text() == "Test connection"
    assert not dialog.connection_test.progress.isVisible()
    assert dialog.connection_test.task is None
    assert dialog.original.ice_servers == "default"  # nothing was saved
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_dialog_stays_responsive_and_the_test_can_be_cancelled(qapp, dialog):
    async def scenario() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        transport, silent, url = await stun_server(answer=False)
        ticks: list[float] = []
        timer = QTimer()
        timer.setInterval(10)
        timer.timeout.connect(lambda: ticks.append(loop.time()))
        try:
            async with RoomServer(ServerConfig(port=0)) as srv:
                use_remote(dialog, srv.url, url)
                dialog.connection_test.timeouts = CheckTimeouts(stun=30, total=30)
                done = finished(dialog)
                timer.start()
                dialog.connection_test.button.click()
                task = dialog.connection_test.task
                async with asyncio.timeout(WAIT):
                    await silent.asked.wait()  # the check is waiting for the silent server
                # meanwhile, the dialog takes input and validates it as usual
                dialog.name_edit.clear()
                QTest.keyClicks(dialog.name_edit, "Bo")
                typed = dialog.name_edit.text()
                ticks_during = len(ticks)
                cancelled_at = loop.time()
                dialog.connection_test.button.click()  # "Cancel test"
                async with asyncio.timeout(WAIT):
                    result = await done
                return {
                    "typed": typed,
                    "ticks": ticks_during,
                    "cancel_took": loop.time() - cancelled_at,
                    "result": result,
                    "task_cancelled": task is not None and task.cancelled(),
                    "status": dialog.connection_test.status.text(),
                    "button": dialog.connection_test.button.text(),
                }
        finally:
            timer.stop()
            transport.close()

    dialog.show()
    seen = run_qt(qapp, scenario())
    assert seen["typed"] == "Bo"
    assert seen["ticks"] > 0  # Qt timers kept firing while the check ran
    assert seen["result"] is None
    assert seen["task_cancelled"]
    assert seen["cancel_took"] < 2.0
    assert seen["status"] == "Test cancelled."
    assert seen["button"] == "Test connection"


def test_closing_the_dialog_cancels_the_test(qapp, caplog):
    dialog = SettingsDialog(Settings(display_name="Ana"))
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)  # as the app opens it

    async def scenario() -> bool:
        transport, silent, url = await stun_server(answer=False)
        try:
            dialog.ice_edit.setText(url)  # "This computer" mode, its server not running here
            dialog.connection_test.timeouts = CheckTimeouts(stun=30, total=30)
            assert dialog.connection_test.start()
            task = dialog.connection_test.task
            assert task is not None
            async with asyncio.timeout(WAIT):
                await silent.asked.wait()
            dialog.reject()  # Cancel / Esc / the window's X
            async with asyncio.timeout(WAIT):
                await asyncio.wait({task})
            return task.cancelled()
        finally:
            transport.close()

    dialog.show()
    quits = qapp.quitOnLastWindowClosed()
    qapp.setQuitOnLastWindowClosed(False)  # as in the app: closing a dialog ends no loop
    try:
        with caplog.at_level(logging.ERROR):
            assert run_qt(qapp, scenario())
    finally:
        qapp.setQuitOnLastWindowClosed(quits)
    assert not shiboken6.isValid(dialog)  # deleted while its test was winding down
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_this_computer_mode_tests_stun_only_when_its_server_is_not_running(qapp, dialog):
    async def scenario() -> tuple[CheckResult | None, str]:
        transport, _, url = await stun_server()
        try:
            dialog.ice_edit.setText(url)
            done = finished(dialog)
            assert dialog.connection_test.start()
            async with asyncio.timeout(WAIT):
                return await done, dialog.connection_test.status.text()
        finally:
            transport.close()

    result, text = run_qt(qapp, scenario())
    assert result is not None and result.server.state == "skipped"
    assert result.stun[0].state == "ok"
    assert "Room server: this computer's, not running now (not tested)." in text


def test_the_embedded_server_is_tested_when_the_app_hosts_one(qapp, qtbot):
    async def scenario() -> CheckResult | None:
        async with RoomServer(ServerConfig(port=0)) as srv:
            dialog = SettingsDialog(
                Settings(display_name="Ana", ice_servers="none"), embedded_url=srv.url
            )
            qtbot.addWidget(dialog)
            done = finished(dialog)
            assert dialog.connection_test.start()
            async with asyncio.timeout(WAIT):
                return await done

    result = run_qt(qapp, scenario())
    assert result is not None and result.server.state == "ok"
    assert result.server.url.startswith("ws://127.0.0.1:")


def test_no_test_with_invalid_fields(dialog):
    dialog.ice_edit.setText("bogus:example.org")
    assert not dialog.connection_test.button.isEnabled()
    assert not dialog.connection_test.start()
    assert dialog.connection_test.task is None
    assert dialog.connection_test.status.text() == "Fix the problems shown in red first."
    dialog.ice_edit.setText("none")
    assert dialog.connection_test.button.isEnabled()


def test_fields_that_turn_invalid_during_a_test_disable_the_button_after_it(qapp, dialog):
    async def scenario() -> tuple[bool, bool]:
        transport, silent, url = await stun_server(answer=False)
        try:
            dialog.ice_edit.setText(url)
            dialog.connection_test.timeouts = CheckTimeouts(stun=30, total=30)
            done = finished(dialog)
            assert dialog.connection_test.start()
            dialog.ice_edit.setText("bogus:x")  # invalid while the test runs
            can_cancel = dialog.connection_test.button.isEnabled()
            dialog.connection_test.cancel()
            async with asyncio.timeout(WAIT):
                await done
            return can_cancel, dialog.connection_test.button.isEnabled()
        finally:
            transport.close()

    can_cancel, enabled_after = run_qt(qapp, scenario())
    assert can_cancel
    assert not enabled_after


def test_without_a_running_loop_it_says_so(dialog):
    assert not dialog.connection_test.start()
    assert dialog.connection_test.task is None
    assert "event loop" in dialog.connection_test.status.text()
