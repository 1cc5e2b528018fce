"""The audio jitter buffer hands packets on at once, skips holes, drops the late."""

from __future__ import annotations

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from desktop_call.call.jitter import AudioJitterBuffer, use_audio_jitter_buffer


def packet(sequence: int) -> RtpPacket:
    p = RtpPacket(payload_type=111, sequence_number=sequence & 0xFFFF, timestamp=960 * sequence)
    p._data = bytes([sequence & 0xFF])  # what the receiver's depayloader leaves there
    return p


def released(buffer, sequences) -> list[int | None]:
    out = []
    for sequence in sequences:
        pli, frame = buffer.add(packet(sequence))
        assert pli is False  # audio never asks for a picture
        out.append(frame.data[0] if frame else None)
    return out


def test_every_packet_in_order_goes_to_the_decoder_on_arrival():
    assert released(AudioJitterBuffer(), range(10)) == list(range(10))


def test_aiortcs_buffer_holds_four_packets_back_and_stalls_on_a_hole():
    # The behaviour replaced: nothing for the first four packets, then one per packet...
    out = released(JitterBuffer(capacity=16, prefetch=4), range(8))
    assert out[:4] == [None] * 4 and out[4] == 0
    # ...and a single lost packet stops it until the capacity overflows.
    out = released(JitterBuffer(capacity=16, prefetch=4), [0, 1, 2, *range(4, 14)])
    assert out[3:] == [None] * 10


def test_a_lost_packet_is_skipped_at_once_and_counted():
    buffer = AudioJitterBuffer()
    assert released(buffer, [0, 1, 2, 4, 5, 7]) == [0, 1, 2, 4, 5, 7]
    assert buffer.lost == 2 and buffer.late == 0 and buffer.packets == 6


def test_late_and_duplicated_packets_are_dropped():
    buffer = AudioJitterBuffer()
    assert released(buffer, [0, 1, 3, 2, 3, 4]) == [0, 1, 3, None, None, 4]
    assert buffer.late == 2


def test_sequence_numbers_wrap_around():
    buffer = AudioJitterBuffer()
    out = released(buffer, [65534, 65535, 65536, 65537])
    assert out == [0xFE, 0xFF, 0x00, 0x01]
    assert buffer.lost == 0 and buffer.late == 0


def test_a_sender_that_restarts_its_numbering_is_followed():
    buffer = AudioJitterBuffer()
    released(buffer, [5000, 5001])
    assert released(buffer, [10, 11]) == [10, 11]  # far behind: a new sequence, not late


class _Transport:  # all a receiver asks of its DTLS transport when it is made
    state = "new"


def test_only_aiortcs_own_audio_buffer_is_replaced():
    audio = RTCRtpReceiver("audio", transport=_Transport())
    buffer = use_audio_jitter_buffer(audio)
    assert isinstance(buffer, AudioJitterBuffer)
    assert use_audio_jitter_buffer(audio) is buffer  # twice: the same one
    video = RTCRtpReceiver("video", transport=_Transport())
    assert use_audio_jitter_buffer(video) is None
    assert type(video._RTCRtpReceiver__jitter_buffer) is JitterBuffer
