"""The report's view of the picture over a call: gaps, stalls, frames per second."""

import asyncio
import time

from aiortc.rtcrtpreceiver import RemoteStreamTrack

from desktop_call.media.sinks import LatestFrameReceiver
from desktop_call.media.sources import TestPattern
from desktop_call.report import frame_timeline


def test_a_timeline_from_arrival_times_of_several_receivers():
    # 30 fps for 2 s, a 1.5 s freeze (a rebuilt connection: a second receiver), 1 s more.
    first = [0.2 + n / 30 for n in range(60)]  # 0.2 .. 2.167
    second = [first[-1] + 1.5 + n / 30 for n in range(30)]
    timeline = frame_timeline(second + first, origin=0.0)  # any order
    assert timeline["max_frame_gap_ms"] == 1500.0
    assert timeline["video_stalls"] == [{"t_ms": 2166.7, "ms": 1500.0}]
    assert timeline["video_fps_timeline"] == [24, 30, 6, 10, 20]
    assert sum(timeline["video_fps_timeline"]) == 90


def test_short_gaps_are_not_stalls_and_nothing_is_no_timeline():
    steady = [n / 30 for n in range(30)] + [1.2]  # a 233 ms gap: noticeable, not a stall
    timeline = frame_timeline(steady, origin=0.0)
    assert timeline["video_stalls"] == [] and timeline["max_frame_gap_ms"] == 233.3
    empty = frame_timeline([], origin=0.0)
    assert empty == {"max_frame_gap_ms": 0.0, "video_stalls": [], "video_fps_timeline": []}


def test_frames_before_the_origin_count_for_gaps_but_not_for_seconds():
    timeline = frame_timeline([-0.5, 0.1, 0.2], origin=0.0)
    assert timeline["video_fps_timeline"] == [2]
    assert timeline["max_frame_gap_ms"] == 600.0


async def test_a_receiver_measures_its_longest_gap_and_keeps_arrival_times():
    track = RemoteStreamTrack(kind="video")
    pattern = TestPattern(320, 240)
    receiver = LatestFrameReceiver(track, keep_arrivals=100)
    async with receiver:
        track._queue.put_nowait(pattern.render(1, 0))
        async with asyncio.timeout(2):
            await receiver.wait_for(lambda: receiver.frames_received == 1)
        await asyncio.sleep(0.3)  # the picture stands still (the input of this test)
        track._queue.put_nowait(pattern.render(2, 0))
        async with asyncio.timeout(2):
            await receiver.wait_for(lambda: receiver.frames_received == 2)
    assert 0.3 <= receiver.max_frame_gap < 1.0
    assert len(receiver.arrival_log) == 2
    assert receiver.arrival_log[1] - receiver.arrival_log[0] == receiver.max_frame_gap
    assert receiver.arrival_log[1] <= time.monotonic()
    assert receiver.stats()["max_frame_gap_ms"] >= 300


def test_receivers_keep_no_arrival_times_unless_asked():
    receiver = LatestFrameReceiver(RemoteStreamTrack(kind="video"))
    assert receiver.arrival_log.maxlen == 0
    timeline = frame_timeline([], origin=0.0, fallback=[receiver])
    assert timeline["max_frame_gap_ms"] == 0.0
