"""Audio processing (issue 5) without devices: the APM between frames, sinks and tracks.

The echo tests run WebRTC's APM (the ``livekit`` package's native library) on short
synthetic signals; they are skipped, with the reason, where that library is missing.
"""

from __future__ import annotations

import itertools

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from desktop_call.media import CountingAudioSink, SwitchableTrack, ToneTrack
from desktop_call.media import audio_processing as ap
from desktop_call.media.audio_processing import (
    APM_BLOCK,
    APM_RATE,
    AudioProcessingConfig,
    AudioProcessor,
    EchoReferenceSink,
    ProcessedAudioTrack,
    apm_problem,
    frame_to_mono_s16,
    mono_s16_frame,
)

needs_apm = pytest.mark.skipif(apm_problem() is not None, reason=f"{apm_problem()}")

AEC_ONLY = AudioProcessingConfig(
    echo_cancellation=True, noise_suppression=False, high_pass_filter=False, auto_gain_control=False
)


def babble(seconds: float, seed: int = 1) -> np.ndarray:
    """Speech-band noise in 150-300 ms syllables with pauses: enough for the canceller."""
    rng = np.random.default_rng(seed)
    n = int(seconds * APM_RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / APM_RATE)
    spectrum *= (f > 200) & (f < 4000)
    x = np.fft.irfft(spectrum, n)
    envelope = np.zeros(n)
    pos = 0
    while pos < n:
        length = int(rng.uniform(0.15, 0.3) * APM_RATE)
        envelope[pos : pos + length] = rng.uniform(0.3, 1.0) * (rng.random() < 0.8)
        pos += length
    x *= np.convolve(envelope, np.hanning(480) / 240, mode="same")
    return x / np.sqrt(np.mean(x**2)) * 10 ** (-26 / 20)


def s16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


def run(processor: AudioProcessor, far: np.ndarray, mic: np.ndarray, step: int = 960):
    out = np.zeros(len(mic), np.int16)
    for start in range(0, len(mic) - step + 1, step):
        processor.analyze_render_samples(s16(far[start : start + step]))
        frame = processor.process_capture(mono_s16_frame(s16(mic[start : start + step]), start))
        out[start : start + step] = frame.to_ndarray().reshape(-1)
    return out.astype(np.float64) / 32768


def power_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(x**2) + 1e-20)


# ------------------------------------------------------------------ frames


def test_frames_become_mono_int16_whatever_their_layout():
    stereo = np.array([[100, 300, -100, -300, 32767, 32767]], dtype=np.int16)
    frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
    frame.sample_rate = 48000
    assert frame_to_mono_s16(frame).tolist() == [200, -200, 32767]
    planar = av.AudioFrame.from_ndarray(
        np.array([[0.5, -0.5], [0.5, 0.5]], dtype=np.float32), format="fltp", layout="stereo"
    )
    planar.sample_rate = 48000
    assert frame_to_mono_s16(planar).tolist() == [16384, 0]
    frame.sample_rate = 44100
    with pytest.raises(ValueError):
        frame_to_mono_s16(frame)


def test_a_disabled_processor_hands_back_the_very_same_frame():
    processor = AudioProcessor(enabled=False)
    frame = mono_s16_frame(np.zeros(960, np.int16), 0)
    assert not processor.active
    assert processor.process_capture(frame) is frame
    processor.analyze_render(frame)  # ignored
    assert processor.render_blocks == processor.capture_blocks == 0


def test_nothing_to_run_means_pass_through():
    off = AudioProcessingConfig(False, False, False, False)
    processor = AudioProcessor(off)
    assert processor.enabled and not processor.active
    frame = mono_s16_frame(np.zeros(960, np.int16), 0)
    assert processor.process_capture(frame) is frame


def test_without_the_native_library_audio_passes_through_and_says_why(monkeypatch):
    monkeypatch.setattr(ap, "_backend", None)
    monkeypatch.setattr(ap, "_backend_problem", "audio processing is unavailable (no livekit)")
    processor = AudioProcessor()
    assert processor.enabled and not processor.active
    assert "unavailable" in processor.problem
    frame = mono_s16_frame(np.ones(960, np.int16), 0)
    assert processor.process_capture(frame) is frame
    assert processor.stats()["problem"] == processor.problem


