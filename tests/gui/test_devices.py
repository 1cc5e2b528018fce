"""The device layer over QtMultimedia, on a machine with no camera, microphone, speaker.

What needs a device is tested through its pure parts (frame conversion, audio chunking
and playback buffering) and through the stand-ins and fallbacks the app gets when there
is no device; the one real capture here is the offscreen screen (``QScreenCapture``).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import av
import numpy as np
import pytest
import qasync
from aiortc.mediastreams import MediaStreamError
from PySide6.QtCore import QSize
from PySide6.QtGui import QColor, QImage
from PySide6.QtMultimedia import (
    QAudioDevice,
    QCameraDevice,
    QVideoFrame,
    QVideoFrameFormat,
)

from desktop_call.media.qt_capture import (
    CameraMode,
    _via_image,
    is_cheap_to_convert,
    pcm_to_frame,
)
from desktop_call.media.qt_devices import (
    NO_CAMERA,
    NO_MICROPHONE,
    NO_SPEAKER,
    AudioChunker,
    CameraSource,
    Device,
    DeviceError,
    DeviceManager,
    LatestFrameTrack,
    MicrophoneSource,
    MicrophoneTrack,
    PcmFormat,
    PlaybackBuffer,
    SpeakerSink,
    SwitchableAudioSink,
    VideoSinkSource,
    choose_camera_format,
    device_id_string,
    list_cameras,
    list_microphones,
    list_screens,
    list_speakers,
    list_windows,
    video_frame_to_av,
)
from desktop_call.media.sinks import AudioSink, CountingAudioSink, dominant_frequency
from desktop_call.media.sources import (
    AUDIO_SAMPLES,
    VIDEO_TIME_BASE,
    MediaSource,
    SilenceTrack,
    TestPatternTrack,
    TrackSource,
)
from desktop_call.media.stamp import read_stamp
from desktop_call.media.switchable import SwitchableTrack

PF = QVideoFrameFormat.PixelFormat


def run_qt(app, coro, timeout: float = 20.0):
    """Run ``coro`` on a qasync loop over the test's QApplication (Qt signals flow)."""
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    try:
        with loop:
            return loop.run_until_complete(asyncio.wait_for(coro, timeout))
    finally:
        asyncio.set_event_loop(None)


@pytest.fixture
def manager(qapp):
    manager = DeviceManager()
    yield manager
    manager.deleteLater()


# ------------------------------------------------------------------ listing


def test_device_lists_are_lists_of_devices_even_with_nothing_plugged_in(qapp, manager):
    for listed in (list_cameras, list_microphones, list_speakers, list_screens, list_windows):
        devices = listed()
        assert isinstance(devices, list)
        assert all(isinstance(d, Device) for d in devices)
    for listed in (manager.cameras, manager.microphones, manager.speakers, manager.windows):
        assert isinstance(listed(), list)
    # The offscreen platform has one screen; it is the default and listed the same twice.
    screens = list_screens()
    assert len(screens) >= 1
    assert sum(s.is_default for s in screens) == 1
    assert screens == list_screens()


def test_device_ids_are_text_stable_and_readable_when_qt_gives_readable_ones():
    assert device_id_string(b"/dev/video0") == "/dev/video0"
    assert device_id_string(b"alsa_input.pci-0000_00_1f.3.analog-stereo").startswith("alsa")
    assert device_id_string(b"\x00\xffcam") == "hex:00ff63616d"
    assert device_id_string(b"\x00\xffcam") == device_id_string(bytearray(b"\x00\xffcam"))
    assert device_id_string(b"hex:abc") == "hex:6865783a616263"  # no collision with hex ids
    assert device_id_string(QCameraDevice().id()) == ""


# ------------------------------------------------------------------ no device: stand-ins


async def test_no_camera_gives_the_test_pattern_with_a_notice(qapp, manager):
    source, notice = manager.open_video(None, fallback_size=(320, 240))
    assert notice == NO_CAMERA
    assert isinstance(source, TrackSource)
    assert isinstance(source.track, TestPatternTrack)
    await source.start()
    try:
        frames = [await source.track.recv() for _ in range(2)]
    finally:
        await source.stop()
    assert (frames[0].width, frames[0].height) == (320, 240)
    assert frames[1].pts > frames[0].pts
    assert read_stamp(frames[1]).frame_number == 1


