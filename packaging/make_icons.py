"""Render resources/icons/app.svg into the installers' icon files (committed in resources/).

    python packaging/make_icons.py

- ``resources/app.png`` (256 px): Linux (.desktop file, hicolor theme);
- ``resources/app.ico`` (16-256 px): Windows (the .exe and the installer);
- ``resources/app.icns`` (16-1024 px): macOS (the .app bundle).

Qt renders the SVG into PNGs; the .ico and .icns containers of PNGs are written here,
so no other tool is needed. Run it again only when app.svg changes.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "resources" / "icons" / "app.svg"


def render(renderer, size: int):
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter

    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


def png_bytes(image) -> bytes:
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice

    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return bytes(data.data())


def ico(pngs: dict[int, bytes]) -> bytes:
    """An .ico of PNG images (Windows Vista and later read PNG entries at every size)."""
    header = struct.pack("<HHH", 0, 1, len(pngs))
    offset = 6 + 16 * len(pngs)
    entries, body = b"", b""
    for size, data in sorted(pngs.items()):
        side = 0 if size >= 256 else size  # 0 means 256
        entries += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(data), offset)
        offset += len(data)
        body += data
    return header + entries + body


ICNS_TYPES = {16: b"icp4", 32: b"icp5", 64: b"icp6", 128: b"ic07", 256: b"ic08",
              512: b"ic09", 1024: b"ic10"}  # fmt: skip


def icns(pngs: dict[int, bytes]) -> bytes:
    """An .icns of PNG images (macOS 10.7 and later)."""
    body = b"".join(
        ICNS_TYPES[size] + struct.pack(">I", 8 + len(data)) + data
        for size, data in sorted(pngs.items())
    )
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication(sys.argv[:1])  # noqa: F841 - image plugins need the app
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise SystemExit(f"make_icons: cannot read {SVG}")
    out = ROOT / "resources"
    render(renderer, 256).save(str(out / "app.png"))
    (out / "app.ico").write_bytes(
        ico({s: png_bytes(render(renderer, s)) for s in (16, 24, 32, 48, 64, 128, 256)})
    )
    (out / "app.icns").write_bytes(icns({s: png_bytes(render(renderer, s)) for s in ICNS_TYPES}))
    for name in ("app.png", "app.ico", "app.icns"):
        print(f"wrote resources/{name} ({(out / name).stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
