"""The home window: your name, New call (link + QR code), Join, recent calls.

A pure view: it validates what people paste (``parse_call_target``) and emits
``new_call_requested`` / ``join_requested(CallTarget)`` / ``settings_requested``
/ ``display_name_changed``; the app answers through ``show_new_call``,
``set_settings``, ``set_hosting``, ``set_busy`` and ``show_error``.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QDateTime, QLocale, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QCloseEvent, QGuiApplication, QImage, QPixmap, QResizeEvent
from PySide6.QtWidgets import (
    QBoxLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from desktop_call.signaling.ids import (
    CallTarget,
    InvalidCallTarget,
    parse_call_target,
    parse_server_url,
)
from desktop_call.signaling.protocol import MAX_NAME_CHARS
from desktop_call.ui import theme
from desktop_call.ui.settings import RecentCall, Settings

__all__ = ["HomeWindow", "describe_target", "qr_image", "qr_pixmap"]

QR_SIZE = 168  # logical pixels
LINK_ROLE = Qt.ItemDataRole.UserRole


def qr_image(text: str, pixels: int) -> QImage:
    """A QR code of ``text``, black on white with its quiet zone, at most ``pixels`` wide.

    Modules are whole pixels (nearest-neighbour scaling) so the code stays sharp.
    """
    import segno

    code = segno.make(text, error="m")
    rows = [bytes(0 if dark else 255 for dark in row) for row in code.matrix_iter(border=4)]
    modules = len(rows)
    data = b"".join(rows)
    image = QImage(data, modules, modules, modules, QImage.Format.Format_Grayscale8).copy()
    scale = max(1, pixels // modules)
    return image.scaled(
        modules * scale,
        modules * scale,
        Qt.AspectRatioMode.IgnoreAspectRatio,
        Qt.TransformationMode.FastTransformation,
    )


def qr_pixmap(text: str, size: int, device_pixel_ratio: float) -> QPixmap:
    """The QR code for a label of ``size`` logical pixels on a screen of this ratio."""
    dpr = device_pixel_ratio if device_pixel_ratio > 0 else 1.0
    pixmap = QPixmap.fromImage(qr_image(text, math.floor(size * dpr)))
    pixmap.setDevicePixelRatio(dpr)
    return pixmap


def describe_target(target: CallTarget) -> str:
    """ "Call 7k3m-q9vd-x2ha on 192.168.1.5:8787" (server left out for a bare ID)."""
    if target.server_url:
        return f"Call {target.call_id} on {target.server_url.partition('://')[2]}"
    return f"Call {target.call_id}"


def _when(timestamp: float) -> str:
    moment = QDateTime.fromMSecsSinceEpoch(int(timestamp * 1000))
    if not moment.isValid() or timestamp <= 0:
        return ""
    locale = QLocale()
    today = QDateTime.currentDateTime().date()
    time = locale.toString(moment.time(), QLocale.FormatType.ShortFormat)
    days = moment.date().daysTo(today)
    if days == 0:
        return f"today {time}"
    if days == 1:
        return f"yesterday {time}"
    return locale.toString(moment.date(), QLocale.FormatType.ShortFormat)


def _label(text: str = "", role: str | None = None, parent: QWidget | None = None) -> QLabel:
    label = QLabel(text, parent)
    label.setTextFormat(Qt.TextFormat.PlainText)
    if role:
        label.setProperty("role", role)
    return label


class HomeWindow(QMainWindow):
    new_call_requested = Signal()
    join_requested = Signal(object)  # CallTarget
    settings_requested = Signal()
    display_name_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Desktop Call")
        self.setWindowIcon(theme.app_icon())
        self.settings = Settings(display_name="")
        self.busy = False
        self.hosting_url: str | None = None
        self.hosting_error: str | None = None
        self.new_call_link = ""
        self.new_call_id = ""
        self._join_target: CallTarget | None = None
        self._last_name: str | None = None
        self._copied_timer = QTimer(self)
        self._copied_timer.setSingleShot(True)
        self._copied_timer.setInterval(2500)
        self._copied_timer.timeout.connect(self._reset_copy_button)
        self._build()
        self.set_settings(self.settings)
        self.resize(940, 640)
        self.setMinimumSize(QSize(560, 480))
        theme.follow_theme(self)

    # ------------------------------------------------------------------ building

    def _build(self) -> None:
        # Header: title, your name
        self.title = _label("Desktop Call", "title")
        self.subtitle = _label(
            "Private video calls, straight from this computer to theirs.", "hint"
        )
        self.name_edit = QLineEdit()
        self.name_edit.setMaxLength(MAX_NAME_CHARS)
        self.name_edit.setPlaceholderText("The name the other person sees")
        self.name_edit.setAccessibleName("Your name")
        self.name_edit.setToolTip("The name the other person sees")
        self.name_edit.editingFinished.connect(self._commit_name)
        name_label = _label("Your name")
        name_label.setBuddy(self.name_edit)
        name_row = QHBoxLayout()
        name_row.addWidget(name_label)
        name_row.addWidget(self.name_edit, 1)

        self.error_label = _label("", "banner-error")
        self.error_label.setWordWrap(True)
        self.error_label.setAccessibleName("Error")
        self.error_label.hide()

        # Left card: start a call
        self.new_call_button = QPushButton("New call")
        self.new_call_button.setProperty("role", "primary")
        self.new_call_button.setAccessibleName("Start a new call")
        self.new_call_button.setToolTip("Create a call and get a link to send (Ctrl+N)")
        self.new_call_button.setShortcut("Ctrl+N")
        self.new_call_button.clicked.connect(self._on_new_call)
        self.new_call_hint = _label(
            "You get a link to send to the person you want to call.", "hint"
        )
        self.new_call_hint.setWordWrap(True)

        self.call_id_label = _label("", "heading")
        self.call_id_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.call_id_label.setAccessibleName("Call ID")
        self.link_edit = QLineEdit()
        self.link_edit.setReadOnly(True)
        self.link_edit.setAccessibleName("Call link")
        self.qr_label = QLabel()
        self.qr_label.setFixedSize(QR_SIZE, QR_SIZE)
        self.qr_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.qr_label.setAccessibleName("QR code of the call link")
        self.qr_label.setToolTip("The call link as a QR code")
        self.copy_link_button = QPushButton("Copy link")
        self.copy_link_button.setIcon(theme.icon("copy"))
        self.copy_link_button.setAccessibleName("Copy the call link")
        self.copy_link_button.setToolTip("Copy the call link to the clipboard")
        self.copy_link_button.clicked.connect(lambda: self.copy_link())
        self.enter_call_button = QPushButton("Enter call")
        self.enter_call_button.setProperty("role", "primary")
        self.enter_call_button.setAccessibleName("Enter the new call")
        self.enter_call_button.setToolTip("Go into the call and wait for the other person")
        self.enter_call_button.clicked.connect(self._on_enter_call)
        self.copied_label = _label("", "ok")
        self.copied_label.setWordWrap(True)

        self.new_call_panel = QWidget()
        panel = QVBoxLayout(self.new_call_panel)
        panel.setContentsMargins(0, 8, 0, 0)
        panel.addWidget(_label("Your call", "hint"))
        panel.addWidget(self.call_id_label)
        panel.addWidget(self.link_edit)
        panel.addWidget(self.qr_label, 0, Qt.AlignmentFlag.AlignHCenter)
        buttons = QHBoxLayout()
        buttons.addWidget(self.copy_link_button)
        buttons.addWidget(self.enter_call_button)
        panel.addLayout(buttons)
        panel.addWidget(self.copied_label)
        self.new_call_panel.hide()

        start_card = self._card()
        start = QVBoxLayout(start_card)
        start.setContentsMargins(18, 16, 18, 16)
        start.addWidget(_label("Start a call", "heading"))
        start.addWidget(self.new_call_hint)
        start.addWidget(self.new_call_button)
        start.addWidget(self.new_call_panel)
        start.addStretch(1)

        # Right card: join a call, recent calls
        self.join_edit = QLineEdit()
        self.join_edit.setPlaceholderText("Paste a call ID or link")
        self.join_edit.setAccessibleName("Call ID or link to join")
        self.join_edit.setClearButtonEnabled(True)
        self.join_edit.textChanged.connect(self._validate_join)
        self.join_edit.returnPressed.connect(self._on_join)
        self.join_button = QPushButton("Join")
        self.join_button.setProperty("role", "primary")
        self.join_button.setAccessibleName("Join the call")
        self.join_button.setToolTip("Join the call (Enter)")
        self.join_button.clicked.connect(self._on_join)
        self.join_message = _label("", "hint")
        self.join_message.setWordWrap(True)
        self.join_message.setAccessibleName("Call ID check")
        join_row = QHBoxLayout()
        join_row.addWidget(self.join_edit, 1)
        join_row.addWidget(self.join_button)

        self.recent_list = QListWidget()
        self.recent_list.setObjectName("recentCalls")
        self.recent_list.setAccessibleName("Recent calls")
        self.recent_list.setToolTip("Double-click or press Enter to join again")
        self.recent_list.itemActivated.connect(self._on_recent_activated)
        self.recent_list.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.recent_list.setMinimumHeight(90)
        self.recent_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.recent_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.recent_empty = _label("Calls you join show up here.", "hint")

        join_card = self._card()
        join = QVBoxLayout(join_card)
        join.setContentsMargins(18, 16, 18, 16)
        join.addWidget(_label("Join a call", "heading"))
        join.addLayout(join_row)
        join.addWidget(self.join_message)
        join.addSpacing(8)
        join.addWidget(_label("Recent calls", "heading"))
        join.addWidget(self.recent_list, 1)
        join.addWidget(self.recent_empty)

        self.columns = QBoxLayout(QBoxLayout.Direction.LeftToRight)
        self.columns.setSpacing(16)
        self.columns.addWidget(start_card, 1)
        self.columns.addWidget(join_card, 1)

        # Footer: server, settings
        self.server_label = _label("", "hint")
        self.server_label.setWordWrap(True)
        self.server_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.server_label.setAccessibleName("Room server")
        self.settings_button = QPushButton("Settings")
        self.settings_button.setIcon(theme.icon("settings"))
        self.settings_button.setAccessibleName("Settings")
        self.settings_button.setToolTip("Name, server, STUN/TURN, devices (Ctrl+,)")
        self.settings_button.setShortcut("Ctrl+,")
        self.settings_button.clicked.connect(self.settings_requested)
        footer = QHBoxLayout()
        footer.addWidget(self.server_label, 1)
        footer.addWidget(self.settings_button)

        content = QWidget()
        layout = QVBoxLayout(content)
        layout.setContentsMargins(28, 22, 28, 18)
        layout.setSpacing(12)
        layout.addWidget(self.title)
        layout.addWidget(self.subtitle)
        layout.addLayout(name_row)
        layout.addWidget(self.error_label)
        layout.addLayout(self.columns, 1)
        layout.addLayout(footer)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(content)
        self.setCentralWidget(scroll)
        self.setTabOrder(self.name_edit, self.new_call_button)
        self.setTabOrder(self.new_call_button, self.join_edit)
        self.setTabOrder(self.join_edit, self.join_button)
        self.setTabOrder(self.join_button, self.recent_list)
        self._validate_join("")

    @staticmethod
    def _card() -> QFrame:
        card = QFrame()
        card.setProperty("role", "card")
        card.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        return card

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        narrow = self.width() < 760
        direction = QBoxLayout.Direction.TopToBottom if narrow else QBoxLayout.Direction.LeftToRight
        if self.columns.direction() != direction:
            self.columns.setDirection(direction)

    # ------------------------------------------------------------------ slots from the app

    @Slot(object)
    def set_settings(self, settings: Settings) -> None:
        self.settings = settings
        self._last_name = settings.display_name
        if self.name_edit.text() != settings.display_name:
            self.name_edit.setText(settings.display_name)
        self._fill_recent(settings.recent_calls)
        self._update_server_label()

    @Slot(object, object)
    def set_hosting(self, url: str | None, error: str | None = None) -> None:
        """The embedded room server: its LAN address, or why it could not start."""
        self.hosting_url, self.hosting_error = url, error
        self._update_server_label()

    @Slot(bool)
    def set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.new_call_button.setEnabled(not busy)
        self.enter_call_button.setEnabled(not busy)
        self.recent_list.setEnabled(not busy)
        self._validate_join(self.join_edit.text())
        if busy:
            self.setCursor(Qt.CursorShape.BusyCursor)
        else:
            self.unsetCursor()

    @Slot(str)
    def show_error(self, text: str) -> None:
        self.error_label.setText(text)
        self.error_label.setVisible(bool(text))

    @Slot(str, str)
    def show_new_call(self, link: str, call_id: str) -> None:
        """Show a new call's ID, link and QR code; the link goes on the clipboard too."""
        self.new_call_link, self.new_call_id = link, call_id
        self.call_id_label.setText(call_id)
        self.link_edit.setText(link)
        self.link_edit.setCursorPosition(0)
        self.qr_label.setPixmap(qr_pixmap(link, QR_SIZE, self.devicePixelRatioF()))
        self.new_call_hint.hide()
        self.new_call_panel.show()
        self.copy_link(announce="Link copied: send it to the person you want to call.")
        self.enter_call_button.setFocus()

    # ------------------------------------------------------------------ actions

    @Slot()
    def copy_link(self, announce: str = "Link copied.") -> None:
        if not self.new_call_link:
            return
        clipboard = QGuiApplication.clipboard()
        if clipboard is not None:
            clipboard.setText(self.new_call_link)
        self.copied_label.setText(announce)
        self.copy_link_button.setText("Copied")
        self.copy_link_button.setIcon(theme.icon("check"))
        self._copied_timer.start()

    def _reset_copy_button(self) -> None:
        self.copy_link_button.setText("Copy link")
        self.copy_link_button.setIcon(theme.icon("copy"))

    def _commit_name(self) -> None:
        name = self.name_edit.text().strip()[:MAX_NAME_CHARS]
        if name != self._last_name:
            self._last_name = name
            self.display_name_changed.emit(name)

    def _on_new_call(self) -> None:
        if self.busy:
            return
        self._commit_name()
        self.show_error("")
        self.new_call_requested.emit()

    def _on_enter_call(self) -> None:
        if self.busy or not self.new_call_link:
            return
        try:
            target = parse_call_target(self.new_call_link)
        except InvalidCallTarget as exc:
            self.show_error(str(exc))
            return
        self._join(target)

    def _on_join(self) -> None:
        if self.busy:
            return
        target = self._validate_join(self.join_edit.text())
        if target is None:
            if self.join_edit.text().strip():
                self.join_edit.setFocus()
            return
        self._join(target)

    def _on_recent_activated(self, item: QListWidgetItem) -> None:
        if self.busy or item is None:
            return
        try:
            target = parse_call_target(str(item.data(LINK_ROLE)))
        except InvalidCallTarget as exc:
            self.show_error(str(exc))
            return
        self._join(target)

    def _join(self, target: CallTarget) -> None:
        self._commit_name()
        self.show_error("")
        self.join_requested.emit(target)

    # ------------------------------------------------------------------ views

    def _validate_join(self, text: str) -> CallTarget | None:
        target: CallTarget | None = None
        if not text.strip():
            self.join_message.setText("Paste the ID or link you were sent.")
            theme.set_role(self.join_message, "hint")
            theme.set_flag(self.join_edit, "invalid", False)
        else:
            try:
                target = parse_call_target(text)
            except InvalidCallTarget as exc:
                self.join_message.setText(str(exc))
                theme.set_role(self.join_message, "error")
                theme.set_flag(self.join_edit, "invalid", True)
            else:
                self.join_message.setText(f"\N{CHECK MARK} {describe_target(target)}")
                theme.set_role(self.join_message, "ok")
                theme.set_flag(self.join_edit, "invalid", False)
        self._join_target = target
        self.join_button.setEnabled(target is not None and not self.busy)
        return target

    def join_target(self) -> CallTarget | None:
        """The call the Join field names now, or None."""
        return self._join_target

    def _fill_recent(self, recent: tuple[RecentCall, ...]) -> None:
        self.recent_list.clear()
        for call in recent:
            try:
                target = parse_call_target(call.link)
            except InvalidCallTarget:
                continue
            details = [_when(call.joined_at)]
            if target.server_url:
                details.insert(0, target.server_url.partition("://")[2])
            second = "  ·  ".join(d for d in details if d)
            item = QListWidgetItem(f"{target.call_id}\n{second}" if second else target.call_id)
            item.setData(LINK_ROLE, call.link)
            item.setToolTip(call.link)
            self.recent_list.addItem(item)
        has_items = self.recent_list.count() > 0
        self.recent_list.setVisible(has_items)
        self.recent_empty.setVisible(not has_items)
        if has_items:
            self.recent_list.setCurrentRow(0)

    def server_text(self) -> str:
        return self.server_label.text()

    def _update_server_label(self) -> None:
        settings = self.settings
        role = "hint"
        if settings.server_mode == "remote":
            try:
                text = f"Server: {parse_server_url(settings.remote_server_url)}"
            except InvalidCallTarget:
                text = "Server: not set. Choose one in Settings."
                role = "error"
        elif self.hosting_error:
            text = f"This computer: the room server could not start ({self.hosting_error})"
            role = "error"
        elif self.hosting_url:
            text = f"This computer (LAN: {self.hosting_url})"
        else:
            text = "This computer (starting the room server…)"
        self.server_label.setText(text)
        self.server_label.setToolTip(
            "Where calls are set up. Media goes straight between the two computers."
        )
        theme.set_role(self.server_label, role)

    def closeEvent(self, event: QCloseEvent) -> None:
        self._commit_name()
        super().closeEvent(event)