async def test_no_microphone_gives_silence_with_a_notice(qapp, manager):
    source, notice = manager.open_audio_input(None)
    assert notice == NO_MICROPHONE
    assert isinstance(source.track, SilenceTrack)
    await source.start()
    frame = await source.track.recv()
    await source.stop()
    assert frame.samples == AUDIO_SAMPLES and frame.sample_rate == 48_000
    assert not frame.to_ndarray().any()


def test_no_speaker_gives_a_sink_that_only_counts_with_a_notice(qapp, manager):
    sink, notice = manager.open_audio_output(None)
    assert notice == NO_SPEAKER
    assert isinstance(sink, CountingAudioSink)
    sink.write(pcm_to_frame(bytes(AUDIO_SAMPLES * 4), PcmFormat(48_000, 2, "s16")))
    assert sink.frames == 1
    sink.close()


def test_an_unknown_device_falls_back_with_a_notice_that_names_it(qapp, manager):
    video, notice = manager.open_video("usb-cam-that-went-away")
    assert isinstance(video, TrackSource)
    assert "usb-cam-that-went-away" in notice and "test pattern" in notice
    audio, notice = manager.open_audio_input("headset-mic")
    assert isinstance(audio.track, SilenceTrack)
    assert "headset-mic" in notice and "will not hear you" in notice
    sink, notice = manager.open_audio_output("hdmi-out")
    assert isinstance(sink, CountingAudioSink)
    assert "hdmi-out" in notice and "you will not hear" in notice
    # The empty id of the settings file means "the default", not an unknown device.
    assert manager.open_video("")[1] == NO_CAMERA


def test_start_video_and_audio_on_the_qt_loop_fall_back_to_stand_ins(qapp, manager):
    async def main():
        video, video_notice = await manager.start_video(None, (160, 120))
        audio, audio_notice = await manager.start_audio_input(None)
        frame = await asyncio.wait_for(video.track.recv(), 5)
        sound = await asyncio.wait_for(audio.track.recv(), 5)
        await video.stop()
        await audio.stop()
        return video_notice, audio_notice, frame, sound

    video_notice, audio_notice, frame, sound = run_qt(qapp, main())
    assert (video_notice, audio_notice) == (NO_CAMERA, NO_MICROPHONE)
    assert (frame.width, frame.height) == (160, 120)
    assert sound.samples == AUDIO_SAMPLES


def test_devices_that_cannot_open_say_so_and_never_crash(qapp):
    with pytest.raises(DeviceError, match="No camera"):
        CameraSource(QCameraDevice())

    mic = MicrophoneSource(QAudioDevice())
    assert isinstance(mic, MediaSource) and mic.kind == "audio"
    failures = []
    mic.failed.connect(failures.append)

    async def start_mic():
        with pytest.raises(DeviceError) as raised:
            await mic.start()
        return str(raised.value)

    message = run_qt(qapp, start_mic())
    assert "cannot be opened" in message and failures == [message]
    assert mic.track.readyState == "ended"

    speaker = SpeakerSink(QAudioDevice())
    assert isinstance(speaker, AudioSink)
    speaker_failures = []
    speaker.failed.connect(speaker_failures.append)
    frame = pcm_to_frame(bytes(AUDIO_SAMPLES * 4), PcmFormat(48_000, 2, "s16"))
    speaker.write(frame)
    speaker.write(frame)
    assert len(speaker_failures) == 1 and "cannot be opened" in speaker_failures[0]
    assert speaker.frames_discarded == 2
    speaker.close()
    speaker.close()


# ------------------------------------------------------------------ hot-plug and fallback


def _solid_frame(color: tuple[int, int, int], size=(64, 48)) -> QVideoFrame:
    image = QImage(size[0], size[1], QImage.Format.Format_RGBX8888)
    image.fill(QColor(*color))
    return QVideoFrame(image)


