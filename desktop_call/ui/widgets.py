"""The call's widgets: pure views. They emit intents and expose ``set_*`` slots.

Nothing here knows about calls, sockets or the engine (the pattern of Qt for
Python's ``playercontrols.py``): :class:`VideoView` paints the newest image it
was given, :class:`StatusIndicator` words a state, :class:`ControlBar` turns
clicks and shortcuts into ``*_toggled`` / ``*_requested`` signals,
:class:`ChatPanel` shows messages as plain text, :class:`VerificationLabel`
shows the verification code. The call window wires them to the view-model.

Text that may come from the network (names, chat, reasons, codec names) is
only ever shown as plain text: labels are set to ``Qt.PlainText``, chat goes
through ``QTextCursor.insertText`` and tooltips are escaped.
"""

from __future__ import annotations

import html
import math
import zlib
from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import QDateTime, QEvent, QLocale, QPointF, QRectF, QSize, Qt, Signal, Slot
from PySide6.QtGui import (
    QAction,
    QColor,
    QFont,
    QFontMetricsF,
    QImage,
    QKeySequence,
    QPainter,
    QPaintEvent,
    QPalette,
    QPixmap,
    QResizeEvent,
    QShowEvent,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTransform,
)
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QSizePolicy,
    QStyle,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_call.ui import theme

__all__ = [
    "CANDIDATE_WORDS",
    "STATE_WORDS",
    "ChatPanel",
    "ControlBar",
    "StatusIndicator",
    "VerificationLabel",
    "VideoView",
    "describe_stats",
    "format_sas",
    "initials",
    "status_text",
]

# ====================================================================== helpers


def initials(name: str) -> str:
    """Up to two letters for an avatar: "Bo Lindqvist" → "BL", "bo" → "B"."""
    words = [w for w in name.replace("_", " ").replace(".", " ").split() if w[:1].isalnum()]
    if not words:
        return "?"
    letters = words[0][0] + (words[-1][0] if len(words) > 1 else "")
    return letters.upper()


def _name_color(name: str, lightness: int = 110) -> QColor:
    """A stable, pleasant colour per name (avatars, chat senders)."""
    hue = zlib.crc32(name.encode("utf-8", "replace")) % 360
    return QColor.fromHsl(hue, 140, lightness)


def _plain_label(text: str = "", parent: QWidget | None = None) -> QLabel:
    label = QLabel(text, parent)
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label


def _escape_lines(lines: list[str]) -> str:
    """Tooltip text that is rich text only by our doing: every line escaped."""
    return "<qt>" + "<br>".join(html.escape(line) for line in lines) + "</qt>"


def _shortcut_text(sequence: QKeySequence) -> str:
    return sequence.toString(QKeySequence.SequenceFormat.NativeText)


# ====================================================================== VideoView

_VIDEO_BACKGROUND = QColor(24, 24, 27)
_PLACEHOLDER_TEXT = QColor(220, 220, 224)
_TAG_BACKGROUND = QColor(0, 0, 0, 150)
_TAG_TEXT = QColor(255, 255, 255)
_FRAME = QColor(255, 255, 255, 70)
_TAG_FLAGS = int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
_TEXT_FLAGS = int(Qt.AlignmentFlag.AlignHCenter | Qt.TextFlag.TextWordWrap)


