#!/usr/bin/env python3
"""Audio benchmark (issue 5): echo cancellation, near-end survival, mouth-to-ear, CPU.

    python bench/audio.py [--quick] [--seconds 30] [--call-seconds 20] [--no-call]
    python bench/audio.py --markdown bench/results/audio-<stamp>.json   # tables for the docs

Four measurements, one JSON object on stdout (and in ``bench/results/audio-<stamp>.json``);
progress on stderr.

- **Echo, single-talk.** A speech-like far-end signal (glottal pulses through moving formant
  resonators, syllables and pauses; seeded, so every run hears the same "talker") goes
  through an echo path into the near-end microphone: a loudspeaker band-pass, a delay, a
  decaying room reverberation tail, a gain, a soft loudspeaker saturation, plus a -70 dBFS
  noise floor. The reference reaches the APM ``render_delay`` before the loudspeaker plays
  it (a playback buffer), as in the app. ERLE = 10 log10(mic power / output power) over the
  10 ms blocks where the echo is above -50 dBFS, after a ``--converge`` second warm-up.
- **Echo, double-talk.** The same echo plus a second talker at the near end (another pitch,
  other formants), both talking about half the time, overlapping. The near-end voice must
  survive: its attenuation is measured against a run of the same chain on the near-end
  voice alone (same processing, no echo), by projecting the double-talk output onto that
  reference in 0.5 s windows where both talk (what is left is residual echo), median over
  windows; 0 dB means untouched.
- **CPU.** Thread time spent inside the processor (reverse + capture, both 10 ms at a time)
  per second of audio: % of one core.
- **Mouth-to-ear.** Two call engines (``CallSession``) through a room server on 127.0.0.1 in
  this process, each side with its microphone track -> ``ProcessedAudioTrack`` and its
  speaker behind an ``EchoReferenceSink``. The devices are simulated in real time with the
  app's own buffers: the microphone delivers 10 ms periods into the app's ``AudioChunker``
  (``MicrophoneTrack``), the speaker is the app's ``PlaybackBuffer`` drained by a 10 ms
  device clock with ``SpeakerSink``'s policy (60 ms device buffer, 40 ms prebuffer). A 40 ms
  1 kHz burst every 0.5 s; latency = time the burst's first sample leaves the speaker's
  device buffer - time it entered the microphone.

Targets (issue 5): ERLE >= 30 dB single-talk; near-end attenuation <= 6 dB in double-talk;
<= 5 % of one core added; mouth-to-ear p50 <= 120 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
SCHEMA = "desktop-call/bench-audio/1"
sys.path.insert(0, str(PROJECT_ROOT))

from desktop_call.media.audio_processing import (  # noqa: E402
    APM_BLOCK,
    APM_RATE,
    AudioProcessingConfig,
    AudioProcessor,
    apm_problem,
    mono_s16_frame,
)

RATE = APM_RATE
BLOCK = APM_BLOCK

TARGET_ERLE_DB = 30.0
TARGET_NEAR_ATTENUATION_DB = 6.0
TARGET_CPU_PERCENT = 5.0
TARGET_MOUTH_TO_EAR_P50_MS = 120.0

FULL = AudioProcessingConfig()
AEC_ONLY = AudioProcessingConfig(
    echo_cancellation=True, noise_suppression=False, high_pass_filter=False, auto_gain_control=False
)
NO_AGC = AudioProcessingConfig(auto_gain_control=False)


def log(msg: str) -> None:
    print(f"[audio] {msg}", file=sys.stderr, flush=True)


def db(power: float) -> float:
    return 10 * np.log10(max(power, 1e-20))


# ------------------------------------------------------------------ signals


@dataclass(frozen=True)
class Talker:
    """A synthetic talker: pitch range, formant set, talk-spurt and pause lengths."""

    f0: tuple[float, float] = (100.0, 160.0)
    formant_shift: float = 1.0
    spurt: tuple[float, float] = (1.0, 2.5)
    pause: tuple[float, float] = (0.4, 1.2)
    level_dbfs: float = -26.0


# (F1, F2, F3) of a few vowels, Hz.
VOWELS = np.array(
    [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (640, 1190, 2390)],
    dtype=np.float64,
)


def _formant_filter(source: np.ndarray, formants: np.ndarray) -> np.ndarray:
    """``source`` shaped by three formant peaks that follow ``formants`` (n x 3, Hz).

    Short-time Fourier overlap-add: 40 ms Hann windows every 20 ms, each multiplied by
    the spectral envelope of the formants at its centre (Lorentzian peaks, a -6 dB/octave
    tilt). Vectorised: a few tenths of a second for a minute of audio.
    """
    size, hop = 1920, 960
    n = len(source)
    padded = np.concatenate((np.zeros(hop), source, np.zeros(size)))
    count = (n + hop) // hop + 1
    index = np.arange(size)[None, :] + hop * np.arange(count)[:, None]
    window = np.hanning(size + 1)[:-1]  # periodic: overlaps add up to one at 50 %
    frames = padded[index] * window
    spectra = np.fft.rfft(frames, axis=1)
    f = np.fft.rfftfreq(size, 1 / RATE)[None, :]
    centres = np.clip(np.arange(count) * hop, 0, n - 1)
    envelope = np.zeros((count, len(f[0])))
    for k, (bandwidth, gain) in enumerate(((90.0, 1.0), (110.0, 0.5), (150.0, 0.3))):
        peak = formants[centres, k][:, None]
        envelope += gain / (1 + ((f - peak) / (bandwidth / 2)) ** 2)
    envelope /= np.sqrt(1 + (f / 500.0) ** 2)
    out_frames = np.fft.irfft(spectra * envelope, n=size, axis=1)
    out = np.zeros(len(padded))
    np.add.at(out, index, out_frames)  # overlap-add
    return out[hop : hop + n]


def speech_like(seconds: float, talker: Talker, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(float samples in [-1, 1], bool per sample: talking) of a speech-like signal."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    active = np.zeros(n, dtype=bool)
    t = rng.uniform(0.1, 0.6)
    while t < seconds:
        spurt = rng.uniform(*talker.spurt)
        active[int(t * RATE) : int(min(seconds, t + spurt) * RATE)] = True
        t += spurt + rng.uniform(*talker.pause)
    # Syllables of 120-280 ms, each with its vowel, its pitch and a smooth envelope;
    # one in five is unvoiced (a fricative: noise, high formants).
    envelope = np.zeros(n)
    formants = np.zeros((n, 3))
    pitch = np.zeros(n)
    voicing = np.ones(n)
    lo, hi = talker.f0
    pos = 0
    while pos < n:
        length = int(rng.uniform(0.12, 0.28) * RATE)
        end = min(n, pos + length)
        window = np.sin(np.pi * np.linspace(0, 1, end - pos)) ** 0.7
        envelope[pos:end] = window * rng.uniform(0.5, 1.0)
        if rng.random() < 0.2:
            formants[pos:end] = (2500.0, 4500.0, 6500.0)
            voicing[pos:end] = 0.0
        else:
            formants[pos:end] = VOWELS[rng.integers(len(VOWELS))] * talker.formant_shift
        start_f0, end_f0 = rng.uniform(lo, hi, 2)  # an intonation contour per syllable
        pitch[pos:end] = np.linspace(start_f0, end_f0, end - pos)
        pos = end
    # Formants, pitch and voicing glide rather than jump.
    kernel = np.hanning(int(0.03 * RATE))
    kernel /= kernel.sum()
    for k in range(3):
        formants[:, k] = np.convolve(formants[:, k], kernel, mode="same")
    formants[formants < 100] = 100
    pitch = np.convolve(pitch, kernel, mode="same")
    pitch[pitch < lo / 2] = lo
    pitch *= 1 + 0.01 * rng.standard_normal(n).cumsum() / np.sqrt(np.arange(1, n + 1))  # jitter
    voicing = np.convolve(voicing, kernel, mode="same")
    # Glottal pulses at that pitch, plus breath noise; noise alone where unvoiced.
    phase = np.cumsum(pitch / RATE)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    source = np.convolve(pulses, np.exp(-np.arange(96) / 12.0), mode="same")
    noise = rng.standard_normal(n)
    source = voicing * (source + 0.05 * noise) + (1 - voicing) * 0.5 * noise
    voiced = _formant_filter(source, formants)
    signal = voiced * envelope * active
    talking = active & (envelope > 0.1)
    rms = np.sqrt(np.mean(signal[talking] ** 2)) if talking.any() else 1.0
    signal *= 10 ** (talker.level_dbfs / 20) / rms
    return np.clip(signal, -1, 1), talking


def room_response(
    seed: int, delay_ms: float, rt60: float = 0.2, erl_db: float = 6.0, drr_db: float = 6.0
) -> np.ndarray:
    """An echo path: ``delay_ms`` of travel, the direct sound, a few early reflections and
    an exponentially decaying diffuse tail (-60 dB at ``rt60``), the tail ``drr_db`` below
    the direct sound (a desk: loudspeaker and microphone a forearm apart); scaled so that
    white noise loses ``erl_db`` on the way (the echo return loss)."""
    rng = np.random.default_rng(seed)
    length = int((delay_ms / 1000 + rt60) * RATE)
    d = int(delay_ms / 1000 * RATE)
    direct = np.zeros(length)
    direct[d] = 1.0
    for ms, gain in ((2.5, 0.5), (5.8, -0.35), (9.1, 0.25), (13.7, -0.2)):
        direct[d + int(ms * RATE / 1000)] += gain
    start = d + int(0.015 * RATE)
    t = np.arange(length - start) / RATE
    tail = np.zeros(length)
    tail[start:] = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)
    tail *= np.sqrt(np.sum(direct**2) / np.sum(tail**2)) * 10 ** (-drr_db / 20)
    h = direct + tail
    h /= np.sqrt(np.sum(h**2))
    return h * 10 ** (-erl_db / 20)


def loudspeaker(x: np.ndarray) -> np.ndarray:
    """A small loudspeaker: no bass below ~200 Hz, a soft top end, mild saturation."""
    from numpy.fft import irfft, rfft, rfftfreq

    spectrum = rfft(x)
    f = rfftfreq(len(x), 1 / RATE)
    response = (f / 200) ** 2 / (1 + (f / 200) ** 2) / np.sqrt(1 + (f / 7000) ** 4)
    y = irfft(spectrum * response, n=len(x))
    return np.tanh(y)  # about 1 % compression at -20 dBFS peaks, 3 % at -10


def fftconvolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = len(a) + len(b) - 1
    size = 1 << (n - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(a, size) * np.fft.rfft(b, size), size)[:n]


def to_s16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


# ------------------------------------------------------------------ running the APM


def run_chain(
    far: np.ndarray,
    mic: np.ndarray,
    config: AudioProcessingConfig,
    render_delay: float,
) -> tuple[np.ndarray, AudioProcessor]:
    """Feed the processor block by block as the app does (reference, then capture)."""
    processor = AudioProcessor(config, render_delay=lambda: render_delay)
    if not processor.active:
        raise RuntimeError(processor.problem or "audio processing is not available")
    far16, mic16 = to_s16(far), to_s16(mic)
    out = np.zeros(len(mic16), dtype=np.int16)
    lead = int(render_delay * RATE)  # the reference goes in render_delay before it plays
    far_fed = np.concatenate((far16[lead:], np.zeros(lead, np.int16)))
    pts = 0
    for start in range(0, len(mic16) - 2 * BLOCK + 1, 2 * BLOCK):  # 20 ms frames, like the app
        processor.analyze_render_samples(far_fed[start : start + 2 * BLOCK])
        frame = mono_s16_frame(mic16[start : start + 2 * BLOCK], pts)
        pts += 2 * BLOCK
        processed = processor.process_capture(frame, capture_delay=0.0)
        assert processed is not None
        out[start : start + 2 * BLOCK] = processed.to_ndarray().reshape(-1)
    return out.astype(np.float64) / 32768.0, processor


def block_power(x: np.ndarray) -> np.ndarray:
    usable = len(x) // BLOCK * BLOCK
    return np.mean(x[:usable].reshape(-1, BLOCK) ** 2, axis=1)


@dataclass
class Scene:
    far: np.ndarray
    far_talking: np.ndarray
    near: np.ndarray
    near_talking: np.ndarray
    echo: np.ndarray
    noise: np.ndarray


def make_scene(seconds: float, seed: int, delay_ms: float, erl_db: float) -> Scene:
    far, far_talking = speech_like(seconds, Talker(f0=(95, 150)), seed)
    near, near_talking = speech_like(
        seconds, Talker(f0=(170, 260), formant_shift=1.15, level_dbfs=-28.0), seed + 1
    )
    path = room_response(seed + 2, delay_ms, erl_db=erl_db)
    echo = fftconvolve(loudspeaker(far), path)[: len(far)]
    noise = 10 ** (-70 / 20) * np.random.default_rng(seed + 3).standard_normal(len(far))
    return Scene(far, far_talking, near, near_talking, echo, noise)


def erle(scene: Scene, config: AudioProcessingConfig, render_delay: float, converge: float) -> dict:
    mic = scene.echo + scene.noise
    started = time.perf_counter()
    out, processor = run_chain(scene.far, mic, config, render_delay)
    wall = time.perf_counter() - started
    p_in, p_out = block_power(mic), block_power(out)
    skip = int(converge * 100)
    echo_blocks = block_power(scene.echo) > 10 ** (-50 / 10)
    mask = echo_blocks.copy()
    mask[:skip] = False
    value = db(p_in[mask].sum()) - db(p_out[mask].sum())
    # Per second, to show convergence and stability.
    per_second = []
    for s in range(len(p_in) // 100):
        m = echo_blocks[s * 100 : (s + 1) * 100]
        if m.sum() >= 20:
            per_second.append(
                round(
                    db(p_in[s * 100 : (s + 1) * 100][m].sum())
                    - db(p_out[s * 100 : (s + 1) * 100][m].sum()),
                    1,
                )
            )
    seconds = len(mic) / RATE
    return {
        "erle_db": round(value, 1),
        "erle_db_per_second": per_second,
        "erle_db_worst_second_after_warmup": min(per_second[int(converge) :], default=None),
        "cpu_percent_of_one_core": round(100 * processor.cpu_seconds / seconds, 2),
        "wall_percent": round(100 * wall / seconds, 2),
    }


def double_talk(
    scene: Scene, config: AudioProcessingConfig, render_delay: float, converge: float
) -> dict:
    mic = scene.echo + scene.near + scene.noise
    out, _ = run_chain(scene.far, mic, config, render_delay)
    ref, _ = run_chain(scene.far * 0, scene.near + scene.noise, config, render_delay)
    window = RATE // 2
    both = scene.far_talking & scene.near_talking
    attenuations, residual = [], []
    for start in range(int(converge * RATE), len(out) - window, window):
        sl = slice(start, start + window)
        if both[sl].mean() < 0.5:
            continue
        r, o = ref[sl], out[sl]
        rr = float(np.dot(r, r))
        if rr < window * 10 ** (-50 / 10):
            continue
        gain = float(np.dot(o, r)) / rr
        attenuations.append(-20 * np.log10(max(abs(gain), 1e-6)))
        rest = o - gain * r
        residual.append(
            db(float(np.dot(rest, rest))) - db(float(np.dot(scene.echo[sl], scene.echo[sl])))
        )
    near_only = scene.near_talking & ~scene.far_talking
    single = []
    for start in range(int(converge * RATE), len(out) - window, window):
        sl = slice(start, start + window)
        if near_only[sl].mean() < 0.8:
            continue
        r, o = ref[sl], out[sl]
        rr = float(np.dot(r, r))
        if rr > window * 10 ** (-50 / 10):
            single.append(-20 * np.log10(max(abs(float(np.dot(o, r)) / rr), 1e-6)))
    return {
        "double_talk_windows": len(attenuations),
        "near_attenuation_db_median": round(statistics.median(attenuations), 2)
        if attenuations
        else None,
        "near_attenuation_db_p90": round(float(np.percentile(attenuations, 90)), 2)
        if attenuations
        else None,
        "residual_echo_vs_echo_db_median": round(statistics.median(residual), 1)
        if residual
        else None,
        "near_only_attenuation_db_median": round(statistics.median(single), 2) if single else None,
        "share_of_time_double_talk": round(float(both.mean()), 3),
    }


# ------------------------------------------------------------------ talkers

FAR_TEXT = (
    "Hello, can you hear me? I wanted to go over the plan for next week before the others "
    "join. The first thing is the schedule: we start on Monday at nine, and the workshop runs "
    "until Wednesday afternoon. Then there is the question of the budget, which is still open. "
    "I think we should keep it simple and decide the rest when we meet. What do you think?"
)
NEAR_TEXT = (
    "Yes, I hear you fine. Monday works for me, but I have to leave early on Tuesday because "
    "of the school run. About the budget, I agree, let us keep it small for now. Could you "
    "send me the list of people who are coming, and the address of the venue?"
)


def espeak(text: str, voice: str, speed: int, pitch: int) -> np.ndarray | None:
    """Speech from espeak-ng (Debian's espeak-ng) at 48 kHz, or None if it is not installed."""
    import shutil
    import subprocess
    import tempfile

    import av

    if shutil.which("espeak-ng") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "talk.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
            check=True,
            capture_output=True,
        )
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        with av.open(str(path)) as container:
            parts = [
                f.to_ndarray().reshape(-1)
                for frame in container.decode(audio=0)
                for f in resampler.resample(frame)
            ]
    return np.concatenate(parts).astype(np.float64)


