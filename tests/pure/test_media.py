"""Media sources and sinks without a network: stamps, pattern, tone, switching, receivers."""

import asyncio
import fractions
import itertools
import subprocess
import sys

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from hypothesis import given, settings
from hypothesis import strategies as st

from desktop_call.media import (
    AudioReceiver,
    AudioSink,
    CountingAudioSink,
    FileTrack,
    LatestFrameReceiver,
    MediaSource,
    Pacer,
    SilenceTrack,
    Stamp,
    SwitchableTrack,
    TestPattern,
    TestPatternTrack,
    ToneTrack,
    dominant_frequency,
    file_source,
    pattern_source,
    read_stamp,
    tone_source,
)
from desktop_call.media.sinks import audio_to_mono
from desktop_call.media.sources import yuv420p_planes
from desktop_call.media.stamp import (
    BLACK,
    STAMP_BITS,
    WHITE,
    draw_stamp,
    luma_plane,
    read_stamp_luma,
    stamp_layout,
)

T0 = 1_764_000_000_123_456  # a capture time in µs (late 2025)
SIZES = [(320, 240), (640, 480), (800, 600), (960, 540), (1280, 720), (1920, 1080)]


def stamped(width: int, height: int, number: int = 7, time_us: int = T0) -> av.VideoFrame:
    return TestPattern(width, height).render(number, time_us)


def cell_slices(layout, index: int) -> tuple[slice, slice]:
    row, column = divmod(index, layout.columns)
    c = layout.cell
    return slice(row * c, (row + 1) * c), slice(column * c, (column + 1) * c)


# The stamp.


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_stamp_round_trips_at_every_size(width, height):
    frame = stamped(width, height, number=123_456, time_us=T0)
    assert read_stamp(frame) == Stamp(123_456, T0)
    assert read_stamp(frame).capture_time == pytest.approx(T0 / 1e6)


def test_stamp_covers_the_full_ranges():
    for number, time_us in [(0, 0), (2**32 - 1, 2**64 - 1), (2**31, 2**63)]:
        assert read_stamp(stamped(640, 480, number, time_us)) == Stamp(number, time_us)


def test_frame_numbers_wrap_at_32_bits():
    frame = TestPattern(640, 480).render(2**32 + 5, T0)
    assert read_stamp(frame).frame_number == 5


def test_stamp_reads_from_other_pixel_formats_and_padded_planes():
    frame = stamped(640, 480)
    assert read_stamp(frame.reformat(format="rgb24")) == Stamp(7, T0)
    assert read_stamp(frame.reformat(format="nv12")) == Stamp(7, T0)
    odd = stamped(642, 482)  # line_size > width
    assert odd.planes[0].line_size != 642
    assert read_stamp(odd) == Stamp(7, T0)


def test_stamp_reads_after_an_exact_downscale():
    frame = stamped(1280, 720)
    assert read_stamp(frame.reformat(width=640, height=360)) == Stamp(7, T0)


def test_frames_too_small_carry_no_stamp():
    assert stamp_layout(120, 90) is None
    assert read_stamp(TestPattern(64, 48).render(1, T0)) is None


@settings(max_examples=60, deadline=None)
@given(
    number=st.integers(0, 2**32 - 1),
    time_us=st.integers(0, 2**64 - 1),
    seed=st.integers(0, 2**32 - 1),
)
def test_stamp_survives_luma_noise_and_soft_edges(number, time_us, seed):
    rng = np.random.default_rng(seed)
    luma = np.full((480, 640), 128, dtype=np.uint8)
    layout = stamp_layout(640, 480)
    draw_stamp(luma, Stamp(number, time_us), layout)
    noisy = luma.astype(np.int16) + rng.integers(-2, 3, size=luma.shape)
    # Blur the cell edges like a lossy coder does (a box filter across columns).
    noisy[:, 1:-1] = (noisy[:, :-2] + noisy[:, 1:-1] + noisy[:, 2:]) // 3
    noisy = np.clip(noisy * 0.8 + 20, 0, 255).astype(np.uint8)  # compressed range
    assert read_stamp_luma(noisy) == Stamp(number, time_us)