class VideoView(QWidget):
    """Paints the newest video image, scaled with its aspect ratio kept, centred.

    ``set_frame`` only stores the image (already converted by the controller)
    and schedules a repaint: several frames arriving between two paints cost one
    paint. ``mirrored`` flips the picture at paint time (the self view). Without
    a frame, a placeholder is shown: a text, and an avatar with initials when a
    name is given. A name tag (with a muted microphone) sits in a bottom corner.
    """

    #: The view's size in device pixels and its device pixel ratio, on every resize:
    #: the controller converts frames to exactly this box, so painting never scales.
    box_changed = Signal(int, int, float)

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        mirrored: bool = False,
        compact: bool = False,
    ) -> None:
        super().__init__(parent)
        self.mirrored = mirrored
        #: Paints that drew a video frame (the app's report reads it).
        self.frames_painted = 0
        self._compact = compact
        self._image: QImage | None = None
        self._image_size = QSize()
        self._target = QRectF()
        self._mirror = QTransform()
        self._placeholder = ""
        self._avatar_name = ""
        self._avatar_initials = ""
        self._avatar_color = QColor()
        self._name = ""
        self._muted = False
        self._muted_pixmap = QPixmap()
        self._tag_rect = QRectF()
        self._icon_pos = QPointF()
        self._tag_text_rect = QRectF()
        self._tag_font = QFont(self.font())
        self._text_font = QFont(self.font())
        self._avatar_font = QFont(self.font())
        self._avatar_rect = QRectF()
        self._text_rect = QRectF()
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(96, 54)
        self._relayout()

    # ------------------------------------------------------------------ slots

    @Slot(QImage)
    def set_frame(self, image: QImage) -> None:
        """Show ``image`` at the next paint (no conversion, no copy here)."""
        self._image = image
        if image.size() != self._image_size:
            self._image_size = image.size()
            self._fit()
        self.update()

    @Slot()
    def clear_frame(self) -> None:
        """Drop the current frame: the placeholder shows until the next one."""
        if self._image is not None:
            self._image = None
            self.update()

    @Slot(str)
    def set_placeholder(self, text: str, avatar_name: str = "") -> None:
        """What to show without video; ``avatar_name`` adds a circle with initials."""
        self._placeholder = text
        self._avatar_name = avatar_name
        self._avatar_initials = initials(avatar_name) if avatar_name else ""
        self._avatar_color = _name_color(avatar_name) if avatar_name else QColor()
        self.setAccessibleDescription(text)
        self._relayout()
        self.update()

    @Slot(str)
    def set_name(self, name: str) -> None:
        """The name tag in the bottom-left corner ("" hides it)."""
        self._name = name
        self._relayout()
        self.update()

    @Slot(bool)
    def set_muted(self, muted: bool) -> None:
        """Show a crossed-out microphone in the name tag."""
        self._muted = muted
        self._relayout()
        self.update()

    def set_mirrored(self, mirrored: bool) -> None:
        self.mirrored = mirrored
        self.update()

    # ------------------------------------------------------------------ queries

    def placeholder(self) -> str:
        return self._placeholder

    def name(self) -> str:
        return self._name

    def is_muted(self) -> bool:
        return self._muted

    def has_frame(self) -> bool:
        return self._image is not None

    def sizeHint(self) -> QSize:
        return QSize(240, 135) if self._compact else QSize(640, 360)

    # ------------------------------------------------------------------ geometry

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()
        self._relayout()
        ratio = self.devicePixelRatioF()
        self.box_changed.emit(round(self.width() * ratio), round(self.height() * ratio), ratio)

    def _fit(self) -> None:
        """The centred target rectangle of the image, and the mirror transform."""
        width, height = self.width(), self.height()
        self._mirror = QTransform(-1.0, 0.0, 0.0, 1.0, float(width), 0.0)
        if self._image_size.isEmpty() or width <= 0 or height <= 0:
            self._target = QRectF()
            return
        scale = min(width / self._image_size.width(), height / self._image_size.height())
        w, h = self._image_size.width() * scale, self._image_size.height() * scale
        self._target = QRectF((width - w) / 2, (height - h) / 2, w, h)

    def _relayout(self) -> None:
        """Fonts and rectangles of the overlays: computed here, not in paintEvent."""
        width, height = max(1, self.width()), max(1, self.height())
        base = self.font().pointSizeF() if self.font().pointSizeF() > 0 else 10.0
        small = self._compact or min(width, height) < 200
        self._tag_font = QFont(self.font())
        self._tag_font.setPointSizeF(base * (0.9 if small else 1.0))
        self._tag_font.setWeight(QFont.Weight.DemiBold)
        self._text_font = QFont(self.font())
        self._text_font.setPointSizeF(base * (0.95 if small else 1.25))
        diameter = max(32.0, min(160.0, min(width, height) * (0.28 if small else 0.26)))
        self._avatar_font = QFont(self.font())
        self._avatar_font.setPixelSize(max(10, int(diameter * 0.38)))
        self._avatar_font.setWeight(QFont.Weight.DemiBold)

        text_metrics = QFontMetricsF(self._text_font)
        text_width = width - 32.0
        text_height = text_metrics.boundingRect(
            QRectF(0, 0, text_width, height),
            int(Qt.AlignmentFlag.AlignHCenter | Qt.TextFlag.TextWordWrap),
            self._placeholder,
        ).height()
        gap = 12.0 if self._avatar_initials else 0.0
        avatar = diameter if self._avatar_initials and height > diameter + 40 else 0.0
        block = avatar + gap + text_height
        top = max(4.0, (height - block) / 2)
        self._avatar_rect = QRectF((width - avatar) / 2, top, avatar, avatar)
        self._text_rect = QRectF(16.0, top + avatar + gap, text_width, text_height + 2)

        tag_metrics = QFontMetricsF(self._tag_font)
        icon = round(tag_metrics.height())
        if self._muted:
            self._muted_pixmap = theme.icon_pixmap(
                "mic-off", "#ff8a80", icon, self.devicePixelRatioF()
            )
        tag_width = tag_metrics.horizontalAdvance(self._name) if self._name else 0.0
        if self._muted and not self._muted_pixmap.isNull():
            tag_width += icon + (6 if self._name else 0)
        pad = 6.0 if small else 8.0
        tag_height = tag_metrics.height() + pad
        margin = 6.0 if small else 10.0
        visible = bool(self._name) or self._muted
        self._tag_rect = (
            QRectF(margin, height - margin - tag_height, tag_width + 2 * pad, tag_height)
            if visible
            else QRectF()
        )
        left = self._tag_rect.left() + pad
        if self._muted and not self._muted_pixmap.isNull():
            size = self._muted_pixmap.deviceIndependentSize()
            self._icon_pos = QPointF(left, self._tag_rect.center().y() - size.height() / 2)
            left += size.width() + 6
        self._tag_text_rect = QRectF(
            left, self._tag_rect.top(), max(0.0, self._tag_rect.right() - left), tag_height
        )

    # ------------------------------------------------------------------ painting

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), _VIDEO_BACKGROUND)
        image = self._image
        if image is not None and not self._target.isEmpty():
            # Frames normally arrive at the box's size (see box_changed): no scaling.
            # Until the first resize reaches the converter, smooth scaling stands in.
            if image.size() != self._target.size().toSize() * image.devicePixelRatio():
                painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            if self.mirrored:
                painter.setTransform(self._mirror)
            painter.drawImage(self._target, image)
            if self.mirrored:
                painter.resetTransform()
            self.frames_painted += 1
        else:
            self._paint_placeholder(painter)
        if not self._tag_rect.isEmpty():
            self._paint_tag(painter)
        if self._compact:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
            painter.setPen(_FRAME)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(self.rect().adjusted(0, 0, -1, -1))
        painter.end()

    def _paint_placeholder(self, painter: QPainter) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if not self._avatar_rect.isEmpty():
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(self._avatar_color)
            painter.drawEllipse(self._avatar_rect)
            painter.setPen(_TAG_TEXT)
            painter.setFont(self._avatar_font)
            painter.drawText(self._avatar_rect, Qt.AlignmentFlag.AlignCenter, self._avatar_initials)
        if self._placeholder:
            painter.setPen(_PLACEHOLDER_TEXT)
            painter.setFont(self._text_font)
            painter.drawText(self._text_rect, _TEXT_FLAGS, self._placeholder)

    def _paint_tag(self, painter: QPainter) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(_TAG_BACKGROUND)
        painter.drawRoundedRect(self._tag_rect, 6, 6)
        if self._muted and not self._muted_pixmap.isNull():
            painter.drawPixmap(self._icon_pos, self._muted_pixmap)
        if self._name:
            painter.setPen(_TAG_TEXT)
            painter.setFont(self._tag_font)
            painter.drawText(self._tag_text_rect, _TAG_FLAGS, self._name)


