"""One app per person for clicked links: a link goes to the app that is already open.

Clicking a ``dcall://`` link starts ``desktop-call LINK``. If this person's app is
already running, that new process hands the link over a local socket
(``QLocalServer``, private to the user) and exits: the running app joins from its home
window (or, in a call, says "hang up first"), as Zoom or Signal do. Started without a
link, the app always opens its own window, so two instances on one computer can still
call each other (the README's first demo).

The channel is named after the user and the settings file in use, so a test with its
own settings file never talks to the person's real app. One line of UTF-8 each way:
the link, then ``ok``.
"""

from __future__ import annotations

import getpass
import hashlib
import logging

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

__all__ = ["LinkListener", "channel_name", "hand_over"]

log = logging.getLogger(__name__)

MAX_LINK_BYTES = 4096
TIMEOUT_MS = 1000


def channel_name(settings_file: str | None) -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        user = "user"
    scope = hashlib.sha256(f"{user}\0{settings_file or ''}".encode()).hexdigest()[:16]
    return f"desktop-call-links-{scope}"


def hand_over(name: str, link: str, timeout_ms: int = TIMEOUT_MS) -> bool:
    """Give ``link`` to the running app on ``name``; True if it took it. Blocking: what
    a second process does first, before its event loop (Qt's blocking socket calls do
    not work from a thread that is not Qt's)."""
    data = link.encode("utf-8", "replace")[:MAX_LINK_BYTES] + b"\n"
    socket = QLocalSocket()
    socket.connectToServer(name)
    if not socket.waitForConnected(timeout_ms):
        return False  # nobody listening: this process becomes the app
    try:
        socket.write(data)
        if not socket.waitForBytesWritten(timeout_ms):
            return False
        while not socket.canReadLine():
            if not socket.waitForReadyRead(timeout_ms):
                return False
        return bytes(socket.readLine().data()).strip() == b"ok"
    finally:
        socket.disconnectFromServer()


class LinkListener(QObject):
    """Listens on ``name`` while the app runs; ``link_received(text)`` per link."""

    link_received = Signal(str)

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._server = QLocalServer(self)
        self._server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self._server.newConnection.connect(self._accept)

    def listen(self) -> bool:
        if self._server.listen(self.name):
            return True
        # A socket file left by a crashed run: nobody answers on it, so take it over.
        if not hand_over(self.name, "", timeout_ms=200):
            QLocalServer.removeServer(self.name)
            if self._server.listen(self.name):
                return True
        log.info("not listening for links on %s: %s", self.name, self._server.errorString())
        return False

    def close(self) -> None:
        self._server.close()

    def _accept(self) -> None:
        while (socket := self._server.nextPendingConnection()) is not None:
            socket.readyRead.connect(lambda socket=socket: self._read(socket))
            socket.disconnected.connect(socket.deleteLater)

    def _read(self, socket: QLocalSocket) -> None:
        if socket.bytesAvailable() > MAX_LINK_BYTES + 1:
            socket.abort()  # not one of ours
            return
        if not socket.canReadLine():
            return
        link = bytes(socket.readLine().data()).decode("utf-8", "replace").strip()
        socket.write(b"ok\n")
        socket.flush()
        if link:
            self.link_received.emit(link)
