#!/bin/sh
# Install Desktop Call from this folder and register it for dcall:// links.
#
#   ./install.sh              # for you: ~/.local/opt/desktop-call, menu entry, dcall://
#   sudo ./install.sh --system  # for everyone: /opt/desktop-call, /usr/local/bin
#   ./install.sh --uninstall  (or --system --uninstall)
#
# Two desktop entries: "Desktop Call" in the menu, and a hidden one that
# xdg-open / browsers use for dcall:// links (Exec=desktop-call %u: the app opens and joins).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
SCOPE=user
ACTION=install
for arg in "$@"; do
    case "$arg" in
        --system) SCOPE=system ;;
        --uninstall) ACTION=uninstall ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $arg" >&2; exit 64 ;;
    esac
done

if [ "$SCOPE" = system ]; then
    PREFIX=/opt/desktop-call
    BIN=/usr/local/bin
    SHARE=/usr/local/share
else
    PREFIX="$HOME/.local/opt/desktop-call"
    BIN="$HOME/.local/bin"
    SHARE="${XDG_DATA_HOME:-$HOME/.local/share}"
fi
APPS="$SHARE/applications"
ICONS="$SHARE/icons/hicolor/256x256/apps"
MIMEAPPS="${XDG_CONFIG_HOME:-$HOME/.config}/mimeapps.list"

refresh() {
    command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$APPS" || true
    command -v gtk-update-icon-cache >/dev/null 2>&1 &&
        gtk-update-icon-cache -q -t "$SHARE/icons/hicolor" 2>/dev/null || true
}

if [ "$ACTION" = uninstall ]; then
    rm -f "$BIN/desktop-call" "$BIN/desktop-call-server"
    rm -f "$APPS/desktop-call.desktop" "$APPS/desktop-call-url.desktop" "$ICONS/desktop-call.png"
    rm -rf "$PREFIX"
    if [ "$SCOPE" = user ] && [ -f "$MIMEAPPS" ]; then
        sed -i '/^x-scheme-handler\/dcall=/d' "$MIMEAPPS"
    fi
    refresh
    echo "Desktop Call uninstalled."
    exit 0
fi

# The program: the whole folder (executables, _internal/, licences).
if [ "$HERE" != "$PREFIX" ]; then
    rm -rf "$PREFIX"
    mkdir -p "$PREFIX"
    cp -a "$HERE/." "$PREFIX/"
fi
mkdir -p "$BIN" "$APPS" "$ICONS"
ln -sf "$PREFIX/desktop-call" "$BIN/desktop-call"
ln -sf "$PREFIX/desktop-call-server" "$BIN/desktop-call-server"

# Menu entry, link handler and icon, with the installed path filled in.
for entry in desktop-call.desktop desktop-call-url.desktop; do
    sed "s#@BIN@#$PREFIX#g" "$HERE/share/applications/$entry" >"$APPS/$entry"
    chmod 644 "$APPS/$entry"
done
cp "$HERE/share/icons/desktop-call.png" "$ICONS/desktop-call.png"
refresh

# dcall:// -> desktop-call-url.desktop: xdg-mime where it is, else mimeapps.list.
if [ "$SCOPE" = user ]; then
    if command -v xdg-mime >/dev/null 2>&1; then
        xdg-mime default desktop-call-url.desktop x-scheme-handler/dcall
    else
        mkdir -p "$(dirname "$MIMEAPPS")"
        touch "$MIMEAPPS"
        sed -i '/^x-scheme-handler\/dcall=/d' "$MIMEAPPS"
        if grep -q '^\[Default Applications\]' "$MIMEAPPS"; then
            sed -i 's#^\[Default Applications\]#&\nx-scheme-handler/dcall=desktop-call-url.desktop#' \
                "$MIMEAPPS"
        else
            printf '[Default Applications]\nx-scheme-handler/dcall=desktop-call-url.desktop\n' \
                >>"$MIMEAPPS"
        fi
    fi
fi
# System-wide: the MimeType= line and update-desktop-database make it the handler
# for everyone who has not chosen another.

echo "Desktop Call installed in $PREFIX"
case ":$PATH:" in
    *":$BIN:"*) ;;
    *) echo "Add $BIN to your PATH to run desktop-call from a terminal." ;;
esac
