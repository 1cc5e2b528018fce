"""Build the macOS disk image: one command (on a Mac, in the project's venv).

    python packaging/build_macos.py [--clean] [--no-gpl] [--no-test]

1. PyInstaller (build.spec): ``dist/Desktop Call.app``, its Info.plist from
   packaging/macos/Info.plist (camera and microphone usage descriptions, the dcall://
   URL scheme), the room server beside the app in Contents/MacOS;
2. signs it: ``CODESIGN_IDENTITY`` ("Developer ID Application: ...") with the hardened
   runtime and packaging/macos/entitlements.plist, else ad hoc (runs on this Mac;
   elsewhere Gatekeeper asks: right-click > Open). Notarizing needs an Apple
   developer account: ``xcrun notarytool submit ... --wait`` then ``xcrun stapler``;
3. ``hdiutil`` makes ``dist/desktop-call-VERSION-macos-ARCH.dmg`` (the app, a link to
   /Applications, the licences);
4. the smoke test (tests/system/test_frozen.py) on the app's executables.
"""

from __future__ import annotations

import argparse
import os
import platform
import plistlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import DIST, HERE, ROOT, __version__, step

APP = DIST / "Desktop Call.app"
REQUIRED_KEYS = ("NSCameraUsageDescription", "NSMicrophoneUsageDescription", "CFBundleURLTypes")


def check_plist() -> None:
    info = plistlib.loads((APP / "Contents" / "Info.plist").read_bytes())
    missing = [key for key in REQUIRED_KEYS if key not in info]
    if missing:
        raise SystemExit(f"Info.plist lacks {', '.join(missing)}")
    schemes = [s for t in info["CFBundleURLTypes"] for s in t.get("CFBundleURLSchemes", [])]
    if "dcall" not in schemes:
        raise SystemExit("Info.plist does not register dcall://")
    if info.get("CFBundleShortVersionString") != __version__:
        raise SystemExit("Info.plist has the wrong version")


def sign() -> None:
    identity = os.environ.get("CODESIGN_IDENTITY", "-")
    command = ["codesign", "--force", "--deep", "--sign", identity]
    if identity != "-":
        command += ["--options", "runtime", "--timestamp",
                    "--entitlements", str(HERE / "macos" / "entitlements.plist")]  # fmt: skip
    subprocess.run([*command, str(APP)], check=True)
    subprocess.run(["codesign", "--verify", "--deep", "--strict", str(APP)], check=True)


def make_dmg() -> Path:
    dmg = DIST / f"desktop-call-{__version__}-macos-{platform.machine()}.dmg"
    dmg.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "Desktop Call"
        stage.mkdir()
        subprocess.run(["ditto", str(APP), str(stage / APP.name)], check=True)
        (stage / "Applications").symlink_to("/Applications")
        shutil.copytree(APP / "Contents" / "Resources" / "licenses", stage / "Licences")
        subprocess.run(
            ["hdiutil", "create", "-volname", "Desktop Call", "-srcfolder", str(stage),
             "-ov", "-format", "UDZO", "-imagekey", "zlib-level=9", str(dmg)],
            check=True,
        )  # fmt: skip
    return dmg


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", action="store_true")
    parser.add_argument("--no-gpl", action="store_true", help="leave x264 out (VP8 only)")
    parser.add_argument("--no-test", action="store_true")
    args = parser.parse_args()
    if sys.platform != "darwin":
        raise SystemExit("build_macos.py builds on macOS")
    seconds = common.pyinstaller(clean=args.clean, no_gpl=args.no_gpl)
    step(f"PyInstaller: {seconds:.0f} s, {common.folder_size(APP) / 1e6:.0f} MB")
    check_plist()
    sign()
    dmg = make_dmg()
    step(f"{dmg.relative_to(ROOT)}: {dmg.stat().st_size / 1e6:.1f} MB")
    if args.no_test:
        return 0
    env = {**os.environ, "DESKTOP_CALL_FROZEN": str(APP / "Contents" / "MacOS")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
         str(ROOT / "tests" / "system" / "test_frozen.py")],
        cwd=ROOT, env=env,
    ).returncode  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
