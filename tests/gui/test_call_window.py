"""The call window wired to a fake controller: signals in, intents out, clean close."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QImage

from desktop_call.ui.call_window import CallWindow

LINK = "dcall://192.168.1.5:8787/7k3m-q9vd-x2ha"


class FakeController(QObject):
    """The controller's interface; records what the window asks of it."""

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

    def __init__(self, *, end_on_hang_up: bool = False) -> None:
        super().__init__()
        self.calls: list[tuple] = []
        self.end_on_hang_up = end_on_hang_up
        self.call_link = LINK
        self.call_id = "7k3m-q9vd-x2ha"
        self.local_name = "Alice"

    def set_microphone_muted(self, muted: bool) -> None:
        self.calls.append(("set_microphone_muted", muted))

    def set_camera_enabled(self, enabled: bool) -> None:
        self.calls.append(("set_camera_enabled", enabled))

    def set_screen_share(self, sharing: bool) -> None:
        self.calls.append(("set_screen_share", sharing))

    def send_chat(self, text: str) -> None:
        self.calls.append(("send_chat", text))

    def copy_link(self) -> str:
        self.calls.append(("copy_link",))
        return self.call_link

    def hang_up(self) -> None:
        self.calls.append(("hang_up",))
        if self.end_on_hang_up:
            self.state_changed.emit("ended", "")
            self.ended.emit()

    def retry(self) -> None:
        self.calls.append(("retry",))

    def count(self, name: str) -> int:
        return sum(1 for call in self.calls if call[0] == name)


def frame(color: str, width: int = 64, height: int = 48) -> QImage:
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor(color))
    return image


@pytest.fixture
def controller():
    return FakeController()


@pytest.fixture
def window(qtbot, controller):
    widget = CallWindow(controller)
    qtbot.addWidget(widget)
    widget.resize(1280, 800)
    yield widget
    # A call window ignores a close until the call ended: close it for real here, so
    # no window is left waiting (its late close would quit a later test's event loop).
    widget.finish_close()
    assert not widget.isVisible()


@pytest.fixture
def shown(qtbot, window):
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=2000)
    return window


# ---------------------------------------------------------------- controller → widgets


def test_waiting_shows_the_link(window, controller):
    controller.state_changed.emit("waiting", "")
    assert window.status.text() == "Waiting for the other person"
    assert window.remote_placeholder().startswith("Waiting for the other person…")
    assert LINK in window.remote_placeholder()


def test_a_peer_gone_silent_is_waited_for_by_name_without_the_link(window, controller):
    controller.peer_name_changed.emit("Bo")
    controller.state_changed.emit("connected", "")
    controller.state_changed.emit("waiting", "Bo is not responding")
    placeholder = window.remote_placeholder()
    assert placeholder == "Bo is not responding.\nWaiting for them to come back…"
    assert LINK not in placeholder
    controller.state_changed.emit("waiting", "left")  # then they left for good
    assert window.remote_placeholder().startswith("Waiting for the other person…")


def test_states_update_status_text(window, controller):
    controller.state_changed.emit("connecting", "")
    assert window.status.text() == "Connecting…"
    controller.peer_name_changed.emit("Bo")
    assert window.remote_placeholder() == "Connecting to Bo…"
    assert window.windowTitle() == "Call with Bo"
    assert window.remote_view.name() == "Bo"
    controller.state_changed.emit("connected", "")
    assert window.status.text() == "Connected"
    controller.state_changed.emit("reconnecting", "ICE failed")
    assert window.status.text() == "Reconnecting…"
    controller.state_changed.emit("failed", "the server refused the call")
    assert window.status.text() == "Call failed: the server refused the call"
    assert window.status.retry_button.isVisibleTo(window)


def test_retry_calls_the_controller(qtbot, window, controller):
    controller.state_changed.emit("failed", "no route")
    qtbot.mouseClick(window.status.retry_button, Qt.MouseButton.LeftButton)
    assert controller.calls == [("retry",)]


def test_sas_shown(window, controller):
    assert not window.verification.isVisibleTo(window)
    controller.sas_changed.emit("123456")
    assert window.verification.code() == "123 456"
    assert window.verification.isVisibleTo(window)


