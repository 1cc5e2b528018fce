"""PySide6 windows, widgets and view-models; the only package that imports Qt widgets."""