@needs_apm
def test_capture_is_processed_in_10ms_blocks_whatever_the_frame_size():
    processor = AudioProcessor(AEC_ONLY)
    tone = s16(0.1 * np.sin(2 * np.pi * 440 * np.arange(APM_RATE) / APM_RATE))
    out, pts, position = [], [], 0
    for size in [700, 300, 960, 20, 1000] * 8:  # odd sizes: a remainder waits
        frame = processor.process_capture(
            mono_s16_frame(tone[position : position + size], position)
        )
        position += size
        if frame is not None:
            assert frame.samples % APM_BLOCK == 0
            assert frame.sample_rate == APM_RATE and frame.layout.name == "mono"
            pts.append((frame.pts, frame.samples))
            out.append(frame.to_ndarray().reshape(-1))
    # The output's pts run on without gaps or overlaps from 0.
    assert pts[0][0] == 0
    for (p, n), (q, _) in itertools.pairwise(pts):
        assert q == p + n
    total = sum(n for _, n in pts)
    assert position - total < APM_BLOCK
    assert processor.capture_blocks == total // APM_BLOCK


@needs_apm
def test_other_rates_and_layouts_are_converted_on_the_way_in():
    processor = AudioProcessor(AEC_ONLY)
    data = np.zeros((1, 441 * 2), np.int16)
    frame = av.AudioFrame.from_ndarray(data, format="s16", layout="stereo")
    frame.sample_rate = 44100
    frame.pts = 0
    got = [processor.process_capture(frame) for _ in range(10)]
    assert any(g is not None for g in got)
    processor.analyze_render(frame)


# ------------------------------------------------------------------ echo


@needs_apm
def test_the_echo_of_the_far_end_is_cancelled():
    far = babble(8.0)
    delay = int(0.03 * APM_RATE)
    echo = 0.5 * np.concatenate((np.zeros(delay), far[:-delay]))
    processor = AudioProcessor(AEC_ONLY, render_delay=lambda: 0.03)
    out = run(processor, far, echo)
    tail = slice(4 * APM_RATE, None)  # after convergence
    erle = power_db(echo[tail]) - power_db(out[tail])
    assert erle > 25, f"ERLE {erle:.1f} dB"
    assert processor.stream_delay_ms == 30
    assert processor.stats()["cpu_seconds"] > 0


@needs_apm
def test_the_near_end_voice_survives_when_nobody_talks_at_the_far_end():
    near = babble(4.0, seed=2)
    processor = AudioProcessor(AEC_ONLY)
    out = run(processor, np.zeros_like(near), near)
    tail = slice(APM_RATE, None)
    assert abs(power_db(out[tail]) - power_db(near[tail])) < 3


@needs_apm
def test_switching_off_and_on_again_passes_through_then_starts_a_fresh_apm():
    processor = AudioProcessor()
    assert processor.active and processor.restarts == 1
    processor.enabled = False
    frame = mono_s16_frame(np.zeros(960, np.int16), 0)
    assert processor.process_capture(frame) is frame
    processor.enabled = True
    assert processor.active and processor.restarts == 2
    processor.configure(AEC_ONLY)
    assert processor.config == AEC_ONLY and processor.restarts == 3
    processor.close()
    assert not processor.active and not processor.enabled


# ------------------------------------------------------------------ the speaker side