# ====================================================================== StatusIndicator

STATE_WORDS: dict[str, str] = {
    "idle": "Not in a call",
    "joining": "Joining the call…",
    "waiting": "Waiting for the other person",
    "connecting": "Connecting…",
    "connected": "Connected",
    "reconnecting": "Reconnecting…",
    "ending": "Hanging up…",
    "ended": "Call ended",
    "failed": "Call failed",
}

_STATE_COLORS: dict[str, str] = {
    "idle": "#9aa0a6",
    "joining": "#4285f4",
    "waiting": "#4285f4",
    "connecting": "#4285f4",
    "connected": "#34a853",
    "reconnecting": "#f9ab00",
    "ending": "#9aa0a6",
    "ended": "#9aa0a6",
    "failed": "#ea4335",
}

_TIMES = "\N{MULTIPLICATION SIGN}"

CANDIDATE_WORDS: dict[str, str] = {
    "host": "direct (local network)",
    "srflx": "direct (through NAT)",
    "prflx": "direct (through NAT)",
    "relay": "relayed (TURN)",
}


def status_text(state: str, reason: str = "") -> str:
    """The words a person sees for a call state."""
    words = STATE_WORDS.get(state, state.replace("_", " ").capitalize() or "Not in a call")
    if state in ("failed", "ended") and reason:
        return f"{words}: {reason}"
    return words


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def describe_stats(details: Mapping[str, Any]) -> list[str]:
    """Plain lines for the quality tooltip (values that are missing say so)."""
    lines: list[str] = []
    rtt = _number(details.get("rtt_ms"))
    lines.append(f"Round trip: {rtt:.0f} ms" if rtt is not None else "Round trip: not measured yet")
    loss = _number(details.get("loss"))
    if loss is not None:
        lines.append(f"Packet loss: {loss * 100:.1f} %")
    incoming = _number(details.get("bitrate_in_kbps"))
    outgoing = _number(details.get("bitrate_out_kbps"))
    if incoming is not None:
        lines.append(f"Receiving: {incoming:,.0f} kbit/s")
    if outgoing is not None:
        lines.append(f"Sending: {outgoing:,.0f} kbit/s")
    resolution = details.get("resolution")
    if resolution:
        if isinstance(resolution, (tuple, list)) and len(resolution) == 2:
            resolution = f"{resolution[0]}x{resolution[1]}"
        lines.append(f"Resolution: {str(resolution).replace('x', _TIMES)}")
    candidate = details.get("candidate_type")
    if candidate:
        lines.append(f"Connection: {CANDIDATE_WORDS.get(str(candidate), str(candidate))}")
    codec = details.get("codec")
    if codec:
        lines.append(f"Codec: {codec}")
    return lines


