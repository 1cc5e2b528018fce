"""Media over real aiortc peer connections, both ends in this process (no signaling server).

The offer and answer are handed across directly, as in aiortc's own tests; ICE runs over
the loopback/host interfaces with no STUN server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamTrack

from desktop_call.media import (
    AudioReceiver,
    CountingAudioSink,
    LatestFrameReceiver,
    SwitchableTrack,
    TestPatternTrack,
    ToneTrack,
    audio_to_mono,
    read_stamp,
)
from desktop_call.media.sources import yuv420p_planes

pytestmark = pytest.mark.loopback

WAIT = 10  # seconds any single condition may take before the test fails


@contextlib.asynccontextmanager
async def call(
    *tracks: MediaStreamTrack, video_codec: str | None = None
) -> AsyncIterator[tuple[RTCPeerConnection, dict[str, MediaStreamTrack]]]:
    """Connect a caller sending ``tracks`` to a callee; yield the caller and remote tracks."""
    config = RTCConfiguration(iceServers=[])
    caller, callee = RTCPeerConnection(config), RTCPeerConnection(config)
    loop = asyncio.get_running_loop()
    arrived = {track.kind: loop.create_future() for track in tracks}

    @callee.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if not arrived[track.kind].done():
            arrived[track.kind].set_result(track)

    try:
        for track in tracks:
            transceiver = caller.addTransceiver(track, direction="sendonly")
            if track.kind == "video" and video_codec is not None:
                codecs = RTCRtpSender.getCapabilities("video").codecs
                transceiver.setCodecPreferences(
                    [c for c in codecs if c.mimeType in (f"video/{video_codec}", "video/rtx")]
                )
        await caller.setLocalDescription(await caller.createOffer())
        await callee.setRemoteDescription(caller.localDescription)
        await callee.setLocalDescription(await callee.createAnswer())
        await caller.setRemoteDescription(callee.localDescription)
        async with asyncio.timeout(WAIT):
            remote = {kind: await future for kind, future in arrived.items()}
        yield caller, remote
    finally:
        await caller.close()
        await callee.close()


def video_codec_of(sdp: str) -> str:
    """The codec of the first payload type of the video m-line of ``sdp``."""
    lines = sdp.splitlines()
    m_line = next(line for line in lines if line.startswith("m=video"))
    payload_type = m_line.split()[3]
    rtpmap = next(line for line in lines if line.startswith(f"a=rtpmap:{payload_type} "))
    return rtpmap.split()[1].split("/")[0]


def luma_mean(frame: av.VideoFrame) -> float:
    return float(yuv420p_planes(frame)[0].mean())


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_pattern_and_tone_arrive_with_readable_stamps(codec):
    video, audio = TestPatternTrack(640, 480, fps=30), ToneTrack(440.0)
    receivers: list = []
    try:
        async with call(video, audio, video_codec=codec) as (caller, remote):
            sink = CountingAudioSink(keep=24_000)
            pictures = LatestFrameReceiver(remote["video"])
            sound = AudioReceiver(remote["audio"], sink)
            receivers += [pictures, sound]
            pictures.start()
            sound.start()
            async with asyncio.timeout(WAIT):
                await pictures.wait_for(lambda: len(pictures.latencies) >= 10)
                await sound.wait_for(lambda: sink.samples >= 24_000)

            assert video_codec_of(caller.remoteDescription.sdp) == codec
            frame = pictures.latest
            assert (frame.width, frame.height) == (640, 480)
            stamp = read_stamp(frame)
            assert stamp is not None and 0 < stamp.frame_number < video.frames_sent
            assert pictures.stamps_unreadable <= pictures.frames_received // 10
            assert all(0 < latency < 1 for latency in pictures.latencies)
            assert pictures.first_frame_at is not None and pictures.fps > 0

            assert sink.sample_rate == 48_000 and sink.channels == 2
            assert sink.dominant_frequency() == pytest.approx(440.0, abs=5)
            assert np.sqrt(np.mean(sink.recent() ** 2)) > 0.05

            # A consumer slower than 30 fps: the receiver drains and counts the drops.
            await pictures.close()

            async def slow_paint(frame: av.VideoFrame) -> None:
                await asyncio.sleep(0.2)  # stands for a paint that takes 200 ms

            slow = LatestFrameReceiver(remote["video"], on_frame=slow_paint)
            receivers.append(slow)
            slow.start()
            async with asyncio.timeout(WAIT):
                await slow.wait_for(lambda: slow.frames_dropped >= 5)
            assert slow.frames_delivered < slow.frames_received
            # Every latency sample is of the newest frame: the backlog never grows.
            assert max(slow.latencies) < 1
    finally:
        for receiver in receivers:
            await receiver.close()
        video.stop()
        audio.stop()


async def test_camera_off_and_mute_switch_without_renegotiation():
    camera, microphone = TestPatternTrack(320, 240, fps=30), ToneTrack(440.0)
    video = SwitchableTrack("video", camera, off_fps=10)
    audio = SwitchableTrack("audio", microphone)
    receivers: list = []
    frames: list[tuple[bool, float]] = []  # (stamp read, mean luma) of each newest frame
    levels: list[float] = []  # RMS of each received audio frame

    class LevelSink(CountingAudioSink):
        def write(self, frame: av.AudioFrame) -> None:
            super().write(frame)
            levels.append(float(np.sqrt(np.mean(audio_to_mono(frame) ** 2))))

    def stamped_since(start: int) -> int:
        return sum(ok for ok, _ in frames[start:])

    def black_since(start: int) -> int:
        return sum(not ok and luma < 24 for ok, luma in frames[start:])

    def loud_since(start: int) -> int:
        return sum(level > 0.05 for level in levels[start:])

    def silent_since(start: int) -> int:
        return sum(level < 0.001 for level in levels[start:])

    try:
        async with call(video, audio) as (caller, remote):
            senders = {s.track.kind: s for s in caller.getSenders()}
            pictures = LatestFrameReceiver(
                remote["video"],
                on_frame=lambda f: frames.append((read_stamp(f) is not None, luma_mean(f))),
            )
            sound = AudioReceiver(remote["audio"], LevelSink())
            receivers += [pictures, sound]
            pictures.start()
            sound.start()
            async with asyncio.timeout(WAIT):
                await pictures.wait_for(lambda: stamped_since(0) >= 5)
                await sound.wait_for(lambda: loud_since(0) >= 10)

            video.enabled, audio.muted = False, True
            v, a = len(frames), len(levels)
            async with asyncio.timeout(WAIT):
                await pictures.wait_for(lambda: black_since(v) >= 3)
                await sound.wait_for(lambda: silent_since(a) >= 10)

            video.enabled, audio.muted = True, False
            v, a = len(frames), len(levels)
            async with asyncio.timeout(WAIT):
                await pictures.wait_for(lambda: stamped_since(v) >= 5)
                await sound.wait_for(lambda: loud_since(a) >= 10)

            assert senders["video"].track is video and senders["audio"].track is audio
            assert caller.signalingState == "stable"
            assert video.frames_filled >= 3 and video.frames_forwarded >= 10
    finally:
        for receiver in receivers:
            await receiver.close()
        for track in (video, audio, camera, microphone):
            track.stop()
