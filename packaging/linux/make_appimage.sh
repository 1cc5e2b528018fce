#!/bin/sh
# AppImage recipe: turns the one-folder build into desktop-call-VERSION-ARCH.AppImage.
#
#   python packaging/build_linux.py && sh packaging/linux/make_appimage.sh
#
# Needs appimagetool (https://github.com/AppImage/appimagetool/releases) on PATH: it
# is not packaged by Debian or PyPI, so the project's own build ships the tarball
# (docs/installers.md) and this recipe is for machines that have the tool. The AppDir
# is the PyInstaller folder plus AppRun, the .desktop file and the icon at its root;
# AppRun turns a dcall:// argument (from the desktop's URL handler, through
# appimaged or AppImageLauncher reading MimeType=) into --join.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FOLDER="$ROOT/dist/desktop-call"
VERSION=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['version'])" \
    "$FOLDER/BUILD-INFO.json")
APPDIR="$ROOT/build/AppDir"
command -v appimagetool >/dev/null || { echo "make_appimage.sh: appimagetool not on PATH" >&2; exit 1; }

rm -rf "$APPDIR"
mkdir -p "$APPDIR/usr"
cp -a "$FOLDER" "$APPDIR/usr/desktop-call"
cp "$ROOT/resources/app.png" "$APPDIR/desktop-call.png"
cat >"$APPDIR/desktop-call.desktop" <<DESKTOP
[Desktop Entry]
Type=Application
Name=Desktop Call
Comment=Private video calls, straight from this computer to theirs
Exec=desktop-call %u
Icon=desktop-call
Terminal=false
Categories=Network;VideoConference;
MimeType=x-scheme-handler/dcall;
X-AppImage-Version=$VERSION
DESKTOP
cat >"$APPDIR/AppRun" <<'APPRUN'
#!/bin/sh
HERE=$(dirname "$(readlink -f "$0")")
case "${1:-}" in
    --server-only) shift; exec "$HERE/usr/desktop-call/desktop-call-server" "$@" ;;
    *) exec "$HERE/usr/desktop-call/desktop-call" "$@" ;;
esac
APPRUN
chmod +x "$APPDIR/AppRun"
ARCH=$(uname -m) appimagetool "$APPDIR" "$ROOT/dist/desktop-call-$VERSION-$(uname -m).AppImage"