def test_stats_set_quality(window, controller):
    controller.state_changed.emit("connected", "")
    controller.stats_changed.emit(
        {"quality": 2, "rtt_ms": 320.0, "loss": 0.06, "candidate_type": "relay", "codec": "VP8"}
    )
    assert window.status.bars == 2
    assert "relayed (TURN)" in window.status.quality.toolTip()


def test_chat_received_shown_as_plain_text(window, controller):
    controller.peer_name_changed.emit("Bo")
    controller.chat_received.emit("Bo", "<b>hi</b>", 1_700_000_000.0)
    assert "<b>hi</b>" in window.chat_panel.plain_text()
    assert window.notice_text() == "Bo: <b>hi</b>"  # chat hidden: a toast tells
    assert window.control_bar.chat_button.text() == "Chat (1)"


def test_remote_camera_off_placeholder_and_frames_ignored(window, controller):
    controller.peer_name_changed.emit("Bo")
    controller.state_changed.emit("connected", "")
    controller.remote_frame.emit(frame("red"))
    assert window.remote_view.has_frame()
    controller.remote_media_changed.emit(True, False)
    assert window.remote_placeholder() == "Bo turned the camera off"
    assert window.remote_view.is_muted()
    assert not window.remote_view.has_frame()
    controller.remote_frame.emit(frame("red"))
    assert not window.remote_view.has_frame()
    controller.remote_media_changed.emit(False, True)
    controller.remote_frame.emit(frame("red"))
    assert window.remote_view.has_frame()
    assert not window.remote_view.is_muted()


def test_frames_reach_the_views(window, controller):
    controller.state_changed.emit("connected", "")
    controller.remote_frame.emit(frame("red"))
    controller.local_frame.emit(frame("blue"))
    window.remote_view.grab()
    window.local_view.grab()
    assert window.remote_view.frames_painted == 1
    assert window.local_view.frames_painted == 1
    assert window.local_view.mirrored


def test_notice_is_a_toast(window, controller):
    controller.notice.emit("No camera found: sending a test pattern")
    assert window.notice_text() == "No camera found: sending a test pattern"


# ---------------------------------------------------------------- widgets → controller