def test_a_lost_camera_is_reported_and_replaced_without_renegotiation(qapp, manager):
    """A camera-like source fed through its QVideoSink disappears from the device list:
    the manager fails it, says so, and the switchable track moves to the test pattern."""
    source = VideoSinkSource("Camera “Ghost”", device_id="ghost-cam")
    source.device_kind = "camera"
    manager.watch(source)
    lost = []
    manager.device_lost.connect(lambda kind, name: lost.append((kind, name)))
    track = SwitchableTrack("video", source.track)

    async def main():
        await source.start()
        source.video_sink.setVideoFrame(_solid_frame((255, 0, 0)))
        first = await asyncio.wait_for(track.recv(), 5)
        manager.refresh()  # what QMediaDevices.videoInputsChanged triggers
        assert source.failure is not None
        fallback, notice = await manager.switch_to_fallback(track, source)
        frames = [await asyncio.wait_for(track.recv(), 5) for _ in range(3)]
        await fallback.stop()
        track.stop()
        return first, fallback, notice, frames

    first, fallback, notice, frames = run_qt(qapp, main())
    red = first.to_ndarray(format="rgb24")[24, 32]
    assert red[0] > 200 and red[1] < 40 and red[2] < 40
    assert lost == [("camera", "Camera “Ghost”")]
    assert source.failure == "Camera “Ghost” was disconnected"
    assert source.track.readyState == "ended"
    assert notice == "Camera “Ghost” was disconnected: sending a test pattern"
    assert isinstance(fallback, TrackSource) and track.source is fallback.track
    assert any(read_stamp(f) is not None for f in frames)  # the pattern, not black filler
    pts = [first.pts] + [f.pts for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)


def test_a_track_kept_fed_switches_to_the_fallback_by_itself(qapp, manager):
    source = VideoSinkSource("Camera “Desk”", device_id="desk-cam")
    source.device_kind = "camera"
    manager.watch(source)
    track = SwitchableTrack("video", source.track)
    notices = []
    manager.keep_fed(track, source, notices.append)

    async def main():
        await source.start()
        manager.refresh()  # the camera is not in the (empty) list any more
        for _ in range(100):
            if notices:
                break
            await asyncio.sleep(0.02)
        frame = await asyncio.wait_for(track.recv(), 5)
        fallback = track.source
        track.stop()
        fallback.stop()
        return frame

    frame = run_qt(qapp, main())
    assert notices == ["Camera “Desk” was disconnected: sending a test pattern"]
    assert isinstance(track.source, TestPatternTrack)
    assert (frame.width, frame.height) == (640, 480)


def test_a_failing_source_reports_once_and_its_track_ends(qapp, manager):
    source = VideoSinkSource("Screen 1", device_id="screen:1")
    assert isinstance(source, MediaSource)
    manager.watch(source)
    failed, lost = [], []
    source.failed.connect(failed.append)
    manager.device_lost.connect(lambda kind, name: lost.append((kind, name)))

    async def main():
        await source.start()
        pending = asyncio.ensure_future(source.track.recv())
        await asyncio.sleep(0.01)
        source.fail("Screen 1 cannot be shared: gone")
        source.fail("again")
        with pytest.raises(MediaStreamError):
            await asyncio.wait_for(pending, 5)
        with pytest.raises(DeviceError, match="gone"):
            await source.start()
        await source.stop()

    run_qt(qapp, main())
    assert failed == ["Screen 1 cannot be shared: gone"]
    assert lost == [("video", "Screen 1")]


def test_a_lost_microphone_falls_back_to_silence(qapp, manager):
    mic = MicrophoneSource(QAudioDevice())  # never started: fed by hand below
    track = SwitchableTrack("audio", mic.track)

    async def main():
        mic.track.push(np.full(AUDIO_SAMPLES, 1000, np.int16).tobytes())
        first = await asyncio.wait_for(track.recv(), 5)
        mic.fail("Microphone “USB” stopped working (IOError)")
        fallback, notice = await manager.switch_to_fallback(track, mic)
        later = [await asyncio.wait_for(track.recv(), 5) for _ in range(3)]
        await fallback.stop()
        track.stop()
        return first, notice, later

    first, notice, later = run_qt(qapp, main())
    assert (first.to_ndarray() == 1000).all()
    assert (
        notice == "Microphone “USB” stopped working (IOError): the other person will not hear you"
    )
    assert all(f.samples == AUDIO_SAMPLES and not f.to_ndarray().any() for f in later)