@settings(max_examples=60, deadline=None)
@given(index=st.integers(0, STAMP_BITS - 1), number=st.integers(0, 2**32 - 1))
def test_a_flipped_cell_is_rejected_not_misread(index, number):
    frame = stamped(640, 480, number)
    y, _, _ = yuv420p_planes(frame)
    layout = stamp_layout(640, 480)
    rows, cols = cell_slices(layout, index)
    y[rows, cols] = BLACK if y[rows, cols].mean() > 128 else WHITE
    assert read_stamp(frame) is None


def test_damaged_stamps_are_rejected():
    layout = stamp_layout(640, 480)
    # One cell half-way between black and white: ambiguous.
    frame = stamped(640, 480)
    rows, cols = cell_slices(layout, 40)
    yuv420p_planes(frame)[0][rows, cols] = 128
    assert read_stamp(frame) is None
    # The whole strip washed out towards grey: too little contrast.
    frame = stamped(640, 480)
    y = yuv420p_planes(frame)[0]
    y[: layout.height] = 110 + y[: layout.height] // 8
    assert read_stamp(frame) is None
    # Two stamps mixed (a stale row from the previous frame): the CRC no longer matches.
    frame, previous = stamped(640, 480, 1000, T0), stamped(640, 480, 999, T0 - 33_333)
    c = layout.cell
    yuv420p_planes(frame)[0][3 * c : 4 * c] = yuv420p_planes(previous)[0][3 * c : 4 * c]
    assert read_stamp(frame) is None
    # No stamp at all: black, noise, the bare pattern.
    assert read_stamp(av.VideoFrame(640, 480, "yuv420p")) is None
    noise = np.random.default_rng(1).integers(0, 256, size=(480, 640), dtype=np.uint8)
    assert read_stamp_luma(noise) is None


# The stamp through real lossy codecs (aiortc's own encoder settings, at low bitrates).


def _encoder(codec: str, width: int, height: int, bitrate: int):
    if codec == "vp8":
        enc = av.CodecContext.create("libvpx", "w")
        enc.time_base = fractions.Fraction(1, 90_000)
        enc.gop_size, enc.qmin, enc.qmax = 3000, 2, 56
        enc.options = {
            "bufsize": str(bitrate),
            "cpu-used": "-6",
            "deadline": "realtime",
            "lag-in-frames": "0",
            "minrate": str(bitrate),
            "maxrate": str(bitrate),
            "noise-sensitivity": "4",
            "overshoot-pct": "15",
            "partitions": "0",
            "static-thresh": "1",
            "undershoot-pct": "100",
        }
        dec = av.CodecContext.create("libvpx", "r")
    else:
        enc = av.CodecContext.create("libx264", "w")
        enc.framerate = fractions.Fraction(30, 1)
        enc.time_base = fractions.Fraction(1, 30)
        enc.options = {"level": "31", "tune": "zerolatency"}
        enc.profile = "Baseline"
        dec = av.CodecContext.create("h264", "r")
    enc.width, enc.height, enc.bit_rate, enc.pix_fmt = width, height, bitrate, "yuv420p"
    enc.thread_count = 1  # deterministic output whatever the machine
    return enc, dec


def code_and_read(codec: str, width: int, height: int, bitrate: int, frames: int):
    """Encode ``frames`` stamped frames, decode them, return (read, missing, wrong)."""
    pattern = TestPattern(width, height)
    enc, dec = _encoder(codec, width, height, bitrate)
    read = missing = wrong = 0
    for n in range(frames):
        frame = pattern.render(n, T0 + n * 33_333)
        frame.pts = n * 3000 if codec == "vp8" else n
        frame.time_base = enc.time_base
        for packet in enc.encode(frame):
            for decoded in dec.decode(packet):
                assert (decoded.width, decoded.height) == (width, height)
                stamp = read_stamp(decoded)
                if stamp is None:
                    missing += 1
                elif stamp.capture_time_us == T0 + stamp.frame_number * 33_333:
                    read += 1
                else:
                    wrong += 1
    return read, missing, wrong