def talker_signal(
    seconds: float, which: str, seed: int, source: str, level_dbfs: float
) -> tuple[np.ndarray, np.ndarray]:
    """(samples, talking mask) of ``seconds``: espeak-ng speech (looped, with pauses) or the
    synthetic talker."""
    n = int(seconds * RATE)
    if source == "espeak-ng":
        voice, speed, pitch = ("en-us", 165, 45) if which == "far" else ("en-gb+f3", 150, 60)
        speech = espeak(FAR_TEXT if which == "far" else NEAR_TEXT, voice, speed, pitch)
        assert speech is not None
        rng = np.random.default_rng(seed)
        pieces, total = [], 0
        offset = int(rng.uniform(0, 0.5) * len(speech))
        speech = np.concatenate((speech[offset:], speech[:offset]))
        while total < n:  # talk spurts of 1.5-4 s, pauses of 0.4-1.5 s
            start = int(rng.uniform(0, len(speech) - 4 * RATE))
            spurt = speech[start : start + int(rng.uniform(1.5, 4.0) * RATE)]
            pause = np.zeros(int(rng.uniform(0.4, 1.5) * RATE))
            pieces += [spurt, pause]
            total += len(spurt) + len(pause)
        x = np.concatenate(pieces)[:n]
        envelope = np.convolve(np.abs(x), np.ones(480) / 480, mode="same")
        talking = envelope > 10 ** (-55 / 20)
        rms = np.sqrt(np.mean(x[talking] ** 2))
        return x * 10 ** (level_dbfs / 20) / rms, talking
    talker = (
        Talker(f0=(95, 150), level_dbfs=level_dbfs)
        if which == "far"
        else Talker(f0=(170, 260), formant_shift=1.15, level_dbfs=level_dbfs)
    )
    return speech_like(seconds, talker, seed)


