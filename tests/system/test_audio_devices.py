"""Audio through real QtMultimedia devices: virtual microphones and speakers in a private
PulseAudio (tests/system/pulse.py), with echo cancellation on.

- A call between two engines, each side on its own virtual microphone and speaker, each
  room with a tone at its microphone and its speaker leaking into its microphone (no
  headphones): each speaker must play the other side's tone, and its own tone must come
  back far weaker than it would without echo cancellation.
- Hot-plug: the microphone and then the speaker in use are removed mid-call; the track
  falls back to another microphone and the audio to another speaker, nothing crashes.

Skipped, with the reason, where pulseaudio (Debian: pulseaudio, pulseaudio-utils) or the
audio processing library is not installed. The device work runs in a child process
(tests/system/_audio_child.py): QtMultimedia connects to PulseAudio once per process,
and the GUI tier's QApplication in this one has done so without a server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from desktop_call.media.audio_processing import apm_problem
from desktop_call.media.sinks import dominant_frequency

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pulse import PulseServer, pulseaudio_problem, tone_level_db

CHILD = Path(__file__).resolve().parent / "_audio_child.py"
PROJECT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(pulseaudio_problem() is not None, reason=f"{pulseaudio_problem()}"),
    pytest.mark.skipif(apm_problem() is not None, reason=f"{apm_problem()}"),
]

TONE_A, TONE_B = 440.0, 660.0
ECHO_VOLUME = "-10dB"  # each room's speaker reaches its microphone 10 dB down


@pytest.fixture
def pulse(tmp_path):
    # A short path: unix socket names are limited to 108 bytes.
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"dc-pulse-{os.getpid()}-{time.monotonic_ns()}"
    root.mkdir(parents=True)
    server = PulseServer(root)
    try:
        server.start()
    except RuntimeError as exc:
        pytest.skip(f"PulseAudio does not start here: {exc}")
    try:
        yield server
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", str(root)], check=False)


class Child:
    """The child process, its JSON lines read in a thread."""

    def __init__(self, pulse: PulseServer, *args: str) -> None:
        env = {**os.environ, **pulse.env, "PYTHONFAULTHANDLER": "1"}
        env["QT_LOGGING_RULES"] = "qt.multimedia.*=false"
        self.lines: list[dict] = []
        self.stderr = ""
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=PROJECT,
        )
        self._errors: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._error_reader = threading.Thread(target=self._read_errors, daemon=True)
        self._error_reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self.lines.append(json.loads(line))

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._errors.append(line)

    def wait_for(self, **fields: object) -> dict:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for line in self.lines:
                if all(line.get(k) == v for k, v in fields.items()):
                    return line
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            self.stderr = "".join(self._errors)
            time.sleep(0.05)
        self.finish(5)
        raise AssertionError(f"no {fields} from the child:\n{self.stderr[-3000:]}")

    def finish(self, timeout: float) -> dict | None:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self._reader.join(5)
        self._error_reader.join(5)
        self.stderr = "".join(self._errors)
        return next((line for line in self.lines if line.get("event") == "result"), None)


def test_a_call_on_virtual_devices_carries_a_tone_both_ways_without_its_echo(pulse):
    for side in ("a", "b"):
        pulse.add_microphone(f"mic_{side}", f"Microphone {side.upper()}")
        pulse.add_speaker(f"spk_{side}", f"Speaker {side.upper()}")
    pulse.play_tone("mic_a", TONE_A)
    pulse.play_tone("mic_b", TONE_B)
    for side in ("a", "b"):
        echo = pulse.add_echo(f"spk_{side}", f"mic_{side}")
        pulse.set_volume(echo, ECHO_VOLUME)
    child = Child(pulse, "call", "9")
    child.wait_for(event="connected")
    time.sleep(4.0)  # the echo canceller converges meanwhile
    heard_at_a = pulse.record("spk_a.monitor", 3.0)
    heard_at_b = pulse.record("spk_b.monitor", 3.0)
    result = child.finish(30)
    assert result is not None, child.stderr[-3000:]
    assert child.process.returncode == 0, child.stderr[-3000:]
    assert {"mic_a", "mic_b"} <= set(result["microphones"])
    assert {"spk_a", "spk_b"} <= set(result["speakers"])
    for side in ("a", "b"):
        report = result[side]
        assert report["frames_received"] > 200, report
        assert report["speaker_failure"] is None
        assert report["processor"]["active"], report["processor"]
        assert report["processor"]["capture_blocks"] > 400
        assert report["processor"]["render_blocks"] > 300
    # Each side hears the other: the tone that dominates its speaker is the other's.
    margins = []
    for heard, theirs, own in ((heard_at_a, TONE_B, TONE_A), (heard_at_b, TONE_A, TONE_B)):
        assert len(heard) > 48_000
        frequency = dominant_frequency(heard, 48_000)
        assert frequency is not None and abs(frequency - theirs) < 5, frequency
        # Its own tone came back only as echo the other side's canceller let through.
        # Without cancellation it would be ECHO_VOLUME (10 dB) below theirs.
        margins.append(tone_level_db(heard, theirs) - tone_level_db(heard, own))
    print(f"own tones {margins[0]:.1f} and {margins[1]:.1f} dB below the other's")
    # How well it cancels is a measurement (bench/audio.py). A pure tone is the hardest
    # signal for AEC3: a side converges within these seconds or not (12-50 dB seen). That
    # the canceller is in the path and fed the right reference shows as a side far below
    # the 10 dB echo path, and no side's echo grown above it.
    assert max(margins) > 25, margins
    assert min(margins) > 8, margins


def test_devices_removed_mid_call_fall_back_without_a_crash(pulse, tmp_path):
    pulse.add_microphone("mic_a", "Microphone A")
    pulse.add_microphone("mic_c", "Microphone C")
    pulse.add_speaker("spk_a", "Speaker A")
    pulse.add_speaker("spk_c", "Speaker C")
    pulse.play_tone("mic_a", TONE_A)
    pulse.play_tone("mic_c", 880.0)
    pulse.set_default(speaker="spk_c", microphone="mic_c")
    manifest = tmp_path / "manifest"
    child = Child(pulse, "hotplug", str(manifest))
    child.wait_for(event="ready", step="microphone")
    pulse.unload("mic_a")
    manifest.write_text("microphone-removed\n")
    child.wait_for(event="ready", step="speaker")
    pulse.unload("spk_a")
    manifest.write_text("microphone-removed speaker-removed\n")
    child.wait_for(event="ready", step="done")
    heard = pulse.record("spk_c.monitor", 1.5)
    manifest.write_text("microphone-removed speaker-removed recorded\n")
    result = child.finish(30)
    assert result is not None, child.stderr[-3000:]
    assert child.process.returncode == 0, child.stderr[-3000:]
    marks = result["marks"]
    assert marks["before"]["frames"] > 100, marks
    # The microphone went: the track carries on, from the other one, still processed.
    # (The stream stops with an error, the source fails and keep_fed falls back to the
    # default microphone: about a second without audio. Qt 6.11 does not update its
    # device lists here, result["marks"][...]["microphones"].)
    assert marks["after_microphone"]["frames"] > marks["before"]["frames"] + 100
    assert abs(marks["after_microphone"]["frequency"] - 880.0) < 5, marks
    # The speaker went: the audio plays on the other one, nothing crashed.
    assert marks["after_speaker"]["frames"] > marks["after_microphone"]["frames"] + 100
    assert marks["after_speaker"]["played"] > 300
    assert result["task_failed"] is None
    assert result["processor"]["active"]
    frequency = dominant_frequency(heard, 48_000)
    assert frequency is not None and abs(frequency - 300.0) < 5, frequency
    assert np.sqrt(np.mean(heard**2)) > 0.01
