"""What every run of the windowed app needs: the loop, logging, errors, hosting.

- :func:`run_qt` runs a coroutine on a qasync loop over the QApplication (Python
  3.11 has no ``loop_factory`` for ``asyncio.run``).
- :func:`install_excepthook` and the loop's exception handler log every error
  from a task or a slot: none is silent.
- :func:`setup_logging` writes a per-user log file in the platform's place for it.
- :class:`EmbeddedServer` hosts the room server for "This computer", or finds
  that another instance on this machine already hosts it on that port.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import logging.handlers
import sys
import urllib.request
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import qasync
from PySide6.QtCore import QStandardPaths, QTimer
from PySide6.QtNetwork import QAbstractSocket, QHostAddress, QNetworkInterface
from PySide6.QtWidgets import QApplication

from desktop_call import APP_NAME
from desktop_call.server import RoomServer, ServerConfig

__all__ = ["EmbeddedServer", "install_excepthook", "lan_address", "run_qt", "setup_logging"]

log = logging.getLogger("desktop_call.ui")
T = TypeVar("T")


def log_directory() -> Path:
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppLocalDataLocation)
    return Path(base or Path.home() / f".{APP_NAME}") / "logs"


def setup_logging(level: str = "info", directory: Path | None = None) -> Path | None:
    """Log to ``<per-user data>/logs/desktop-call.log`` (rotated) and to stderr."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(formatter)
    root.addHandler(console)
    folder = directory or log_directory()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{APP_NAME}.log"
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=2_000_000, backupCount=3, encoding="utf-8"
        )
    except OSError as exc:  # a read-only home: keep going with stderr only
        log.warning("cannot write a log file in %s: %s", folder, exc)
        return None
    handler.setFormatter(formatter)
    root.addHandler(handler)
    return path


def install_excepthook() -> None:
    """Log uncaught errors (Qt slots, callbacks) instead of losing or aborting on them."""

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, tb)
            return
        log.error("uncaught error", exc_info=(kind, value, tb))

    sys.excepthook = hook


def _loop_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    error = context.get("exception")
    log.error("error in the event loop: %s", context.get("message"), exc_info=error)


def run_qt(app: QApplication, main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on a qasync loop that drives ``app``; returns its result.

    Like ``asyncio.run``: tasks still pending when ``main`` returns are cancelled and
    awaited, async generators and the default executor are shut down, and only then
    is the loop closed, so no callback of this loop can fire once it is gone.
    """
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    loop.set_exception_handler(_loop_exception_handler)
    collector = MainThreadCollector()
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_pending(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
            collector.stop()


class MainThreadCollector:
    """Python's cyclic garbage collector, run on the Qt thread only, while this lives.

    Left automatic, a collection runs in whichever thread happens to allocate: an
    executor thread resolving a name, a decoder thread of aiortc, the frame converter.
    If the garbage holds a Qt object (a dialog in a reference cycle with its callbacks),
    its C++ destructor then runs on that thread, cannot stop the object's timers there,
    and a later timer event reaches freed memory: a segmentation fault in
    ``QTimerInfoList::activateTimers``, seen in the GUI tests. So automatic collection is
    off, and a 100 ms timer on the Qt thread collects each generation whose threshold
    has been passed (what the automatic collector would have done, on the right thread;
    pyqtgraph's GarbageCollector does the same). :meth:`stop` restores the previous
    setting after a last collection here.
    """

    def __init__(self, interval_ms: int = 100) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.check)
        self._timer.start()

    def check(self) -> None:
        counts, thresholds = gc.get_count(), gc.get_threshold()
        for generation in (2, 1, 0):
            if counts[generation] > thresholds[generation]:
                gc.collect(generation)
                return

    def stop(self) -> None:
        self._timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()


def _cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def lan_address() -> str:
    """This computer's address on the local network (IPv4), or 127.0.0.1 if it has none."""
    candidates: list[str] = []
    for interface in QNetworkInterface.allInterfaces():
        flags = interface.flags()
        if not (flags & QNetworkInterface.InterfaceFlag.IsUp) or (
            flags & QNetworkInterface.InterfaceFlag.IsLoopBack
        ):
            continue
        for entry in interface.addressEntries():
            address = entry.ip()
            ipv4 = address.protocol() is QAbstractSocket.NetworkLayerProtocol.IPv4Protocol
            if ipv4 and not address.isLoopback() and not address.isLinkLocal():
                candidates.append(address.toString())
    private = [a for a in candidates if QHostAddress(a).isPrivateUse()]
    return (private or candidates or ["127.0.0.1"])[0]


class EmbeddedServer:
    """The room server of "This computer": ours, or another instance's on this machine."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.server: RoomServer | None = None
        self.url: str | None = None  # where this app connects (loopback)
        self.link_url: str | None = None  # what a call link names (LAN-reachable)
        self.error: str | None = None
        self.shared = False  # another instance hosts it

    async def start(self) -> None:
        try:
            self.server = await RoomServer(ServerConfig(host=self.host, port=self.port)).start()
        except OSError as exc:
            if await asyncio.to_thread(_is_room_server, self.port):
                self.shared = True
                port = self.port
                log.info("another instance hosts the room server on port %d: sharing it", port)
            else:
                self.error = f"Cannot host calls on port {self.port}: {exc.strerror or exc}."
                return
        else:
            port = self.server.port
        self.url = f"ws://127.0.0.1:{port}"
        visible = self.host in ("0.0.0.0", "::", "")
        self.link_url = f"ws://{lan_address() if visible else self.host}:{port}"

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()
            self.server = None


def _is_room_server(port: int) -> bool:
    """True if a desktop-call room server answers /healthz on this machine's port."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    try:
        with direct.open(f"http://127.0.0.1:{port}/healthz", timeout=1.0) as reply:
            body = json.loads(reply.read(4096))
    except (OSError, ValueError):
        return False
    return isinstance(body, dict) and body.get("status") == "ok" and "rooms" in body
