"""Build the Linux download, then smoke-test and measure it: one command.

    python packaging/build_linux.py [--clean] [--no-gpl] [--no-test] [--no-measure]

1. PyInstaller (build.spec): ``dist/desktop-call/`` with ``desktop-call`` (the app)
   and ``desktop-call-server`` (the room server), slimmed (packaging/slim.py);
2. adds ``licenses`` (a link to _internal/licenses, see build.spec), ``install.sh``
   (menu entry, icon, dcall:// handler), the two .desktop files, the icon and
   ``BUILD-INFO.json``;
3. packs ``dist/desktop-call-VERSION-linux-ARCH.tar.xz`` (the artifact);
4. runs tests/system/test_frozen.py on the folder (--version, the home window under
   Xvfb with a screenshot, a headless call between the frozen app and the frozen
   server), then packaging/measure.py (sizes, start to the home window).

Needs: the project's venv with PyInstaller (``pip install pyinstaller``), gcc and
binutils (stub libraries), Xvfb for the tests (``apt-get install xvfb``).
Why a tarball and not an AppImage: docs/installers.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import APP_NAME, DIST, FOLDER, HERE, ROOT, __version__, step


def add_linux_files(target: Path) -> None:
    (target / "share" / "applications").mkdir(parents=True, exist_ok=True)
    (target / "share" / "icons").mkdir(parents=True, exist_ok=True)
    for entry in ("desktop-call.desktop", "desktop-call-url.desktop"):
        shutil.copy2(HERE / "linux" / entry, target / "share" / "applications" / entry)
    shutil.copy2(ROOT / "resources" / "app.png", target / "share" / "icons" / "desktop-call.png")
    shutil.copy2(HERE / "linux" / "install.sh", target / "install.sh")
    os.chmod(target / "install.sh", 0o755)
    licenses = target / "licenses"  # build.spec puts them in _internal/licenses
    if not licenses.exists():
        licenses.symlink_to(Path("_internal") / "licenses", target_is_directory=True)


def archive_name() -> str:
    return f"{APP_NAME}-{__version__}-linux-{platform.machine()}.tar.xz"


def pack(target: Path) -> tuple[Path, float]:
    """tar.xz with a top folder ``desktop-call-VERSION/``: xz -6 on every core (-9: 4 %
    smaller, 3.5 times slower here)."""
    archive = DIST / archive_name()
    top = f"{APP_NAME}-{__version__}"
    started = time.monotonic()
    if shutil.which("tar") and shutil.which("xz"):
        env = {**os.environ, "XZ_OPT": "-6 -T0"}
        subprocess.run(
            ["tar", "-C", str(target.parent), "--owner=0", "--group=0", "--sort=name",
             f"--transform=s,^{target.name},{top},", "-cJf", str(archive), target.name],
            check=True, env=env,
        )  # fmt: skip
    else:
        with tarfile.open(archive, "w:xz", preset=6) as tar:
            tar.add(target, arcname=top)
    return archive, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", action="store_true", help="ignore PyInstaller's cache")
    parser.add_argument("--no-gpl", action="store_true", help="leave x264 out (VP8 only)")
    parser.add_argument("--no-archive", action="store_true", help="the folder only, no .tar.xz")
    parser.add_argument("--no-test", action="store_true", help="skip the smoke test")
    parser.add_argument("--no-measure", action="store_true", help="skip the measurements")
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        raise SystemExit("build_linux.py builds on Linux (see docs/installers.md for the others)")

    started = time.monotonic()
    build_seconds = common.pyinstaller(clean=args.clean, no_gpl=args.no_gpl)
    step(f"PyInstaller: {build_seconds:.0f} s")
    add_linux_files(FOLDER)
    common.write_build_info(FOLDER, no_gpl=args.no_gpl)
    archive = None
    if not args.no_archive:
        archive, pack_seconds = pack(FOLDER)
        size = archive.stat().st_size / 1e6
        step(f"{archive.relative_to(ROOT)}: {size:.1f} MB ({pack_seconds:.0f} s)")
    build_total = time.monotonic() - started

    code = 0
    if not args.no_test:
        step("smoke test: tests/system/test_frozen.py")
        env = {**os.environ, "DESKTOP_CALL_FROZEN": str(FOLDER)}
        code = subprocess.run(
            [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
             str(ROOT / "tests" / "system" / "test_frozen.py")],
            cwd=ROOT, env=env,
        ).returncode  # fmt: skip
    if not args.no_measure and code == 0:
        step("measurements: packaging/measure.py")
        command = [sys.executable, str(HERE / "measure.py"), "--folder", str(FOLDER),
                   "--build-seconds", f"{build_total:.1f}"]  # fmt: skip
        if archive is not None:
            command += ["--archive", str(archive)]
        subprocess.run(command, check=True, cwd=ROOT)
    summary = {
        "folder": str(FOLDER.relative_to(ROOT)),
        "archive": str(archive.relative_to(ROOT)) if archive else None,
        "build_seconds": round(build_total, 1),
        "pyinstaller_seconds": round(build_seconds, 1),
        "smoke_test": "skipped" if args.no_test else ("passed" if code == 0 else "FAILED"),
        "total_seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())
