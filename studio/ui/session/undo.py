"""The document's undo history for Qt: the core's UndoStack (studio.app.undo) with QUndoStack's names and signals,
and the Edit menu's Undo / Redo actions driven by it ("Undo Seed 5", enabled only when there is a step)."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QAction

from studio.app.undo import UndoStack


class UndoAdapter(QObject):
    """`stack` as the window reads it: QUndoStack's method names (undo, redo, index, count, text, isClean,
    setClean, resetClean, clear, canUndo, canRedo, undoText, redoText) and its change signals."""

    changed = Signal()  # any of the below
    indexChanged = Signal(int)
    cleanChanged = Signal(bool)
    canUndoChanged = Signal(bool)
    canRedoChanged = Signal(bool)
    undoTextChanged = Signal(str)
    redoTextChanged = Signal(str)

    def __init__(self, stack: UndoStack, parent: QObject | None = None):
        super().__init__(parent)
        self.stack = stack
        self._state = self._read()
        stack.changed.connect(self._on_stack_changed)

    def _read(self) -> tuple:
        s = self.stack
        return s.index, s.is_clean, s.can_undo, s.can_redo, s.undo_text, s.redo_text

    def _on_stack_changed(self) -> None:
        old, new = self._state, self._read()
        self._state = new
        for signal, before, now in zip((self.indexChanged, self.cleanChanged, self.canUndoChanged,
                                        self.canRedoChanged, self.undoTextChanged, self.redoTextChanged), old, new):
            if before != now:
                signal.emit(now)
        self.changed.emit()

    @Slot()
    def undo(self) -> None:
        self.stack.undo()

    @Slot()
    def redo(self) -> None:
        self.stack.redo()

    def index(self) -> int:
        return self.stack.index

    def count(self) -> int:
        return self.stack.count

    def text(self, index: int) -> str:
        return self.stack.text(index)

    def isClean(self) -> bool:  # noqa: N802 (Qt's names)
        return self.stack.is_clean

    def setClean(self) -> None:  # noqa: N802
        self.stack.set_clean()

    def resetClean(self) -> None:  # noqa: N802
        self.stack.reset_clean()

    def clear(self) -> None:
        self.stack.clear()

    def canUndo(self) -> bool:  # noqa: N802
        return self.stack.can_undo

    def canRedo(self) -> bool:  # noqa: N802
        return self.stack.can_redo

    def undoText(self) -> str:  # noqa: N802
        return self.stack.undo_text

    def redoText(self) -> str:  # noqa: N802
        return self.stack.redo_text


class UndoActions(QObject):
    """Edit → Undo and Redo over `undo`: their text names the step ("&Undo Seed 5"), they are enabled only when
    there is a step to take, and triggering them undoes or redoes it."""

    def __init__(self, undo: UndoAdapter, parent: QObject):
        super().__init__(parent)
        self.undo_stack = undo
        self.undo = QAction("&Undo", parent)
        self.redo = QAction("&Redo", parent)
        self.undo.triggered.connect(undo.undo)
        self.redo.triggered.connect(undo.redo)
        undo.changed.connect(self._on_changed)
        self._on_changed()

    @Slot()
    def _on_changed(self) -> None:
        for action, word, can, text in ((self.undo, "Undo", self.undo_stack.canUndo(), self.undo_stack.undoText()),
                                        (self.redo, "Redo", self.undo_stack.canRedo(), self.undo_stack.redoText())):
            action.setEnabled(can)
            action.setText(f"&{word} {text.replace('&', '&&')}" if text else f"&{word}")
            tip = f"{word} {text}" if text else f"Nothing to {word.lower()}"
            action.setToolTip(tip)
            action.setStatusTip(tip)