def speech_source(requested: str) -> str:
    if requested == "auto":
        return "espeak-ng" if espeak("test", "en-us", 160, 50) is not None else "synthetic"
    return requested


def make_room(
    seconds: float, seed: int, source: str, unknown_delay_ms: float, erl_db: float
) -> Scene:
    """A call's two talkers and the echo path of the near end's room."""
    far, far_talking = talker_signal(seconds, "far", seed, source, -26.0)
    near, near_talking = talker_signal(seconds, "near", seed + 1, source, -28.0)
    path = room_response(seed + 2, unknown_delay_ms, erl_db=erl_db)
    echo = fftconvolve(loudspeaker(far), path)[: len(far)]
    noise = 10 ** (-70 / 20) * np.random.default_rng(seed + 3).standard_normal(len(far))
    return Scene(far, far_talking, near, near_talking, echo, noise)


# ------------------------------------------------------------------ mouth to ear

BURST_PERIOD = 0.5
BURST_LENGTH = 0.04


class SimMicrophone:
    """A microphone device in real time: a 10 ms period of samples into the app's
    ``MicrophoneTrack`` (``AudioChunker``) every 10 ms, like ``QAudioSource.readyRead``.
    A 40 ms tone burst every 0.5 s (from ``phase``), -60 dBFS noise between."""

    def __init__(self, track: Any, phase: float, frequency: float, skew: float = 0.0) -> None:
        self.track = track
        self.phase = phase
        self.frequency = frequency
        self.skew = skew  # this device's clock runs 1 + skew times the others' (drift)
        self.onsets: list[float] = []  # capture times (time.monotonic) of each burst onset
        self._task: asyncio.Task[None] | None = None
        self._rng = np.random.default_rng(1)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        t0 = time.monotonic()
        period_samples = int(BURST_PERIOD * RATE)
        burst = int(BURST_LENGTH * RATE)
        offset = int(self.phase * RATE)
        block = 0
        while True:
            due = t0 + (block + 1) * BLOCK / RATE / (1 + self.skew)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            k = np.arange(block * BLOCK, (block + 1) * BLOCK)
            position = (k - offset) % period_samples
            on = (position < burst) & (k >= offset)
            samples = 10 ** (-60 / 20) * self._rng.standard_normal(BLOCK)
            samples[on] = 10 ** (-12 / 20) * np.sin(2 * np.pi * self.frequency * k[on] / RATE)
            for i in np.nonzero(on & (position == 0))[0]:
                self.onsets.append(t0 + k[i] / RATE / (1 + self.skew))  # reached the mic
            self.track.push(to_s16(samples).tobytes())
            block += 1


