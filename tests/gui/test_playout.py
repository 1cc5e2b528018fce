"""Playback timing: the drift controller holds the speaker queue against two clocks.

A simulated far end sends 20 ms packets by its own clock (with network jitter), a
simulated speaker plays 10 ms every 10 ms by another; time is simulated, so a minute
takes a fraction of a second. The clocks differ by 0.2 %, twenty times what real
oscillators do, so that a minute shows what an hour would.
"""

from __future__ import annotations

import numpy as np
import pytest

from desktop_call.media.qt_capture import PcmFormat, pcm_to_frame
from desktop_call.media.qt_playback import DriftController, PlaybackBuffer
from desktop_call.media.sinks import dominant_frequency

RATE = 48_000
MONO = PcmFormat(RATE, 1, "s16")


def simulate(
    drift: float, seconds: float, controlled: bool, seed: int = 7, stalls: float = 0.0
) -> dict:
    """The far end's clock runs ``1 + drift`` times the speaker's; returns what happened."""
    controller = DriftController(0.02, tolerance=0.01) if controlled else None
    buffer = PlaybackBuffer(MONO, max_buffered=0.12, drift=controller)
    rng = np.random.default_rng(seed)
    capacity = int(0.06 * RATE)  # the device's own buffer, as SpeakerSink asks for
    device = 0  # samples the device holds
    priming, underruns, late_underruns, levels = True, 0, 0, []
    period = 0.02 / (1 + drift)
    sent = [k * period for k in range(int(seconds / period))]
    delays = rng.uniform(0, 0.015, len(sent)) + stalls * (rng.random(len(sent)) < 0.02)
    arrivals = np.maximum.accumulate(np.array(sent) + delays)
    packet = np.zeros(960, np.int16).tobytes()
    next_packet = 0
    for ms in range(int(seconds * 1000)):
        now = ms / 1000
        while next_packet < len(arrivals) and arrivals[next_packet] <= now:
            if controller is not None:
                controller.arrived(0.02, now)
            buffer.push(pcm_to_frame(packet, MONO))
            next_packet += 1
        if ms % 10 == 0:  # the device plays one period
            if device >= 480:
                device -= 480
            elif not priming:
                underruns += 1
                late_underruns += now > seconds / 2
                priming, device = True, 0
                if controller is not None:
                    controller.reset()
        if priming and buffer.buffered >= 0.04:
            priming = False
        if not priming:
            device += len(buffer.take((capacity - device) * 2)) // 2
            queued = buffer.buffered + device / RATE
            levels.append(queued)
            if controller is not None:
                controller.observe(queued, now)
    tail = levels[-10_000:]  # the last ten seconds
    return {
        "underruns": underruns,
        "late_underruns": late_underruns,
        "drops": buffer.drops,
        "tail_min": min(tail),
        "tail_max": max(tail),
        "adjustments": controller.adjustments if controller else 0,
    }


@pytest.mark.parametrize("drift", [0.002, -0.002])
def test_without_control_two_clocks_cut_or_starve_the_audio(drift):
    result = simulate(drift, 90, controlled=False)
    if drift > 0:  # the queue fills up to the bound (120 ms + the device's 60), then cuts
        assert result["drops"] > 0 and result["tail_max"] > 0.15
    else:  # the queue runs dry, again and again
        assert result["underruns"] >= 2


@pytest.mark.parametrize("drift", [0.002, -0.002, 0.0])
def test_the_drift_controller_holds_the_queue_near_its_target(drift):
    result = simulate(drift, 60, controlled=True)
    assert result["drops"] == 0
    assert result["underruns"] == 0
    assert result["tail_min"] > 0.002 and result["tail_max"] < 0.09
    if drift:
        assert result["adjustments"] >= 1


def test_the_controller_speeds_up_above_and_slows_down_below_its_target():
    controller = DriftController(0.03, tolerance=0.01, window=1.0, step=0.005)
    for t in range(11):
        controller.observe(0.06, t / 10)
    assert controller.ratio == pytest.approx(0.995)
    for t in range(11, 22):
        controller.observe(0.035, t / 10)  # within tolerance but above target: keep going
    assert controller.ratio == pytest.approx(0.995)
    for t in range(22, 33):
        controller.observe(0.03, t / 10)  # back at the target: stop
    assert controller.ratio == 1.0
    for t in range(33, 44):
        controller.observe(0.01, t / 10)
    assert controller.ratio == pytest.approx(1.005)
    controller.reset()
    assert controller.ratio == 1.0


def test_the_target_follows_the_lateness_of_arrivals():
    controller = DriftController(0.02, tolerance=0.01, max_target=0.1, history=20.0)
    for k in range(1000):  # 20 s of packets on time, but every 25th 50 ms late
        controller.arrived(0.02, k * 0.02 + (0.05 if k % 25 == 0 else 0.0))
        controller.observe(0.05, k * 0.02)
    assert controller.target == pytest.approx(0.06, abs=0.002)  # 50 ms + tolerance
    for k in range(1000, 3000):  # then 40 s of a steady network
        controller.arrived(0.02, k * 0.02)
        controller.observe(0.05, k * 0.02)
    assert controller.target == pytest.approx(0.02)  # back to the floor
    for k in range(3000, 4000):  # a very bad network: capped
        controller.arrived(0.02, k * 0.02 + (0.5 if k % 10 == 0 else 0.0))
        controller.observe(0.05, k * 0.02)
    assert controller.target == pytest.approx(0.1)


def test_a_jittery_network_buys_margin_instead_of_underrunning_forever():
    # Wi-Fi-like stalls (one packet in 50 held 60 ms, the rest queued behind it): the
    # first underruns raise the target, then they stop.
    result = simulate(0.0, 120, controlled=True, stalls=0.06)
    assert result["underruns"] <= 3
    assert result["late_underruns"] == 0  # none in the last minute


@pytest.mark.parametrize(
    "arguments",
    [{"min_target": 0.0}, {"tolerance": 0.05}, {"step": 0.5}, {"max_target": 0.01}],
)
def test_a_drift_controller_refuses_nonsense(arguments):
    with pytest.raises(ValueError, match="DriftController needs"):
        DriftController(**arguments)


@pytest.mark.parametrize("ratio", [0.995, 1.005])
def test_stretching_keeps_the_pitch_within_a_fraction_of_a_percent_and_the_length_exact(ratio):
    controller = DriftController()
    controller.ratio = ratio
    stereo = PcmFormat(RATE, 2, "s16")
    buffer = PlaybackBuffer(stereo, max_buffered=5.0, drift=controller)
    t = np.arange(RATE) / RATE  # one second of 1 kHz, in 100 frames of 10 ms
    tone = np.rint(8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    interleaved = np.repeat(tone, 2)
    for start in range(0, len(interleaved), 960):
        buffer.push(pcm_to_frame(interleaved[start : start + 960].tobytes(), stereo))
    out = np.frombuffer(buffer.take(10**9), np.int16).reshape(-1, 2)
    assert abs(len(out) - RATE * ratio) <= 1  # the fraction is carried, not lost per frame
    heard = dominant_frequency(out[:, 0].astype(np.float32) / 32768, RATE)
    assert heard == pytest.approx(1000 / ratio, rel=0.002)
    assert (out[:, 0] == out[:, 1]).all()
