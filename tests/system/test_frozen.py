"""Smoke test of the frozen build (PyInstaller, build.spec): the download, not the venv.

Skipped unless a frozen build exists: ``python packaging/build_linux.py`` builds
``dist/desktop-call/`` and runs this file on it (``DESKTOP_CALL_FROZEN=FOLDER`` points
it elsewhere). Checks, with the frozen executables only:

- ``--version`` of the app and of the server;
- the folder is slim (size, stubs in place, licences present);
- the home window on a real X server (Xvfb): how long from exec until it is mapped,
  a screenshot (``dist/smoke/home.png``), and QtMultimedia's FFmpeg backend loaded;
- a headless call between two frozen app processes through the frozen server on
  127.0.0.1 with the test pattern, VP8 and H.264, both reports checked;
- a windowed call (offscreen) on the device path, so QtMultimedia and livekit's audio
  processing (echo cancellation) load in the frozen app, against a frozen headless peer;
- install.sh (menu entry, icon, dcall:// handler) into a temporary home, and back out.

One test needs no build: packaging/minblas.c (the build's stand-in for NumPy's
OpenBLAS) gives NumPy's products (Linux with gcc).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from desktop_call import APP_NAME, __version__

ROOT = Path(__file__).resolve().parents[2]
FROZEN = Path(os.environ.get("DESKTOP_CALL_FROZEN") or ROOT / "dist" / APP_NAME)
EXE = ".exe" if sys.platform == "win32" else ""
APP = FROZEN / f"{APP_NAME}{EXE}"
SERVER = FROZEN / f"{APP_NAME}-server{EXE}"
SHOTS = FROZEN.parent / "smoke"
MAX_UNPACKED_MB = 200

needs_build = pytest.mark.skipif(
    not APP.is_file(),
    reason=f"no frozen build at {FROZEN} (build one with: python packaging/build_linux.py)",
)
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux build checks")


def build_info() -> dict:
    path = FROZEN / "BUILD-INFO.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The user's environment, without the venv's Python leaking into the frozen app, and
    with Qt's own logging as a user has it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.pop("QT_LOGGING_RULES", None)  # the GUI tier's conftest quiets what these tests read
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p
    )
    return {**env, **extra}


@needs_build
def test_version_of_the_app_and_the_server():
    for exe, name in ((APP, APP_NAME), (SERVER, f"{APP_NAME}-server")):
        done = subprocess.run(
            [str(exe), "--version"], capture_output=True, text=True, timeout=60, env=clean_env()
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"{name} {__version__}"


@needs_build
@linux_only
def test_the_folder_is_slim_and_carries_its_licences():
    files = [f for f in FROZEN.rglob("*") if f.is_file() and not f.is_symlink()]
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    assert size_mb <= MAX_UNPACKED_MB, f"{size_mb:.0f} MB unpacked"
    by_name = {f.name: f for f in files}
    # Stubs, not the real libraries (packaging/slim.py): a few KB each.
    for pattern in (r"libx265-.*\.so.*", r"libSvtAv1Enc-.*\.so.*", r"libQt6Quick\.so\.6"):
        found = [f for n, f in by_name.items() if re.fullmatch(pattern, n)]
        assert found, pattern
        assert all(f.stat().st_size < 200_000 for f in found), found
    for unwanted in ("libQt6WebEngineCore.so.6", "libQt6Pdf.so.6", "libQt6Quick3D.so.6"):
        assert unwanted not in by_name
    assert "liblivekit_ffi.so" in by_name  # echo cancellation (packaging/hooks)
    assert not any("/translations/" in f.as_posix() for f in files)
    # H.264 sending needs the real x264, unless the build says it left GPL parts out.
    x264 = [f for n, f in by_name.items() if n.startswith("libx264-")]
    assert x264 and (x264[0].stat().st_size > 1_000_000) != bool(build_info().get("no_gpl"))
    notice = (FROZEN / "licenses" / "NOTICE.txt").read_text()
    assert f"Desktop Call {__version__}" in notice
    for text in ("GPL-2.0.txt", "LGPL-3.0.txt", "av", "pyside6", "numpy"):
        assert (FROZEN / "licenses" / text).exists(), text
    assert build_info().get("version") == __version__


@needs_build
@linux_only
@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb (apt-get install xvfb)")
def test_home_window_shows_on_a_real_x_server(tmp_path):
    sys.path.insert(0, str(ROOT / "packaging"))
    from xwindow import MapWatcher, screenshot, x_display

    os.environ.setdefault("DESKTOP_CALL_XVFB", "1")  # never the developer's own screen
    with x_display() as display:
        watcher = MapWatcher(display)
        env = clean_env(DISPLAY=display, QT_QPA_PLATFORM="xcb", XDG_CONFIG_HOME=str(tmp_path))
        env.pop("WAYLAND_DISPLAY", None)
        started = time.monotonic()
        proc = subprocess.Popen(
            [str(APP), "--settings-file", str(tmp_path / "settings.ini"),
             "--host", "127.0.0.1", "--port", str(free_port())],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            shown = watcher.wait_for_window(started, timeout=60)
            assert shown is not None, "no window within 60 s"
            seconds = shown - started
            time.sleep(1.5)  # painted, the embedded server's address shown
            assert proc.poll() is None, "the app exited"
            SHOTS.mkdir(parents=True, exist_ok=True)
            colours = screenshot(display, SHOTS / "home.png")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            watcher.close()
    (SHOTS / "home-start.json").write_text(json.dumps({"exec_to_mapped_s": round(seconds, 3)}))
    print(f"exec -> home window mapped: {seconds:.3f} s; screenshot {SHOTS / 'home.png'}")
    assert colours > 10, "the screenshot is blank"
    assert seconds < 15
    # The window asked QtMultimedia for cameras and microphones: its FFmpeg backend (and
    # the QtQuick stub it links) loaded. Without a sound server that is all it can say.
    assert "Using Qt multimedia with FFmpeg" in err, err
    assert "unavailable" not in err, err
    assert "Traceback" not in err, err


@needs_build
@pytest.mark.parametrize("codec", ["VP8", "H264"])
def test_headless_call_between_the_frozen_app_and_the_frozen_server(tmp_path, codec):
    if codec == "H264" and build_info().get("no_gpl"):
        pytest.skip("a --no-gpl build has no H.264 encoder")
    port = free_port()
    server = subprocess.Popen(
        [str(SERVER), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
    )  # fmt: skip
    try:
        line = server.stdout.readline()
        assert f"listening on ws://127.0.0.1:{port}" in line, line + server.stderr.read()
        common = [
            "--headless", "--server", f"ws://127.0.0.1:{port}", "--source", "testpattern",
            "--ice-servers", "none", "--duration", "3", "--codec", codec,
        ]  # fmt: skip
        calls = [
            subprocess.Popen(
                [
                    str(APP),
                    *common,
                    "--join",
                    "7k3m-q9vd-x2ha",
                    "--name",
                    name,
                    "--report",
                    str(tmp_path / f"{name}.json"),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=clean_env(PYTHONFAULTHANDLER="1"),
            )
            for name in ("A", "B")
        ]
        results = []
        for proc in calls:
            try:
                out, err = proc.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            results.append((proc.returncode, out, err))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    for code, out, err in results:
        assert code == 0, out + err
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("A", "B"))
    for report in (a, b):
        assert report["connected"] and report["media_both_ways"]
        assert report["video_frames_received"] > 30
        assert report["audio_frames_received"] > 50
        assert 400 < report["audio_dominant_hz"] < 480  # the 440 Hz tone
        assert report["codec"] == codec
        assert report["candidate_type"] == "host"
        assert report["errors"] == []
    assert a["sas"] is not None and a["sas"] == b["sas"]


@needs_build
def test_windowed_call_with_devices_and_echo_cancellation(tmp_path):
    """The frozen app's call window on its device path (QtMultimedia, and livekit's
    WebRTC audio processing between microphone and call: packaging/hooks), against a
    frozen headless peer through the frozen server. No camera or sound server here:
    the app falls back to a test pattern and silence, and says so, but the audio
    processing must load."""
    port = free_port()
    (tmp_path / "A.ini").write_text(
        "[General]\ndisplay_name=A\nserver_mode=remote\n"
        f"remote_server_url=ws://127.0.0.1:{port}\nice_servers=none\n"
        "echo_cancellation=true\n"
    )
    server = subprocess.Popen(
        [str(SERVER), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
    )  # fmt: skip
    try:
        assert "listening on" in server.stdout.readline()
        window = subprocess.Popen(
            [str(APP), "--join", "7k3m-q9vd-x2ha", "--duration", "3",
             "--report", str(tmp_path / "A.json"), "--settings-file", str(tmp_path / "A.ini")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=clean_env(QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path)),
        )  # fmt: skip
        peer = subprocess.Popen(
            [str(APP), "--headless", "--join", "7k3m-q9vd-x2ha", "--name", "B",
             "--server", f"ws://127.0.0.1:{port}", "--source", "testpattern",
             "--ice-servers", "none", "--duration", "20", "--report", str(tmp_path / "B.json")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
        )  # fmt: skip
        try:
            out, err = window.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            window.kill()
            out, err = window.communicate()
        code = window.returncode
        peer.kill()  # it only had to be there; its own report is the headless tests' job
        peer.communicate()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    assert code == 0, out + err
    assert "audio processing" not in err and "livekit" not in err, err
    report = json.loads((tmp_path / "A.json").read_text())
    assert report["connected"], report
    assert report["frames_painted"] > 10
    assert report["video_frames_received"] > 10
    assert report["errors"] == []


@needs_build
@linux_only
def test_install_script_registers_the_menu_entry_and_dcall_links(tmp_path):
    """install.sh for one user (HOME in a temporary folder), then --uninstall."""
    script = FROZEN / "install.sh"
    if not script.is_file():
        pytest.skip("no install.sh: the folder was not made by packaging/build_linux.py")
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}  # no xdg-utils: mimeapps.list
    done = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    prefix = home / ".local" / "opt" / APP_NAME
    apps = home / ".local" / "share" / "applications"
    assert (prefix / APP_NAME).is_file()
    assert (home / ".local" / "bin" / APP_NAME).resolve() == (prefix / APP_NAME).resolve()
    handler = (apps / "desktop-call-url.desktop").read_text()
    assert f"Exec={prefix}/desktop-call %u" in handler
    assert "MimeType=x-scheme-handler/dcall;" in handler
    assert f"Exec={prefix}/desktop-call\n" in (apps / "desktop-call.desktop").read_text()
    assert (home / ".local/share/icons/hicolor/256x256/apps/desktop-call.png").is_file()
    mimeapps = (home / ".config" / "mimeapps.list").read_text()
    assert "x-scheme-handler/dcall=desktop-call-url.desktop" in mimeapps
    installed = subprocess.run(
        [str(home / ".local" / "bin" / APP_NAME), "--version"],
        capture_output=True, text=True, timeout=60, env=clean_env(),
    )  # fmt: skip
    assert installed.stdout.strip() == f"{APP_NAME} {__version__}"
    done = subprocess.run(["sh", str(script), "--uninstall"], env=env, capture_output=True)
    assert done.returncode == 0
    assert not prefix.exists() and not (apps / "desktop-call-url.desktop").exists()
    assert "x-scheme-handler/dcall" not in (home / ".config" / "mimeapps.list").read_text()


@linux_only
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc (builds minblas)")
def test_minblas_matches_numpy(tmp_path):
    """The build replaces NumPy's OpenBLAS by packaging/minblas.c: same products."""
    sys.path.insert(0, str(ROOT / "packaging"))
    import minblas_check

    try:
        summary = minblas_check.check(tmp_path)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    assert "products match" in summary
