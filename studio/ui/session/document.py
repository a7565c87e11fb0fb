"""The open document for Qt: the core's OpenDocument (studio.app.document) with its listeners as signals."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from studio.app.document import OpenDocument


class DocumentAdapter(QObject):
    request_changed = Signal(object)  # RenderRequest | None
    model_changed = Signal(object)  # PackageEntry | None: the current request's model
    latents_changed = Signal()
    history_changed = Signal()
    document_changed = Signal()  # path or saved state (the window title)
    seed_mode_changed = Signal(str)
    opened = Signal()  # a whole new document: everything changed

    def __init__(self, document: OpenDocument, parent: QObject | None = None):
        super().__init__(parent)
        self.document = document
        document.request_changed.connect(self.request_changed.emit)
        document.model_changed.connect(self.model_changed.emit)
        document.latents_changed.connect(self.latents_changed.emit)
        document.history_changed.connect(self.history_changed.emit)
        document.document_changed.connect(self.document_changed.emit)
        document.seed_mode_changed.connect(self.seed_mode_changed.emit)
        document.opened.connect(self._on_opened)

    def _on_opened(self) -> None:
        """Everything changed: say so for each part (the panels refill)."""
        self.model_changed.emit(self.document.entry)
        self.request_changed.emit(self.document.request)
        self.latents_changed.emit()
        self.history_changed.emit()
        self.document_changed.emit()
        self.opened.emit()
