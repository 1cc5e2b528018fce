"""VideoJitterBuffer: aiortc's reassembly, plus giving up on holes the sender cannot fill."""

from types import SimpleNamespace

import pytest
from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from desktop_call.call.video_jitter import VideoJitterBuffer, use_video_jitter_buffer

PACKETS_PER_FRAME = 2
TICK = 0.016  # between packets: 2 packets per frame at 30 fps


class Feed:
    """Packets of numbered frames into a buffer, on a fake clock."""

    def __init__(self, max_wait=0.5):
        self.now = 0.0
        self.buffer = VideoJitterBuffer(512, max_wait=max_wait, clock=lambda: self.now)
        self.frames: list[int] = []  # frame numbers handed on
        self.plis = 0
        self.skipped_at: float | None = None  # when the first hole was given up on

    def packet(self, frame: int, part: int, *, seq_base: int = 1000) -> None:
        sequence = (seq_base + frame * PACKETS_PER_FRAME + part) & 0xFFFF
        packet = RtpPacket(
            sequence_number=sequence,
            timestamp=frame * 3000,
            marker=int(part == PACKETS_PER_FRAME - 1),
        )
        packet._data = bytes([frame & 0xFF, part])
        self.now += TICK
        pli, frame_out = self.buffer.add(packet)
        self.plis += pli
        if self.buffer.holes_skipped and self.skipped_at is None:
            self.skipped_at = self.now
        if frame_out is not None:
            self.frames.append(frame_out.timestamp // 3000)

    def frames_between(self, first: int, last: int, *, skip: set[int] = frozenset()) -> None:
        for frame in range(first, last + 1):
            for part in range(PACKETS_PER_FRAME):
                if (frame, part) not in skip and frame not in skip:
                    self.packet(frame, part)


def test_in_order_frames_come_out_in_order_without_picture_loss():
    feed = Feed()
    feed.frames_between(0, 20)
    assert feed.frames == list(range(20))  # the last waits for the next frame's start
    assert feed.plis == 0 and feed.buffer.holes_skipped == 0


def test_a_retransmission_within_the_wait_fills_the_hole():
    feed = Feed()
    feed.frames_between(0, 5)
    feed.frames_between(6, 10, skip={(6, 1)})  # frame 6 lost its second packet ...
    assert feed.frames == list(range(6))
    feed.packet(6, 1)  # ... which the retransmission brings 0.13 s later
    feed.frames_between(11, 12)
    assert feed.frames == list(range(11))  # (the backlog comes out one per packet)
    assert feed.plis == 0 and feed.buffer.holes_skipped == 0


def test_a_hole_nobody_fills_is_skipped_after_the_wait_with_a_key_frame_request():
    feed = Feed(max_wait=0.5)
    feed.frames_between(0, 9)
    # An outage: frames 10-39 never arrive (60 packets, more than the sender keeps).
    hole_seen = feed.now + TICK  # when the first packet after it arrives
    feed.frames_between(40, 45)
    assert feed.frames == list(range(9))  # stuck behind the hole, for now
    feed.frames_between(46, 80)
    # Given up after 0.5 s: frame 9 (its successor is lost, so it cannot be known
    # complete) and 40 (the first after the hole) are dropped; the rest comes out.
    assert feed.frames[:9] == list(range(9))
    assert feed.frames[9] == 41
    assert feed.frames[9:] == list(range(41, 80))
    assert feed.buffer.holes_skipped == 1 and feed.plis >= 1
    assert 0.5 <= feed.skipped_at - hole_seen < 0.5 + 2 * TICK


def test_aiortcs_own_buffer_waits_far_longer_for_the_same_hole():
    """What VideoJitterBuffer fixes: the stock buffer holds everything behind a hole
    until 512 packets have piled up (about 8 s of this stream)."""
    stock = JitterBuffer(512, is_video=True)
    out = []
    sequence = 1000
    for frame in [*range(10), *range(40, 80)]:
        for part in range(PACKETS_PER_FRAME):
            packet = RtpPacket(
                sequence_number=1000 + frame * PACKETS_PER_FRAME + part, timestamp=frame * 3000
            )
            packet._data = b"x"
            sequence += 1
            if (frame_out := stock.add(packet)[1]) is not None:
                out.append(frame_out.timestamp // 3000)
    assert out == list(range(9))  # 80 packets later, still nothing after the hole


def test_a_late_packet_behind_the_head_is_dropped_not_taken_for_a_new_stream():
    feed = Feed(max_wait=0.1)
    feed.frames_between(0, 199)
    feed.frames_between(260, 280)  # skips the hole after 0.1 s
    assert feed.buffer.holes_skipped == 1
    handed = list(feed.frames)
    feed.packet(150, 0)  # a retransmission 200+ packets late: aiortc would reset on it
    assert feed.buffer.late == 1
    feed.frames_between(281, 285)
    assert feed.frames[len(handed) :] == list(range(280, 285))


def test_sequence_numbers_wrap_around():
    feed = Feed()
    for frame in range(40):
        for part in range(PACKETS_PER_FRAME):
            feed.packet(frame, part, seq_base=65500)
    assert feed.frames == list(range(39))


def test_it_replaces_only_aiortcs_video_buffer():
    video = RTCRtpReceiver("video", SimpleNamespace(state="new"))
    audio = RTCRtpReceiver("audio", SimpleNamespace(state="new"))
    installed = use_video_jitter_buffer(video)
    assert isinstance(installed, VideoJitterBuffer)
    assert video._RTCRtpReceiver__jitter_buffer is installed  # the attribute aiortc reads
    assert use_video_jitter_buffer(video) is installed  # idempotent
    assert use_video_jitter_buffer(audio) is None
    assert type(audio._RTCRtpReceiver__jitter_buffer) is JitterBuffer


@pytest.mark.parametrize("max_wait", [0.2, 1.0])
def test_the_wait_is_what_was_asked(max_wait):
    feed = Feed(max_wait=max_wait)
    feed.frames_between(0, 4)
    hole_seen = feed.now + TICK
    feed.frames_between(10, 200)
    assert feed.buffer.holes_skipped == 1
    assert max_wait <= feed.skipped_at - hole_seen < max_wait + 2 * TICK
    assert feed.frames.index(11) == 4  # 0-3, then 11 (4's end unknown, 10 partial)
