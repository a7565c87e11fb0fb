"""Thumbnail sizes the user picks for the history strip and the variation tiles: a right-click menu (Small, Medium,
Large) on the list, remembered by the window (QSettings) through the `chosen` signal."""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QWidget

THUMB_HEIGHTS = {"small": 32, "medium": 48, "large": 96}  # a thumbnail's height in px; its width follows the output
DEFAULT_SIZE = "medium"
MENU_HINT = "right-click to choose the thumbnail size"


class ThumbSizeMenu(QObject):
    """Checkable Small / Medium / Large actions in `widget`'s right-click menu; `chosen(name)` when the user picks
    one (not when set from code)."""

    chosen = Signal(str)

    def __init__(self, widget: QWidget, what: str):
        super().__init__(widget)
        self.size = DEFAULT_SIZE
        self.group = QActionGroup(self)
        self.actions: dict[str, QAction] = {}
        widget.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        for name, height in THUMB_HEIGHTS.items():
            action = QAction(f"{name.capitalize()} {what} ({height} px)", widget, checkable=True)
            action.setObjectName(f"thumbSize_{name}")
            action.triggered.connect(lambda _checked=False, n=name: self._on_triggered(n))
            self.group.addAction(action)
            widget.addAction(action)
            self.actions[name] = action
        self.actions[self.size].setChecked(True)

    @property
    def height(self) -> int:
        return THUMB_HEIGHTS[self.size]

    def set_size(self, name: str) -> bool:
        """Check `name` (an unknown name is ignored: settings hand back whatever the file holds); True if it changed."""
        if name not in THUMB_HEIGHTS or name == self.size:
            return False
        self.size = name
        self.actions[name].setChecked(True)
        return True

    def _on_triggered(self, name: str) -> None:
        if self.set_size(name):
            self.chosen.emit(name)
