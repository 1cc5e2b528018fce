"""GUI tier: Qt offscreen, one QApplication for the session (pytest-qt's qapp)."""

import os

# Before anything imports Qt: no screen on CI machines, and none needed.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_LOGGING_RULES", "qt.multimedia.*=false")

import pytest


@pytest.fixture
def settings_store(tmp_path):
    """A QSettings in an INI file of the test's own, never the user's settings."""
    from PySide6.QtCore import QSettings

    store = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    yield store
    store.sync()
