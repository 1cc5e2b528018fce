"""Build the Windows installer: one command (on Windows, in the project's venv).

    python packaging\\build_windows.py [--clean] [--no-gpl] [--no-test]

1. PyInstaller (build.spec): ``dist\\desktop-call\\`` with ``desktop-call.exe``
   (windowed) and ``desktop-call-server.exe`` (console);
2. Inno Setup 6 (``iscc``, from https://jrsoftware.org or ``choco install innosetup``)
   compiles packaging\\windows\\desktop-call.iss into
   ``dist\\desktop-call-VERSION-windows-x64-setup.exe``: Start menu entry, uninstaller,
   dcall:// handler;
3. the smoke test (tests/system/test_frozen.py) on the folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import DIST, FOLDER, HERE, ROOT, __version__, step

ISCC_PLACES = [
    Path(os.environ.get("PROGRAMFILES(X86)", r"C:\Program Files (x86)")) / "Inno Setup 6",
    Path(os.environ.get("PROGRAMFILES", r"C:\Program Files")) / "Inno Setup 6",
    Path(os.environ.get("LOCALAPPDATA", "")) / "Programs" / "Inno Setup 6",
]


def find_iscc() -> str:
    found = shutil.which("iscc") or shutil.which("ISCC")
    if found:
        return found
    for place in ISCC_PLACES:
        if (place / "ISCC.exe").is_file():
            return str(place / "ISCC.exe")
    raise SystemExit(
        "Inno Setup 6 not found: install it (choco install innosetup) or add iscc to PATH"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", action="store_true")
    parser.add_argument("--no-gpl", action="store_true", help="leave x264 out (VP8 only)")
    parser.add_argument("--no-test", action="store_true")
    args = parser.parse_args()
    if sys.platform != "win32":
        raise SystemExit("build_windows.py builds on Windows")
    seconds = common.pyinstaller(clean=args.clean, no_gpl=args.no_gpl)
    step(f"PyInstaller: {seconds:.0f} s, {common.folder_size(FOLDER) / 1e6:.0f} MB")
    common.write_build_info(FOLDER, no_gpl=args.no_gpl)
    iss = HERE / "windows" / "desktop-call.iss"
    subprocess.run(
        [find_iscc(), f"/DAppVersion={__version__}", f"/DSourceDir={FOLDER}",
         f"/DOutputDir={DIST}", str(iss)],
        check=True, cwd=iss.parent,
    )  # fmt: skip
    setup = DIST / f"desktop-call-{__version__}-windows-x64-setup.exe"
    step(f"{setup.relative_to(ROOT)}: {setup.stat().st_size / 1e6:.1f} MB")
    if args.no_test:
        return 0
    env = {**os.environ, "DESKTOP_CALL_FROZEN": str(FOLDER)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
         str(ROOT / "tests" / "system" / "test_frozen.py")],
        cwd=ROOT, env=env,
    ).returncode  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
