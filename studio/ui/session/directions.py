"""The open model's direction names for Qt: studio.app.direction_sets.DirectionNames with a `changed` signal.

The session makes one, bound to the document's undo stack (a rename is one step) and its messages, and hands it
each model change before the panels hear of it, so a panel rebuilt for a new model reads that model's names."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QObject, Signal, Slot

from studio.app.direction_sets import DirectionNames
from studio.app.undo import UndoStack


class DirectionsAdapter(QObject):
    changed = Signal()  # the current model's names, or its stored sets, changed

    def __init__(self, undo: UndoStack, message: Callable[[str, str, str], None], parent: QObject | None = None):
        super().__init__(parent)
        self.names = DirectionNames(undo, message, self.changed.emit)

    @Slot(object)
    def use_model(self, entry) -> None:
        self.names.use_model(entry)
