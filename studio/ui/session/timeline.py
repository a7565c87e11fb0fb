"""The document's timeline for Qt: the core's TimelineEditor (studio.app.timeline) as a signal."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from studio.app.timeline import TimelineEditor


class TimelineAdapter(QObject):
    changed = Signal()  # keyframes, timing, sound or mappings changed (or a new document opened)

    def __init__(self, editor: TimelineEditor, parent: QObject | None = None):
        super().__init__(parent)
        self.editor = editor
        editor.changed.connect(self.changed.emit)