class _Dot(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._color = QColor(_STATE_COLORS["idle"])
        self.setFixedSize(12, 12)

    def set_color(self, color: str) -> None:
        self._color = QColor(color)
        self.update()

    def color(self) -> QColor:
        return self._color

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(self._color)
        painter.drawEllipse(QRectF(1, 1, 10, 10))
        painter.end()


class _QualityBars(QWidget):
    _COLORS = {1: "#ea4335", 2: "#f9ab00", 3: "#34a853", 4: "#34a853"}

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bars = 0
        self.setFixedSize(22, 16)

    def set_bars(self, bars: int) -> None:
        self.bars = bars
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        empty = QColor(self.palette().color(QPalette.ColorRole.WindowText))
        empty.setAlpha(60)
        filled = QColor(self._COLORS.get(self.bars, "#9aa0a6"))
        for index in range(4):
            height = 4 + index * 4
            painter.setBrush(filled if index < self.bars else empty)
            painter.drawRoundedRect(QRectF(index * 5 + 1, 16 - height, 4, height), 1, 1)
        painter.end()


class StatusIndicator(QWidget):
    """A coloured dot and plain words for the call state; quality bars when connected."""

    retry_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = "idle"
        self.reason = ""
        self.bars = 0
        self.details: dict[str, Any] = {}
        self.dot = _Dot(self)
        self.label = _plain_label("", self)
        self.label.setObjectName("statusText")
        self.label.setMinimumWidth(80)
        self.quality = _QualityBars(self)
        self.quality.setAccessibleName("Connection quality")
        self.retry_button = QPushButton("Retry", self)
        self.retry_button.setAccessibleName("Retry the call")
        self.retry_button.setToolTip("Try to connect again")
        self.retry_button.clicked.connect(self.retry_requested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        layout.addWidget(self.dot, 0, Qt.AlignmentFlag.AlignVCenter)
        layout.addWidget(self.label)
        layout.addWidget(self.quality, 0, Qt.AlignmentFlag.AlignVCenter)
        layout.addWidget(self.retry_button)
        layout.addStretch(1)
        self.setAccessibleName("Call status")
        self.set_state("idle", "")

    def text(self) -> str:
        return self.label.text()

    @Slot(str, str)
    def set_state(self, state: str, reason: str = "") -> None:
        self.state, self.reason = state, reason
        words = status_text(state, reason)
        self.label.setText(words)
        self.label.setToolTip(_escape_lines([words, reason]) if reason else "")
        self.dot.set_color(_STATE_COLORS.get(state, _STATE_COLORS["idle"]))
        self.setAccessibleDescription(words)
        self.retry_button.setVisible(state == "failed")
        self.quality.setVisible(state in ("connected", "reconnecting"))
        self._update_quality_tooltip()

    @Slot(int, dict)
    def set_quality(self, bars: int, details: Mapping[str, Any] | None = None) -> None:
        try:
            self.bars = max(0, min(4, int(bars)))
        except (TypeError, ValueError):
            self.bars = 0
        self.details = dict(details or {})
        self.quality.set_bars(self.bars)
        self.quality.setAccessibleDescription(f"{self.bars} of 4 bars")
        self._update_quality_tooltip()

    def quality_lines(self) -> list[str]:
        return [f"Quality: {self.bars} of 4", *describe_stats(self.details)]

    def _update_quality_tooltip(self) -> None:
        tooltip = _escape_lines(self.quality_lines())
        self.quality.setToolTip(tooltip)


# ====================================================================== ControlBar


class ControlBar(QWidget):
    """The call's buttons. Clicks and shortcuts become intent signals; ``set_*`` don't emit.

    Every button is backed by a QAction carrying the keyboard shortcut (active
    while the bar's window is active), so button, shortcut and tooltip agree.
    """

    microphone_toggled = Signal(bool)  # muted
    camera_toggled = Signal(bool)  # on
    screen_share_toggled = Signal(bool)  # on
    chat_toggled = Signal(bool)  # visible
    copy_link_requested = Signal()
    devices_requested = Signal()
    fullscreen_toggled = Signal(bool)
    hang_up_requested = Signal()

    SHORTCUTS: dict[str, str] = {
        "microphone": "Ctrl+D",
        "camera": "Ctrl+E",
        "screen": "Ctrl+Shift+S",
        "chat": "Ctrl+Shift+C",
        "link": "Ctrl+L",
        "fullscreen": "F11",
        "hang_up": "Ctrl+W",
    }

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        microphone_muted: bool = False,
        camera_on: bool = True,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("controlBar")
        self._unread = 0
        self._active = True

        self.mic_action = self._action("microphone", checkable=True, checked=microphone_muted)
        self.camera_action = self._action("camera", checkable=True, checked=camera_on)
        self.screen_action = self._action("screen", checkable=True)
        self.chat_action = self._action("chat", checkable=True)
        self.link_action = self._action("link")
        self.devices_action = self._action("devices")
        self.fullscreen_action = self._action("fullscreen", checkable=True)
        self.hang_up_action = self._action("hang_up")

        self.mic_action.triggered.connect(self.microphone_toggled)
        self.camera_action.triggered.connect(self.camera_toggled)
        self.screen_action.triggered.connect(self.screen_share_toggled)
        self.chat_action.triggered.connect(self.chat_toggled)
        self.link_action.triggered.connect(self.copy_link_requested)
        self.devices_action.triggered.connect(self.devices_requested)
        self.fullscreen_action.triggered.connect(self.fullscreen_toggled)
        self.hang_up_action.triggered.connect(self.hang_up_requested)
        for action in self.actions():
            action.toggled.connect(self._refresh)

        self.mic_button = self._button(self.mic_action, "micButton")
        self.camera_button = self._button(self.camera_action, "cameraButton")
        self.screen_button = self._button(self.screen_action, "screenButton")
        self.chat_button = self._button(self.chat_action, "chatButton")
        self.link_button = self._button(self.link_action, "linkButton")
        self.devices_button = self._button(self.devices_action, "devicesButton")
        self.fullscreen_button = self._button(self.fullscreen_action, "fullscreenButton")
        self.hang_up_button = self._button(self.hang_up_action, "hangUpButton")
        self.hang_up_button.setProperty("role", "hangup")
        self.hang_up_button.setStyleSheet(
            "QToolButton { background: #d93025; color: white; border: none;"
            " border-radius: 8px; padding: 4px 14px; min-width: 64px; }"
            "QToolButton:hover { background: #b3261e; }"
            "QToolButton:pressed { background: #8c1d18; }"
        )

        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 12, 8)
        layout.setSpacing(4)
        layout.addWidget(self.mic_button)
        layout.addWidget(self.camera_button)
        layout.addStretch(1)
        for button in (
            self.screen_button,
            self.chat_button,
            self.link_button,
            self.devices_button,
            self.fullscreen_button,
        ):
            layout.addWidget(button)
        layout.addStretch(1)
        layout.addWidget(self.hang_up_button)
        self.setAccessibleName("Call controls")
        self.refresh_icons()
        self._refresh()

    # ------------------------------------------------------------------ building

    def _action(self, key: str, *, checkable: bool = False, checked: bool = False) -> QAction:
        action = QAction(self)
        action.setObjectName(f"{key}Action")
        action.setCheckable(checkable)
        action.setChecked(checked)
        shortcut = self.SHORTCUTS.get(key)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.addAction(action)
        return action

    def _button(self, action: QAction, name: str) -> QToolButton:
        button = QToolButton(self)
        button.setObjectName(name)
        button.setProperty("role", "control")
        button.setDefaultAction(action)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
        button.setIconSize(QSize(24, 24))
        button.setAutoRaise(True)
        button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        return button

    def refresh_icons(self) -> None:
        """Tint the icons with the current palette (called again on theme changes)."""
        color = self.palette().color(QPalette.ColorRole.ButtonText)
        standard = QStyle.StandardPixmap
        self.mic_action.setIcon(theme.icon("mic", color, checked="mic-off"))
        # The camera button is checked while the camera is on.
        self.camera_action.setIcon(theme.icon("camera-off", color, checked="camera"))
        self.screen_action.setIcon(theme.icon("screen-share", color))
        self.chat_action.setIcon(theme.icon("chat", color))
        self.link_action.setIcon(theme.icon("link", color, fallback=standard.SP_FileLinkIcon))
        self.devices_action.setIcon(theme.icon("devices", color))
        self.fullscreen_action.setIcon(
            theme.icon(
                "fullscreen",
                color,
                checked="fullscreen-exit",
                fallback=standard.SP_TitleBarMaxButton,
            )
        )
        self.hang_up_action.setIcon(theme.icon("hang-up", "#ffffff"))

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self.refresh_icons()

    def _describe(self, action: QAction, text: str, tip: str) -> None:
        shortcut = _shortcut_text(action.shortcut())
        action.setText(text)
        action.setToolTip(f"{tip} ({shortcut})" if shortcut else tip)
        action.setStatusTip(tip)
        for button in action.associatedObjects():
            if isinstance(button, QToolButton):
                button.setAccessibleName(tip)
                button.setAccessibleDescription(f"Keyboard shortcut {shortcut}" if shortcut else "")

    @Slot()
    def _refresh(self) -> None:
        muted = self.mic_action.isChecked()
        self._describe(
            self.mic_action,
            "Unmute" if muted else "Mute",
            "Unmute microphone" if muted else "Mute microphone",
        )
        camera = self.camera_action.isChecked()
        self._describe(
            self.camera_action,
            "Stop video" if camera else "Start video",
            "Turn camera off" if camera else "Turn camera on",
        )
        sharing = self.screen_action.isChecked()
        self._describe(
            self.screen_action,
            "Stop sharing" if sharing else "Share screen",
            "Stop sharing your screen" if sharing else "Share your screen",
        )
        chat = self.chat_action.isChecked()
        unread = f" ({self._unread})" if self._unread and not chat else ""
        self._describe(
            self.chat_action,
            f"Chat{unread}",
            ("Hide chat" if chat else "Show chat") + (f", {self._unread} unread" if unread else ""),
        )
        self._describe(self.link_action, "Copy link", "Copy the call link")
        self._describe(self.devices_action, "Devices", "Choose camera, microphone and speaker")
        full = self.fullscreen_action.isChecked()
        self._describe(
            self.fullscreen_action,
            "Exit full screen" if full else "Full screen",
            "Exit full screen" if full else "Full screen",
        )
        self._describe(
            self.hang_up_action,
            "Hang up" if self._active else "Close",
            "Hang up" if self._active else "Close the window",
        )
        theme.set_flag(self.mic_button, "alert", muted)
        theme.set_flag(self.camera_button, "alert", not camera)

    # ------------------------------------------------------------------ slots (no intents)

    @Slot(bool)
    def set_microphone_muted(self, muted: bool) -> None:
        self.mic_action.setChecked(muted)
        self._refresh()

    @Slot(bool)
    def set_camera_on(self, on: bool) -> None:
        self.camera_action.setChecked(on)
        self._refresh()

    @Slot(bool)
    def set_screen_sharing(self, on: bool) -> None:
        self.screen_action.setChecked(on)
        self._refresh()

    @Slot(bool)
    def set_chat_visible(self, visible: bool) -> None:
        self.chat_action.setChecked(visible)
        self._refresh()

    @Slot(bool)
    def set_fullscreen(self, on: bool) -> None:
        self.fullscreen_action.setChecked(on)
        self._refresh()

    @Slot(int)
    def set_chat_unread(self, count: int) -> None:
        self._unread = max(0, count)
        self._refresh()

    @Slot(bool)
    def set_call_active(self, active: bool) -> None:
        """After the call: media controls off, hang-up becomes Close."""
        self._active = active
        for action in (self.mic_action, self.camera_action, self.screen_action, self.link_action):
            action.setEnabled(active)
        self._refresh()

    def set_devices_menu(self, menu: QMenu | None) -> None:
        """Attach a menu the controller fills; ``devices_requested`` fires as it opens."""
        self.devices_button.setMenu(menu)
        if menu is not None:
            self.devices_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
            menu.aboutToShow.connect(self.devices_requested)

    def buttons(self) -> list[QToolButton]:
        return self.findChildren(QToolButton)


# ====================================================================== ChatPanel


class ChatPanel(QWidget):
    """Messages (plain text, own ones on the right) and an input line; Enter sends."""

    message_submitted = Signal(str)
    unread_changed = Signal(int)
    close_requested = Signal()

    MAX_MESSAGE_CHARS = 4000

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatPanel")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        self.unread = 0
        self.title = _plain_label("Chat", self)
        self.title.setProperty("role", "heading")
        self.close_button = QToolButton(self)
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setAccessibleName("Close chat")
        self.close_button.setToolTip("Close chat (Ctrl+Shift+C)")
        self.close_button.clicked.connect(self.close_requested)

        self.messages = QTextBrowser(self)
        self.messages.setObjectName("chatMessages")
        self.messages.setOpenLinks(False)
        self.messages.setOpenExternalLinks(False)
        self.messages.setAcceptRichText(False)
        self.messages.setUndoRedoEnabled(False)
        self.messages.document().setMaximumBlockCount(5000)
        self.messages.setAccessibleName("Chat messages")
        self.messages.setPlaceholderText("Messages go only to the other person, end to end.")

        self.input = QLineEdit(self)
        self.input.setPlaceholderText("Write a message…")
        self.input.setMaxLength(self.MAX_MESSAGE_CHARS)
        self.input.setAccessibleName("Message")
        self.input.setClearButtonEnabled(True)
        self.input.returnPressed.connect(self.submit)
        self.send_button = QPushButton("Send", self)
        self.send_button.setAccessibleName("Send message")
        self.send_button.setToolTip("Send (Enter)")
        self.send_button.clicked.connect(self.submit)
        self.send_button.setEnabled(False)
        self.input.textChanged.connect(lambda text: self.send_button.setEnabled(bool(text.strip())))

        header = QHBoxLayout()
        header.addWidget(self.title, 1)
        header.addWidget(self.close_button)
        row = QHBoxLayout()
        row.addWidget(self.input, 1)
        row.addWidget(self.send_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 10)
        layout.addLayout(header)
        layout.addWidget(self.messages, 1)
        layout.addLayout(row)
        self.setMinimumWidth(220)
        self.setAccessibleName("Chat")

    def sizeHint(self) -> QSize:
        return QSize(300, 400)

    @Slot(str)
    def set_peer_name(self, name: str) -> None:
        self.input.setPlaceholderText(f"Message {name}…" if name else "Write a message…")

    @Slot()
    def submit(self) -> None:
        text = self.input.text().strip()
        if not text:
            return
        self.input.clear()
        self.message_submitted.emit(text)

    @Slot(str, str, float, bool)
    def add_message(self, sender: str, text: str, at: float, own: bool = False) -> None:
        """Append one message; everything is inserted as plain text, never parsed."""
        bar = self.messages.verticalScrollBar()
        at_bottom = bar.value() >= bar.maximum() - 4
        document = self.messages.document()
        cursor = QTextCursor(document)
        cursor.movePosition(QTextCursor.MoveOperation.End)
        palette = self.palette()

        block = QTextBlockFormat()
        block.setAlignment(Qt.AlignmentFlag.AlignRight if own else Qt.AlignmentFlag.AlignLeft)
        block.setTopMargin(0 if document.isEmpty() else 10)
        header = QTextCharFormat()
        header.setFontWeight(QFont.Weight.DemiBold)
        dark = palette.color(QPalette.ColorRole.Base).lightness() < 128
        header.setForeground(
            palette.color(QPalette.ColorRole.Highlight)
            if own
            else _name_color(sender, 170 if dark else 90)
        )
        meta = QTextCharFormat()
        meta.setForeground(palette.color(QPalette.ColorRole.PlaceholderText))
        body_block = QTextBlockFormat(block)
        body_block.setTopMargin(2)
        body = QTextCharFormat()
        body.setForeground(palette.color(QPalette.ColorRole.Text))

        if document.isEmpty():
            cursor.setBlockFormat(block)
        else:
            cursor.insertBlock(block)
        cursor.insertText(sender or "Someone", header)
        cursor.insertText(f"  {self._time(at)}", meta)
        cursor.insertBlock(body_block, body)
        cursor.insertText(text, body)

        if at_bottom or own:
            bar.setValue(bar.maximum())
        if not own and not self.isVisible():
            self.unread += 1
            self.unread_changed.emit(self.unread)

    def plain_text(self) -> str:
        return self.messages.toPlainText()

    @staticmethod
    def _time(at: float) -> str:
        """Local time of day; "" for a timestamp that is no time at all."""
        seconds = _number(at)
        if seconds is None or not 0 <= seconds < 1e11:
            return ""
        moment = QDateTime.fromMSecsSinceEpoch(int(seconds * 1000))
        if not moment.isValid():
            return ""
        return QLocale().toString(moment.time(), QLocale.FormatType.ShortFormat)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self.unread:
            self.unread = 0
            self.unread_changed.emit(0)


# ====================================================================== VerificationLabel

SAS_EXPLANATION = "Compare this code with the other person: if it matches, nobody is listening in."


def format_sas(code: str) -> str:
    """ "123456" → "123 456"; other shapes are shown as given."""
    compact = "".join(code.split())
    if compact.isdigit() and len(compact) == 6:
        return f"{compact[:3]} {compact[3:]}"
    return code.strip()


class VerificationLabel(QWidget):
    """The verification (SAS) code and one line on what to do with it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.caption = _plain_label("Verification code", self)
        self.caption.setProperty("role", "hint")
        self.code_label = _plain_label("", self)
        self.code_label.setObjectName("sasCode")
        self.code_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.explanation = _plain_label(SAS_EXPLANATION, self)
        self.explanation.setWordWrap(True)
        self.explanation.setProperty("role", "hint")
        codes = QVBoxLayout()
        codes.setSpacing(0)
        codes.addWidget(self.caption)
        codes.addWidget(self.code_label)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(12)
        layout.addLayout(codes)
        layout.addWidget(self.explanation, 1)
        self.setAccessibleName("Verification code")
        self.setAccessibleDescription(SAS_EXPLANATION)
        self.setToolTip(SAS_EXPLANATION)
        self.set_code("")

    @Slot(str)
    def set_code(self, code: str) -> None:
        shown = format_sas(code)
        self.code_label.setText(shown)
        self.code_label.setAccessibleName(f"Verification code {shown}" if shown else "")
        if self.parentWidget() is not None or not shown:
            self.setVisible(bool(shown))

    def code(self) -> str:
        return self.code_label.text()
