"""A private PulseAudio server with virtual microphones and speakers, for device tests.

:class:`PulseServer` starts Debian's ``pulseaudio`` (as root too) in a directory of the
test's own: no autospawn, no D-Bus, no real hardware, one native-protocol socket. Clients
reach it through :attr:`PulseServer.env` (``PULSE_SERVER`` and friends); QtMultimedia's
PulseAudio backend is one of them (``QT_AUDIO_BACKEND=pulseaudio``), and lists each
virtual device like a real one.

- :meth:`add_speaker` ``name``: a null sink (a speaker nobody hears); what is played on it
  can be recorded from ``name.monitor`` (:meth:`record`).
- :meth:`add_microphone` ``name``: a null sink ``name_in`` (what the "room" plays into the
  microphone) and a remap source ``name`` over its monitor: Qt does not list monitors, but
  it lists this as a microphone. :meth:`play_tone` puts a sine into it; :meth:`add_echo`
  routes a speaker into it (an acoustic echo path through PulseAudio).
- :meth:`unload` removes a device mid-call (hot-plug).

:func:`pulseaudio_problem` says why the server cannot run here (``None`` if it can).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

RATE = 48_000


def pulseaudio_problem() -> str | None:
    for tool in ("pulseaudio", "pactl", "parec"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install pulseaudio pulseaudio-utils)"
    return None


class PulseServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "native"
        self.modules: dict[str, list[int]] = {}
        self._process: subprocess.Popen[bytes] | None = None
        runtime = root / "runtime"
        client_conf = root / "client.conf"
        self.env = {
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_RUNTIME_PATH": str(runtime),
            "PULSE_STATE_PATH": str(root / "state"),
            "PULSE_CLIENTCONFIG": str(client_conf),
            "XDG_RUNTIME_DIR": str(root / "xdg"),
            "QT_AUDIO_BACKEND": "pulseaudio",
        }
        self._client_conf = client_conf

    # Life.

    def start(self, timeout: float = 15.0) -> None:
        for name in ("runtime", "state", "xdg", "home"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
            os.chmod(self.root / name, 0o700)
        self._client_conf.write_text("autospawn = no\n")
        script = self.root / "default.pa"
        script.write_text(
            f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket}\n"
        )
        env = {**os.environ, **self.env, "HOME": str(self.root / "home")}
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        log = (self.root / "pulseaudio.log").open("wb")
        self._process = subprocess.Popen(
            [
                "pulseaudio",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--disallow-exit",
                "--use-pid-file=no",
                "--disable-shm",  # root and a test user may share it; memfd is not needed
                "-n",
                "-F",
                str(script),
                "--log-target=stderr",
                "--log-level=warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"pulseaudio exited: {self.log()}")
            if self.socket.exists() and self._pactl_ok("info"):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pulseaudio did not start within {timeout} s: {self.log()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "pulseaudio.log").read_text(errors="replace")[-2000:]
        return ""

    def __enter__(self) -> PulseServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Commands.

    def pactl(self, *args: str, timeout: float = 10.0) -> str:
        result = subprocess.run(
            ["pactl", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env},
        )
        if result.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout.strip()

    def _pactl_ok(self, *args: str) -> bool:
        try:
            self.pactl(*args, timeout=2.0)
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return True

    def load(self, owner: str, module: str, **arguments: object) -> int:
        args = [f"{k}={v}" for k, v in arguments.items()]
        index = int(self.pactl("load-module", module, *args))
        self.modules.setdefault(owner, []).append(index)
        return index

    def unload(self, owner: str) -> None:
        """Remove every module loaded for ``owner`` (a device), newest first."""
        for index in reversed(self.modules.pop(owner, [])):
            self.pactl("unload-module", str(index))

    # Devices.

    def add_speaker(self, name: str, description: str | None = None) -> str:
        self.load(
            name,
            "module-null-sink",
            sink_name=name,
            rate=RATE,
            channels=2,
            sink_properties=f"\"device.description='{description or name}'\"",
        )
        return name

    def add_microphone(self, name: str, description: str | None = None) -> str:
        room = f"{name}_in"
        self.load(
            name,
            "module-null-sink",
            sink_name=room,
            rate=RATE,
            channels=1,
            sink_properties=f"device.description={room}",
        )
        self.load(
            name,
            "module-remap-source",
            source_name=name,
            master=f"{room}.monitor",
            source_properties=f"\"device.description='{description or name}'\"",
        )
        return name

    def play_tone(self, microphone: str, frequency: float) -> None:
        """A continuous sine into ``microphone`` (what the person there says)."""
        self.load(microphone, "module-sine", sink=f"{microphone}_in", frequency=int(frequency))

    def add_echo(self, speaker: str, microphone: str, latency_ms: int = 30) -> int:
        """What ``speaker`` plays reaches ``microphone`` too: the echo of a room.
        Returns the loopback's module (for :meth:`set_volume`: it starts at 0 dB)."""
        return self.load(
            microphone,
            "module-loopback",
            source=f"{speaker}.monitor",
            sink=f"{microphone}_in",
            latency_msec=latency_ms,
            source_dont_move="true",
            sink_dont_move="true",
        )

    def set_default(self, speaker: str | None = None, microphone: str | None = None) -> None:
        if speaker:
            self.pactl("set-default-sink", speaker)
        if microphone:
            self.pactl("set-default-source", microphone)

    def record(self, source: str, seconds: float) -> np.ndarray:
        """``seconds`` of what ``source`` (say ``spk.monitor``) carries: mono float32."""
        return record(source, seconds, {**os.environ, **self.env})

    def sink_input_of(self, module: int) -> int:
        """The sink input a module (a loopback, a sine) plays through."""
        import json

        for item in json.loads(self.pactl("--format=json", "list", "sink-inputs")):
            if str(item.get("owner_module")) == str(module):
                return int(item["index"])
        raise LookupError(f"module {module} has no sink input")

    def set_volume(self, module: int, volume: str) -> None:
        """Volume of what a module plays, as pactl takes it (``"50%"``, ``"-12dB"``)."""
        self.pactl("set-sink-input-volume", str(self.sink_input_of(module)), volume)


def record(source: str, seconds: float, env: dict[str, str] | None = None) -> np.ndarray:
    """``seconds`` of what a PulseAudio ``source`` carries (``parec``): mono float32."""
    process = subprocess.Popen(
        [
            "parec",
            f"--device={source}",
            "--raw",
            "--format=s16le",
            f"--rate={RATE}",
            "--channels=1",
            "--latency-msec=20",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert process.stdout is not None
    wanted = int(seconds * RATE) * 2
    data = bytearray()
    deadline = time.monotonic() + seconds + 5
    os.set_blocking(process.stdout.fileno(), False)
    while len(data) < wanted and time.monotonic() < deadline:
        chunk = process.stdout.read(wanted - len(data))
        if chunk:
            data += chunk
        else:
            time.sleep(0.01)
    process.terminate()
    process.wait(5)
    usable = len(data) - len(data) % 2
    return np.frombuffer(bytes(data[:usable]), np.int16).astype(np.float32) / 32768


def tone_level_db(samples: np.ndarray, frequency: float, rate: int = RATE) -> float:
    """The level (dBFS) of ``frequency`` in ``samples`` (a 20 Hz wide band around it)."""
    if len(samples) < 1024:
        return -200.0
    window = np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(samples * window)) / (np.sum(window) / 2)
    f = np.fft.rfftfreq(len(samples), 1 / rate)
    band = np.abs(f - frequency) <= 10
    return float(20 * np.log10(np.sqrt(np.sum(spectrum[band] ** 2)) + 1e-12))
