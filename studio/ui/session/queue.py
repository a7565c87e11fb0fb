"""The render queue for Qt: the core's RenderQueue (studio.app.queue) as signals."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from studio.app.queue import RenderQueue


class QueueAdapter(QObject):
    changed = Signal()  # a job was added, started, advanced or ended
    batch_done = Signal(object, object)  # QueuedJob, [(request, path)]: files a batch wrote

    def __init__(self, queue: RenderQueue, parent: QObject | None = None):
        super().__init__(parent)
        self.queue = queue
        queue.changed.connect(self.changed.emit)
        queue.batch_done.connect(self.batch_done.emit)
