"""Resources (icons, style sheet) and the light/dark theme, loaded through one helper.

Icons are small stroke SVGs in ``resources/icons`` drawn with ``currentColor``;
they are tinted here with a colour of the widget's palette, so they follow a
light or dark theme. The style sheet ``resources/style.qss`` uses ``palette(...)``
for everything that follows the theme and a few ``@tokens`` (accent, danger…)
filled in with a light or a dark value. Windows call :func:`follow_theme` once:
it applies the sheet and applies it again when the system switches between light
and dark (``QStyleHints.colorSchemeChanged``, Qt ≥ 6.5) or the palette changes.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

from PySide6.QtCore import QByteArray, QEvent, QObject, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QApplication, QStyle, QWidget

__all__ = [
    "ICON_SIZES",
    "TOKENS",
    "follow_theme",
    "icon",
    "icon_pixmap",
    "is_dark",
    "repolish",
    "resource_path",
    "resources_dir",
    "set_role",
    "stylesheet",
]

log = logging.getLogger(__name__)

ICON_SIZES = (16, 24, 32, 48)

#: Fixed colours, light and dark. Everything else comes from the palette.
TOKENS: dict[str, tuple[str, str]] = {
    "accent": ("#1a73e8", "#8ab4f8"),
    "accent_hover": ("#1765cc", "#aecbfa"),
    "accent_text": ("#ffffff", "#202124"),
    "accent_soft": ("rgba(26, 115, 232, 0.14)", "rgba(138, 180, 248, 0.22)"),
    "danger": ("#c5221f", "#f28b82"),
    "danger_soft": ("rgba(217, 48, 37, 0.10)", "rgba(242, 139, 130, 0.18)"),
    "success": ("#188038", "#81c995"),
    "warning": ("#b06000", "#fdd663"),
    "muted": ("#5f6368", "#9aa0a6"),
    "border": ("rgba(0, 0, 0, 0.14)", "rgba(255, 255, 255, 0.16)"),
    "toast_bg": ("rgba(32, 33, 36, 0.92)", "rgba(60, 64, 67, 0.95)"),
}

_FALLBACK_SHEET = """
QLabel[role="error"] { color: @danger; }
QLabel[role="ok"] { color: @success; }
QLabel[role="hint"] { color: @muted; }
QLineEdit[invalid="true"] { border: 1px solid @danger; }
"""


def resources_dir() -> Path:
    """``resources/`` beside the package, or inside a PyInstaller bundle."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        frozen = Path(bundle) / "resources"
        if frozen.is_dir():
            return frozen
    return Path(__file__).resolve().parents[2] / "resources"


def resource_path(*parts: str) -> Path:
    return resources_dir().joinpath(*parts)


# ------------------------------------------------------------------ light / dark


def is_dark(widget: QWidget | None = None) -> bool:
    """True when the palette in use is dark.

    The palette decides, not only ``QStyleHints.colorScheme()``: a style that
    ignores the system scheme keeps a light palette, and our colours must
    contrast with what is actually drawn.
    """
    palette = widget.palette() if widget is not None else QGuiApplication.palette()
    window = palette.color(QPalette.ColorRole.Window)
    text = palette.color(QPalette.ColorRole.WindowText)
    if window.lightness() != text.lightness():
        return window.lightness() < text.lightness()
    hints = QGuiApplication.styleHints()
    return hints is not None and hints.colorScheme() == Qt.ColorScheme.Dark


def token(name: str, dark: bool) -> str:
    light_value, dark_value = TOKENS[name]
    return dark_value if dark else light_value


@functools.cache
def _sheet_template() -> str:
    try:
        return resource_path("style.qss").read_text(encoding="utf-8")
    except OSError:
        log.warning("style sheet missing in %s; using a minimal one", resources_dir())
        return _FALLBACK_SHEET


def stylesheet(dark: bool) -> str:
    """The application style sheet with its tokens filled in."""
    sheet = _sheet_template()
    for name in sorted(TOKENS, key=len, reverse=True):  # accent_soft before accent
        sheet = sheet.replace(f"@{name}", token(name, dark))
    return sheet