class FakeDevice(CountingAudioSink):
    """A device sink: counts, can fail, has a playback buffer and a device buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.failure = None
        self.device_buffer = 0.06

        class Buffer:
            buffered = 0.02

        self.buffer = Buffer()


class FakeSwitchable:
    def __init__(self, sink) -> None:
        self.sink = sink
        self.closed = False

    def set_sink(self, sink):
        previous, self.sink = self.sink, sink
        return previous

    def write(self, frame) -> None:
        self.sink.write(frame)

    def close(self) -> None:
        self.closed = True


def stereo_frame(value: int = 1000, samples: int = 960) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(
        np.full((1, samples * 2), value, np.int16), format="s16", layout="stereo"
    )
    frame.sample_rate = 48000
    return frame


@needs_apm
def test_the_speaker_wrapper_plays_everything_and_reports_it_as_the_reference():
    processor = AudioProcessor(AEC_ONLY)
    device = FakeDevice()
    switchable = FakeSwitchable(device)
    sink = EchoReferenceSink(switchable, processor)
    for _ in range(5):
        sink.write(stereo_frame())
    assert device.frames == 5
    assert processor.render_blocks == 10
    assert sink.device() is device
    assert sink.render_delay() == pytest.approx(0.08)  # playback buffer + device buffer
    assert processor.render_delay == sink.render_delay
    # The speaker changes underneath: the wrapper follows it.
    other = FakeDevice()
    assert sink.set_sink(other) is device
    sink.write(stereo_frame())
    assert other.frames == 1 and processor.render_blocks == 12
    # A failed device plays nothing: no reference either.
    other.failure = "unplugged"
    sink.write(stereo_frame())
    assert processor.render_blocks == 12
    switchable.label = "Speaker"
    assert sink.label == "Speaker"  # other attributes are the wrapped sink's
    sink.close()
    assert switchable.closed and sink.closed
    sink.write(stereo_frame())
    assert other.frames == 2  # nothing after close


@needs_apm
def test_a_device_with_a_playback_hook_gives_the_reference_where_it_plays():
    processor = AudioProcessor(AEC_ONLY)
    device = FakeDevice()
    device.on_played = None
    device.device_delay = 0.045
    sink = EchoReferenceSink(device, processor)
    sink.write(stereo_frame())
    assert device.on_played is not None
    assert processor.render_blocks == 0  # not at write: at the device
    from desktop_call.media.qt_capture import PcmFormat

    device.on_played(np.full(960 * 2, 500, np.int16).tobytes(), PcmFormat(48000, 2, "s16"))
    assert processor.render_blocks == 2
    assert sink.render_delay() == pytest.approx(0.045)
    sink.close()
    assert device.on_played is None


# ------------------------------------------------------------------ the microphone side


@needs_apm
async def test_the_processed_track_processes_what_the_switchable_track_sends():
    processor = AudioProcessor(AEC_ONLY)
    switchable = SwitchableTrack("audio", ToneTrack(440.0, realtime=False))
    track = ProcessedAudioTrack(switchable, processor)
    assert track.kind == "audio" and track.enabled and not track.muted
    frames = [await track.recv() for _ in range(10)]
    assert all(f.layout.name == "mono" and f.samples == 960 for f in frames)
    assert processor.capture_blocks == 20
    assert [f.pts for f in frames] == sorted(f.pts for f in frames)
    # Mute goes through to the switchable track: silence, not processed.
    track.muted = True
    assert switchable.muted
    frame = await track.recv()
    assert not frame.to_ndarray().any()
    assert processor.capture_blocks == 20
    track.enabled = True
    assert switchable.enabled
    # Sources change underneath, as the device manager's fallbacks do.
    tone = ToneTrack(880.0, realtime=False)
    track.set_source(tone)
    assert track.source is tone and switchable.source is tone
    track.stop()
    assert switchable.readyState == "ended"
    with pytest.raises(MediaStreamError):
        await track.recv()


@needs_apm
async def test_capture_delay_counts_what_the_microphone_chunker_holds():
    class Chunker:
        buffered = 0.015

    class Mic(ToneTrack):
        chunker = Chunker()

    processor = AudioProcessor(AEC_ONLY, render_delay=lambda: 0.05)
    track = ProcessedAudioTrack(SwitchableTrack("audio", Mic(realtime=False)), processor)
    assert track.capture_delay() == pytest.approx(0.015)
    await track.recv()
    assert processor.stream_delay_ms == 65
    track.stop()


def test_the_processed_track_refuses_video():
    with pytest.raises(ValueError):
        ProcessedAudioTrack(SwitchableTrack("video"), AudioProcessor(enabled=False))
