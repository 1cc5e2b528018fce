"""What the per-OS build scripts share: PyInstaller, the build info, sizes."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DIST = ROOT / "dist"
BUILD = ROOT / "build"

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from desktop_call import APP_NAME, __version__  # noqa: E402

FOLDER = DIST / APP_NAME  # PyInstaller's one-folder output (COLLECT name)


def step(message: str) -> None:
    print(f"== {message}", flush=True)


def require_pyinstaller() -> None:
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        raise SystemExit(
            "PyInstaller is not installed in this environment: "
            f"{sys.executable} -m pip install pyinstaller"
        ) from None


def pyinstaller(*, clean: bool = False, no_gpl: bool = False) -> float:
    """Run build.spec; returns the seconds it took."""
    require_pyinstaller()
    command = [
        sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
        "--distpath", str(DIST), "--workpath", str(BUILD), str(ROOT / "build.spec"),
    ]  # fmt: skip
    if clean:
        command.insert(3, "--clean")
    if no_gpl:
        command += ["--", "--no-gpl"]
    step(" ".join(command[2:]))
    started = time.monotonic()
    subprocess.run(command, check=True, cwd=ROOT)
    return time.monotonic() - started


def write_build_info(target: Path, **extra) -> dict:
    import av
    import PySide6

    info = {
        "name": APP_NAME,
        "version": __version__,
        "platform": sys.platform,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "pyside6": PySide6.__version__,
        "av": av.__version__,
        "ffmpeg": av.ffmpeg_version_info,
        **extra,
    }
    (target / "BUILD-INFO.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