def test_a_lost_speaker_is_replaced_behind_a_switchable_sink(qapp, manager):
    first = CountingAudioSink()
    switchable = SwitchableAudioSink(first)
    frame = pcm_to_frame(bytes(AUDIO_SAMPLES * 4), PcmFormat(48_000, 2, "s16"))
    switchable.write(frame)
    new, notice = manager.switch_output_to_fallback(switchable)
    switchable.write(frame)
    assert first.frames == 1 and first.closed
    assert isinstance(new, CountingAudioSink) and new.frames == 1
    assert notice == NO_SPEAKER


# ------------------------------------------------------------------ QVideoFrame -> av


def _bt601(rgb) -> tuple[int, int, int]:
    r, g, b = (float(c) for c in rgb)
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return round(y), round(u), round(v)


QUADRANTS = [(230, 20, 20), (20, 200, 40), (30, 40, 220), (240, 240, 240)]
SIZE = (40, 24)  # 40 is not a multiple of Qt's row alignment: strides carry padding


def _quadrant_index(x: int, y: int, w: int, h: int) -> int:
    return (1 if x >= w // 2 else 0) + (2 if y >= h // 2 else 0)


def _rows(frame: QVideoFrame, plane: int) -> np.ndarray:
    stride = frame.bytesPerLine(plane)
    data = np.frombuffer(frame.bits(plane), np.uint8)
    return data[: len(data) // stride * stride].reshape(-1, stride)


def _yuv_quadrants(w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full-resolution Y, U, V for the four coloured quadrants."""
    yuv = np.array([_bt601(c) for c in QUADRANTS], np.uint8)
    index = np.array([[_quadrant_index(x, y, w, h) for x in range(w)] for y in range(h)])
    return yuv[index, 0], yuv[index, 1], yuv[index, 2]


RGB_ORDERS = {
    PF.Format_RGBX8888: "RGBX",
    PF.Format_RGBA8888: "RGBA",
    PF.Format_BGRX8888: "BGRX",
    PF.Format_BGRA8888: "BGRA",
    PF.Format_XRGB8888: "XRGB",
    PF.Format_ARGB8888: "ARGB",
    PF.Format_XBGR8888: "XBGR",
    PF.Format_ABGR8888: "ABGR",
}


def _make_frame(fmt, size=SIZE, color_range=None) -> QVideoFrame:
    """A QVideoFrame of ``fmt`` showing the four quadrants, written through map()."""
    w, h = size
    surface = QVideoFrameFormat(QSize(w, h), fmt)
    if color_range is not None:
        surface.setColorRange(color_range)
    frame = QVideoFrame(surface)
    assert frame.map(QVideoFrame.MapMode.WriteOnly)
    try:
        y, u, v = _yuv_quadrants(w, h)
        u2, v2 = u[::2, ::2], v[::2, ::2]
        if fmt in RGB_ORDERS:
            order = RGB_ORDERS[fmt]
            rgb = np.array(QUADRANTS, np.uint8)
            index = np.array([[_quadrant_index(x, yy, w, h) for x in range(w)] for yy in range(h)])
            pixels = np.empty((h, w, 4), np.uint8)
            for channel, name in enumerate(order):
                pixels[..., channel] = 255 if name in "XA" else rgb[index, "RGB".index(name)]
            _rows(frame, 0)[:h, : w * 4] = pixels.reshape(h, w * 4)
        elif fmt in (PF.Format_YUV420P, PF.Format_YV12):
            _rows(frame, 0)[:h, :w] = y
            first, second = (u2, v2) if fmt == PF.Format_YUV420P else (v2, u2)
            _rows(frame, 1)[: h // 2, : w // 2] = first
            _rows(frame, 2)[: h // 2, : w // 2] = second
        elif fmt in (PF.Format_NV12, PF.Format_NV21):
            _rows(frame, 0)[:h, :w] = y
            uv = np.empty((h // 2, w), np.uint8)
            uv[:, 0::2], uv[:, 1::2] = (u2, v2) if fmt == PF.Format_NV12 else (v2, u2)
            _rows(frame, 1)[: h // 2, :w] = uv
        elif fmt in (PF.Format_YUYV, PF.Format_UYVY):
            packed = np.empty((h, w * 2), np.uint8)
            luma, chroma = (0, 1) if fmt == PF.Format_YUYV else (1, 0)
            packed[:, luma::2] = y
            packed[:, chroma::4] = u[:, ::2]
            packed[:, chroma + 2 :: 4] = v[:, ::2]
            _rows(frame, 0)[:h, : w * 2] = packed
        elif fmt in (PF.Format_P010, PF.Format_P016):  # NV12 with 16-bit samples, MSB-aligned
            _rows(frame, 0)[:h, : w * 2] = (y.astype("<u2") << 8).view(np.uint8).reshape(h, -1)
            uv = np.empty((h // 2, w), "<u2")
            uv[:, 0::2], uv[:, 1::2] = u2.astype("<u2") << 8, v2.astype("<u2") << 8
            _rows(frame, 1)[: h // 2, : w * 2] = uv.view(np.uint8).reshape(h // 2, -1)
        elif fmt == PF.Format_YUV422P:
            _rows(frame, 0)[:h, :w] = y
            _rows(frame, 1)[:h, : w // 2] = u[:, ::2]
            _rows(frame, 2)[:h, : w // 2] = v[:, ::2]
        else:
            raise AssertionError(fmt)
    finally:
        frame.unmap()
    return frame


def _assert_quadrants(frame: av.VideoFrame, size=SIZE, tolerance=6) -> None:
    assert frame.format.name == "yuv420p"
    w, h = size
    assert (frame.width, frame.height) == (w, h)
    rgb = frame.to_ndarray(format="rgb24")
    for index, expected in enumerate(QUADRANTS):
        x = w // 4 + (w // 2) * (index % 2)
        y = h // 4 + (h // 2) * (index // 2)
        got = rgb[y, x].astype(int)
        assert np.abs(got - expected).max() <= tolerance, (index, got, expected)


@pytest.mark.parametrize(
    "fmt",
    [
        PF.Format_NV12,
        PF.Format_NV21,
        PF.Format_YUV420P,
        PF.Format_YV12,
        PF.Format_YUV422P,
        PF.Format_YUYV,
        PF.Format_UYVY,
        PF.Format_P010,
        PF.Format_P016,
        *RGB_ORDERS,
    ],
    ids=lambda f: f.name,
)
def test_video_frames_convert_to_yuv420p_with_their_colours(qapp, fmt):
    frame = _make_frame(fmt)
    converted = video_frame_to_av(frame)
    _assert_quadrants(converted)
    if fmt in (PF.Format_NV12, PF.Format_YUV420P, PF.Format_YV12, PF.Format_NV21):
        # Planar 4:2:0 sources are copied, not converted: the samples are exactly ours,
        # though Qt's rows are longer than the picture (the copy skips the padding).
        assert frame.map(QVideoFrame.MapMode.ReadOnly)
        assert frame.bytesPerLine(0) > SIZE[0]
        frame.unmap()
        w, h = SIZE
        y, u, v = _yuv_quadrants(w, h)
        got = converted.to_ndarray()  # yuv420p: h rows of Y, then U, then V
        chroma = got[h:].reshape(-1)
        assert (got[:h] == y).all()
        assert (chroma[: w * h // 4] == u[::2, ::2].ravel()).all()
        assert (chroma[w * h // 4 :] == v[::2, ::2].ravel()).all()


@pytest.mark.parametrize("fmt", list(RGB_ORDERS), ids=lambda f: f.name)
def test_rgb_byte_orders_agree_with_qts_own_conversion(qapp, fmt):
    frame = _make_frame(fmt)
    image = frame.toImage()
    for index, expected in enumerate(QUADRANTS):
        x = SIZE[0] // 4 + (SIZE[0] // 2) * (index % 2)
        y = SIZE[1] // 4 + (SIZE[1] // 2) * (index // 2)
        color = image.pixelColor(x, y)
        assert (color.red(), color.green(), color.blue()) == expected


def test_full_range_yuv_is_brought_to_the_limited_range_encoders_expect(qapp):
    frame = QVideoFrame(
        QVideoFrameFormat(QSize(16, 16), PF.Format_NV12),
    )
    surface = frame.surfaceFormat()
    surface.setColorRange(QVideoFrameFormat.ColorRange.ColorRange_Full)
    frame = QVideoFrame(surface)
    assert frame.map(QVideoFrame.MapMode.WriteOnly)
    _rows(frame, 0)[:16, :16] = 255
    _rows(frame, 1)[:8, :16] = 128
    frame.unmap()
    luma = video_frame_to_av(frame).to_ndarray()[:16]
    assert abs(int(luma.mean()) - 235) <= 1


def test_grey_frames_convert_with_neutral_chroma(qapp):
    frame = QVideoFrame(QVideoFrameFormat(QSize(16, 8), PF.Format_Y8))
    assert frame.map(QVideoFrame.MapMode.WriteOnly)
    _rows(frame, 0)[:8, :16] = 100
    frame.unmap()
    planes = video_frame_to_av(frame).to_ndarray()
    # Qt's Y8 is grey in full range (toImage gives Format_Grayscale8): 100 -> 16 + 100*219/255
    assert (planes[:8] == 102).all() and (planes[8:] == 128).all()
    assert frame.toImage().pixelColor(3, 3).red() == 100


def test_frames_built_from_qimages_and_unmapped_formats_still_convert(qapp):
    image = QImage(32, 16, QImage.Format.Format_ARGB32)
    image.fill(QColor(30, 40, 220))
    converted = video_frame_to_av(QVideoFrame(image))
    assert np.abs(converted.to_ndarray(format="rgb24")[8, 16].astype(int) - (30, 40, 220)).max() < 6
    # The slow path (toImage) gives the same colours as the direct one.
    slow = _via_image(_make_frame(PF.Format_RGBX8888))
    _assert_quadrants(slow)
    with pytest.raises(ValueError):
        video_frame_to_av(QVideoFrame())


def test_only_small_yuv_frames_are_converted_on_the_event_loop(qapp):
    assert is_cheap_to_convert(_make_frame(PF.Format_NV12))
    assert not is_cheap_to_convert(_make_frame(PF.Format_BGRX8888))
    assert is_cheap_to_convert(QVideoFrame(QVideoFrameFormat(QSize(1920, 1080), PF.Format_NV12)))
    big = QVideoFrame(QVideoFrameFormat(QSize(3840, 2160), PF.Format_NV12))
    assert not is_cheap_to_convert(big)


# ------------------------------------------------------------------ newest-frame track


async def test_the_video_track_keeps_only_the_newest_frame(qapp):
    track = LatestFrameTrack()
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    start = time.time()
    for i, color in enumerate(colors):
        track.offer(_solid_frame(color), start + i / 30)
    frame = await track.recv()
    assert track.frames_dropped == 2 and track.frames_delivered == 1
    assert frame.to_ndarray(format="rgb24")[24, 32][2] > 200  # blue, the newest
    assert frame.pts == 0 and frame.time_base == VIDEO_TIME_BASE
    # Nothing new: recv waits, and takes the next frame as soon as it comes.
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    track.offer(_solid_frame((0, 255, 0)), start + 0.5)
    second = await asyncio.wait_for(waiting, 5)
    assert second.pts == round((0.5 - 2 / 30) * 90_000)  # capture time on a 90 kHz clock
    # Stopping wakes a waiting reader with the end of the track.
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.01)
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiting, 5)
    track.offer(_solid_frame((0, 0, 0)))  # ignored once ended
    assert track.frames_offered == 4


async def test_frames_offered_from_another_thread_reach_a_waiting_reader(qapp):
    track = LatestFrameTrack(threaded=True, max_fps=50)
    frames = [_solid_frame((200, 30, 30)) for _ in range(5)]
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.01)

    def capture_thread():
        for frame in frames:
            track.offer(frame)
            time.sleep(0.002)

    thread = threading.Thread(target=capture_thread)
    thread.start()
    first = await asyncio.wait_for(waiting, 5)
    first_at = time.monotonic()
    thread.join()
    track.offer(_solid_frame((200, 30, 30)))
    second = await asyncio.wait_for(track.recv(), 5)
    assert time.monotonic() - first_at >= 0.018  # max_fps=50 paces the reader
    assert second.pts > first.pts
    assert track.frames_delivered == 2
    assert track.frames_dropped + track.frames_delivered == track.frames_offered
    assert track.convert_ms
    track.stop()


# ------------------------------------------------------------------ screen capture


def test_the_screen_is_captured_as_yuv420p_at_a_bounded_rate(qapp, manager):
    source, notice = manager.open_screen(None)
    assert notice is None

    async def main():
        await source.start()
        frames = []
        times = []
        for _ in range(3):
            frames.append(await asyncio.wait_for(source.track.recv(), 10))
            times.append(time.monotonic())
        await source.stop()
        return frames, times

    frames, times = run_qt(qapp, main())
    screen = qapp.primaryScreen().size()
    assert all(f.format.name == "yuv420p" for f in frames)
    assert (frames[0].width, frames[0].height) == (screen.width(), screen.height())
    assert min(b - a for a, b in itertools.pairwise(times)) >= 1 / 15 - 0.01
    assert source.track.readyState == "ended" and source.failure is None
    other, notice = manager.open_screen("screen:nowhere")
    assert notice == "Screen “screen:nowhere” not found: sharing the main screen"
    assert other.describe().startswith("Screen “")


# ------------------------------------------------------------------ microphone bytes


def _tone(frequency, seconds, rate, channels=1, amplitude=0.5, dtype=np.int16):
    t = np.arange(round(seconds * rate)) / rate
    wave = amplitude * np.sin(2 * np.pi * frequency * t)
    if dtype == np.float32:
        samples = wave.astype(np.float32)
    else:
        samples = np.round(wave * np.iinfo(dtype).max).astype(dtype)
    return np.repeat(samples, channels)


def test_microphone_bytes_become_20ms_frames_whatever_the_piece_sizes():
    chunker = AudioChunker(PcmFormat(48_000, 1, "s16"), "mono")
    ramp = (np.arange(3 * AUDIO_SAMPLES) % 30000).astype(np.int16).tobytes()
    for start in range(0, len(ramp), 777):  # odd sizes: half samples carried over
        chunker.push(ramp[start : start + 777])
    frames = []
    while (frame := chunker.pop()) is not None:
        frames.append(frame)
    assert [f.pts for f in frames] == [0, 960, 1920]
    assert all(f.samples == AUDIO_SAMPLES and f.format.name == "s16" for f in frames)
    assert all(f.sample_rate == 48_000 and f.layout.name == "mono" for f in frames)
    assert b"".join(f.to_ndarray().tobytes() for f in frames) == ramp
    assert chunker.samples_dropped == 0


@pytest.mark.parametrize(
    ("source", "dtype"),
    [
        (PcmFormat(44_100, 2, "flt"), np.float32),
        (PcmFormat(16_000, 1, "s16"), np.int16),
        (PcmFormat(48_000, 2, "s32"), np.int32),
        (PcmFormat(48_000, 2, "s16"), np.int16),
    ],
    ids=str,
)
def test_other_device_formats_are_resampled_to_48khz_s16(source, dtype):
    chunker = AudioChunker(source, "mono", max_buffered=2.0)
    data = _tone(1000, 1.0, source.rate, source.channels, dtype=dtype).tobytes()
    for start in range(0, len(data), 4000):
        chunker.push(data[start : start + 4000])
    frames = []
    while (frame := chunker.pop()) is not None:
        frames.append(frame)
    assert 45 <= len(frames) <= 50  # one second, less what the resampler holds back
    assert all(f.samples == AUDIO_SAMPLES and f.sample_rate == 48_000 for f in frames)
    assert all(f.format.name == "s16" and f.layout.name == "mono" for f in frames)
    samples = np.concatenate([f.to_ndarray().ravel() for f in frames]).astype(np.float32) / 32768
    assert abs(dominant_frequency(samples, 48_000) - 1000) < 5
    assert 0.4 < np.abs(samples[4800:]).max() < 0.55


def test_a_late_consumer_gets_the_newest_audio_and_the_drops_are_counted():
    chunker = AudioChunker(PcmFormat(48_000, 2, "s16"), "stereo", max_buffered=0.2)
    second = np.repeat(np.arange(48_000, dtype=np.int32) % 32768, 2).astype(np.int16)
    chunker.push(second.tobytes())
    assert chunker.buffered == pytest.approx(0.2)
    assert chunker.samples_dropped == 48_000 - 9_600 and chunker.drops == 1
    frame = chunker.pop()
    assert frame.pts == 48_000 - 9_600  # timestamps follow real time across the drop
    assert frame.to_ndarray().ravel()[0] == (48_000 - 9_600) % 32768


async def test_the_microphone_track_waits_for_bytes_pushed_from_any_thread():
    track = MicrophoneTrack(AudioChunker(PcmFormat(48_000, 1, "s16")))
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    data = _tone(440, 0.05, 48_000).tobytes()
    thread = threading.Thread(
        target=lambda: [track.push(data[i : i + 100]) for i in range(0, len(data), 100)]
    )
    thread.start()
    first = await asyncio.wait_for(waiting, 5)
    thread.join()
    second = await asyncio.wait_for(track.recv(), 5)
    assert (first.pts, second.pts) == (0, 960)
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


# ------------------------------------------------------------------ speaker bytes


def test_the_playback_buffer_never_holds_more_than_its_bound():
    buffer = PlaybackBuffer(PcmFormat(48_000, 2, "s16"), max_buffered=0.12)
    stereo = PcmFormat(48_000, 2, "s16")
    for n in range(20):  # 400 ms arrive while the device takes nothing
        chunk = np.full(AUDIO_SAMPLES * 2, n, np.int16).tobytes()
        buffer.push(pcm_to_frame(chunk, stereo))
    assert buffer.buffered == pytest.approx(0.12)
    assert buffer.samples_dropped == 20 * AUDIO_SAMPLES - round(0.12 * 48_000)
    assert buffer.drops == 14
    taken = buffer.take(4 * 1000 + 3)  # whole sample frames only
    assert len(taken) == 4000
    values = np.frombuffer(taken, np.int16)
    assert values.min() >= 13  # the oldest went; the newest stay
    rest = buffer.take(10**9)
    assert np.frombuffer(rest, np.int16)[-1] == 19
    assert buffer.take(100) == b""


def test_the_playback_buffer_converts_other_formats_to_the_device_format():
    buffer = PlaybackBuffer(PcmFormat(48_000, 2, "s16"), max_buffered=2.0)
    mono = _tone(500, 0.5, 44_100, 1)
    for start in range(0, len(mono), 882):
        buffer.push(pcm_to_frame(mono[start : start + 882].tobytes(), PcmFormat(44_100, 1, "s16")))
    # A change of format on the way (the peer's decoder restarted) is taken in stride.
    buffer.push(pcm_to_frame(np.zeros(AUDIO_SAMPLES, np.int16).tobytes(), PcmFormat(48_000, 1)))
    out = np.frombuffer(buffer.take(10**9), np.int16).reshape(-1, 2)
    assert abs(len(out) - 0.5 * 48_000 - AUDIO_SAMPLES) < 200
    assert (out[:, 0] == out[:, 1]).all()
    assert abs(dominant_frequency(out[:24_000, 0].astype(np.float32) / 32768, 48_000) - 500) < 5


def test_the_playback_buffer_writes_to_float_devices_too():
    buffer = PlaybackBuffer(PcmFormat(44_100, 1, "flt"))
    buffer.push(pcm_to_frame(_tone(440, 0.02, 48_000, 2).tobytes(), PcmFormat(48_000, 2)))
    out = np.frombuffer(buffer.take(10**9), np.float32)
    assert out.size > 0 and np.abs(out).max() <= 1.0


# ------------------------------------------------------------------ camera mode choice


def test_the_camera_mode_is_the_largest_smooth_one_that_fits():
    modes = [
        CameraMode(1920, 1080, 30, PF.Format_Jpeg),
        CameraMode(1280, 720, 10, PF.Format_YUYV),
        CameraMode(1280, 720, 30, PF.Format_Jpeg),
        CameraMode(640, 480, 30, PF.Format_YUYV),
        CameraMode(1280, 720, 30, PF.Format_NV12),
    ]
    assert choose_camera_format(modes, (1280, 720)) == 4  # 720p30, cheap to convert
    assert choose_camera_format(modes[:4], (1280, 720)) == 2  # 720p30 JPEG beats 720p10
    assert choose_camera_format(modes[:2], (1280, 720)) == 1  # slow, but it fits
    assert choose_camera_format(modes, (640, 480)) == 3
    assert choose_camera_format(modes[:1], (640, 480)) == 0  # nothing fits: the smallest
    assert choose_camera_format([], (640, 480)) is None