@pytest.mark.parametrize(
    ("codec", "width", "height", "bitrate"),
    [
        # aiortc's floor for VP8 is 250 kbit/s; libvpx settles near 170 kbit/s on this pattern
        # even when asked for less, and the stamp reads on every frame there.
        ("vp8", 640, 480, 100_000),
        ("vp8", 1280, 720, 250_000),
        # aiortc's floor for H.264 is 500 kbit/s.
        ("h264", 640, 480, 100_000),
        ("h264", 1280, 720, 250_000),
    ],
)
def test_stamp_survives_a_low_bitrate_encode(codec, width, height, bitrate):
    read, missing, wrong = code_and_read(codec, width, height, bitrate, frames=20)
    assert (read, missing, wrong) == (20, 0, 0)


def test_a_starved_encoder_loses_stamps_but_never_misreads_them():
    read, missing, wrong = code_and_read("h264", 1280, 720, 50_000, frames=30)
    assert wrong == 0
    assert missing > 0  # stale macroblocks in the strip: rejected by the CRC
    assert read > 0


# The test pattern.


def test_the_pattern_moves_every_frame():
    pattern = TestPattern(640, 480)
    top = pattern.layout.height
    frames = [yuv420p_planes(pattern.render(n, T0)) for n in range(4)]
    for (y0, u0, _), (y1, u1, _) in itertools.pairwise(frames):
        assert not np.array_equal(y0[top:], y1[top:])
        assert not np.array_equal(u0[top // 2 :], u1[top // 2 :])
    # The stamp strip is grey: no colour to lose to 4:2:0 subsampling.
    _, u, v = frames[0]
    assert (u[: top // 2] == 128).all() and (v[: top // 2] == 128).all()


def test_pattern_sizes_are_checked():
    with pytest.raises(ValueError, match="even"):
        TestPattern(641, 480)


async def test_pattern_track_frames_are_what_aiortc_expects():
    track = TestPatternTrack(1280, 720, fps=30, realtime=False)
    try:
        frames = [await track.recv() for _ in range(3)]
    finally:
        track.stop()
    assert [f.pts for f in frames] == [0, 3000, 6000]
    assert all(f.time_base == fractions.Fraction(1, 90_000) for f in frames)
    assert all(f.format.name == "yuv420p" and (f.width, f.height) == (1280, 720) for f in frames)
    stamps = [read_stamp(f) for f in frames]
    assert [s.frame_number for s in stamps] == [0, 1, 2]
    assert stamps[0].capture_time_us <= stamps[1].capture_time_us <= stamps[2].capture_time_us
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_pattern_track_paces_in_real_time():
    track = TestPatternTrack(320, 240, fps=200)
    try:
        frames = [await track.recv() for _ in range(11)]
    finally:
        track.stop()
    stamps = [read_stamp(f) for f in frames]
    # Ten periods of 5 ms: never faster than real time (slower is the machine's business).
    assert stamps[-1].capture_time_us - stamps[0].capture_time_us >= 45_000
    assert frames[-1].pts == 10 * 450


async def test_a_pacer_that_fell_behind_skips_ahead_instead_of_bursting():
    pacer = Pacer(30)
    assert await pacer.next() == 0
    pacer._start -= 1.0  # as if the consumer had stalled for a second
    index = await pacer.next()
    assert 29 <= index <= 31
    assert await pacer.next() == index + 1


# Audio sources.


@pytest.mark.parametrize(("frequency", "layout"), [(440.0, "stereo"), (1000.0, "mono")])
async def test_tone_has_the_right_frequency_and_shape(frequency, layout):
    track = ToneTrack(frequency, amplitude=0.5, layout=layout, realtime=False)
    sink = CountingAudioSink(keep=48_000)
    try:
        for n in range(50):
            frame = await track.recv()
            assert frame.format.name == "s16" and frame.layout.name == layout
            assert (frame.samples, frame.sample_rate, frame.pts) == (960, 48_000, n * 960)
            assert frame.time_base == fractions.Fraction(1, 48_000)
            sink.write(frame)
    finally:
        track.stop()
    assert sink.dominant_frequency() == pytest.approx(frequency, abs=0.5)
    assert sink.rms == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    assert sink.peak == pytest.approx(0.5, rel=0.01)
    assert sink.samples == 48_000 and sink.frames == 50


async def test_tone_is_continuous_across_frames():
    track = ToneTrack(997.0, realtime=False)
    try:
        samples = np.concatenate([audio_to_mono(await track.recv()) for _ in range(5)])
    finally:
        track.stop()
    expected = 0.25 * np.sin(2 * np.pi * 997.0 * np.arange(len(samples)) / 48_000)
    assert np.abs(samples - expected).max() < 1e-3


async def test_silence_is_silent():
    track = SilenceTrack(realtime=False)
    try:
        frame = await track.recv()
    finally:
        track.stop()
    assert frame.samples == 960 and not audio_to_mono(frame).any()


def test_dominant_frequency_needs_enough_signal():
    assert dominant_frequency(np.zeros(10), 48_000) is None
    assert dominant_frequency(np.zeros(4800), 48_000) is None


# Sources behind the common interface.


async def test_synthetic_sources_implement_the_source_interface():
    video, audio = pattern_source(320, 240, 15), tone_source(500)
    for source, kind in [(video, "video"), (audio, "audio")]:
        assert isinstance(source, MediaSource)
        assert source.kind == kind == source.track.kind
        await source.start()
        assert await source.track.recv() is not None
        await source.stop()
        await source.stop()
        assert source.track.readyState == "ended"
    assert video.describe() == "Test pattern 320x240@15"
    assert audio.describe() == "Tone 500 Hz"


# A media file (PyAV), made by the test.


@pytest.fixture(scope="module")
def media_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "clip.webm"
    pattern = TestPattern(320, 240)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libvpx", rate=10)
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        video.bit_rate = 2_000_000
        audio = container.add_stream("libopus", rate=48_000)
        audio.layout = "stereo"
        tone = ToneTrack(1000.0, realtime=False)._samples
        for n in range(20):  # two seconds of video
            frame = pattern.render(n, T0 + n * 100_000)
            frame.pts = n
            frame.time_base = fractions.Fraction(1, 10)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        for n in range(100):  # two seconds of audio
            data = np.repeat(tone(n * 960, 960), 2).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(data, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = 48_000, n * 960
            frame.time_base = fractions.Fraction(1, 48_000)
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return path


async def test_file_video_plays_once_then_ends(media_file):
    track = FileTrack(media_file, "video", realtime=False)
    frames = []
    try:
        with pytest.raises(MediaStreamError):
            while True:
                frames.append(await track.recv())
    finally:
        track.stop()
    assert len(frames) == 20
    assert [read_stamp(f).frame_number for f in frames] == list(range(20))
    assert [f.pts for f in frames] == [n * 9000 for n in range(20)]
    assert all(f.format.name == "yuv420p" for f in frames)
    assert track.readyState == "ended"


async def test_file_video_loops_with_rising_timestamps(media_file):
    track = FileTrack(media_file, "video", loop=True, realtime=False)
    try:
        frames = [await track.recv() for _ in range(45)]
    finally:
        track.stop()
    numbers = [read_stamp(f).frame_number for f in frames]
    assert numbers == list(range(20)) * 2 + list(range(5))
    assert [f.pts for f in frames] == [n * 9000 for n in range(45)]


async def test_file_audio_is_s16_stereo_48k_in_20ms_frames(media_file):
    track = FileTrack(media_file, "audio", realtime=False)
    sink = CountingAudioSink()
    try:
        with pytest.raises(MediaStreamError):
            while True:
                frame = await track.recv()
                assert frame.format.name == "s16" and frame.layout.name == "stereo"
                assert frame.sample_rate == 48_000 and frame.samples <= 960
                sink.write(frame)
    finally:
        track.stop()
    assert sink.samples >= 2 * 48_000 - 960
    assert sink.dominant_frequency() == pytest.approx(1000.0, abs=2)


async def test_file_track_paces_by_timestamps(media_file):
    track = FileTrack(media_file, "video")
    try:
        first = await track.recv()
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(3):
            await track.recv()
        assert loop.time() - started >= 0.29  # three frames at 10 fps
    finally:
        track.stop()
    assert first.pts == 0


async def test_a_file_is_a_source_too(media_file):
    source = file_source(media_file, "video", loop=False)
    try:
        assert isinstance(source, MediaSource)
        assert source.describe() == "File clip.webm (video)"
        await source.start()
        assert read_stamp(await source.track.recv()).frame_number == 0
    finally:
        await source.stop()
    assert source.track.readyState == "ended"


def test_a_file_without_the_stream_is_refused(tmp_path):
    path = tmp_path / "audio-only.ogg"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libopus", rate=48_000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1920), dtype=np.int16), format="s16", layout="stereo"
        )
        frame.sample_rate, frame.pts = 48_000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(ValueError, match="no video stream"):
        FileTrack(path, "video")


# The switchable track.


class QueueTrack(MediaStreamTrack):
    """An upstream that yields exactly what the test puts in, and blocks otherwise."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.queue: asyncio.Queue = asyncio.Queue()

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        return await self.queue.get()


def is_black(frame: av.VideoFrame) -> bool:
    y, u, v = yuv420p_planes(frame)
    return bool((y == 16).all() and (u == 128).all() and (v == 128).all())


async def test_muted_audio_sends_silence_then_the_upstream_again():
    tone = ToneTrack(440.0, realtime=False)
    track = SwitchableTrack("audio", tone)
    try:
        loud = [await track.recv() for _ in range(3)]
        track.muted = True
        assert track.muted and not track.enabled
        quiet = [await track.recv() for _ in range(3)]
        track.muted = False
        loud_again = [await track.recv() for _ in range(3)]
    finally:
        track.stop()
        tone.stop()
    assert all(np.abs(audio_to_mono(f)).max() > 0.2 for f in loud + loud_again)
    assert not any(audio_to_mono(f).any() for f in quiet)
    assert all(f.samples == 960 and f.sample_rate == 48_000 for f in quiet)
    pts = [f.pts for f in loud + quiet + loud_again]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)
    assert track.frames_forwarded == 9  # the microphone kept being read while muted


async def test_video_off_sends_black_frames_then_the_camera_again():
    camera = TestPatternTrack(320, 240, realtime=False)
    track = SwitchableTrack("video", camera, off_fps=200)
    try:
        on = [await track.recv() for _ in range(2)]
        track.enabled = False
        off = [await track.recv() for _ in range(3)]
        track.enabled = True
        on_again = [await track.recv() for _ in range(2)]
    finally:
        track.stop()
        camera.stop()
    assert all(read_stamp(f) is not None for f in on + on_again)
    assert all(is_black(f) and (f.width, f.height) == (320, 240) for f in off)
    pts = [f.pts for f in on + off + on_again]
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert all(f.time_base == fractions.Fraction(1, 90_000) for f in on + off + on_again)
    assert track.frames_filled == 3


async def test_switching_sources_keeps_the_same_track():
    first, second = (
        TestPatternTrack(320, 240, realtime=False),
        TestPatternTrack(640, 480, realtime=False),
    )
    track = SwitchableTrack("video", first)
    try:
        a = await track.recv()
        assert track.set_source(second) is first
        b = await track.recv()
        assert track.source is second
    finally:
        track.stop()
        first.stop()
        second.stop()
    assert (a.width, b.width) == (320, 640)
    assert b.pts > a.pts
    assert first.readyState == "ended" and track.readyState == "ended"


async def test_a_state_change_interrupts_a_blocked_upstream():
    camera = QueueTrack("video")
    track = SwitchableTrack("video", camera, off_fps=100)
    try:
        receiving = asyncio.ensure_future(track.recv())
        await asyncio.sleep(0)  # let it block on the camera
        assert not receiving.done()
        track.enabled = False  # camera off while the camera has nothing to give
        async with asyncio.timeout(2):
            assert is_black(await receiving)
        track.enabled = True
        receiving = asyncio.ensure_future(track.recv())
        frame = TestPattern(640, 480).render(42, T0)
        camera.queue.put_nowait(frame)
        async with asyncio.timeout(2):
            assert read_stamp(await receiving).frame_number == 42
    finally:
        track.stop()
        camera.stop()


async def test_without_or_after_an_upstream_filler_flows():
    audio = SwitchableTrack("audio")
    mic = ToneTrack(realtime=False)
    video = SwitchableTrack("video", off_fps=100, off_size=(160, 120))
    try:
        assert not audio_to_mono(await audio.recv()).any()
        assert audio.sending_filler
        audio.set_source(mic)
        assert audio_to_mono(await audio.recv()).any()
        mic.stop()  # the microphone was unplugged: silence, and the track lives on
        assert not audio_to_mono(await audio.recv()).any()
        assert audio.readyState == "live"
        frame = await video.recv()
        assert is_black(frame) and (frame.width, frame.height) == (160, 120)
    finally:
        audio.stop()
        video.stop()
    with pytest.raises(MediaStreamError):
        await audio.recv()


async def test_stop_wakes_a_pending_recv():
    camera = QueueTrack("video")
    track = SwitchableTrack("video", camera)
    try:
        receiving = asyncio.ensure_future(track.recv())
        await asyncio.sleep(0)
        track.stop()
        async with asyncio.timeout(2):
            with pytest.raises(MediaStreamError):
                await receiving
    finally:
        track.stop()
        camera.stop()


def test_switchable_track_checks_kinds():
    with pytest.raises(ValueError, match="cannot forward"):
        SwitchableTrack("audio", TestPatternTrack())
    with pytest.raises(ValueError, match="kind"):
        SwitchableTrack("data")


# Receivers, fed the way aiortc feeds them (its own RemoteStreamTrack and queue).


def remote_video(*numbers: int, end: bool = False) -> RemoteStreamTrack:
    track = RemoteStreamTrack(kind="video")
    pattern = TestPattern(320, 240)
    for n in numbers:
        track._queue.put_nowait(pattern.render(n, T0))
    if end:
        track._queue.put_nowait(None)
    return track


async def test_receiver_drains_to_the_newest_frame():
    track = remote_video(1, 2, 3, 4, 5)
    async with LatestFrameReceiver(track) as receiver:
        async with asyncio.timeout(2):
            frame = await receiver.next_frame()
        assert read_stamp(frame).frame_number == 5
        assert receiver.frames_received == 5
        assert receiver.frames_dropped == 4
        assert receiver.frames_delivered == 1
        assert receiver.latest is frame
        assert len(receiver.latencies) == 1 and receiver.latencies[0] > 0
        assert receiver.first_frame_at is not None


async def test_receiver_counts_frames_lost_before_it():
    track = remote_video(10, 11, 14)
    seen = []
    async with LatestFrameReceiver(track, on_frame=seen.append) as receiver:
        async with asyncio.timeout(2):
            await receiver.wait_for(lambda: receiver.frames_received == 3)
        assert receiver.frames_missing == 2
        assert receiver.stamps_unreadable == 0
        assert [read_stamp(f).frame_number for f in seen] == [14]


async def test_receiver_ends_cleanly_with_the_track():
    track = remote_video(1, 2, end=True)
    receiver = LatestFrameReceiver(track)
    receiver.start()
    try:
        async with asyncio.timeout(2):
            await receiver.wait_ended()
        assert receiver.ended and track.readyState == "ended"
        assert read_stamp(await receiver.next_frame()).frame_number == 2
        with pytest.raises(MediaStreamError):
            await receiver.next_frame()
        with pytest.raises(MediaStreamError):
            await receiver.wait_for(lambda: receiver.frames_received > 100)
    finally:
        await receiver.close()


async def test_pull_mode_counts_frames_nobody_took():
    track = remote_video()
    pattern = TestPattern(320, 240)
    async with LatestFrameReceiver(track) as receiver:
        for n in range(3):
            track._queue.put_nowait(pattern.render(n, T0))
            async with asyncio.timeout(2):
                await receiver.wait_for(lambda n=n: receiver.frames_received == n + 1)
        assert receiver.frames_dropped == 2  # 0 and 1 were replaced before anyone looked
        assert read_stamp(await receiver.next_frame()).frame_number == 2


async def test_a_slow_async_consumer_makes_the_receiver_drop():
    track = remote_video(0)
    pattern = TestPattern(320, 240)
    busy, gate = asyncio.Event(), asyncio.Event()
    seen = []

    async def slow(frame):
        seen.append(read_stamp(frame).frame_number)
        busy.set()
        await gate.wait()

    async with LatestFrameReceiver(track, on_frame=slow) as receiver:
        async with asyncio.timeout(2):
            await busy.wait()
        for n in range(1, 6):  # arrive while the consumer is busy
            track._queue.put_nowait(pattern.render(n, T0))
        gate.set()
        async with asyncio.timeout(2):
            await receiver.wait_for(lambda: receiver.frames_received == 6)
        assert seen == [0, 5]
        assert receiver.frames_dropped == 4
        stats = receiver.stats()
        assert stats["frames_delivered"] == 2 and stats["latency_ms_p50"] > 0


async def test_close_cancels_a_waiting_receiver_and_leaves_the_track_alone():
    track = remote_video()
    receiver = LatestFrameReceiver(track)
    receiver.start()
    await asyncio.sleep(0)
    await receiver.close()
    assert receiver.ended and track.readyState == "live"
    with pytest.raises(MediaStreamError):
        await receiver.next_frame()
    track.stop()


async def test_audio_receiver_writes_every_frame_to_the_sink():
    track = RemoteStreamTrack(kind="audio")
    tone = ToneTrack(1000.0, realtime=False)
    for _ in range(25):
        track._queue.put_nowait(await tone.recv())
    tone.stop()
    track._queue.put_nowait(None)
    sink = CountingAudioSink()
    assert isinstance(sink, AudioSink)
    receiver = AudioReceiver(track, sink)
    receiver.start()
    try:
        async with asyncio.timeout(2):
            await receiver.wait_ended()
    finally:
        await receiver.close()
        sink.close()
    assert receiver.frames_received == sink.frames == 25
    assert (sink.sample_rate, sink.channels, sink.samples) == (48_000, 2, 24_000)
    assert sink.dominant_frequency() == pytest.approx(1000.0, abs=1)
    assert sink.closed


def test_counting_sink_keeps_only_the_last_samples():
    sink = CountingAudioSink(keep=1000)
    for value in (1000, 2000, 3000):
        data = np.full((1, 960 * 2), value, dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout="stereo")
        frame.sample_rate = 48_000
        sink.write(frame)
    recent = sink.recent()
    assert len(recent) == 1000
    assert recent[-1] == pytest.approx(3000 / 32768)
    assert recent[0] == pytest.approx(2000 / 32768)
    assert sink.peak == pytest.approx(3000 / 32768)


def test_audio_to_mono_handles_planar_float():
    data = np.stack([np.full(480, 0.5, np.float32), np.full(480, -0.25, np.float32)])
    frame = av.AudioFrame.from_ndarray(data, format="fltp", layout="stereo")
    assert audio_to_mono(frame) == pytest.approx(np.full(480, 0.125))


def test_receivers_check_the_kind():
    with pytest.raises(ValueError, match="video"):
        LatestFrameReceiver(RemoteStreamTrack(kind="audio"))
    with pytest.raises(ValueError, match="audio"):
        AudioReceiver(RemoteStreamTrack(kind="video"), CountingAudioSink())


# Layering.


def test_media_imports_neither_qt_nor_websockets():
    code = (
        "import sys, desktop_call.media\n"
        "print(' '.join(m for m in ('PySide6', 'qasync', 'websockets') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""


def test_luma_plane_is_a_view_for_planar_frames():
    frame = stamped(640, 480)
    luma = luma_plane(frame)
    assert luma.shape == (480, 640)
    assert np.shares_memory(luma, np.frombuffer(frame.planes[0], dtype=np.uint8))
