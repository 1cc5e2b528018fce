"""An X server for the frozen app's smoke test and start-time measurement (Linux).

- :func:`x_display`: a private Xvfb (or ``$DISPLAY``) for the duration;
- :class:`MapWatcher`: the moment a top-level window is mapped (shown), seen by a
  second X client listening to the root window (``SubstructureNotify``), through
  libxcb with ctypes: no extra package, and no hook inside the app. Exec -> the
  home window's ``MapNotify`` is the start time a person sees;
- :func:`screenshot`: a PNG of the whole screen, through PySide6 on the xcb platform,
  in a child process (the caller may already have an offscreen QApplication).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

MAP_NOTIFY = 19
CW_EVENT_MASK = 1 << 11
EVENT_MASK_SUBSTRUCTURE_NOTIFY = 1 << 19


@contextlib.contextmanager
def x_display(size: str = "1280x800x24") -> Iterator[str]:
    """A private Xvfb, or ``$DISPLAY`` when set (``DESKTOP_CALL_XVFB=1`` forces Xvfb)."""
    if os.environ.get("DISPLAY") and not os.environ.get("DESKTOP_CALL_XVFB"):
        yield os.environ["DISPLAY"]
        return
    if shutil.which("Xvfb") is None:
        raise RuntimeError("needs Xvfb (apt-get install xvfb) or a DISPLAY")
    number = next(n for n in range(120, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    display = f":{number}"
    server = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", size, "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{number}").exists():
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("Xvfb did not start")
            time.sleep(0.02)
        yield display
    finally:
        server.terminate()
        server.wait(5)


class _MapNotify(ctypes.Structure):
    _fields_ = [
        ("response_type", ctypes.c_uint8),
        ("pad0", ctypes.c_uint8),
        ("sequence", ctypes.c_uint16),
        ("event", ctypes.c_uint32),
        ("window", ctypes.c_uint32),
        ("override_redirect", ctypes.c_uint8),
    ]


class _ScreenIterator(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("rem", ctypes.c_int), ("index", ctypes.c_int)]


class MapWatcher:
    """Records when each top-level (not override-redirect) window is mapped."""

    def __init__(self, display: str) -> None:
        name = ctypes.util.find_library("xcb") or "libxcb.so.1"
        self._xcb = xcb = ctypes.CDLL(name)
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        xcb.xcb_connect.restype = ctypes.c_void_p
        xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
        xcb.xcb_get_setup.restype = ctypes.c_void_p
        xcb.xcb_get_setup.argtypes = [ctypes.c_void_p]
        xcb.xcb_setup_roots_iterator.restype = _ScreenIterator
        xcb.xcb_setup_roots_iterator.argtypes = [ctypes.c_void_p]
        xcb.xcb_change_window_attributes_checked.argtypes = [
            ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p,
        ]  # fmt: skip
        xcb.xcb_change_window_attributes_checked.restype = ctypes.c_uint
        xcb.xcb_request_check.restype = ctypes.c_void_p
        xcb.xcb_request_check.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        xcb.xcb_flush.argtypes = [ctypes.c_void_p]
        xcb.xcb_get_file_descriptor.argtypes = [ctypes.c_void_p]
        xcb.xcb_poll_for_event.restype = ctypes.c_void_p
        xcb.xcb_poll_for_event.argtypes = [ctypes.c_void_p]
        xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
        self._libc.free.argtypes = [ctypes.c_void_p]
        self._conn = xcb.xcb_connect(display.encode(), None)
        if not self._conn or xcb.xcb_connection_has_error(self._conn):
            raise RuntimeError(f"cannot connect to X display {display}")
        screen = xcb.xcb_setup_roots_iterator(xcb.xcb_get_setup(self._conn))
        root = ctypes.cast(screen.data, ctypes.POINTER(ctypes.c_uint32))[0]
        mask = (ctypes.c_uint32 * 1)(EVENT_MASK_SUBSTRUCTURE_NOTIFY)
        cookie = xcb.xcb_change_window_attributes_checked(self._conn, root, CW_EVENT_MASK, mask)
        error = xcb.xcb_request_check(self._conn, cookie)
        if error:
            self._libc.free(error)
            raise RuntimeError("cannot listen to the root window")
        self.mapped: list[tuple[float, int]] = []  # (time.monotonic(), window)
        self._changed = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="map-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fd = self._xcb.xcb_get_file_descriptor(self._conn)
        while not self._stop:
            while True:
                event = self._xcb.xcb_poll_for_event(self._conn)
                if not event:
                    break
                now = time.monotonic()
                notify = _MapNotify.from_address(event)
                if notify.response_type & 0x7F == MAP_NOTIFY and not notify.override_redirect:
                    with self._changed:
                        self.mapped.append((now, notify.window))
                        self._changed.notify_all()
                self._libc.free(event)
            if self._xcb.xcb_connection_has_error(self._conn):
                return
            select.select([fd], [], [], 0.05)

    def wait_for_window(self, after: float, timeout: float) -> float | None:
        """The time of the first top-level window mapped after ``after``, or None."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                times = [t for t, _ in self.mapped if t >= after]
                if times:
                    return min(times)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self._xcb.xcb_disconnect(self._conn)


_SHOT = """
import sys
from PySide6.QtGui import QGuiApplication
app = QGuiApplication(sys.argv[:1])
image = app.primaryScreen().grabWindow(0).toImage()
if not image.save(sys.argv[1]):
    sys.exit("cannot save " + sys.argv[1])
colours = {image.pixel(x, y) for x in range(0, image.width(), 16)
           for y in range(0, image.height(), 16)}
print(len(colours))
"""


def screenshot(display: str, path: Path, python: str = sys.executable) -> int:
    """Save the whole X screen as a PNG; returns how many colours a 16 px grid saw."""
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    done = subprocess.run(
        [python, "-c", _SHOT, str(path)], env=env, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(f"screenshot failed: {done.stderr.strip()}")
    return int(done.stdout.strip().splitlines()[-1])


def drop_caches() -> bool:
    """Empty the page cache (root only) for a cold start; False when not allowed."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False
