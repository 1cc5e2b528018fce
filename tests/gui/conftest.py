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


@pytest.fixture(scope="package", autouse=True)
def _collect_garbage_on_the_qt_thread():
    """As the app does (runtime.MainThreadCollector): Python's cyclic collector never
    runs on a worker thread while Qt objects live, or a widget in a reference cycle can
    be destroyed there and leave a timer pointing at freed memory (a segfault later)."""
    import gc

    was_enabled = gc.isenabled()
    gc.disable()
    yield
    gc.collect()
    if was_enabled:
        gc.enable()


@pytest.fixture(autouse=True)
def _collect_after_each_test():
    import gc

    yield
    gc.collect(1)  # here, on the Qt thread, between tests (the rest: at the package's end)