class SimSpeaker:
    """A speaker device in real time with ``SpeakerSink``'s policy: the app's
    ``PlaybackBuffer`` (120 ms bound) and ``DriftController`` (optional here, to compare),
    a 60 ms device buffer topped up on every write and every 10 ms, playback (re)starting
    once 40 ms wait; the device plays 10 ms per 10 ms, and what it played is kept for
    :meth:`burst_times`; the queue ahead of the ear is sampled every 10 ms (:attr:`levels`)."""

    def __init__(
        self, device_buffer: float = 0.06, prebuffer: float = 0.04, drift_control: bool = True
    ) -> None:
        from desktop_call.media.qt_capture import PcmFormat
        from desktop_call.media.qt_playback import DriftController, PlaybackBuffer

        self.drift = DriftController() if drift_control else None
        self.buffer = PlaybackBuffer(PcmFormat(RATE, 1, "s16"), max_buffered=0.12, drift=self.drift)
        self.levels: list[float] = []
        self.device_buffer = device_buffer
        self.prebuffer = prebuffer
        self._device = bytearray()  # what the device holds
        self._capacity = int(device_buffer * RATE) * 2
        self._priming = True
        self.closed = False
        self.failure = None
        self.underruns = 0
        self._played: list[bytes] = []
        self._t0: float | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def output_delay(self) -> float:
        return self.buffer.buffered + len(self._device) / 2 / RATE

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def write(self, frame: Any) -> None:
        if self.drift is not None:
            self.drift.arrived(frame.samples / frame.sample_rate, time.monotonic())
        self.buffer.push(frame)
        self.flush()

    def flush(self) -> None:
        if self._priming:
            if self.buffer.buffered < self.prebuffer:
                return
            self._priming = False
        self._device += self.buffer.take(self._capacity - len(self._device))

    def close(self) -> None:
        self.closed = True

    async def _run(self) -> None:
        t0 = time.monotonic()
        tick = 0
        while True:
            due = t0 + (tick + 1) * BLOCK / RATE
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            start = t0 + tick * BLOCK / RATE  # the period played now began here
            tick += 1
            self.flush()
            played = bytes(self._device[: BLOCK * 2])
            del self._device[: BLOCK * 2]
            if len(played) < BLOCK * 2:
                if not self._priming and not self._device:
                    self.underruns += 1
                    self._priming = True
                    if self.drift is not None:
                        self.drift.reset()
                played += bytes(BLOCK * 2 - len(played))
            if not self._priming:
                self.levels.append(self.output_delay)
                if self.drift is not None:
                    self.drift.observe(self.output_delay, time.monotonic())
            if self._t0 is None:
                self._t0 = start
            self._played.append(played)

    def burst_times(self) -> list[float]:
        """The energy centroid of each burst heard (1 ms envelope above -40 dBFS after
        100 ms below), as device time; robust to the onset being softened by processing."""
        if not self._played or self._t0 is None:
            return []
        x = np.frombuffer(b"".join(self._played), np.int16).astype(np.float64) / 32768
        energy = np.mean(x[: len(x) // 48 * 48].reshape(-1, 48) ** 2, axis=1)
        loud = energy > 10 ** (-40 / 10)
        times, quiet, ms = [], 100, 0
        while ms < len(loud):
            if loud[ms] and quiet >= 100:
                end = min(len(loud), ms + int(BURST_PERIOD * 1000 / 2))
                window = energy[ms:end] * loud[ms:end]
                centroid = float(np.sum(np.arange(ms, end) * window) / np.sum(window))
                times.append(self._t0 + (centroid + 0.5) / 1000)
                quiet, ms = 0, end
                continue
            quiet = 0 if loud[ms] else quiet + 1
            ms += 1
        return times


def match_latencies(mouth: list[float], ear: list[float]) -> list[float]:
    """Each burst heard minus the latest burst said before it (within one burst period);
    both as energy centroids (a said burst's is its onset + half its length)."""
    out = []
    mouth = [m + BURST_LENGTH / 2 for m in mouth]
    for t in ear:
        earlier = [m for m in mouth if m <= t and t - m < BURST_PERIOD]
        if earlier:
            out.append(t - max(earlier))
    return out


async def mouth_to_ear(
    seconds: float, processing: bool, shipped_timing: bool, skew_ppm: float = 0.0
) -> dict:
    """``shipped_timing``: the app's receive path (audio decoded on arrival, drift control);
    False: aiortc's own audio jitter buffer (80 ms prefetch) and no drift control."""
    from desktop_call.call.ice import IceConfig
    from desktop_call.call.session import CallOptions, CallSession, RemoteTrack
    from desktop_call.call.state import CallState
    from desktop_call.media.audio_processing import EchoReferenceSink, ProcessedAudioTrack
    from desktop_call.media.qt_capture import AudioChunker, MicrophoneTrack, PcmFormat
    from desktop_call.media.sinks import AudioReceiver
    from desktop_call.media.switchable import SwitchableTrack
    from desktop_call.server import RoomServer, ServerConfig

    sides: dict[str, dict[str, Any]] = {}
    async with RoomServer(ServerConfig(port=0, grace=2.0)) as server:
        for name, phase, frequency in (("A", 0.0, 800.0), ("B", BURST_PERIOD / 2, 1300.0)):
            processor = AudioProcessor(enabled=processing)
            mic_track = MicrophoneTrack(AudioChunker(PcmFormat(RATE, 1, "s16"), "mono"))
            audio = ProcessedAudioTrack(SwitchableTrack("audio", mic_track), processor)
            speaker = SimSpeaker(drift_control=shipped_timing)
            options = CallOptions(
                f"{server.url}/rooms/bench-audio",
                name,
                ice=IceConfig(servers=()),
                immediate_audio=shipped_timing,
            )
            session = CallSession(options, audio=audio)
            side = {
                "processor": processor,
                "mic": SimMicrophone(
                    mic_track, phase, frequency, skew_ppm * 1e-6 if name == "A" else 0.0
                ),
                "speaker": speaker,
                "sink": EchoReferenceSink(speaker, processor),
                "session": session,
                "receivers": [],
                "audio": audio,
            }

            def on_event(event: Any, side: dict[str, Any] = side) -> None:
                if isinstance(event, RemoteTrack) and event.track.kind == "audio":
                    receiver = AudioReceiver(event.track, side["sink"])
                    receiver.start()
                    side["receivers"].append(receiver)

            session.subscribe(on_event)
            sides[name] = side
        a, b = sides["A"]["session"], sides["B"]["session"]
        async with a:
            await asyncio.wait_for(a.wait_for(lambda s: s is CallState.WAITING), 20)
            async with b:
                for s in (a, b):
                    await asyncio.wait_for(s.wait_for(lambda s: s is CallState.CONNECTED), 20)
                for side in sides.values():
                    side["mic"].start()
                    side["speaker"].start()
                cpu0 = {n: s["processor"].cpu_seconds for n, s in sides.items()}
                process0 = time.process_time()
                started = time.monotonic()
                await asyncio.sleep(seconds)
                elapsed = time.monotonic() - started
                process_cpu = time.process_time() - process0
                for side in sides.values():
                    await side["mic"].stop()
                    await side["speaker"].stop()
                for side in sides.values():
                    for receiver in side["receivers"]:
                        await receiver.close()
    latencies = []
    for src, dst in (("A", "B"), ("B", "A")):
        heard = sides[dst]["speaker"].burst_times()
        # The first second meets an empty jitter buffer and a priming speaker.
        said = sides[src]["mic"].onsets
        latencies += match_latencies(said, [t for t in heard if said and t > said[0] + 1.0])
    latencies_ms = sorted(1000 * x for x in latencies)
    result: dict[str, Any] = {
        "processing": processing,
        "receive_path": "shipped" if shipped_timing else "aiortc jitter buffer, no drift control",
        "skew_ppm": skew_ppm,
        "seconds": round(elapsed, 1),
        "bursts_heard": len(latencies),
        "bursts_sent": sum(len(s["mic"].onsets) for s in sides.values()),
        "mouth_to_ear_ms_p50": round(float(np.percentile(latencies_ms, 50)), 1)
        if latencies_ms
        else None,
        "mouth_to_ear_ms_p95": round(float(np.percentile(latencies_ms, 95)), 1)
        if latencies_ms
        else None,
        "mouth_to_ear_ms_min": round(latencies_ms[0], 1) if latencies_ms else None,
        "speaker_underruns": sum(s["speaker"].underruns for s in sides.values()),
        # B hears A, whose microphone clock is skewed: its queue shows any drift.
        "queue_ms_first_5s_b": _mean_ms(sides["B"]["speaker"].levels[:500]),
        "queue_ms_last_5s_b": _mean_ms(sides["B"]["speaker"].levels[-500:]),
        "playback_drops": sum(s["speaker"].buffer.drops for s in sides.values()),
        "process_cpu_percent_of_one_core": round(100 * process_cpu / elapsed, 1),
    }
    if processing:
        result["processing_cpu_percent_of_one_core_per_side"] = [
            round(100 * (s["processor"].cpu_seconds - cpu0[n]) / elapsed, 2)
            for n, s in sides.items()
        ]
        result["stream_delay_ms"] = [s["processor"].stream_delay_ms for s in sides.values()]
    return result


def _mean_ms(levels: list[float]) -> float | None:
    return round(1000 * statistics.mean(levels), 1) if levels else None


# ------------------------------------------------------------------ the run


def echo_results(args: argparse.Namespace, source: str) -> dict[str, Any]:
    rooms = []
    for i, seed in enumerate(args.seeds):
        log(f"echo: room {i + 1}/{len(args.seeds)} (seed {seed}, {source} talkers)")
        scene = make_room(args.seconds, seed, source, args.unknown_delay_ms, args.erl_db)
        room: dict[str, Any] = {"seed": seed}
        for label, config in (("shipped", FULL), ("aec_ns_hpf", NO_AGC), ("aec_only", AEC_ONLY)):
            room[label] = {
                "single_talk": erle(scene, config, args.render_delay, args.converge),
                "double_talk": double_talk(scene, config, args.render_delay, args.converge),
            }
        rooms.append(room)

    def values(label: str, part: str, key: str) -> list[float]:
        return [r[label][part][key] for r in rooms if r[label][part][key] is not None]

    summary = {}
    for label in ("shipped", "aec_ns_hpf", "aec_only"):
        erles = values(label, "single_talk", "erle_db")
        atten = values(label, "double_talk", "near_attenuation_db_median")
        cpu = values(label, "single_talk", "cpu_percent_of_one_core")
        summary[label] = {
            "erle_db_min": min(erles),
            "erle_db_mean": round(statistics.mean(erles), 1),
            "near_attenuation_db_max": max(atten) if atten else None,
            "near_attenuation_db_mean": round(statistics.mean(atten), 2) if atten else None,
            "cpu_percent_of_one_core_max": max(cpu),
        }
    return {"rooms": rooms, "summary": summary}


def targets(echo: dict[str, Any], call: dict[str, Any] | None) -> dict[str, Any]:
    s = echo["summary"]

    def verdict(value: Any, ok: bool | None, **extra: Any) -> dict[str, Any]:
        return {"value": value, "pass": ok, **extra}

    out = {
        "erle_single_talk_db": verdict(
            s["aec_ns_hpf"]["erle_db_min"],
            s["aec_ns_hpf"]["erle_db_min"] >= TARGET_ERLE_DB,
            target=f">= {TARGET_ERLE_DB}",
            note="worst room; echo canceller + noise suppressor + high-pass, before the AGC",
        ),
        "near_attenuation_double_talk_db": verdict(
            s["shipped"]["near_attenuation_db_max"],
            s["shipped"]["near_attenuation_db_max"] is not None
            and s["shipped"]["near_attenuation_db_max"] <= TARGET_NEAR_ATTENUATION_DB,
            target=f"<= {TARGET_NEAR_ATTENUATION_DB}",
            note="worst room, shipped chain",
        ),
        "cpu_percent_of_one_core": verdict(
            s["shipped"]["cpu_percent_of_one_core_max"],
            s["shipped"]["cpu_percent_of_one_core_max"] <= TARGET_CPU_PERCENT,
            target=f"<= {TARGET_CPU_PERCENT}",
            note="reverse + capture stream, shipped chain, one side",
        ),
    }
    if call is not None:
        p50 = call.get("mouth_to_ear_ms_p50")
        out["mouth_to_ear_p50_ms"] = verdict(
            p50,
            p50 is not None and p50 <= TARGET_MOUTH_TO_EAR_P50_MS,
            target=f"<= {TARGET_MOUTH_TO_EAR_P50_MS}",
        )
    return out


def machine_info() -> dict[str, Any]:
    import importlib.metadata as md

    def version(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "livekit": version("livekit"),
        "aiortc": version("aiortc"),
        "load_1min": round(os.getloadavg()[0], 2),
    }


def markdown(result: dict[str, Any]) -> str:
    a = result["args"]
    lines = [
        f"Run {result['stamp']} ({result['talkers']} talkers, "
        f"{len(result['echo']['rooms'])} rooms, {a['seconds']:.0f} s each; render delay told "
        f"{a['render_delay'] * 1000:.0f} ms, {a['unknown_delay_ms']:.0f} ms more not told).",
        "",
        "| target | value | goal | pass |",
        "| --- | --- | --- | --- |",
    ]
    names = {
        "erle_single_talk_db": "ERLE, single-talk (dB)",
        "near_attenuation_double_talk_db": "near-end attenuation, double-talk (dB)",
        "cpu_percent_of_one_core": "CPU added (% of one core)",
        "mouth_to_ear_p50_ms": "mouth-to-ear p50 (ms)",
    }
    for key, v in result["targets"].items():
        lines.append(
            f"| {names[key]} | {v['value']} | {v['target']} | {'yes' if v['pass'] else 'no'} |"
        )
    lines += [
        "",
        "| chain | ERLE min / mean (dB) | near attenuation max / mean (dB) | CPU (% core) |",
        "| --- | --- | --- | --- |",
    ]
    for label, s in result["echo"]["summary"].items():
        lines.append(
            f"| {label} | {s['erle_db_min']} / {s['erle_db_mean']} | "
            f"{s['near_attenuation_db_max']} / {s['near_attenuation_db_mean']} | "
            f"{s['cpu_percent_of_one_core_max']} |"
        )
    lines += [
        "",
        "| call | processing | skew (ppm) | s | mouth-to-ear p50 / p95 (ms) | bursts | "
        "underruns | drops | B's queue first / last 5 s (ms) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in result.get("calls", []):
        lines.append(
            f"| {c['receive_path']} | {'on' if c['processing'] else 'off'} | {c['skew_ppm']:g} | "
            f"{c['seconds']} | {c['mouth_to_ear_ms_p50']} / {c['mouth_to_ear_ms_p95']} | "
            f"{c['bursts_heard']}/{c['bursts_sent']} | {c['speaker_underruns']} | "
            f"{c['playback_drops']} | {c['queue_ms_first_5s_b']} / {c['queue_ms_last_5s_b']} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=30.0, help="audio per echo room")
    p.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 13])
    p.add_argument("--converge", type=float, default=5.0, help="warm-up left out of ERLE (s)")
    p.add_argument("--render-delay", type=float, default=0.06, help="delay told to the APM (s)")
    p.add_argument("--unknown-delay-ms", type=float, default=10.0, help="echo delay not told")
    p.add_argument("--erl-db", type=float, default=6.0, help="echo return loss of the room")
    p.add_argument("--talkers", choices=("auto", "espeak-ng", "synthetic"), default="auto")
    p.add_argument("--call-seconds", type=float, default=20.0)
    p.add_argument("--no-call", action="store_true", help="skip the mouth-to-ear call")
    p.add_argument(
        "--skew-ppm",
        type=float,
        default=1000.0,
        help="A's microphone clock runs this much fast in the drift call (default 1000)",
    )
    p.add_argument("--quick", action="store_true", help="one room, 15 s; a 10 s call")
    p.add_argument("--markdown", metavar="JSON", help="print the docs tables of a result file")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.seeds, args.call_seconds = 15.0, args.seeds[:1], 10.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    problem = apm_problem()
    if problem:
        log(problem)
        return 2
    stamp = time.strftime("%Y%m%d-%H%M%S")
    source = speech_source(args.talkers)
    echo = echo_results(args, source)
    calls = []
    if not args.no_call:
        # Interleaved: the shipped receive path and aiortc's own, same run, same machine;
        # then a longer call with skewed clocks, both ways, for drift.
        plan = [(True, True, 0.0), (False, True, 0.0), (True, False, 0.0)]
        plan += [(True, True, args.skew_ppm), (True, False, args.skew_ppm)]
        for processing, shipped, skew in plan:
            seconds = args.call_seconds * (3 if skew else 1)
            log(f"call: {seconds:.0f} s, processing {processing}, shipped {shipped}, skew {skew}")
            calls.append(asyncio.run(mouth_to_ear(seconds, processing, shipped, skew)))
    shipped_call = next(
        (c for c in calls if c["processing"] and c["receive_path"] == "shipped"), None
    )
    result = {
        "schema": SCHEMA,
        "stamp": stamp,
        "machine": machine_info(),
        "talkers": source,
        "args": {k: v for k, v in vars(args).items() if k != "markdown"},
        "echo": echo,
        "calls": calls,
        "targets": targets(echo, shipped_call),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"audio-{stamp}.json"
    path.write_text(json.dumps(result, indent=2, default=float))
    print(json.dumps(result, indent=2, default=float))
    log(f"written {path.relative_to(PROJECT_ROOT)}")
    return 0 if all(v["pass"] for v in result["targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
