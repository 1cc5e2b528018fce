"""The home window: live validation of the Join field, New call, recent calls."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from desktop_call.signaling.ids import CallTarget, InvalidCallTarget, parse_call_target
from desktop_call.ui.home import HomeWindow, qr_image, qr_pixmap
from desktop_call.ui.settings import RecentCall, Settings

LINK = "dcall://192.168.1.5:8787/7k3m-q9vd-x2ha"


@pytest.fixture
def home(qtbot):
    window = HomeWindow()
    qtbot.addWidget(window)
    window.set_settings(Settings(display_name="Alice"))
    return window


def clipboard_text() -> str:
    clipboard = QGuiApplication.clipboard()
    return clipboard.text() if clipboard is not None else ""


# ---------------------------------------------------------------- Join


def test_bad_id_shows_the_message_and_join_is_ignored(qtbot, home):
    qtbot.keyClicks(home.join_edit, "no!")
    with pytest.raises(InvalidCallTarget) as error:
        parse_call_target("no!")
    assert home.join_message.text() == str(error.value)
    assert home.join_message.property("role") == "error"
    assert home.join_edit.property("invalid") is True
    assert not home.join_button.isEnabled()
    assert home.join_target() is None
    with qtbot.assertNotEmitted(home.join_requested):
        qtbot.keyClick(home.join_edit, Qt.Key.Key_Return)
        home.join_button.click()


def test_empty_field_is_neutral(home):
    assert not home.join_button.isEnabled()
    assert home.join_message.property("role") == "hint"
    assert home.join_edit.property("invalid") is not True


def test_pasted_id_with_spaces_is_normalised_and_enter_joins(qtbot, home):
    home.join_edit.setText(" 7K3M Q9VD X2HA ")
    assert home.join_button.isEnabled()
    assert home.join_message.property("role") == "ok"
    assert "7k3m-q9vd-x2ha" in home.join_message.text()
    with qtbot.waitSignal(home.join_requested, raising=True, timeout=1000) as blocker:
        qtbot.keyClick(home.join_edit, Qt.Key.Key_Return)
    assert blocker.args == [CallTarget("7k3m-q9vd-x2ha", None)]


def test_link_joins_with_its_server(qtbot, home):
    home.join_edit.setText(LINK)
    assert "192.168.1.5:8787" in home.join_message.text()
    with qtbot.waitSignal(home.join_requested, raising=True, timeout=1000) as blocker:
        qtbot.mouseClick(home.join_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [CallTarget("7k3m-q9vd-x2ha", "ws://192.168.1.5:8787")]


def test_validation_recovers_when_the_text_is_fixed(qtbot, home):
    home.join_edit.setText("x")
    assert not home.join_button.isEnabled()
    home.join_edit.setText("abcd-efgh")
    assert home.join_button.isEnabled()
    assert home.join_edit.property("invalid") is False


def test_busy_blocks_joining(qtbot, home):
    home.join_edit.setText("7k3m-q9vd-x2ha")
    home.set_busy(True)
    assert not home.join_button.isEnabled()
    assert not home.new_call_button.isEnabled()
    with qtbot.assertNotEmitted(home.join_requested):
        qtbot.keyClick(home.join_edit, Qt.Key.Key_Return)
    home.set_busy(False)
    assert home.join_button.isEnabled()


# ---------------------------------------------------------------- New call


def test_new_call_shows_link_qr_and_copies(qtbot, home):
    with qtbot.waitSignal(home.new_call_requested, raising=True, timeout=1000):
        qtbot.mouseClick(home.new_call_button, Qt.MouseButton.LeftButton)
    assert not home.new_call_panel.isVisibleTo(home)

    home.show_new_call(LINK, "7k3m-q9vd-x2ha")
    assert home.new_call_panel.isVisibleTo(home)
    assert home.link_edit.text() == LINK
    assert home.call_id_label.text() == "7k3m-q9vd-x2ha"
    pixmap = home.qr_label.pixmap()
    assert pixmap is not None and not pixmap.isNull()
    assert clipboard_text() == LINK  # already on the clipboard, as the product promises

    QGuiApplication.clipboard().setText("something else")
    qtbot.mouseClick(home.copy_link_button, Qt.MouseButton.LeftButton)
    assert clipboard_text() == LINK
    assert home.copy_link_button.text() == "Copied"

    with qtbot.waitSignal(home.join_requested, raising=True, timeout=1000) as blocker:
        qtbot.mouseClick(home.enter_call_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [CallTarget("7k3m-q9vd-x2ha", "ws://192.168.1.5:8787")]


def test_qr_code_is_sharp_and_high_dpi():
    image = qr_image(LINK, 200)
    assert not image.isNull()
    assert image.width() == image.height() <= 200
    assert image.pixelColor(0, 0).lightness() == 255  # quiet zone
    pixmap = qr_pixmap(LINK, 168, 2.0)
    assert pixmap.devicePixelRatio() == 2.0
    assert 168 < pixmap.width() <= 336  # physical pixels
    assert pixmap.deviceIndependentSize().width() <= 168


# ---------------------------------------------------------------- recent calls


@pytest.fixture
def with_recent(home):
    home.set_settings(
        Settings(
            display_name="Alice",
            recent_calls=(
                RecentCall("dcall://10.0.0.2:8787/abcd-efgh-jkmn", 1_760_000_000.0),
                RecentCall("7k3m-q9vd-x2ha", 1_700_000_000.0),
            ),
        )
    )
    return home


def test_recent_calls_listed(with_recent):
    assert with_recent.recent_list.count() == 2
    assert "abcd-efgh-jkmn" in with_recent.recent_list.item(0).text()
    assert with_recent.recent_list.isVisibleTo(with_recent)
    assert not with_recent.recent_empty.isVisibleTo(with_recent)


def test_recent_call_enter_joins(qtbot, with_recent):
    with_recent.recent_list.setCurrentRow(1)
    with qtbot.waitSignal(with_recent.join_requested, raising=True, timeout=1000) as blocker:
        qtbot.keyClick(with_recent.recent_list, Qt.Key.Key_Return)
    assert blocker.args == [CallTarget("7k3m-q9vd-x2ha", None)]


def test_recent_call_double_click_joins(qtbot, with_recent):
    with_recent.show()
    qtbot.waitExposed(with_recent)
    view = with_recent.recent_list
    center = view.visualItemRect(view.item(0)).center()
    with qtbot.waitSignal(with_recent.join_requested, raising=True, timeout=1000) as blocker:
        # QTest's double click alone is not seen as one by item views: click first.
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=center)
        qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=center)
    assert blocker.args == [CallTarget("abcd-efgh-jkmn", "ws://10.0.0.2:8787")]


def test_no_recent_calls_says_so(home):
    assert home.recent_list.count() == 0
    assert home.recent_empty.isVisibleTo(home)


# ---------------------------------------------------------------- name, server, settings


def test_name_edits_emit_trimmed(qtbot, home):
    home.name_edit.setText("  Bo  ")
    with qtbot.waitSignal(home.display_name_changed, raising=True, timeout=1000) as blocker:
        home.name_edit.editingFinished.emit()
    assert blocker.args == ["Bo"]
    with qtbot.assertNotEmitted(home.display_name_changed):
        home.name_edit.editingFinished.emit()  # unchanged
        home.set_settings(Settings(display_name="Carol"))  # from the app: not an edit
    assert home.name_edit.text() == "Carol"
    assert home.name_edit.maxLength() == 64


def test_name_committed_before_new_call(qtbot, home):
    home.name_edit.setText("Dana")
    with qtbot.waitSignals(
        [home.display_name_changed, home.new_call_requested], raising=True, timeout=1000
    ):
        home.new_call_button.click()


def test_server_indicator(home):
    home.set_hosting(None, None)
    assert "starting" in home.server_text()
    home.set_hosting("ws://192.168.1.5:8787", None)
    assert home.server_text() == "This computer (LAN: ws://192.168.1.5:8787)"
    home.set_hosting(None, "port 8787 is in use")
    assert "port 8787 is in use" in home.server_text()
    assert home.server_label.property("role") == "error"
    home.set_settings(
        Settings(display_name="A", server_mode="remote", remote_server_url="wss://call.example.org")
    )
    assert home.server_text() == "Server: wss://call.example.org:443"


def test_settings_button(qtbot, home):
    with qtbot.waitSignal(home.settings_requested, raising=True, timeout=1000):
        qtbot.mouseClick(home.settings_button, Qt.MouseButton.LeftButton)


def test_show_error(home):
    home.show_error("The room server is not reachable.")
    assert home.error_label.isVisibleTo(home)
    assert home.error_label.text() == "The room server is not reachable."
    home.show_error("")
    assert not home.error_label.isVisibleTo(home)


@pytest.mark.parametrize("size", [(1280, 800), (800, 600)])
def test_renders_at_common_sizes(qtbot, home, size):
    home.show_new_call(LINK, "7k3m-q9vd-x2ha")
    home.resize(*size)
    home.show()
    qtbot.waitExposed(home)
    shot = home.grab()
    assert not shot.isNull()
    assert shot.width() == size[0]
    assert home.qr_label.isVisible()
    assert home.join_edit.isVisible()
