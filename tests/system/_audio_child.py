"""Run by tests/system/test_audio_devices.py in a process of its own, inside the test's
PulseAudio (``PULSE_SERVER`` set before Qt loads: QtMultimedia's PulseAudio connection is
made once per process). Prints one JSON line with what it measured.

    python tests/system/_audio_child.py call SECONDS       # two engines, four virtual devices
    python tests/system/_audio_child.py hotplug MANIFEST   # devices removed mid-call

``call``: two call engines (``CallSession``) through a room server on 127.0.0.1, each side
with the app's device objects: ``MicrophoneSource`` on its virtual microphone ->
``SwitchableTrack`` -> ``ProcessedAudioTrack`` (echo cancellation on), and remote audio ->
``EchoReferenceSink`` -> ``SwitchableAudioSink`` -> ``SpeakerSink`` on its virtual speaker.
The parent set up the rooms (a tone into each microphone, each speaker leaking into its
microphone) and records the speakers' monitors while this runs.

``hotplug``: one side's microphone and speaker through the ``DeviceManager`` with
``keep_fed`` and ``switch_output_to_fallback``; the parent removes the devices in use
(after lines ``ready`` on stdout) and this reports what the track and the speaker did.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import qasync
from PySide6.QtCore import QCoreApplication

from desktop_call.media.audio_processing import (
    AudioProcessingConfig,
    AudioProcessor,
    EchoReferenceSink,
    ProcessedAudioTrack,
)
from desktop_call.media.qt_devices import DeviceManager
from desktop_call.media.qt_playback import SwitchableAudioSink
from desktop_call.media.sinks import AudioReceiver, CountingAudioSink
from desktop_call.media.sources import ToneTrack
from desktop_call.media.switchable import SwitchableTrack


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def call(seconds: float) -> dict:
    from desktop_call.call.ice import IceConfig
    from desktop_call.call.session import CallOptions, CallSession, RemoteTrack
    from desktop_call.call.state import CallState
    from desktop_call.server import RoomServer, ServerConfig

    manager = DeviceManager()
    mics = {d.id for d in manager.microphones()}
    speakers = {d.id for d in manager.speakers()}
    sides: dict[str, dict] = {}
    async with RoomServer(ServerConfig(port=0, grace=2.0)) as server:
        for name in ("a", "b"):
            microphone, notice = await manager.start_audio_input(f"mic_{name}")
            assert notice is None, notice
            speaker, notice = manager.open_audio_output(f"spk_{name}")
            assert notice is None, notice
            processor = AudioProcessor()
            switchable = SwitchableTrack("audio", microphone.track)
            manager.keep_fed(switchable, microphone)
            track = ProcessedAudioTrack(switchable, processor)
            sink = EchoReferenceSink(SwitchableAudioSink(speaker), processor)
            session = CallSession(
                CallOptions(f"{server.url}/rooms/audio", name, ice=IceConfig(servers=())),
                audio=track,
            )
            side = {
                "mic": microphone,
                "speaker": speaker,
                "processor": processor,
                "sink": sink,
                "session": session,
                "receivers": [],
            }

            def on_event(event, side=side) -> None:
                if isinstance(event, RemoteTrack) and event.track.kind == "audio":
                    receiver = AudioReceiver(event.track, side["sink"])
                    receiver.start()
                    side["receivers"].append(receiver)

            session.subscribe(on_event)
            sides[name] = side
        a, b = sides["a"]["session"], sides["b"]["session"]
        async with a:
            await asyncio.wait_for(a.wait_for(lambda s: s is CallState.WAITING), 20)
            async with b:
                for s in (a, b):
                    state = await asyncio.wait_for(
                        s.wait_for(lambda s: s is CallState.CONNECTED), 20
                    )
                    assert state is CallState.CONNECTED, state
                say(event="connected", at=time.time())
                await asyncio.sleep(seconds)
                for side in sides.values():
                    for receiver in side["receivers"]:
                        await receiver.close()
        result = {
            "microphones": sorted(mics),
            "speakers": sorted(speakers),
        }
        for name, side in sides.items():
            result[name] = {
                "frames_received": sum(r.frames_received for r in side["receivers"]),
                "speaker_frames_written": side["speaker"].frames_written,
                "speaker_failure": side["speaker"].failure,
                "processor": side["processor"].stats(),
                "mic_samples": side["mic"].chunker.samples_in,
            }
            await side["mic"].stop()
            side["sink"].close()
    return result


async def hotplug(manifest: Path) -> dict:
    manager = DeviceManager()
    notices: list[str] = []
    microphone, _ = await manager.start_audio_input("mic_a")
    switchable = SwitchableTrack("audio", microphone.track)
    manager.keep_fed(switchable, microphone, notices.append)
    # No noise suppressor here: it learns a steady test tone as noise (the call test
    # runs the shipped chain); this test is about the devices going away.
    processor = AudioProcessor(AudioProcessingConfig(noise_suppression=False))
    track = ProcessedAudioTrack(switchable, processor)
    speaker, _ = manager.open_audio_output("spk_a")
    output = SwitchableAudioSink(speaker)
    sink = EchoReferenceSink(output, processor)
    lost: list[str] = []

    def on_lost(kind: str, description: str) -> None:
        lost.append(f"{kind}: {description}")
        if kind == "speaker":
            _, notice = manager.switch_output_to_fallback(output)
            notices.append(notice)

    manager.device_lost.connect(on_lost)
    meter = CountingAudioSink(keep=9600)
    frames = 0
    played = 0

    async def pump_microphone() -> None:
        nonlocal frames
        while True:
            meter.write(await track.recv())
            frames += 1

    async def pump_speaker() -> None:
        # The far end: a 300 Hz tone (not the microphone: that would be pure echo).
        nonlocal played
        far = ToneTrack(300.0)
        while True:
            sink.write(await far.recv())
            played += 1

    tasks = [asyncio.ensure_future(pump_microphone()), asyncio.ensure_future(pump_speaker())]
    marks: dict[str, object] = {}
    try:
        # The microphone delivers after a second; the echo canceller's start-up phase
        # holds the capture down while far-end audio plays and it has not converged.
        await asyncio.sleep(5.0)
        marks["before"] = {"frames": frames, "frequency": meter.dominant_frequency()}
        say(event="ready", step="microphone")
        await _wait_for_file(manifest, "microphone-removed")
        # The source sees its device stop with an error, fails, and keep_fed opens the
        # fallback microphone, which like any new one delivers after about a second.
        await asyncio.sleep(5.0)
        marks["after_microphone"] = {
            "frames": frames,
            "frequency": meter.dominant_frequency(),
            "source": repr(switchable.source),
            "microphones": [d.id for d in manager.microphones()],
        }
        say(event="ready", step="speaker")
        await _wait_for_file(manifest, "speaker-removed")
        await asyncio.sleep(3.0)
        marks["after_speaker"] = {
            "frames": frames,
            "played": played,
            "speaker": repr(output.sink),
            "speaker_bytes_played": getattr(output.sink, "bytes_played", None),
            "speakers": [d.id for d in manager.speakers()],
        }
        say(event="ready", step="done")
        await _wait_for_file(manifest, "recorded")
    finally:
        for task in tasks:
            task.cancel()
        track.stop()
        sink.close()
    return {
        "marks": marks,
        "notices": notices,
        "lost": lost,
        "task_failed": [
            repr(t.exception()) for t in tasks if t.done() and not t.cancelled() and t.exception()
        ]
        or None,
        "processor": processor.stats(),
    }


async def _wait_for_file(path: Path, word: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while word not in (path.read_text() if path.exists() else ""):  # noqa: ASYNC240
        if time.monotonic() > deadline:
            raise TimeoutError(f"the test never wrote {word!r}")
        await asyncio.sleep(0.05)


def main() -> int:
    mode, argument = sys.argv[1], sys.argv[2]
    app = QCoreApplication([])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    coro = call(float(argument)) if mode == "call" else hotplug(Path(argument))
    with loop:
        result = loop.run_until_complete(coro)
    say(event="result", **result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
