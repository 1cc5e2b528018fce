"""The "Connection test" box of the settings dialog.

"Test connection" runs :func:`desktop_call.netcheck.run_check` with the values the
dialog holds right now (saved or not) as a task on the app's qasync loop: the dialog
stays usable, each step shows as it ends, the button turns into "Cancel test", and
:meth:`ConnectionTest.close_down` (the dialog closing) cancels a running test.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from desktop_call import netcheck
from desktop_call.call.ice import IceConfig

__all__ = ["ConnectionTest", "TestValues"]

log = logging.getLogger("desktop_call.ui.connection_test")

#: What to test: (room server URL or None, STUN/TURN settings, server token or None).
#: Raises ``ValueError`` with a message for people when the values cannot be tested.
TestValues = Callable[[], tuple[str | None, IceConfig, str | None]]

IDLE_NAME = "Test the connection with these settings"
MARKS = {"ok": "\N{CHECK MARK}", "info": "\N{BULLET}", "warning": "!", "fail": "\N{BALLOT X}"}


class ConnectionTest(QGroupBox):
    #: The test ended: its ``CheckResult``, or None (cancelled, or it could not run).
    finished = Signal(object)

    def __init__(self, values: TestValues, parent: QWidget | None = None) -> None:
        super().__init__("Connection test", parent)
        self._values = values
        self.timeouts = netcheck.CheckTimeouts()
        self.task: asyncio.Task[netcheck.CheckResult | None] | None = None
        self._lines: dict[int, str] = {}
        self._closing = False
        self._available = True

        self.button = QPushButton("Test connection")
        self.button.setAccessibleName(IDLE_NAME)
        self.button.clicked.connect(self._clicked)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # busy: the steps run at the same time
        self.progress.setTextVisible(False)
        self.progress.setAccessibleName("Connection test running")
        self.progress.hide()
        self.status = QLabel()
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status.setAccessibleName("Connection test results")
        self.status.hide()
        hint = QLabel("Checks the room server, STUN and TURN with the values above (about 10 s).")
        hint.setWordWrap(True)
        hint.setProperty("role", "hint")

        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(self.button, 0, Qt.AlignmentFlag.AlignLeft)
        row.addWidget(self.progress, 1)
        layout.addLayout(row)
        layout.addWidget(hint)
        layout.addWidget(self.status)

    # ------------------------------------------------------------------ control

    def set_available(self, available: bool) -> None:
        """Whether a test may start (the fields are valid); Cancel stays possible."""
        self._available = available
        self.button.setEnabled(available or self.task is not None)

    def start(self) -> bool:
        """Start a test with the current values; False (and a message) if it cannot."""
        if self.task is not None or self._closing:
            return False
        try:
            server, ice, token = self._values()
        except ValueError as exc:
            self._show(str(exc))
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._show("The test needs the app's event loop, which is not running.")
            return False
        self._lines = {}
        self.task = loop.create_task(self._run(server, ice, token), name="connection test")
        self.task.add_done_callback(self._ended)  # also when cancelled before it started
        self.button.setText("Cancel test")
        self.button.setAccessibleName("Cancel the connection test")
        self.progress.show()
        self._show("Testing the connection…")
        return True

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def close_down(self) -> None:
        """The window is closing: cancel, and touch no widget from now on."""
        self._closing = True
        self.cancel()

    # ---------------------------------------------------------------- internals

    @Slot()
    def _clicked(self) -> None:
        if self.task is not None:
            self.cancel()
        else:
            self.start()

    async def _run(
        self, server: str | None, ice: IceConfig, token: str | None
    ) -> netcheck.CheckResult | None:
        try:
            result = await netcheck.run_check(
                server, ice, token=token, timeouts=self.timeouts, progress=self._progress
            )
        except Exception as exc:  # a bug in the check: say so, log it, keep the dialog
            log.exception("connection test failed")
            if not self._closing:
                self._show(f"The test could not run: {exc}")
            return None
        if not self._closing:
            self._show(describe(result))
        return result

    def _ended(self, task: asyncio.Task[netcheck.CheckResult | None]) -> None:
        if task is self.task:
            self.task = None
        if self._closing:
            return
        result = None if task.cancelled() else task.result()
        if task.cancelled():
            self._show("Test cancelled.")
        self.button.setText("Test connection")
        self.button.setAccessibleName(IDLE_NAME)
        self.button.setEnabled(self._available)
        self.progress.hide()
        self.finished.emit(result)

    def _progress(self, item: netcheck.Item) -> None:
        if self._closing:
            return
        state = "testing…" if item.state == "running" else item.message
        self._lines[id(item)] = f"{item.label}: {state}"
        self._show("\n".join(["Testing the connection…", *self._lines.values()]))

    def _show(self, text: str) -> None:
        self.status.setText(text)
        self.status.show()
        scroll = self.parentWidget()
        while scroll is not None and not isinstance(scroll, QScrollArea):
            scroll = scroll.parentWidget()
        if scroll is not None:
            scroll.ensureWidgetVisible(self.status)


def describe(result: netcheck.CheckResult) -> str:
    """The result in plain words: the verdict, what it means, then each step."""
    lines = [
        "Calls can work from here." if result.calls_can_work else "Calls will not work from here.",
        *(f"{MARKS.get(f.level, '-')} {f.text}" for f in result.findings),
        "",
        "Details:",
    ]
    if result.server.url is None:
        lines.append("Room server: this computer's, not running now (not tested).")
    for item in (result.server, *result.stun, *result.turn):
        if item.url is not None:
            lines.append(f"{item.label}: {item.message}")
    lines.append(f"NAT: {result.nat.message}")
    lines.append(f"UDP: {result.udp.message}")
    return "\n".join(lines)
