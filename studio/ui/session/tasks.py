"""The document's work on the engine for Qt: the engine bridge's results (on the GUI thread) turned into core calls
and signals. Previews become the image or sound to show and, once renders settle, a history entry; the core's
Tasks (studio.app.tasks) submit through the bridge and say when the variations grid changed."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from studio.app.document import OpenDocument
from studio.app.models import ERROR
from studio.app.tasks import Tasks
from studio.request import RenderRequest
from studio.steps import Output
from studio.ui.bridge import EngineBridge
from studio.ui.images import output_thumbnail

HISTORY_SETTLE_MS = 150  # a render becomes a history entry once no newer one arrived for this long


class TasksAdapter(QObject):
    image_changed = Signal(object)  # np.ndarray: the image to show (per-step frames and finished renders)
    sound_changed = Signal(object)  # Output: the sound to show and play (finished renders of audio models)
    variations_changed = Signal()  # the variations grid got a new tile, or was cleared
    rendered = Signal(object, float, object)  # request, seconds, info of a finished preview

    def __init__(self, tasks: Tasks, document: OpenDocument, bridge: EngineBridge, parent: QObject | None = None):
        super().__init__(parent)
        self.tasks, self.document, self.bridge = tasks, document, bridge
        # History entries (with their PNG thumbnails) are made once renders settle, not for every frame of a drag:
        # that work would otherwise land on the GUI thread at the frame rate.
        self._history_timer = QTimer(self)
        self._history_timer.setSingleShot(True)
        self._history_timer.setInterval(HISTORY_SETTLE_MS)
        self._history_timer.timeout.connect(self._commit_history)
        self._pending_history: tuple[RenderRequest, Output, float] | None = None
        tasks.variations_changed.connect(self.variations_changed.emit)
        document.opened.connect(self._on_opened)
        bridge.frame.connect(self._on_frame)
        bridge.rendered.connect(self._on_rendered)
        bridge.failed.connect(self._on_failed)
        # called first with a failed preview's request and message; True: it was dealt with (no message here)
        self.failure_handler: Callable[[RenderRequest, str], bool] | None = None

    @Slot(object, object)
    def _on_frame(self, request: RenderRequest, output: Output) -> None:
        if output.kind == "image":
            self.image_changed.emit(output.data)

    @Slot(object, object, float, object)
    def _on_rendered(self, request: RenderRequest, output: Output, seconds: float, info: dict) -> None:
        current = self.tasks.preview_finished(request, output, info)
        if output.kind == "image":
            self.image_changed.emit(output.data)
        elif output.kind == "audio":
            self.sound_changed.emit(output)
        if current:
            self._pending_history = (request, output, seconds)
            self._history_timer.start()
        self.rendered.emit(request, seconds, info)

    @Slot(object, str, str)
    def _on_failed(self, request: RenderRequest, text: str, detail: str) -> None:
        if self.failure_handler is not None and self.failure_handler(request, text):
            return  # (the first render of a model just chosen: the session puts the previous one back)
        self.document.message(ERROR, f"Render failed: {text}", detail or text)

    def _commit_history(self) -> None:
        if self._pending_history is not None:
            (request, output, seconds), self._pending_history = self._pending_history, None
            self.document.add_history(request, seconds, output_thumbnail(output))

    def flush_history(self) -> None:
        """Record the newest render in the history now (before saving, say)."""
        self._history_timer.stop()
        self._commit_history()

    def _on_opened(self) -> None:
        """A new document: a render of the old one pending for the history is not this one's."""
        self._history_timer.stop()
        self._pending_history = None
