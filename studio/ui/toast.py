"""A small non-modal note at the window's bottom-right that an export finished, with *Show in Folder*; it goes away
by itself after a few seconds (or at once with ×), and never takes the keyboard focus."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import QEvent, QObject, QRect, QTimer, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

TOAST_MS = 6000
MARGIN = 16


def open_in_file_manager(folder: Path) -> bool:
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))


class ExportToast(QFrame):
    """`show_export(path)`: "Exported name.png" and a *Show in Folder* button that calls `opener(folder)` (the
    window's `open_folder`, which tests replace)."""

    def __init__(self, parent: QWidget, opener: Callable[[Path], bool] | None = None):
        super().__init__(parent)
        self.setObjectName("exportToast")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        self.opener = opener or open_in_file_manager
        self.path: Path | None = None
        self.text = QLabel()
        self.text.setObjectName("exportToastText")
        self.show_folder = QToolButton()
        self.show_folder.setObjectName("exportToastShow")
        self.show_folder.setText("Show in Folder")
        self.show_folder.setToolTip("Open the folder of the exported file in the file manager")
        self.show_folder.clicked.connect(self._show_folder)
        close = QToolButton()
        close.setObjectName("exportToastClose")
        close.setText("×")
        close.setToolTip("Close")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        for button in (self.show_folder, close):
            button.setFocusPolicy(button.focusPolicy().NoFocus)
        row = QHBoxLayout(self)
        row.setContentsMargins(10, 6, 6, 6)
        row.addWidget(self.text)
        row.addWidget(self.show_folder)
        row.addWidget(close)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self.hide)
        parent.installEventFilter(self)
        self.hide()

    def show_export(self, path: str | Path, detail: str = "", ms: int = TOAST_MS) -> None:
        self.path = Path(path)
        self.text.setText(f"Exported <b>{_escape(self.path.name)}</b>" + (f" ({_escape(detail)})" if detail else ""))
        self.text.setToolTip(str(self.path))
        self.adjustSize()
        self._place()
        self.show()
        self.raise_()
        self.timer.start(ms)

    def _show_folder(self) -> None:
        if self.path is not None:
            self.opener(self.path.parent)
        self.hide()

    def _place(self) -> None:
        parent = self.parentWidget()
        if parent is None:
            return
        area = parent.rect()
        screen = parent.screen()
        if screen is not None:  # a window taller or wider than its screen: the part the user sees
            shown = screen.availableGeometry()
            area = area.intersected(QRect(parent.mapFromGlobal(shown.topLeft()), shown.size()))
        bottom = area.bottom()
        bar = getattr(parent, "statusBar", None)
        if callable(bar) and bar().isVisible() and bar().geometry().bottom() <= bottom + 1:
            bottom -= bar().height()
        self.move(max(area.left(), area.right() - self.width() - MARGIN),
                  max(area.top(), bottom - self.height() - MARGIN))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.parentWidget() and event.type() == QEvent.Type.Resize and self.isVisible():
            self._place()
        return False


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
