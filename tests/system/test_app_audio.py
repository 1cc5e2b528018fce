"""Two app instances call each other through their own (virtual) sound cards.

Each instance runs the windowed app (Qt offscreen) with its own private PulseAudio
(tests/system/pulse.py) as its whole audio world: a default microphone carrying that
room's tone, a default speaker, and the speaker leaking into the microphone 10 dB down
(no headphones). Settings are the defaults, so echo cancellation is on. Each speaker
must play the other room's tone, with its own tone back only as far weaker echo.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from desktop_call.media.audio_processing import apm_problem
from desktop_call.media.sinks import dominant_frequency

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pulse import PulseServer, pulseaudio_problem, tone_level_db

pytestmark = [
    pytest.mark.skipif(pulseaudio_problem() is not None, reason=f"{pulseaudio_problem()}"),
    pytest.mark.skipif(apm_problem() is not None, reason=f"{apm_problem()}"),
]

TONES = {"Ana": 440.0, "Bo": 660.0}
CALL_SECONDS = 16


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def rooms():
    """One private PulseAudio per person, with a microphone, a speaker and an echo."""
    servers = {}
    try:
        for name, tone in TONES.items():
            root = Path(os.environ.get("TMPDIR", "/tmp")) / f"dc-app-{name}-{os.getpid()}"
            root.mkdir(parents=True, exist_ok=True)
            server = PulseServer(root)
            servers[name] = server
            try:
                server.start()
            except RuntimeError as exc:
                pytest.skip(f"PulseAudio does not start here: {exc}")
            server.add_microphone("mic", f"Microphone of {name}")
            server.add_speaker("spk", f"Speaker of {name}")
            server.set_default(speaker="spk", microphone="mic")
            server.play_tone("mic", tone)
            server.set_volume(server.add_echo("spk", "mic"), "-10dB")
        yield servers
    finally:
        for server in servers.values():
            server.stop()
            subprocess.run(["rm", "-rf", str(server.root)], check=False)


def start_app(tmp: Path, name: str, port: int, pulse: PulseServer) -> subprocess.Popen:
    env = {**os.environ, **pulse.env, "QT_QPA_PLATFORM": "offscreen", "PYTHONFAULTHANDLER": "1"}
    env["QT_LOGGING_RULES"] = "qt.multimedia.*=false"
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "desktop_call",
            "--join",
            "audi-oapp-test",
            "--name",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--duration",
            str(CALL_SECONDS),
            "--report",
            str(tmp / f"{name}.json"),
            "--settings-file",
            str(tmp / f"{name}.ini"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / f"{name}.log").open("wb"),
        env=env,
    )


def app_is_playing(pulse: PulseServer) -> bool:
    """The app's own playback stream (not one of the test's loopbacks) is on the speaker."""
    inputs = json.loads(pulse.pactl("--format=json", "list", "sink-inputs"))
    return any(item.get("client") is not None for item in inputs)


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # other processes: nothing to await but their state
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_two_app_instances_on_virtual_devices_carry_a_tone_both_ways_without_echo(rooms, tmp_path):
    port = free_port()
    apps = {"Ana": start_app(tmp_path, "Ana", port, rooms["Ana"])}
    try:
        wait_until(lambda: port_open(port), 30, "Ana's app to host the room server")
        apps["Bo"] = start_app(tmp_path, "Bo", port, rooms["Bo"])
        for name, pulse in rooms.items():
            wait_until(lambda pulse=pulse: app_is_playing(pulse), 60, f"{name}'s app to play")
        time.sleep(5.0)  # the echo cancellers converge on the live call meanwhile
        heard = {name: pulse.record("spk.monitor", 3.0) for name, pulse in rooms.items()}
        for name, app in apps.items():
            app.wait(CALL_SECONDS + 60)
            log = (tmp_path / f"{name}.log").read_text(errors="replace")
            assert app.returncode == 0, log[-3000:]
            assert "uncaught error" not in log, log[-3000:]  # e.g. a device signal's slot
    finally:
        for app in apps.values():
            if app.poll() is None:
                app.send_signal(signal.SIGABRT)  # faulthandler: where it hung, in the log
                app.wait(10)
    reports = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in apps}
    for report in reports.values():
        assert report["connected"] and report["audio_frames_received"] > 300
        assert report["source"] == "devices"
    margins = []
    for name, other in (("Ana", "Bo"), ("Bo", "Ana")):
        samples = heard[name]
        assert len(samples) > 48_000
        frequency = dominant_frequency(samples, 48_000)
        assert frequency is not None and abs(frequency - TONES[other]) < 5, (name, frequency)
        margins.append(tone_level_db(samples, TONES[other]) - tone_level_db(samples, TONES[name]))
    print(f"own tones {margins[0]:.1f} and {margins[1]:.1f} dB below the other's")
    # As in test_audio_devices: 10 dB without cancellation; a pure tone converges on one
    # side or both within seconds (bench/audio.py measures ERLE on speech).
    assert max(margins) > 25, margins
    assert min(margins) > 8, margins
