"""The call view-model on the qasync loop: two controllers call each other in-process."""

from __future__ import annotations

import asyncio

from PySide6.QtGui import QImage

from desktop_call.call.ice import IceConfig
from desktop_call.media.sources import TestPatternTrack, ToneTrack
from desktop_call.media.switchable import SwitchableTrack
from desktop_call.server import RoomServer, ServerConfig
from desktop_call.ui.controller import CallController, CallSetup
from desktop_call.ui.runtime import run_qt


def make_controller(url: str, name: str, notices=()) -> CallController:
    return CallController(
        CallSetup(
            room_url=f"{url}/rooms/gui-call",
            call_link="dcall://127.0.0.1:1/gui-call",
            call_id="gui-call",
            name=name,
            ice=IceConfig(servers=()),
            video=SwitchableTrack("video", TestPatternTrack(320, 240, 15)),
            audio=SwitchableTrack("audio", ToneTrack()),
            notices=tuple(notices),
        )
    )


class Seen:
    def __init__(self, controller: CallController) -> None:
        self.states: list[str] = []
        self.remote: list[QImage] = []
        self.local: list[QImage] = []
        self.chat: list[tuple[str, str]] = []
        self.media: list[tuple[bool, bool]] = []
        self.sas: list[str] = []
        self.names: list[str] = []
        self.notices: list[str] = []
        self.ended = asyncio.Event()
        self.changed = asyncio.Event()
        controller.state_changed.connect(lambda s, r: self._add(self.states, s))
        controller.remote_frame.connect(lambda image: self._add(self.remote, image))
        controller.local_frame.connect(lambda image: self._add(self.local, image))
        controller.chat_received.connect(lambda who, text, at: self._add(self.chat, (who, text)))
        controller.remote_media_changed.connect(lambda m, c: self._add(self.media, (m, c)))
        controller.sas_changed.connect(lambda code: self._add(self.sas, code))
        controller.peer_name_changed.connect(lambda name: self._add(self.names, name))
        controller.notice.connect(lambda text: self._add(self.notices, text))
        controller.ended.connect(self.ended.set)

    def _add(self, items: list, item: object) -> None:
        items.append(item)
        self.changed.set()

    async def until(self, condition, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


def test_two_controllers_call_each_other(qapp):
    async def main() -> tuple[Seen, Seen]:
        async with RoomServer(ServerConfig(port=0)) as server:
            a = make_controller(server.url, "Ana", notices=["No camera found: test pattern"])
            b = make_controller(server.url, "Bo")
            seen_a, seen_b = Seen(a), Seen(b)
            await a.start()
            await seen_a.until(lambda: "waiting" in seen_a.states)
            await b.start()
            await seen_a.until(lambda: "connected" in seen_a.states)
            await seen_b.until(lambda: "connected" in seen_b.states)
            await seen_a.until(lambda: len(seen_a.remote) >= 5 and len(seen_a.local) >= 5)
            await seen_b.until(lambda: len(seen_b.remote) >= 5)

            b.send_chat("hi Ana")
            await seen_a.until(lambda: seen_a.chat == [("Bo", "hi Ana")])
            b.set_camera_enabled(False)
            await seen_a.until(lambda: (False, False) in seen_a.media)

            b.hang_up()
            await seen_b.ended.wait()
            await seen_a.until(lambda: seen_a.states[-1] == "waiting")
            await a.wait_closed()
            return seen_a, seen_b

    seen_a, seen_b = run_qt(qapp, main())
    image = seen_a.remote[-1]
    assert (image.width(), image.height()) == (320, 240)
    assert not image.isNull()
    assert seen_a.names[-1] == "Bo" and seen_b.names[-1] == "Ana"
    assert seen_a.sas and seen_a.sas[-1] == seen_b.sas[-1]
    assert seen_a.notices[0] == "No camera found: test pattern"
    assert seen_b.states[-1] == "ended" and seen_a.states[-1] == "ended"
    assert seen_a.ended.is_set()


def test_frames_are_converted_to_the_views_size_and_colours():
    import av
    import numpy as np

    from desktop_call.ui.controller import fitted_size, frame_to_qimage

    rgb = np.zeros((480, 640, 3), dtype=np.uint8)
    rgb[:, :320] = (255, 0, 0)  # left half red, right half blue
    rgb[:, 320:] = (0, 0, 255)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")

    whole = frame_to_qimage(frame)
    assert (whole.width(), whole.height()) == (640, 480)
    fitted = frame_to_qimage(frame, (1054, 593, 2.0))  # a wide view at 2x
    assert (fitted.width(), fitted.height()) == fitted_size(640, 480, 1054, 593) == (790, 592)
    assert fitted.devicePixelRatio() == 2.0
    for image in (whole, fitted):
        left = image.pixelColor(image.width() // 4, image.height() // 2)
        right = image.pixelColor(3 * image.width() // 4, image.height() // 2)
        assert left.red() > 200 and left.blue() < 60, left.getRgb()
        assert right.blue() > 200 and right.red() < 60, right.getRgb()
