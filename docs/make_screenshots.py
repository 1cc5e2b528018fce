"""Screenshots of the home and call windows for the docs, taken from a real X server.

    python docs/make_screenshots.py [--out docs/screenshots]

Starts Xvfb when no DISPLAY is set, runs the app in-process on the xcb platform with
the test pattern, makes a call with an in-process guest, and saves PNGs of the real
windows (as the window system composed them, not a widget render).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def x_display(size: str = "1440x900x24"):
    """Use $DISPLAY, or a private Xvfb for the duration."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    if shutil.which("Xvfb") is None:
        raise SystemExit("make_screenshots: needs Xvfb (apt-get install xvfb) or a DISPLAY")
    for number in range(90, 110):
        if not Path(f"/tmp/.X11-unix/X{number}").exists():
            break
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
                raise SystemExit("make_screenshots: Xvfb did not start")
            time.sleep(0.05)
        yield display
    finally:
        server.terminate()
        server.wait(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    with x_display() as display:
        os.environ["DISPLAY"] = display
        os.environ["QT_QPA_PLATFORM"] = "xcb"
        return shoot(out)


def shoot(out: Path) -> int:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from desktop_call.call.ice import IceConfig
    from desktop_call.call.session import CallOptions, CallSession
    from desktop_call.call.state import CallState
    from desktop_call.media.sources import TestPatternTrack, ToneTrack
    from desktop_call.signaling.ids import parse_call_target
    from desktop_call.ui.app import DesktopCallApp
    from desktop_call.ui.runtime import run_qt
    from desktop_call.ui.settings import Settings, save_settings

    qapp = QApplication(sys.argv[:1])
    folder = Path(tempfile.mkdtemp(prefix="desktop-call-shots-"))
    store = QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat)
    save_settings(
        store,
        Settings(display_name="Ana", ice_servers="none", resolution="1280x720"),
    )
    args = argparse.Namespace(
        join=None, server=None, token=None, name=None, source="testpattern", duration=None,
        report=None, host="127.0.0.1", port=0, settings_file=None, log_level="warning",
    )  # fmt: skip

    async def settle(seconds: float = 0.6) -> None:
        await asyncio.sleep(seconds)  # let the window system paint what changed

    async def until(condition) -> None:
        async with asyncio.timeout(20):
            while not condition():  # noqa: ASYNC110 - widgets expose no awaitable state
                await asyncio.sleep(0.05)

    def save(window, name: str) -> None:
        screen = window.screen()
        image = screen.grabWindow(window.winId()).toImage()
        path = out / f"{name}.png"
        image.save(str(path))
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

    async def scenario() -> None:
        app = DesktopCallApp(qapp, store, args)
        running = asyncio.ensure_future(app.run())
        await until(lambda: app.home is not None and app.home.isVisible())
        home = app.home
        home.resize(960, 640)
        home.new_call_button.click()
        await settle()
        save(home, "home")
        link = home.new_call_link
        home.enter_call_button.click()
        await until(lambda: app.window is not None and app.window.isVisible())
        window = app.window
        window.resize(1280, 800)
        target = parse_call_target(link)
        guest = CallSession(
            CallOptions(target.room_url("ws://unused:1"), "Bo", ice=IceConfig(servers=())),
            video=TestPatternTrack(1280, 720, 30),
            audio=ToneTrack(),
        )
        async with guest:
            await app.controller.session.wait_for(lambda s: s is CallState.CONNECTED)
            await settle(3.0)  # stats, quality bars and the code arrive
            save(window, "call")
            window.close()
            await until(lambda: app.window is None)
        home.close()
        await running

    run_qt(qapp, scenario())
    return 0


if __name__ == "__main__":
    sys.exit(main())
