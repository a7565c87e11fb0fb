"""The message area: the session's info / warning / error messages, newest first, with their details. Never modal:
for warnings and errors it emits `attention` so the main window can raise its dock or flash the status bar.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication, QIcon
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QListWidget, QListWidgetItem, QPlainTextEdit,
                               QPushButton, QSplitter, QStyle, QVBoxLayout, QWidget)

INFO, WARNING, ERROR = "info", "warning", "error"
LEVELS = (INFO, WARNING, ERROR)
MAX_MESSAGES = 200
_ICONS = {INFO: QStyle.StandardPixmap.SP_MessageBoxInformation,
          WARNING: QStyle.StandardPixmap.SP_MessageBoxWarning,
          ERROR: QStyle.StandardPixmap.SP_MessageBoxCritical}


@dataclass(frozen=True)
class Message:
    level: str
    text: str
    detail: str
    time: datetime = field(default_factory=datetime.now)

    def report(self) -> str:
        """The message as plain text, for the clipboard (a bug report)."""
        head = f"[{self.time:%Y-%m-%d %H:%M:%S}] {self.level.upper()}: {self.text}"
        return f"{head}\n\n{self.detail}" if self.detail and self.detail != self.text else head


class MessageArea(QWidget):
    """The app's non-modal message list (newest first, at most MAX_MESSAGES) with a detail view."""

    attention = Signal(str, str)  # level, text: a warning or an error arrived

    def __init__(self, session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageArea")
        self.session = session
        self._messages: list[Message] = []  # newest first, parallel to the list's rows

        self._list = QListWidget(self)
        self._list.setObjectName("messageList")
        self._list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self._list.setUniformItemSizes(True)
        self._list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self._list.setToolTip("Messages, newest first — select one to see its details")

        self._detail = QPlainTextEdit(self)
        self._detail.setObjectName("messageDetail")
        self._detail.setReadOnly(True)
        self._detail.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self._detail.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self._detail.setPlaceholderText("Select a message to see its details")
        self._detail.setToolTip("Details of the selected message")

        self._copy = QPushButton("Copy Details", self)
        self._copy.setObjectName("copyMessageButton")
        self._copy.setToolTip("Copy the selected message and its details to the clipboard")
        self._clear = QPushButton("Clear", self)
        self._clear.setObjectName("clearMessagesButton")
        self._clear.setToolTip("Remove all messages")

        splitter = QSplitter(Qt.Orientation.Vertical, self)
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(self._list)
        splitter.addWidget(self._detail)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self._copy)
        buttons.addWidget(self._clear)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter, 1)
        layout.addLayout(buttons)

        self._list.currentRowChanged.connect(self._on_selection_changed)
        self._copy.clicked.connect(self.copy_details)
        self._clear.clicked.connect(self.clear)

        session.message.connect(self._on_message)

        self._update_buttons()

    # --- public -----------------------------------------------------------------------------------------------------
    def messages(self) -> list[tuple[str, str, str]]:
        """(level, text, detail) of every message, newest first."""
        return [(m.level, m.text, m.detail) for m in self._messages]

    def count_errors(self) -> int:
        return sum(m.level == ERROR for m in self._messages)

    def add(self, level: str, text: str, detail: str = "") -> None:
        """Show a message (what the session's `message` signal does)."""
        level = level if level in LEVELS else INFO
        message = Message(level, text, detail)
        follow = self._list.currentRow() <= 0  # nothing selected, or the newest: keep showing the newest
        self._messages.insert(0, message)
        self._list.insertItem(0, self._make_item(message))
        while len(self._messages) > MAX_MESSAGES:
            self._messages.pop()
            self._list.takeItem(self._list.count() - 1)
        if follow:
            self._list.setCurrentRow(0)
        self._update_buttons()
        if level in (WARNING, ERROR):
            self.attention.emit(level, text)

    def selected(self) -> tuple[str, str, str] | None:
        row = self._list.currentRow()
        if not 0 <= row < len(self._messages):
            return None
        m = self._messages[row]
        return m.level, m.text, m.detail

    def copy_details(self) -> None:
        row = self._list.currentRow()
        if 0 <= row < len(self._messages):
            QGuiApplication.clipboard().setText(self._messages[row].report())

    def clear(self) -> None:
        self._messages.clear()
        self._list.clear()
        self._detail.clear()
        self._update_buttons()

    # --- session signals --------------------------------------------------------------------------------------------
    def _on_message(self, level: str, text: str, detail: str) -> None:
        self.add(level, text, detail)

    # --- internals --------------------------------------------------------------------------------------------------
    def _make_item(self, message: Message) -> QListWidgetItem:
        one_line = " ".join(message.text.split())
        item = QListWidgetItem(self._level_icon(message.level), f"{message.time:%H:%M:%S}  {one_line}")
        tip = message.text if not message.detail else f"{message.text}\n\n{_first_lines(message.detail)}"
        item.setToolTip(tip)
        return item

    def _level_icon(self, level: str) -> QIcon:
        return self.style().standardIcon(_ICONS.get(level, _ICONS[INFO]))

    def _on_selection_changed(self, row: int) -> None:
        if 0 <= row < len(self._messages):
            m = self._messages[row]
            self._detail.setPlainText(m.detail or m.text)
        else:
            self._detail.clear()
        self._update_buttons()

    def _update_buttons(self) -> None:
        self._copy.setEnabled(0 <= self._list.currentRow() < len(self._messages))
        self._clear.setEnabled(bool(self._messages))


def _first_lines(text: str, count: int = 8) -> str:
    lines = text.splitlines()
    return "\n".join(lines[:count] + (["…"] if len(lines) > count else []))
