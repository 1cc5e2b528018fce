"""The call window: remote video large, self view in a corner, status, controls, chat.

It holds no call logic. The constructor wires the view-model (the controller)
both ways: controller signals update the widgets, widget intents call the
controller's methods. What it decides itself is only what to *show*: the
placeholder of the remote view per state, ignoring frames while a camera is
off, toasts for notices.

Closing hangs up first: the first close (window button, Ctrl+W, Hang up) is
ignored, ``hang_up_requested`` is emitted once and ``controller.hang_up()``
called; when the controller says ``ended`` the window closes for real and emits
``closed``. Once the call has ended, closing is immediate. ``finish_close()``
(alias ``allow_close()``) lets the app close it without waiting, and a timeout
closes it anyway if ``ended`` never comes.
"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QEvent, QObject, QRect, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QCloseEvent, QImage, QKeyEvent, QResizeEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMainWindow, QVBoxLayout, QWidget

from desktop_call.ui import theme
from desktop_call.ui.widgets import (
    ChatPanel,
    ControlBar,
    StatusIndicator,
    VerificationLabel,
    VideoView,
)

__all__ = ["CallWindow"]

DEFAULT_PEER = "the other person"
NOTICE_MS = 4500


class _Stage(QWidget):
    """The video area: remote view filling it, self view and toast floating above."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.remote = VideoView(self)
        self.local = VideoView(self, mirrored=True, compact=True)
        self.toast = QLabel(self)
        self.toast.setObjectName("toast")
        self.toast.setTextFormat(Qt.TextFormat.PlainText)
        self.toast.setWordWrap(True)
        self.toast.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.toast.setAccessibleName("Notice")
        self.toast.hide()
        self.local_aspect = 4 / 3
        self.setMinimumSize(320, 200)

    def set_local_aspect(self, aspect: float) -> None:
        if aspect > 0 and abs(aspect - self.local_aspect) > 0.01:
            self.local_aspect = aspect
            self.place()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.place()

    def pip_rect(self) -> QRect:
        width, height = self.width(), self.height()
        margin = 12 if min(width, height) < 420 else 16
        pip_width = int(max(120, min(300, width * 0.22)))
        pip_height = int(pip_width / self.local_aspect)
        if pip_height > height * 0.4:
            pip_height = int(height * 0.4)
            pip_width = int(pip_height * self.local_aspect)
        return QRect(
            width - pip_width - margin, height - pip_height - margin, pip_width, pip_height
        )

    def place(self) -> None:
        self.remote.setGeometry(self.rect())
        self.local.setGeometry(self.pip_rect())
        self.local.raise_()
        self.place_toast()

    def place_toast(self) -> None:
        if not self.toast.isVisible() and not self.toast.text():
            return
        self.toast.setMinimumSize(0, 0)
        self.toast.setMaximumSize(16777215, 16777215)
        desired = self.toast.fontMetrics().horizontalAdvance(self.toast.text()) + 40
        width = max(120, min(self.width() - 32, 560, desired))
        height = self.toast.heightForWidth(width)
        self.toast.setFixedSize(width, height if height > 0 else self.toast.sizeHint().height())
        self.toast.move((self.width() - self.toast.width()) // 2, 16)
        self.toast.raise_()


class CallWindow(QMainWindow):
    hang_up_requested = Signal()
    devices_requested = Signal()
    closed = Signal()

    def __init__(
        self,
        controller: QObject,
        parent: QWidget | None = None,
        *,
        close_timeout_ms: int = 8000,
    ) -> None:
        super().__init__(parent)
        self.controller = controller
        self.state = "joining"
        self.reason = ""
        self.peer_name = ""
        self.remote_camera_on = True
        self.remote_muted = False
        self.camera_on = True
        self.ended = False
        self._hang_up_sent = False
        self._close_pending = False
        self._close_allowed = False
        self._in_close_event = False
        self._closed_emitted = False
        self._fullscreen_from_maximized = False

        self._notice_timer = QTimer(self)
        self._notice_timer.setSingleShot(True)
        self._notice_timer.setInterval(NOTICE_MS)
        self._notice_timer.timeout.connect(self._hide_notice)
        self._close_timer = QTimer(self)
        self._close_timer.setSingleShot(True)
        self._close_timer.setInterval(close_timeout_ms)
        self._close_timer.timeout.connect(self.finish_close)

        self._build()
        self._connect_controller()
        self._connect_widgets()
        self._update_title()
        self._update_local_placeholder()
        self._on_state_changed("joining", "")
        self.resize(1100, 720)
        self.setMinimumSize(QSize(640, 480))
        theme.follow_theme(self)

    # ------------------------------------------------------------------ building

    def _build(self) -> None:
        self.setWindowIcon(theme.app_icon())
        self.stage = _Stage()
        self.remote_view = self.stage.remote
        self.local_view = self.stage.local
        self.toast = self.stage.toast
        self.remote_view.setAccessibleName("Video of the other person")
        self.local_view.setAccessibleName("Your video")
        self.local_view.set_name("You")

        self.status = StatusIndicator()
        self.verification = VerificationLabel()
        self.verification.setMaximumWidth(560)
        top = QWidget()
        top.setObjectName("callTopBar")
        top.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        top_layout = QHBoxLayout(top)
        top_layout.setContentsMargins(14, 8, 14, 8)
        top_layout.setSpacing(16)
        top_layout.addWidget(self.status, 1)
        top_layout.addWidget(self.verification, 0)

        self.chat_panel = ChatPanel()
        self.chat_panel.setMaximumWidth(360)
        self.chat_panel.hide()
        middle = QHBoxLayout()
        middle.setContentsMargins(0, 0, 0, 0)
        middle.setSpacing(0)
        middle.addWidget(self.stage, 1)
        middle.addWidget(self.chat_panel)

        self.control_bar = ControlBar()
        self.control_bar.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(top)
        layout.addLayout(middle, 1)
        layout.addWidget(self.control_bar)
        self.setCentralWidget(central)

    def _connect_controller(self) -> None:
        c: Any = self.controller
        c.state_changed.connect(self._on_state_changed)
        c.remote_frame.connect(self._on_remote_frame)
        c.local_frame.connect(self._on_local_frame)
        set_box = getattr(c, "set_view_box", None)
        if set_box is not None:  # frames converted to the views' own sizes
            self.remote_view.box_changed.connect(lambda w, h, r: set_box("remote", w, h, r))
            self.local_view.box_changed.connect(lambda w, h, r: set_box("local", w, h, r))
        c.stats_changed.connect(self._on_stats)
        c.sas_changed.connect(self.verification.set_code)
        c.chat_received.connect(self._on_chat_received)
        c.remote_media_changed.connect(self._on_remote_media)
        c.peer_name_changed.connect(self._on_peer_name)
        c.notice.connect(self.show_notice)
        c.ended.connect(self._on_ended)

    def _connect_widgets(self) -> None:
        bar = self.control_bar
        bar.microphone_toggled.connect(self._on_microphone_toggled)
        bar.camera_toggled.connect(self._on_camera_toggled)
        bar.screen_share_toggled.connect(self._on_screen_share_toggled)
        bar.chat_toggled.connect(self._set_chat_visible)
        bar.copy_link_requested.connect(self._on_copy_link)
        bar.devices_requested.connect(self.devices_requested)
        bar.fullscreen_toggled.connect(self._set_fullscreen)
        bar.hang_up_requested.connect(self.close)
        self.chat_panel.message_submitted.connect(self._on_chat_submitted)
        self.chat_panel.unread_changed.connect(bar.set_chat_unread)
        self.chat_panel.close_requested.connect(lambda: self._set_chat_visible(False))
        self.status.retry_requested.connect(self._on_retry)

    # ------------------------------------------------------------------ controller → view

    @Slot(str, str)
    def _on_state_changed(self, state: str, reason: str) -> None:
        self.state, self.reason = state, reason
        self.status.set_state(state, reason)
        if state in ("idle", "joining", "waiting", "ended", "failed"):
            self.remote_view.clear_frame()
        if state in ("ended", "failed"):
            self.verification.set_code("")
        if state == "waiting":
            self.remote_camera_on = True
            self.remote_muted = False
            self.remote_view.set_muted(False)
            self.verification.set_code("")
        self._update_remote_placeholder()
        self.control_bar.set_call_active(state not in ("ended", "failed"))

    @Slot(QImage)
    def _on_remote_frame(self, image: QImage) -> None:
        if self.remote_camera_on and not self.ended:
            self.remote_view.set_frame(image)

    @Slot(QImage)
    def _on_local_frame(self, image: QImage) -> None:
        if not self.camera_on or self.ended:
            return
        if image.height() > 0:
            self.stage.set_local_aspect(image.width() / image.height())
        self.local_view.set_frame(image)

    @Slot(dict)
    def _on_stats(self, stats: dict) -> None:
        self.status.set_quality(stats.get("quality") or 0, stats)

    @Slot(str, str, float)
    def _on_chat_received(self, sender: str, text: str, at: float) -> None:
        self.chat_panel.add_message(sender, text, at, False)
        if not self.chat_panel.isVisible():
            preview = " ".join(text.split())
            if len(preview) > 90:
                preview = preview[:89] + "…"
            self.show_notice(f"{sender}: {preview}")

    @Slot(bool, bool)
    def _on_remote_media(self, muted: bool, camera_on: bool) -> None:
        self.remote_muted = muted
        self.remote_view.set_muted(muted)
        if self.remote_camera_on and not camera_on:
            self.remote_view.clear_frame()
        self.remote_camera_on = camera_on
        self._update_remote_placeholder()

    @Slot(str)
    def _on_peer_name(self, name: str) -> None:
        self.peer_name = name
        self.remote_view.set_name(name)
        self.remote_view.setAccessibleName(f"Video of {name}" if name else "Video")
        self.chat_panel.set_peer_name(name)
        self._update_title()
        self._update_remote_placeholder()

    @Slot()
    def _on_ended(self) -> None:
        self.ended = True
        if self.state not in ("ended", "failed"):
            self._on_state_changed("ended", "")
        self.remote_view.clear_frame()
        self.local_view.clear_frame()
        self.control_bar.set_call_active(False)
        if self._close_pending:
            self.finish_close()

    # ------------------------------------------------------------------ view → controller

    @Slot(bool)
    def _on_microphone_toggled(self, muted: bool) -> None:
        self.local_view.set_muted(muted)
        self.controller.set_microphone_muted(muted)

    @Slot(bool)
    def _on_camera_toggled(self, on: bool) -> None:
        self.camera_on = on
        if not on:
            self.local_view.clear_frame()
        self._update_local_placeholder()
        self.controller.set_camera_enabled(on)

    @Slot(bool)
    def _on_screen_share_toggled(self, on: bool) -> None:
        self.local_view.set_mirrored(not on)  # a shared screen reads the right way round
        self.local_view.set_name("You (screen)" if on else "You")
        self.controller.set_screen_share(on)

    @Slot(str)
    def _on_chat_submitted(self, text: str) -> None:
        self.chat_panel.add_message("You", text, time.time(), True)
        self.controller.send_chat(text)

    @Slot()
    def _on_copy_link(self) -> None:
        link = self.controller.copy_link()
        self.show_notice("Link copied" if link else "There is no link to copy yet.")

    @Slot()
    def _on_retry(self) -> None:
        self.controller.retry()

    # ------------------------------------------------------------------ pure view

    def _peer(self) -> str:
        return self.peer_name or DEFAULT_PEER

    def _link(self) -> str:
        try:
            return str(self.controller.call_link or "")
        except Exception:  # a controller without a link yet
            return ""

    def _update_title(self) -> None:
        if self.peer_name:
            self.setWindowTitle(f"Call with {self.peer_name}")
        else:
            call_id = str(getattr(self.controller, "call_id", "") or "")
            self.setWindowTitle(f"Call {call_id}" if call_id else "Call")

    def remote_placeholder(self) -> str:
        return self.remote_view.placeholder()

    def _update_remote_placeholder(self) -> None:
        state, peer = self.state, self._peer()
        avatar = self.peer_name
        if state in ("idle", "joining"):
            text, avatar = "Joining the call…", ""
        elif state == "waiting" and self.reason.endswith("not responding"):
            # They were here and went silent (network gone, app frozen or killed):
            # not a fresh room, so no link to send; they come back by themselves.
            text = f"{self.reason[:1].upper()}{self.reason[1:]}.\nWaiting for them to come back…"
        elif state == "waiting":
            link = self._link()
            text = "Waiting for the other person…"
            if link:
                text += f"\nSend them this link: {link}"
            avatar = ""
        elif state == "connecting":
            text = f"Connecting to {peer}…"
        elif state == "ended":
            text, avatar = "Call ended", ""
        elif state == "failed":
            text = f"Call failed: {self.reason}" if self.reason else "Call failed"
            avatar = ""
        elif not self.remote_camera_on:
            text = f"{peer[:1].upper()}{peer[1:]} turned the camera off"
        elif state == "reconnecting":
            text = "Reconnecting…"
        else:
            text = peer[:1].upper() + peer[1:]
        self.remote_view.set_placeholder(text, avatar)

    def _update_local_placeholder(self) -> None:
        name = str(getattr(self.controller, "local_name", "") or "You")
        self.local_view.set_placeholder("" if self.camera_on else "Camera off", name)

    @Slot(str)
    def show_notice(self, text: str) -> None:
        """A transient banner over the video (plain text)."""
        if not text:
            return
        self.toast.setText(text)
        self.toast.show()
        self.stage.place_toast()
        self._notice_timer.start()

    def _hide_notice(self) -> None:
        self.toast.hide()
        self.toast.setText("")

    def notice_text(self) -> str:
        return self.toast.text() if self.toast.isVisibleTo(self) else ""

    def _set_chat_visible(self, visible: bool) -> None:
        self.chat_panel.setVisible(visible)
        self.control_bar.set_chat_visible(visible)
        if visible:
            self.chat_panel.input.setFocus()

    def _set_fullscreen(self, on: bool) -> None:
        if on and not self.isFullScreen():
            self._fullscreen_from_maximized = self.isMaximized()
            self.showFullScreen()
        elif not on and self.isFullScreen():
            if self._fullscreen_from_maximized:
                self.showMaximized()
            else:
                self.showNormal()
        self.control_bar.set_fullscreen(on)

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.WindowStateChange:
            self.control_bar.set_fullscreen(self.isFullScreen())

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape and self.isFullScreen():
            self._set_fullscreen(False)
            return
        super().keyPressEvent(event)

    # ------------------------------------------------------------------ closing

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.ended or self._close_allowed:
            self._accept_close(event)
            return
        self._in_close_event = True
        try:
            self._close_pending = True
            self._start_hang_up()
        finally:
            self._in_close_event = False
        if self._close_allowed:  # ended while hanging up (synchronous controller)
            self._accept_close(event)
        else:
            event.ignore()

    def _accept_close(self, event: QCloseEvent) -> None:
        self._close_timer.stop()
        self._notice_timer.stop()
        event.accept()
        if not self._closed_emitted:
            self._closed_emitted = True
            self.closed.emit()

    def _start_hang_up(self) -> None:
        if self._hang_up_sent:
            return
        self._hang_up_sent = True
        self.status.set_state("ending", "")
        self.control_bar.setEnabled(False)
        self._close_timer.start()
        self.hang_up_requested.emit()
        self.controller.hang_up()

    @Slot()
    def hang_up(self) -> None:
        """Hang up and close once the call has ended (same as the Hang up button)."""
        self.close()

    @Slot()
    def finish_close(self) -> None:
        """Close now (the call is over, or the app stops waiting for it)."""
        self._close_allowed = True
        if not self._in_close_event:
            self.close()

    allow_close = finish_close

    @property
    def hang_up_sent(self) -> bool:
        return self._hang_up_sent
