"""The installed Qt binding does not corrupt Python's reference counts (PySide6 6.12.0 on Python < 3.12 drops a
reference to None on every void call, and the app aborts with "deallocating None" after a few thousand slider
moves; constraints.txt keeps it out)."""

from __future__ import annotations

import sys


def test_void_qt_calls_keep_none_alive(qtbot):
    from PySide6.QtWidgets import QSlider

    slider = QSlider()
    qtbot.addWidget(slider)
    before = sys.getrefcount(None)
    for i in range(2000):
        slider.setValue(i % 50)
        slider.update()
    assert sys.getrefcount(None) >= before - 50, "this PySide6 build leaks references to None: use another version"
