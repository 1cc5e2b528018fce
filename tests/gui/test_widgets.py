"""The call's widgets, driven through their slots; intents observed as signals."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QToolButton

from desktop_call.ui.widgets import (
    SAS_EXPLANATION,
    ChatPanel,
    ControlBar,
    StatusIndicator,
    VerificationLabel,
    VideoView,
    describe_stats,
    format_sas,
    initials,
    status_text,
)

RED = QColor(255, 0, 0)
BLUE = QColor(0, 0, 255)


def halves(width: int = 100, height: int = 100) -> QImage:
    """Left half red, right half blue."""
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(BLUE)
    painter = QPainter(image)
    painter.fillRect(0, 0, width // 2, height, RED)
    painter.end()
    return image


def near(color: QColor, expected: QColor, tolerance: int = 40) -> bool:
    return (
        abs(color.red() - expected.red()) <= tolerance
        and abs(color.green() - expected.green()) <= tolerance
        and abs(color.blue() - expected.blue()) <= tolerance
    )


def is_dark(color: QColor) -> bool:
    return color.red() < 60 and color.green() < 60 and color.blue() < 60


# ---------------------------------------------------------------- VideoView


@pytest.fixture
def view(qtbot):
    widget = VideoView()
    qtbot.addWidget(widget)
    widget.resize(400, 200)
    return widget


def test_video_view_scales_with_aspect_ratio_centred(view):
    view.set_frame(halves())
    shot = view.grab().toImage()
    # A square image in a 400x200 view: 200x200 in the middle, dark bars left and right.
    assert is_dark(shot.pixelColor(50, 100))
    assert is_dark(shot.pixelColor(350, 100))
    assert near(shot.pixelColor(150, 100), RED)
    assert near(shot.pixelColor(250, 100), BLUE)
    assert view.frames_painted == 1


def test_video_view_mirrored_flips_left_and_right(qtbot):
    view = VideoView(mirrored=True)
    qtbot.addWidget(view)
    view.resize(400, 200)
    view.set_frame(halves())
    shot = view.grab().toImage()
    assert near(shot.pixelColor(150, 100), BLUE)
    assert near(shot.pixelColor(250, 100), RED)
    assert is_dark(shot.pixelColor(50, 100))
    view.set_mirrored(False)
    shot = view.grab().toImage()
    assert near(shot.pixelColor(150, 100), RED)


def test_video_view_counts_only_paints_with_a_frame(view):
    view.set_placeholder("Camera off", "Bo Lindqvist")
    view.grab()
    assert view.frames_painted == 0
    view.set_frame(halves())
    view.grab()
    view.grab()
    assert view.frames_painted == 2
    view.clear_frame()
    view.grab()
    assert view.frames_painted == 2
    assert not view.has_frame()


def test_video_view_draws_at_device_pixel_ratio(view):
    """On a 2x screen the image fills the same logical area with twice the pixels."""
    view.set_frame(halves(640, 640))
    target = QImage(800, 400, QImage.Format.Format_RGB32)
    target.setDevicePixelRatio(2.0)
    target.fill(Qt.GlobalColor.white)
    view.render(target)
    assert is_dark(target.pixelColor(100, 200))  # logical (50, 100): the bar
    assert near(target.pixelColor(300, 200), RED)  # logical (150, 100)
    assert near(target.pixelColor(500, 200), BLUE)  # logical (250, 100)
    assert is_dark(target.pixelColor(700, 200))


def test_video_view_wide_image_letterboxed_top_and_bottom(view):
    view.resize(200, 200)
    view.set_frame(halves(200, 100))
    shot = view.grab().toImage()
    assert is_dark(shot.pixelColor(100, 20))
    assert near(shot.pixelColor(50, 100), RED)
    assert is_dark(shot.pixelColor(100, 180))


def test_video_view_placeholder_paints_avatar_and_keeps_state(view):
    view.set_placeholder("Bo turned the camera off", "Bo")
    view.set_name("Bo")
    view.set_muted(True)
    assert view.placeholder() == "Bo turned the camera off"
    assert view.name() == "Bo" and view.is_muted()
    shot = view.grab().toImage()
    colors = {shot.pixel(QPoint(x, y)) for x in range(0, 400, 7) for y in range(0, 200, 7)}
    assert len(colors) > 3  # background, avatar, text, tag


def test_initials():
    assert initials("Bo Lindqvist") == "BL"
    assert initials("bo") == "B"
    assert initials("") == "?"
    assert initials("  anna maria  svensson ") == "AS"


# ---------------------------------------------------------------- StatusIndicator


@pytest.mark.parametrize(
    ("state", "reason", "words"),
    [
        ("idle", "", "Not in a call"),
        ("joining", "", "Joining the call…"),
        ("waiting", "", "Waiting for the other person"),
        ("connecting", "", "Connecting…"),
        ("connected", "", "Connected"),
        ("reconnecting", "ICE failed", "Reconnecting…"),
        ("ended", "", "Call ended"),
        ("failed", "the server refused the call", "Call failed: the server refused the call"),
    ],
)
def test_status_words_per_state(qtbot, state, reason, words):
    status = StatusIndicator()
    qtbot.addWidget(status)
    status.set_state(state, reason)
    assert status.text() == words
    assert status_text(state, reason) == words
    assert status.retry_button.isVisibleTo(status) == (state == "failed")
    assert status.quality.isVisibleTo(status) == (state in ("connected", "reconnecting"))


def test_status_colours_differ(qtbot):
    status = StatusIndicator()
    qtbot.addWidget(status)
    status.set_state("connected", "")
    connected = status.dot.color().name()
    status.set_state("failed", "x")
    assert status.dot.color().name() != connected


def test_status_failed_retry_emits(qtbot):
    status = StatusIndicator()
    qtbot.addWidget(status)
    status.set_state("failed", "no route")
    with qtbot.waitSignal(status.retry_requested, raising=True, timeout=1000):
        qtbot.mouseClick(status.retry_button, Qt.MouseButton.LeftButton)


@pytest.mark.parametrize(
    ("candidate", "words"),
    [
        ("host", "direct (local network)"),
        ("srflx", "direct (through NAT)"),
        ("relay", "relayed (TURN)"),
    ],
)
def test_status_quality_tooltip(qtbot, candidate, words):
    status = StatusIndicator()
    qtbot.addWidget(status)
    status.set_state("connected", "")
    status.set_quality(
        3,
        {
            "rtt_ms": 42.4,
            "loss": 0.012,
            "bitrate_in_kbps": 1234.0,
            "bitrate_out_kbps": 800.0,
            "resolution": "1280x720",
            "candidate_type": candidate,
            "codec": "VP8",
        },
    )
    assert status.quality.bars == 3
    tooltip = status.quality.toolTip()
    for part in (
        "42 ms",
        "1.2 %",
        "1,234 kbit/s",
        "800 kbit/s",
        "1280\N{MULTIPLICATION SIGN}720",
        words,
        "VP8",
    ):
        assert part in tooltip


def test_status_quality_clamps_and_escapes(qtbot):
    status = StatusIndicator()
    qtbot.addWidget(status)
    status.set_quality(9, {"codec": "<b>evil</b>", "rtt_ms": None})
    assert status.bars == 4
    assert "<b>evil" not in status.quality.toolTip()
    assert "&lt;b&gt;evil" in status.quality.toolTip()
    status.set_quality(-3, {})
    assert status.bars == 0
    assert describe_stats({})[0] == "Round trip: not measured yet"


# ---------------------------------------------------------------- ControlBar


@pytest.fixture
def bar(qtbot):
    widget = ControlBar()
    qtbot.addWidget(widget)
    return widget


@pytest.mark.parametrize(
    ("button", "signal", "args"),
    [
        ("mic_button", "microphone_toggled", [True]),
        ("camera_button", "camera_toggled", [False]),
        ("screen_button", "screen_share_toggled", [True]),
        ("chat_button", "chat_toggled", [True]),
        ("link_button", "copy_link_requested", []),
        ("devices_button", "devices_requested", []),
        ("fullscreen_button", "fullscreen_toggled", [True]),
        ("hang_up_button", "hang_up_requested", []),
    ],
)
def test_control_bar_clicks_emit_intents(qtbot, bar, button, signal, args):
    with qtbot.waitSignal(getattr(bar, signal), raising=True, timeout=1000) as blocker:
        qtbot.mouseClick(getattr(bar, button), Qt.MouseButton.LeftButton)
    assert blocker.args == args


def test_control_bar_toggles_back(qtbot, bar):
    qtbot.mouseClick(bar.mic_button, Qt.MouseButton.LeftButton)
    assert bar.mic_button.text() == "Unmute"
    with qtbot.waitSignal(bar.microphone_toggled, raising=True, timeout=1000) as blocker:
        qtbot.mouseClick(bar.mic_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [False]
    assert bar.mic_button.text() == "Mute"


def test_control_bar_setters_do_not_emit(qtbot, bar):
    signals = [
        bar.microphone_toggled,
        bar.camera_toggled,
        bar.screen_share_toggled,
        bar.chat_toggled,
        bar.fullscreen_toggled,
    ]
    for signal in signals:
        with qtbot.assertNotEmitted(signal):
            bar.set_microphone_muted(True)
            bar.set_camera_on(False)
            bar.set_screen_sharing(True)
            bar.set_chat_visible(True)
            bar.set_fullscreen(True)
    assert bar.mic_action.isChecked()
    assert bar.mic_button.text() == "Unmute"
    assert not bar.camera_action.isChecked()
    assert bar.camera_button.text() == "Start video"
    assert bar.screen_button.text() == "Stop sharing"
    assert bar.mic_button.property("alert") is True


def test_control_bar_tooltips_show_shortcuts_and_names(bar):
    expected = {
        "mic_button": "Ctrl+D",
        "camera_button": "Ctrl+E",
        "screen_button": "Ctrl+Shift+S",
        "chat_button": "Ctrl+Shift+C",
        "link_button": "Ctrl+L",
        "fullscreen_button": "F11",
        "hang_up_button": "Ctrl+W",
    }
    for name, shortcut in expected.items():
        button = getattr(bar, name)
        assert shortcut in button.toolTip(), name
    for button in bar.findChildren(QToolButton):
        assert button.accessibleName(), button.objectName()
        assert button.text(), button.objectName()


def test_control_bar_unread_and_inactive(bar):
    bar.set_chat_unread(3)
    assert bar.chat_button.text() == "Chat (3)"
    bar.set_chat_unread(0)
    assert bar.chat_button.text() == "Chat"
    bar.set_call_active(False)
    assert bar.hang_up_button.text() == "Close"
    assert not bar.mic_action.isEnabled()


# ---------------------------------------------------------------- ChatPanel


@pytest.fixture
def chat(qtbot):
    widget = ChatPanel()
    qtbot.addWidget(widget)
    return widget


def test_chat_shows_html_literally(chat):
    chat.add_message("<i>Bo</i>", "<b>x</b>", 1_700_000_000.0, False)
    text = chat.plain_text()
    assert "<b>x</b>" in text
    assert "<i>Bo</i>" in text
    assert "&lt;b&gt;x&lt;/b&gt;" in chat.messages.toHtml()


def test_chat_own_messages_aligned_right(chat):
    chat.add_message("Bo", "hello", 1_700_000_000.0, False)
    chat.add_message("You", "hi there", 1_700_000_001.0, True)
    document = chat.messages.document()
    blocks = {}
    block = document.begin()
    while block.isValid():
        blocks[block.text()] = block.blockFormat().alignment()
        block = block.next()
    assert blocks["hello"] & Qt.AlignmentFlag.AlignLeft
    assert blocks["hi there"] & Qt.AlignmentFlag.AlignRight


def test_chat_enter_sends_trimmed_text(qtbot, chat):
    qtbot.keyClicks(chat.input, "  hello Bo  ")
    with qtbot.waitSignal(chat.message_submitted, raising=True, timeout=1000) as blocker:
        qtbot.keyClick(chat.input, Qt.Key.Key_Return)
    assert blocker.args == ["hello Bo"]
    assert chat.input.text() == ""


def test_chat_blank_is_not_sent(qtbot, chat):
    qtbot.keyClicks(chat.input, "   ")
    with qtbot.assertNotEmitted(chat.message_submitted):
        qtbot.keyClick(chat.input, Qt.Key.Key_Return)
    assert not chat.send_button.isEnabled()


def test_chat_counts_unread_while_hidden(qtbot, chat):
    with qtbot.waitSignal(chat.unread_changed, raising=True, timeout=1000) as blocker:
        chat.add_message("Bo", "one", 1.0, False)
    assert blocker.args == [1]
    chat.add_message("You", "mine", 2.0, True)
    assert chat.unread == 1
    with qtbot.waitSignal(chat.unread_changed, raising=True, timeout=1000) as blocker:
        chat.show()
    assert blocker.args == [0]


def test_chat_survives_odd_timestamps(chat):
    chat.add_message("Bo", "x", float("nan"), False)
    chat.add_message("Bo", "y", 1e300, False)
    assert "x" in chat.plain_text() and "y" in chat.plain_text()


# ---------------------------------------------------------------- VerificationLabel


def test_verification_label(qtbot):
    label = VerificationLabel()
    qtbot.addWidget(label)
    label.set_code("123456")
    assert label.code() == "123 456"
    assert label.explanation.text() == SAS_EXPLANATION
    assert SAS_EXPLANATION == (
        "Compare this code with the other person: if it matches, nobody is listening in."
    )
    assert format_sas("123 456") == "123 456"
    assert format_sas("alpha bravo") == "alpha bravo"