def test_ctrl_d_toggles_the_microphone(qtbot, shown, controller):
    qtbot.keyClick(shown, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    assert controller.calls == [("set_microphone_muted", True)]
    assert shown.control_bar.mic_button.text() == "Unmute"
    assert shown.local_view.is_muted()
    qtbot.keyClick(shown, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    assert controller.calls[-1] == ("set_microphone_muted", False)


def test_shortcuts_for_camera_screen_chat_link(qtbot, shown, controller):
    ctrl, shift = Qt.KeyboardModifier.ControlModifier, Qt.KeyboardModifier.ShiftModifier
    qtbot.keyClick(shown, Qt.Key.Key_E, ctrl)
    assert controller.calls[-1] == ("set_camera_enabled", False)
    assert shown.local_view.placeholder() == "Camera off"
    qtbot.keyClick(shown, Qt.Key.Key_S, ctrl | shift)
    assert controller.calls[-1] == ("set_screen_share", True)
    assert not shown.local_view.mirrored
    qtbot.keyClick(shown, Qt.Key.Key_C, ctrl | shift)
    assert shown.chat_panel.isVisible()
    qtbot.keyClick(shown, Qt.Key.Key_L, ctrl)
    assert controller.calls[-1] == ("copy_link",)
    assert shown.notice_text() == "Link copied"


def test_local_frames_ignored_while_camera_off(window, controller):
    window.control_bar.camera_button.click()
    controller.local_frame.emit(frame("blue"))
    assert not window.local_view.has_frame()
    window.control_bar.camera_button.click()
    controller.local_frame.emit(frame("blue"))
    assert window.local_view.has_frame()


def test_chat_send(qtbot, window, controller):
    window.control_bar.chat_button.click()
    qtbot.keyClicks(window.chat_panel.input, "hello")
    qtbot.keyClick(window.chat_panel.input, Qt.Key.Key_Return)
    assert controller.calls == [("send_chat", "hello")]
    assert "hello" in window.chat_panel.plain_text()


def test_devices_requested_forwarded(qtbot, window):
    with qtbot.waitSignal(window.devices_requested, raising=True, timeout=1000):
        window.control_bar.devices_button.click()


# ---------------------------------------------------------------- closing


def test_close_hangs_up_once_and_finishes_on_ended(qtbot, shown, controller):
    hang_ups: list[None] = []
    shown.hang_up_requested.connect(lambda: hang_ups.append(None))
    shown.close()
    shown.close()
    qtbot.keyClick(shown, Qt.Key.Key_W, Qt.KeyboardModifier.ControlModifier)
    assert len(hang_ups) == 1
    assert controller.count("hang_up") == 1
    assert shown.isVisible()  # waiting for the call to end
    assert shown.status.text() == "Hanging up…"
    with qtbot.waitSignal(shown.closed, raising=True, timeout=2000):
        controller.state_changed.emit("ended", "")
        controller.ended.emit()
    assert not shown.isVisible()
    assert len(hang_ups) == 1


def test_hang_up_button_closes_after_ended(qtbot, shown, controller):
    with qtbot.waitSignal(shown.hang_up_requested, raising=True, timeout=1000):
        shown.control_bar.hang_up_button.click()
    with qtbot.waitSignal(shown.closed, raising=True, timeout=2000):
        controller.ended.emit()


def test_close_after_the_call_ended_is_immediate(qtbot, shown, controller):
    controller.state_changed.emit("ended", "Bo hung up")
    controller.ended.emit()
    assert shown.isVisible()  # the window stays to say so
    assert shown.status.text() == "Call ended: Bo hung up"
    assert shown.control_bar.hang_up_button.text() == "Close"
    with (
        qtbot.assertNotEmitted(shown.hang_up_requested),
        qtbot.waitSignal(shown.closed, raising=True, timeout=1000),
    ):
        shown.close()
    assert controller.count("hang_up") == 0


def test_close_with_a_controller_that_ends_at_once(qtbot, qapp):
    controller = FakeController(end_on_hang_up=True)
    window = CallWindow(controller)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    with qtbot.waitSignal(window.closed, raising=True, timeout=1000):
        window.close()
    assert not window.isVisible()
    assert controller.count("hang_up") == 1


def test_close_gives_up_waiting_after_the_timeout(qtbot):
    controller = FakeController()
    window = CallWindow(controller, close_timeout_ms=50)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    with qtbot.waitSignal(window.closed, raising=True, timeout=2000):
        window.close()
    assert controller.count("hang_up") == 1


def test_finish_close_from_the_app(qtbot, shown, controller):
    shown.close()
    with qtbot.waitSignal(shown.closed, raising=True, timeout=1000):
        shown.finish_close()


# ---------------------------------------------------------------- layout


@pytest.mark.parametrize("size", [(1280, 800), (800, 600)])
def test_self_view_stays_in_the_corner(qtbot, shown, controller, size):
    controller.local_frame.emit(frame("blue", 640, 480))
    shown.resize(*size)
    qtbot.waitUntil(lambda: shown.width() == size[0], timeout=2000)
    stage = shown.stage
    pip = shown.local_view.geometry()
    assert shown.remote_view.geometry() == stage.rect()
    assert stage.width() - pip.right() <= 20
    assert stage.height() - pip.bottom() <= 20
    assert pip.width() < stage.width() / 2
    assert abs(pip.width() / pip.height() - 4 / 3) < 0.05
    shot = shown.grab()
    assert not shot.isNull() and shot.width() == size[0]


def test_accessible_names_everywhere(window):
    from PySide6.QtWidgets import QAbstractButton, QLineEdit

    controls = window.findChildren(QAbstractButton) + window.findChildren(QLineEdit)
    assert controls
    for control in controls:
        if isinstance(control.parent(), QLineEdit):
            continue  # Qt's own clear button inside a line edit
        assert control.accessibleName(), control.objectName() or control.text()