class _ThemeFollower(QObject):
    """Applies the style sheet to one window, again whenever the theme changes."""

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self._window = window
        self._dark: bool | None = None
        window.installEventFilter(self)
        hints = QGuiApplication.styleHints()
        if hints is not None:
            hints.colorSchemeChanged.connect(self.apply)
        self.apply()

    def apply(self, *_args: object) -> None:
        dark = is_dark(None)
        if dark == self._dark:
            return
        self._dark = dark
        self._window.setStyleSheet(stylesheet(dark))
        self._window.setProperty("dark", dark)
        for child in self._window.findChildren(QWidget):
            refresh = getattr(child, "refresh_icons", None)
            if callable(refresh):
                refresh()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in (QEvent.Type.ApplicationPaletteChange, QEvent.Type.ThemeChange):
            self.apply()
        return False


def follow_theme(window: QWidget) -> None:
    """Style ``window`` (and its children) and keep following light/dark changes."""
    if window.findChild(_ThemeFollower, options=Qt.FindChildOption.FindDirectChildrenOnly):
        return
    _ThemeFollower(window)


# ------------------------------------------------------------------ properties


def repolish(widget: QWidget) -> None:
    """Re-evaluate style sheet selectors after a dynamic property changed."""
    style = widget.style()
    style.unpolish(widget)
    style.polish(widget)
    widget.update()


def set_role(widget: QWidget, role: str) -> None:
    """``role`` is what the style sheet selects on (``QLabel[role="error"]``)."""
    if widget.property("role") != role:
        widget.setProperty("role", role)
        repolish(widget)


def set_flag(widget: QWidget, name: str, value: bool) -> None:
    if bool(widget.property(name)) != value:
        widget.setProperty(name, value)
        repolish(widget)


# ------------------------------------------------------------------ icons


@functools.cache
def _svg_text(name: str) -> str | None:
    try:
        return resource_path("icons", f"{name}.svg").read_text(encoding="utf-8")
    except OSError:
        return None


def _render_svg(name: str, color: QColor, size: int, dpr: float = 1.0) -> QPixmap | None:
    text = _svg_text(name)
    if text is None:
        return None
    try:
        from PySide6.QtSvg import QSvgRenderer
    except ImportError:  # QtSvg missing from a trimmed build: text fallback
        return None
    renderer = QSvgRenderer(QByteArray(text.replace("currentColor", color.name()).encode()))
    if not renderer.isValid():
        return None
    pixels = max(1, round(size * dpr))
    pixmap = QPixmap(pixels, pixels)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QRectF(0, 0, pixels, pixels))
    painter.end()
    if color.alphaF() < 1.0:
        pixmap = _with_opacity(pixmap, color.alphaF())
    pixmap.setDevicePixelRatio(dpr)
    return pixmap


def _with_opacity(pixmap: QPixmap, opacity: float) -> QPixmap:
    result = QPixmap(pixmap.size())
    result.fill(Qt.GlobalColor.transparent)
    painter = QPainter(result)
    painter.setOpacity(opacity)
    painter.drawPixmap(0, 0, pixmap)
    painter.end()
    return result


def icon_pixmap(name: str, color: QColor | str, size: int, dpr: float = 1.0) -> QPixmap:
    """One tinted icon as a pixmap of ``size`` logical pixels (null if unavailable)."""
    pixmap = _render_svg(name, QColor(color), size, dpr)
    return pixmap if pixmap is not None else QPixmap()


def icon(
    name: str,
    color: QColor | str | None = None,
    *,
    checked: str | None = None,
    fallback: QStyle.StandardPixmap | None = None,
) -> QIcon:
    """A tinted icon from ``resources/icons/<name>.svg``.

    ``checked`` names the icon shown when a checkable button is on (mic → mic-off).
    Without the SVG (or QtSvg) the result is ``fallback`` from the style, or an
    empty icon: buttons always carry text too, so they stay usable.
    """
    if color is None:
        color = QGuiApplication.palette().color(QPalette.ColorRole.ButtonText)
    tint = QColor(color)
    result = QIcon()
    for state, icon_name in ((QIcon.State.Off, name), (QIcon.State.On, checked or name)):
        for size in ICON_SIZES:
            for dpr in (1.0, 2.0):
                pixmap = _render_svg(icon_name, tint, size, dpr)
                if pixmap is not None:
                    result.addPixmap(pixmap, QIcon.Mode.Normal, state)
    if result.isNull() and fallback is not None:
        app = QApplication.instance()
        if isinstance(app, QApplication):
            return app.style().standardIcon(fallback)
    return result


def icon_size(size: int = 24) -> QSize:
    return QSize(size, size)


def app_icon() -> QIcon:
    """The application's icon (window title bars, task bars)."""
    path = resource_path("icons", "app.svg")
    return QIcon(str(path)) if path.is_file() else QIcon()
